"""Meta-training a warm start: the loop (data, outer loop, validation, checkpoints, tracking), and running it
across processes with ``torchrun``."""
