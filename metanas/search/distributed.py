"""A search that outgrows one process: several ``metanas search`` workers on one Optuna study.

The engine is Optuna's RDB storage (``sqlite:///FILE`` on one machine, PostgreSQL or MySQL across machines): the
study is the search's shared memory. Each worker runs its own copy of the strategy (``--strategy``) and, before
each proposal, tells it every result any worker has stored (in trial order), so the strategy learns from all
workers' evaluations; what it proposes, the worker claims and scores. This is how the papers parallelised: Real et
al.'s evolution ran asynchronous workers on one shared population; NAS-RL's controller replicas shared their
updates (here each replica is told every result instead); BO proposes asynchronously without fantasising the
pending candidates. Optuna's own samplers would have replaced the strategies by TPE over the same decisions, which
is the ``bohb`` strategy already; ``bohb`` (its own in-memory study and pruner) and ``darts`` (one candidate) do
not run here.

**No candidate is scored twice.** A worker claims a candidate by creating a RUNNING trial that carries the
architecture's canonical encoding (the space's JSON of it) as a user attribute: trial, parameters and attribute are
written in one transaction under the study's row lock (Optuna numbers trials that way), so when a worker reads the
study after its claim, every lower-numbered trial is there with its attribute. The claim holds only if no
lower-numbered live trial has the same encoding; otherwise it is marked FAIL and the worker asks again. The first
claim of an architecture always wins, so at most one worker scores it. The budget is counted the same way: a claim
whose number of live trials (its own included) exceeds it is marked FAIL and that worker stops.

**One MLflow run.** The worker that creates the study (``create_study`` fails for all but one: the study name is
unique) creates the run and stores its id as a study user attribute; the others wait for it and log into it. Each
worker logs its candidates' scores at their trial number; the creator waits for the others to finish, scores the
best on the test tasks and ends the run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime

from metanas.core.errors import MetanasError
from metanas.search.strategies import Trial

KEY = "metanas.architecture"  # trial user attribute: the candidate's canonical encoding
WORKER = "metanas.worker"  # trial user attribute: who scored it
RUN = "metanas.mlflow_run"  # study user attribute: the MLflow run every worker logs into
UNSUPPORTED = {"bohb": "it runs its own Optuna study with a pruner", "darts": "it proposes one candidate"}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _retry(fn, *args, attempts: int = 20, **kwargs):
    """Storage calls while another process creates the tables or holds SQLite's write lock: retried."""
    import optuna
    import sqlalchemy

    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError,
                sqlalchemy.exc.IntegrityError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


class SharedStudy:
    """One worker's handle on the study of a distributed search."""

    def __init__(self, url: str, name: str, encoding, space):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
        try:
            self.storage = _retry(optuna.storages.RDBStorage, url, engine_kwargs=kwargs)
        except Exception as e:
            raise MetanasError(f"--storage {url}: Optuna cannot open it ({type(e).__name__}: {e})") from None
        try:
            _retry(optuna.create_study, storage=self.storage, study_name=name, direction="maximize")
            self.created = True
        except optuna.exceptions.DuplicatedStudyError:
            self.created = False
        self.study_id = self.storage.get_study_id_from_name(name)
        self.name, self.encoding, self.space = name, encoding, space
        self.states = optuna.trial.TrialState
        self.distributions = {n: optuna.distributions.CategoricalDistribution(list(range(c)))
                              for n, c in encoding.decisions}
        self.worker = worker_name()

    def key(self, x: list[int]) -> str:
        """The architecture's canonical encoding: two decision vectors of one architecture share it."""
        return json.dumps(self.space.dump(self.encoding.decode(x)), sort_keys=True)

    def trials(self, states=None) -> list:
        return sorted(_retry(self.storage.get_all_trials, self.study_id, deepcopy=False, states=states),
                      key=lambda t: t.number)

    def live(self) -> list:
        return self.trials((self.states.RUNNING, self.states.COMPLETE, self.states.WAITING))

    def x_of(self, trial) -> list[int]:
        return [int(trial.params[n]) for n, _ in self.encoding.decisions]

    def claim(self, x: list[int], budget: int) -> tuple[int, int] | str:
        """``(trial id, number)`` of a claim that holds; ``"taken"`` (another worker claimed the architecture
        first) or ``"budget"`` (the study's budget is spent)."""
        import optuna

        key = self.key(x)
        template = optuna.trial.create_trial(
            state=self.states.RUNNING, params={n: v for (n, _), v in zip(self.encoding.decisions, x)},
            distributions=self.distributions, user_attrs={KEY: key, WORKER: self.worker})
        trial_id = _retry(self.storage.create_new_trial, self.study_id, template_trial=template)
        number = _retry(self.storage.get_trial_number_from_id, trial_id)
        earlier = [t for t in self.live() if t.number < number]
        verdict = ("taken" if any(t.user_attrs.get(KEY) == key for t in earlier)
                   else "budget" if len(earlier) + 1 > budget else None)
        if verdict:
            _retry(self.storage.set_trial_state_values, trial_id, self.states.FAIL)
            return verdict
        return trial_id, number

    def complete(self, trial_id: int, score: float) -> None:
        _retry(self.storage.set_trial_state_values, trial_id, self.states.COMPLETE, [score])

    def set_run(self, run_id: str) -> None:
        _retry(self.storage.set_study_user_attr, self.study_id, RUN, run_id)

    def run_id(self, timeout: float = 300) -> str:
        """The MLflow run the creating worker stored (waits for it)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            run = _retry(self.storage.get_study_user_attrs, self.study_id).get(RUN)
            if run:
                return run
            time.sleep(0.2)
        raise MetanasError(f"study {self.name}: no MLflow run after {timeout:.0f} s (did its first worker fail?)")

    def wait_for_others(self, timeout: float = 3600) -> None:
        end = time.monotonic() + timeout
        while self.trials((self.states.RUNNING,)) and time.monotonic() < end:
            time.sleep(0.5)

    def results(self, tasks: int) -> list[Trial]:
        """Every scored candidate of the study, in trial order, as :class:`Trial` (each on ``tasks`` validation
        tasks; ``spent``: evaluations of the whole study so far; ``seconds``: since its first trial started)."""
        done = self.trials((self.states.COMPLETE,))
        t0 = min((t.datetime_start for t in done), default=datetime.now())
        return [Trial(self.x_of(t), self.encoding.decode(self.x_of(t)), float(t.value), tasks, i + 1.0,
                      (t.datetime_complete - t0).total_seconds()) for i, t in enumerate(done)]


def work(strategy, scorer, study: SharedStudy, budget: int, log=None, max_waits: int = 6000) -> int:
    """Propose, claim, score until the study's ``budget`` of candidates is spent; returns how many this worker
    scored. ``log(number, score)``: told each of its own. Every result in the study (any worker's) is told to
    ``strategy`` before it proposes, once, in trial order."""
    if strategy.name in UNSUPPORTED:
        raise MetanasError(f"--strategy {strategy.name} does not run over workers ({UNSUPPORTED[strategy.name]})")
    told, scored, waits = set(), 0, 0
    while True:
        for t in study.trials((study.states.COMPLETE,)):
            if t.number not in told:
                told.add(t.number)
                strategy.tell(study.x_of(t), float(t.value))
        if len(study.live()) >= budget:
            return scored
        x = strategy.ask()
        if x is None:
            return scored
        claim = study.claim(x, budget)
        if claim == "budget":
            return scored
        if claim == "taken":  # another worker has it: its result will be told. Ask again at once (a random or
            waits += 1         # mutating strategy proposes another), but pause when it insists (bo: a pending best)
            if waits > max_waits:
                return scored
            if waits % 10 == 0:
                time.sleep(0.1)
            continue
        trial_id, number = claim
        score = float(scorer.accuracies(strategy.encoding.decode(x), 0, scorer.tasks).mean())
        study.complete(trial_id, score)
        scored, waits = scored + 1, 0
        if log is not None:
            log(number, score)
