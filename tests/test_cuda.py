"""The CUDA path, end to end, on a machine with a GPU (skipped without one): ``python -m pytest -m cuda``.

A smoke meta-training, evaluation, choice of adaptation and export with ``run.device=cuda`` under
``torch.cuda.set_sync_debug_mode("warn")`` (each host sync warns, and the count is printed), the checkpoint read back
on the CPU, and a 2-rank NCCL run where the machine has two GPUs.
"""

import warnings

import pytest
import torch
from conftest import run_cli

import metanas

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
GPU = {"CUDA_VISIBLE_DEVICES": "0"}


def test_train_evaluate_select_and_export_on_cuda(tmp_path):
    cfg = metanas.load_config("smoke", [f"run.output_dir={tmp_path}", "run.device=cuda", "run.progress=false"])
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = metanas.train(cfg)
        print(f"host syncs during the smoke run: {sum('synchroniz' in str(w.message) for w in caught)}")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    warm = metanas.load(str(result.checkpoint), device="cuda")
    assert warm.device.type == "cuda" and next(warm.child(warm.derive()).parameters()).is_cuda
    _, ev = metanas.evaluate(warm, "omniglot-5way", 10, seed=0)
    assert 0 <= ev.mean <= 1
    best, _ = metanas.select_adaptation(warm, [1, 2], [0.0, 0.5], tasks=4)
    assert best["steps"] in (1, 2)
    state = torch.load(result.checkpoint, map_location=None, weights_only=True)  # written with CPU tensors
    assert all(not v.is_cuda for v in state["params"].values())
    support = tmp_path / "support"
    for c in range(5):
        (support / f"c{c}").mkdir(parents=True)
        from PIL import Image

        Image.new("L", (28, 28), color=40 * c).save(support / f"c{c}" / "a.png")
    out = run_cli("-m", "metanas.cli", "export", "--checkpoint", str(result.checkpoint), "--task", str(support), "--out",
                  str(tmp_path / "model"), "--no-track", env=GPU)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_nccl_ranks_train_one_run(tmp_path):
    import sys

    out = run_cli("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "metanas.meta_train",
                  "--config", "smoke", f"run.output_dir={tmp_path}", "run.device=cuda", "run.progress=false",
                  env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert out.returncode == 0, out.stderr + sys.executable
