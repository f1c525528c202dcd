"""Learning actually happens: a short CPU meta-training on real Omniglot beats the un-meta-trained init."""

import pytest

from metanas.config import load_config
from metanas.training.loop import train

TINY = ["search.space=darts", "search.cells=2", "search.nodes=1", "search.channels=8", "search.ops=[max_pool_3x3,skip_connect,conv_3x3]",
        "inner.steps=3", "task.queries=5", "meta.meta_batch=4", "meta.eval_every=1000", "meta.eval_tasks=10",
        "meta.test_tasks=100", "run.progress=false"]
pytestmark = pytest.mark.slow  # 120 meta-iterations: over a minute on one core


def test_meta_training_beats_the_initialisation_on_held_out_tasks(runs_dir):
    def run(iterations):
        return train(load_config("omniglot", [*TINY, f"meta.iterations={iterations}", f"run.output_dir={runs_dir}"]))

    init = run(0).test  # same seed: same initial (w, alpha), same held-out test tasks
    trained = run(120).test
    assert trained.mean > init.mean + 0.10, (init.summary(), trained.summary())
    # the CI is computed over tasks, and both were scored on the same held-out tasks
    assert trained.accuracies.numel() == init.accuracies.numel() == 100
