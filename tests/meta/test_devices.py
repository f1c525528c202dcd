"""Where a warm start's tensors live: its children on its own device, and a run resumed on another device."""

import metanas
from metanas.training.loop import train


def test_children_are_built_on_the_warm_starts_device(smoke_run, runs_dir):
    """The meta device stands in for a GPU: a child built on the CPU could not take the warm start's weights."""
    run_id, _ = smoke_run
    warm = metanas.load(run_id, output_dir=str(runs_dir))
    arch = warm.derive()  # (reading alpha needs its values: before the move)
    warm.to("meta")
    assert next(warm.child(arch).parameters()).device.type == "meta"
    assert next(warm.fixed(arch).model.parameters()).device.type == "meta"


def test_a_run_resumes_on_another_device(tmp_path):
    """The experiment must match to resume; the machine's settings (device, threads) may change."""
    cfg = metanas.load_config("smoke", [f"run.output_dir={tmp_path}", "run.device=cpu", "meta.iterations=2",
                                        "run.progress=false", "meta.test_tasks=2"])
    first = train(cfg)
    again = train(metanas.config.replace(cfg, {"run.device": "auto", "run.threads": 1}), resume=str(first.checkpoint))
    assert again.steps == 0 and again.run_id == first.run_id
