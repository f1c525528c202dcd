"""Where each task sequence of a run starts: offsets from ``run.seed``.

Every evaluation of a run, and every method compared at the same seed, adapts to the same tasks; the sequences
of different purposes (validation during meta-training, test, the choice of adaptation, a domain's calibration,
a set encoder's training) never overlap.
"""

VAL_SEED, TEST_SEED, SELECT_SEED, DOMAIN_SEED, ENCODER_SEED = 1, 2, 3, 4, 5
