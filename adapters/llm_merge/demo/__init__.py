"""``evogm-opt merge --demo``: a tiny model, LoRA experts trained on synthetic skills (``skills``), three searches."""
