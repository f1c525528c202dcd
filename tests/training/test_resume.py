"""A killed run resumes exactly: same final parameters as an uninterrupted run with the same seed.

Bit for bit on the CPU, where the suite runs; on CUDA only under run.deterministic=true (docs/operations.md, GPUs)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT

pytestmark = pytest.mark.slow  # each test meta-trains, kills and resumes real processes (~30 s)
ARGS = ["--config", "configs/smoke.yaml", "meta.iterations=24", "meta.checkpoint_every=4", "meta.eval_every=100",
        "meta.test_tasks=2", "run.progress=false"]


def launch(out_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "metanas.meta_train", *ARGS, f"run.output_dir={out_dir}", *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def final_params(out_dir):
    (ckpt,) = (out_dir / "checkpoints").glob("*.pt")
    state = torch.load(ckpt, weights_only=True)
    assert state["iteration"] == 24
    return ckpt.stem, state["params"]


def wait_for_checkpoint(out_dir, proc, min_iteration):
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        for ckpt in (out_dir / "checkpoints").glob("*.pt"):
            try:
                if torch.load(ckpt, weights_only=True)["iteration"] >= min_iteration:
                    return ckpt.stem
            except Exception:  # being replaced right now: read it again
                pass
        time.sleep(0.2)
    pytest.fail(f"no checkpoint at iteration >= {min_iteration}: {proc.communicate()}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    proc = launch(out)
    assert proc.wait(timeout=300) == 0, proc.communicate()
    return final_params(out)[1]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_then_resume_ends_identical(tmp_path, reference):
    proc = launch(tmp_path)
    run_id = wait_for_checkpoint(tmp_path, proc, 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(tmp_path / "checkpoints" / f"{run_id}.pt", weights_only=True)["iteration"] < 24
    resumed = launch(tmp_path, "--resume", run_id)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    resumed_id, params = final_params(tmp_path)
    assert resumed_id == run_id  # the same run (and checkpoint) continued
    assert same(params, reference)
    # The alpha snapshots for the plots survive the kill: the one taken at the start, then the validation.
    history = torch.load(tmp_path / "checkpoints" / f"{run_id}.pt", weights_only=True)["alpha_history"]
    assert [s["iteration"] for s in history] == [0, 24]


def test_sigterm_checkpoints_and_says_how_to_resume(tmp_path, reference):
    proc = launch(tmp_path)
    run_id = wait_for_checkpoint(tmp_path, proc, 4)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and f"--resume {run_id}" in err and "Traceback" not in err
    resumed = launch(tmp_path, "--resume", str(tmp_path / "checkpoints" / f"{run_id}.pt"))
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert same(final_params(tmp_path)[1], reference)


def test_resume_with_another_config_is_refused(tmp_path, reference):
    proc = launch(tmp_path, "meta.iterations=4")
    assert proc.wait(timeout=300) == 0
    (ckpt,) = (tmp_path / "checkpoints").glob("*.pt")
    proc = launch(tmp_path, "--resume", ckpt.stem)  # iterations=24 now: a different experiment
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "different config" in err


def _kill_resume_matches_uninterrupted(tmp_path, *extra):
    ref_dir = tmp_path / "reference"
    proc = launch(ref_dir, *extra)
    assert proc.wait(timeout=300) == 0, proc.communicate()
    reference = final_params(ref_dir)[1]
    proc = launch(tmp_path, *extra)
    run_id = wait_for_checkpoint(tmp_path, proc, 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(tmp_path / "checkpoints" / f"{run_id}.pt", weights_only=True)["iteration"] < 24
    resumed = launch(tmp_path, *extra, "--resume", run_id)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert same(final_params(tmp_path)[1], reference)


def test_gumbel_samples_resume_exactly_after_sigkill(tmp_path):
    """The policy's Gumbel samples come from a generator saved in every checkpoint: a killed chain-space run under
    the gumbel policy resumes onto the same samples, so it ends with the uninterrupted run's parameters."""
    _kill_resume_matches_uninterrupted(tmp_path, "search.space=chain", "search.policy=gumbel", "search.widths=[4,8]",
                                       "search.channels=8", "meta.cost_weight=0.1")


def test_mixture_resumes_exactly_after_sigkill(tmp_path):
    """A mixture draws each task's source from the task generator saved in every checkpoint: a killed run over
    Omniglot + fonts resumes onto the same sources and tasks, so it ends with the uninterrupted run's parameters."""
    _kill_resume_matches_uninterrupted(tmp_path, "task.family=omniglot-fonts-5way", "search.space=chain",
                                       "search.widths=[4,8]", "search.channels=8")
