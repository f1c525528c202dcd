"""MLflow store under concurrency: two meta-training processes share one fresh SQLite store."""

import subprocess
import sys

import pytest
from conftest import ROOT, client

from metanas.config import load_config
from metanas.track.runs import retry, tracking_uri


@pytest.mark.slow
def test_two_processes_writing_one_store_both_finish_with_all_metrics(tmp_path):
    cmd = [sys.executable, "-m", "metanas.meta_train", "--config", "configs/smoke.yaml", "meta.iterations=8",
           f"run.output_dir={tmp_path}", "run.progress=false",
           "run.threads=1"]  # one core each: two 2-thread OpenMP pools on 2 cores spin-wait ~20x slower
    procs = [subprocess.Popen(cmd + [f"run.seed={seed}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    c = client(tmp_path)
    runs = c.search_runs([c.get_experiment_by_name("metanas").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        assert [m.step for m in c.get_metric_history(r.info.run_id, "train/loss")] == list(range(8))
        assert "test/accuracy" in r.data.metrics


def test_retry_rides_out_transient_sqlite_errors_and_raises_the_rest(tmp_path):
    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert retry(locked_twice) == "ok" and len(calls) == 3

    def broken():
        calls.append(1)
        raise ValueError("no such column")

    with pytest.raises(ValueError):
        retry(broken)
    assert len(calls) == 4  # not transient: no second attempt
    cfg = load_config(None, [f"run.output_dir={tmp_path}"])
    assert tracking_uri(cfg) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"  # the store lives in the output dir
