"""Smokes of the benchmark scripts (tiny sizes, no timing asserts): they run and print their figures.

Each script is a real subprocess that imports everything and adapts or meta-trains (tens of seconds), so they
are all slow but the synthetic miniImageNet writer (a data-layer check)."""

import re

import pytest
from conftest import run_cli


# Omniglot alone (--config omniglot: one source, no choice of adaptation), shrunk
TINY = ["--config", "omniglot", "search.space=darts", "search.channels=4", "search.cells=2", "search.nodes=1", "inner.steps=1", "meta.meta_batch=2",
        "task.queries=2", "meta.eval_tasks=2", "meta.eval_every=2"]


@pytest.mark.slow
def test_meta_step_benchmark_prints_ratio_flops_and_memory_table():
    out = run_cli("benchmarks/meta_step.py", "--no-reference", "--repeats", "1", "--chunks", "1,2", *TINY)
    assert out.returncode == 0, out.stderr
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in out.stdout.splitlines() if line.startswith("| "))}
    naive = float(rows["naive deepcopy loop (alternating)"][0])
    for name in ("metanas torch.func + vmap (alternating, same work)", "metanas joint w+alpha step (one backward per step)"):
        seconds, ratio = float(rows[name][0]), float(rows[name][1].removesuffix("x"))
        # "vs naive" is the naive loop's seconds over this row's, measured in the same run; the printed seconds
        # are rounded to 0.01 s, so the ratio recomputed from them has bounds
        assert seconds > 0 and ratio > 0
        assert (naive - 0.005) / (seconds + 0.005) - 0.005 <= ratio <= (naive + 0.005) / max(seconds - 0.005, 1e-9) + 0.005
    assert "GFLOP/s" in out.stdout and "| 2 |" in out.stdout and "inner alpha step" in out.stdout
    assert "(task family measured: omniglot-5way)" in out.stdout  # --config omniglot reached the measuring processes


@pytest.mark.slow
def test_adapt_latency_benchmark():
    out = run_cli("benchmarks/adapt_latency.py", "--tasks", "3", "--against-steps", "1", *TINY)
    assert out.returncode == 0, out.stderr
    assert "latency per task: median" in out.stdout and "accuracy after each step:" in out.stdout
    assert "omniglot-5way (5-way 1-shot)" in out.stdout  # --config omniglot chose the family
    # against the same steps (TINY's inner.steps=1): the same tasks, so the paired difference is exactly 0
    assert "latency ratio (these 1 steps / 1): " in out.stdout, out.stdout
    assert "accuracy difference, paired: +0.00 ± 0.00 points" in out.stdout, out.stdout


@pytest.mark.slow
def test_scaling_benchmark_runs_one_and_two_torchrun_processes():
    out = run_cli("benchmarks/scaling.py", "--procs", "1", "2", "--meta-batch", "2", "--iterations", "2",
                  "--config", "configs/smoke.yaml")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.strip() and line.split()[0] in ("1", "2")]
    assert [r[0] for r in rows] == ["1", "2"]
    (_, _, one, _, _, _), (_, _, two, _, speedup, efficiency) = rows
    one, two, speedup = float(one), float(two), float(speedup.removesuffix("x"))
    # the speedup of 2 processes is 1 process's seconds per step over theirs (both printed to 0.001 s), and the
    # efficiency that speedup per process
    assert one > 0 and two > 0 and speedup > 0
    assert (one - 5e-4) / (two + 5e-4) - 0.005 <= speedup <= (one + 5e-4) / (two - 5e-4) + 0.005
    assert abs(float(efficiency.removesuffix("%")) - 100 * speedup / 2) <= 1


def test_synthetic_miniimagenet_writes_the_pickle_layout_with_the_published_classes(tmp_path, monkeypatch):
    from metanas.data.fewshot import load, split_classes

    out = run_cli("benchmarks/synthetic_miniimagenet.py", str(tmp_path), "--per-class", "3")
    assert out.returncode == 0, out.stderr
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    data = load("miniimagenet", [tmp_path], 84)
    assert data.images.shape == (300, 3, 84, 84)
    assert data.class_names == [n for names in split_classes("miniimagenet") for n in names]


@pytest.mark.slow
def test_meta_step_against_a_commit_times_both_trees_and_prints_their_ratio():
    out = run_cli("benchmarks/meta_step.py", "--against", "HEAD", "--rounds", "1", "--repeats", "1", *TINY)
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if "this tree /" in line)
    here, there = (float(x) for x in re.findall(r"([\d.]+) s", line))
    ratio = float(line.rsplit("= ", 1)[1])
    assert here > 0 and there > 0 and abs(ratio - here / there) <= 0.01 + 0.001 / there  # seconds printed to 1 ms


@pytest.mark.slow
def test_precision_benchmark_times_each_setting_and_pairs_bf16_with_float32():
    out = run_cli("benchmarks/precision.py", "--iterations", "2", "--tasks", "3", "--repeats", "1", *TINY)
    assert out.returncode == 0, out.stderr
    rows = {c[0]: c[1:] for c in ([x.strip() for x in line.strip("|").split("|")]
                                  for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line)}
    assert set(rows) == {"setting", "float32", "bf16", "deterministic"} and rows["float32"][1] == "1.00x"
    assert re.search(r"float32 [\d.]+ ± [\d.]+%, bf16 [\d.]+ ± [\d.]+%; bf16 - float32, paired: [-+][\d.]+ ± [\d.]+ "
                     r"points", out.stdout)


@pytest.mark.slow
def test_gpu_benchmark_runs_on_the_cpu_as_a_smoke(tmp_path):
    out = run_cli("benchmarks/gpu.py", "--device", "cpu", "--configs", "configs/smoke.yaml", "--budget", "2",
                  "--tasks", "2", "--latency-tasks", "2", "--output-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.stdout.splitlines()
            if line.startswith("| ") and "---" not in line]
    assert rows[0][:3] == ["config", "model", "it/s"] and [r[1] for r in rows[1:]] == ["configs/smoke.yaml", "conv4@32"]
    assert all(r[rows[0].index("peak GiB")] == "n/a" and float(r[2]) > 0 for r in rows[1:])  # no memory counter on a CPU
