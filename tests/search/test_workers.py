"""A search over several worker processes on one Optuna study (metanas.search.distributed): two real
``metanas search --storage`` processes end in one study, one MLflow run, and no candidate scored twice."""

import os
import random
import subprocess
import sys

import pytest
from conftest import ROOT, client

from metanas.core.errors import MetanasError


def worker_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def test_two_workers_end_in_one_study_and_one_mlflow_run_with_no_candidate_scored_twice(smoke_run, runs_dir,
                                                                                          tmp_path):
    import optuna

    run_id, budget = smoke_run[0], 24
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # pnas: both workers expand the same first beam, so they propose the same candidates and must dedupe
    cmd = [sys.executable, "-m", "metanas.cli", "search", "--strategy", "pnas", "--storage", storage, "--study",
           "two", "--budget", str(budget), "--val-tasks", "3", "--test-tasks", "2", "--steps", "1", "--run-id", run_id,
           "--output-dir", str(runs_dir)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env(),
                              cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]

    study = optuna.load_study(study_name="two", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    keys = [t.user_attrs["metanas.architecture"] for t in done]
    assert len(done) == budget and len(set(keys)) == budget  # the budget, each architecture once
    assert len({t.user_attrs["metanas.worker"] for t in done}) == 2  # both workers scored some
    assert sum("scored" in out for out, _ in outs) == 2
    assert sum(f"{budget} candidates scored by 2 workers" in out for out, _ in outs) == 1  # the first worker's report

    c = client(runs_dir)
    runs = c.search_runs([c.get_run(run_id).info.experiment_id], "tags.`metanas.study` = 'two'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].info.run_id == study.user_attrs["metanas.mlflow_run"]
    history = c.get_metric_history(runs[0].info.run_id, "search/pnas/score")
    assert sorted(m.step for m in history) == sorted(t.number for t in done)  # both workers logged into it
    assert {m.value for m in history} == {t.value for t in done}
    assert runs[0].data.metrics["search/pnas/workers"] == 2


RACE = """
import sys, time
from pathlib import Path

import torch

from metanas.config import load_config
from metanas.search.distributed import SharedStudy, work
from metanas.search.strategies import STRATEGIES
from metanas.space import create_space

space = create_space(load_config(None, ["search.space=chain"]).search)
enc = space.encoding()


class Slow:
    tasks, spent = 2, 0.0

    def accuracies(self, arch, start=0, stop=None):
        time.sleep(0.03)
        x = enc.encode(arch)
        return torch.full((2,), sum(x) / len(x))


study = SharedStudy(sys.argv[1], "race", enc, space)
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
print("scored", work(STRATEGIES["random"](enc, 0), Slow(), study, 40))
"""


def test_two_workers_proposing_the_same_candidates_score_each_once(tmp_path):
    """The race itself: two processes whose strategies propose the same sequence (same seed), started together;
    every candidate is contested, and each is scored by one of them."""
    import optuna

    storage, go = f"sqlite:///{tmp_path / 'race.db'}", tmp_path / "go"
    optuna.create_study(storage=storage, study_name="race", direction="maximize")
    procs = [subprocess.Popen([sys.executable, "-c", RACE, storage, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=worker_env(), cwd=ROOT) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    trials = optuna.load_study(study_name="race", storage=storage).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    keys = [t.user_attrs["metanas.architecture"] for t in done]
    assert len(done) == 40 and len(set(keys)) == 40
    scored = [int(out.split()[-1]) for out, _ in outs]
    assert sum(scored) == 40 and min(scored) >= 5, scored  # both took part
    assert any(t.state == optuna.trial.TrialState.FAIL for t in trials)  # contested claims were refused


def test_claims_dedupe_by_architecture_and_stop_at_the_budget(tmp_path):
    """Two handles on one study (as two workers): the second claim of an architecture is refused, and no claim
    goes past the budget."""
    from metanas.config import load_config
    from metanas.search.distributed import SharedStudy
    from metanas.space import create_space

    space = create_space(load_config(None, ["search.space=chain"]).search)
    enc, url = space.encoding(), f"sqlite:///{tmp_path / 's.db'}"
    a, b = SharedStudy(url, "s", enc, space), SharedStudy(url, "s", enc, space)
    assert a.created and not b.created
    x, y = [0] * len(enc.decisions), [1] * len(enc.decisions)
    first = a.claim(x, budget=2)
    assert isinstance(first, tuple) and b.claim(list(x), budget=2) == "taken"
    a.complete(first[0], 0.5)
    assert b.claim(list(x), budget=2) == "taken"  # scored already: not again
    assert isinstance(b.claim(y, budget=2), tuple)
    assert a.claim(enc.mutate(y, random.Random(0)), budget=2) == "budget"
    assert [t.score for t in a.results(4)] == [0.5]


def test_storage_and_study_go_together_and_bohb_does_not_run_over_workers(tmp_path):
    from metanas.config import load_config
    from metanas.search.distributed import SharedStudy, work
    from metanas.search.strategies import STRATEGIES
    from metanas.space import create_space

    space = create_space(load_config(None, ["search.space=chain"]).search)
    study = SharedStudy(f"sqlite:///{tmp_path / 's.db'}", "s", space.encoding(), space)
    with pytest.raises(MetanasError, match="bohb"):
        work(STRATEGIES["bohb"](space.encoding(), 0), None, study, 4)
