"""The evaluation-speed benchmark of the merge fitness (``eval_speed``); a candidate to move into the bench."""
