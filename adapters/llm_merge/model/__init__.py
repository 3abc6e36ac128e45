"""The model side: experts read as exact task vectors, the base loaded, coefficient layouts, the batched-λ LoRA
forward and ``MergeFitness``. ``names`` alone is torch-free (the config schema reads it before anything loads)."""
