"""Configuration: OmegaConf structured dataclasses, YAML files, dot-list overrides.

A config is frozen once validated: nothing writes into it afterwards; :func:`replace` makes a new, validated one.

``load_config`` merges defaults <- YAML files (in the order given) <- ``key=value`` overrides and
validates everything before any work starts: a misspelled key names the
closest valid one, a bad value names the key and the allowed range.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metanas.core.errors import MetanasError, describe
from metanas.space.base import require as _require

ALGORITHMS = ("maml", "fomaml", "reptile")
BACKENDS = ("auto", "gloo", "nccl")
AMP = ("fp32", "bf16")
INNER_VARIANTS = ("joint", "alternating")
HEADS = ("fixed", "proto")
SELECT_RULES = ("latency", "accuracy")  # inner.select_rule: the default weighs latency


@dataclass(frozen=True)
class TaskConfig:
    family: str = "omniglot-glyphs-fonts-5way"  # tasks/NAME.yaml or a path to a task-family YAML
    ways: Optional[int] = None  # None: the family's value
    shots: Optional[int] = None
    queries: Optional[int] = 5  # per class; fewer than the usual 15 halves the cost of a CPU meta-step
    # a mixture family's sources (or validation sources) left out of this run: leave-one-domain-out
    leave_out: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SpaceConfig:
    """``search.*``: the search space and how its supernet is executed (each space reads the keys it uses)."""
    space: str = "chain"  # a registered space: darts (DARTS cells) or chain (layers of op x width; conv4 is one)
    # None: the supernet; "random": a random child (drawn with run.seed); a name the space knows (chain: conv4);
    # or a genotype JSON file
    genotype: Optional[str] = None
    policy: str = "mixture"  # execution policy: mixture (softmax over all choices) or gumbel (one sampled path)
    channels: Optional[int] = None  # None: the space's default (darts: 8 per cell; chain: 32, the widest layer)
    ops: Optional[list[str]] = None  # None: the space's default op set
    # darts
    cells: int = 3
    nodes: int = 2
    stem_multiplier: int = 2
    k: int = 2  # inputs kept per node when deriving a genotype
    # chain
    layers: int = 4
    widths: Optional[list[int]] = None  # None: channels x (1/2, 3/4, 1), i.e. 16, 24, 32
    entangled: bool = True  # one superkernel per layer (ops and widths are slices) or one kernel per op
    pools: Optional[list[str]] = None  # poolings a layer chooses from (max, avg); None: both ([max] is conv4's)
    acts: Optional[list[str]] = None  # activations a layer chooses from (relu, abs, silu); None: [relu] (conv4's)
    # settings of a space that has no key above (search.options.NAME=...), validated by that space
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InnerConfig:
    steps: int = 3
    lr: float = 0.1  # SGD step on weights
    lr_alpha: float = 0.5  # SGD step on architecture weights
    # Meta-learn alpha's inner step size, one per choice point (a chain layer, a DARTS edge), initialised at
    # lr_alpha and learned in log space by the outer loop with the weights (Meta-SGD / MAML++'s learned rates).
    learn_lr_alpha: bool = False
    # joint: one backward gives the weight and the alpha gradient (first-order DARTS as in METANAS);
    # alternating: a weight step on one half of the support set, then an alpha step on the other half.
    variant: str = "joint"
    eval_steps: Optional[int] = None  # steps at adaptation/test time; None: same as `steps`
    eval_lr_alpha: Optional[float] = None  # alpha's step at adaptation/test time; None: same as `lr_alpha`
    # Execution-policy temperature at the first inner step, annealed geometrically to final_temperature at the
    # last step and the query (None: constant): a low final temperature makes each task's adapted architecture
    # near-discrete (METANAS), so adapting alpha changes what the network computes.
    temperature: float = 1.0
    final_temperature: Optional[float] = None
    # Robustness as a selection criterion: after meta-training, each combination of these adaptation steps and
    # alpha steps adapts the same select_tasks tasks of the validation split (for a mixture: every domain alike);
    # the best replaces eval_steps/eval_lr_alpha in the checkpoint (and the final test). Empty: keep eval_*.
    select_steps: list[int] = field(default_factory=lambda: [1, 2, 3, 10])
    select_lr_alpha: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.5, 3.0])
    select_tasks: int = 200
    # Which candidate wins: accuracy (the most accurate) or latency (the fewest steps whose accuracy is tied with the
    # most accurate's: the paired 95% CI of their per-task difference reaches 0; the most accurate among those).
    select_rule: str = "latency"
    # The classifier at the start of each task: fixed (the meta-learned linear layer, as many outputs as the training
    # tasks' ways) or proto (Proto-MAML, Triantafillou et al. 2020: initialised from the support set's class
    # prototypes, W_k = 2 c_k and b_k = -|c_k|^2, then adapted with the rest): any number of ways at test time.
    head: str = "fixed"


@dataclass(frozen=True)
class MetaConfig:
    algorithm: str = "fomaml"
    iterations: int = 4800
    time_budget: float = 0.0  # seconds of meta-training before stopping early (0: none); for equal-time comparisons
    meta_batch: int = 4
    lr: float = 1e-3  # Adam on the initial weights
    lr_alpha: float = 1e-3  # Adam on the initial alpha
    warmup: int = 0  # first iterations meta-learn weights with alpha frozen (METANAS)
    task_chunk: int = 0  # tasks per vmap call; 0: as many as memory_budget holds (estimated once per run)
    memory_budget: float = 1.0  # GB of activations one vmap call may hold: meta-batch chunks (task_chunk=0), evaluation
    # Cost-aware objective (ProxylessNAS, FBNet): add cost_weight x E[FLOPs under softmax(alpha)] / FLOPs of the
    # space's reference (chain: conv4; darts: uniform alpha) to the architecture's meta-objective.
    cost_weight: float = 0.0
    eval_every: int = 100
    eval_tasks: int = 40
    test_tasks: int = 600
    checkpoint_every: int = 50


@dataclass(frozen=True)
class DataConfig:
    root: Optional[str] = None  # folder holding the data sets (omniglot-py/, miniimagenet/, ...); None: $METANAS_DATA, then the user cache
    skip_corrupt: bool = False  # unreadable images: stop with an error naming the file (False) or skip with a warning


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    output_dir: str = "runs"
    tracking_uri: Optional[str] = None  # None: sqlite:///<abs output_dir>/mlflow.db
    experiment: str = "metanas"
    name: Optional[str] = None
    threads: int = 0  # torch intra-op threads; 0: torch's default (under torchrun: the cores split over local ranks)
    progress: bool = True
    # Meta-training reads each step's loss and accuracy back from the device every log_every steps (one host sync
    # for them all) and logs one point per step; validation, checkpoints and stops log what is pending first.
    log_every: int = 10
    # Under torchrun (metanas/distributed.py): auto = nccl for CUDA devices, gloo on CPU.
    backend: str = "auto"
    # Seconds a collective waits for the other ranks before this rank gives up: a rank that died or hangs makes
    # the others fail with a clear error instead of waiting for torch's default 30 minutes.
    dist_timeout: int = 300
    # Mixed precision of the supernet's forward (torch.autocast): fp32 (off), or bf16 (docs/operations.md, GPUs, has
    # its measured cost on accuracy and step time). Parameters, gradients and the loss stay float32.
    amp: str = "fp32"
    # Bit-exact on CUDA as on the CPU: torch.use_deterministic_algorithms, cudnn.deterministic, no cuDNN
    # autotuning and no TF32. The CPU is deterministic either way (docs/operations.md says what it costs).
    deterministic: bool = False


@dataclass(frozen=True)
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    search: SpaceConfig = field(default_factory=SpaceConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _check_keys(user: Any, schema: type, prefix: str, source: str) -> None:
    """Reject unknown keys with the closest valid one (OmegaConf's own error names only the class)."""
    if not isinstance(user, dict):
        return
    valid = {f.name: f for f in fields(schema)}
    for key, value in user.items():
        if key not in valid:
            path = prefix + str(key)
            candidates = [prefix + name for name in valid]
            close = difflib.get_close_matches(path, candidates, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(candidates)}"
            raise MetanasError(f"unknown config key '{path}' in {source}: {hint}")
        factory = valid[key].default_factory
        if factory is not MISSING and is_dataclass(factory):
            if not isinstance(value, dict):  # OmegaConf's own error here names no key
                example = f"{prefix}{key}.{fields(factory)[0].name}"
                raise MetanasError(f"config key '{prefix}{key}' in {source} is {value!r}, not a section of keys: "
                                   f"set the keys under it, e.g. {example}=... (in YAML: indented under '{key}:')")
            _check_keys(value, factory, f"{prefix}{key}.", source)


def _merge(base: DictConfig, other: DictConfig, source: str) -> DictConfig:
    _check_keys(OmegaConf.to_container(other), Config, "", source)
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        msg = str(e).splitlines()[0]
        raise MetanasError(f"bad value for config key '{key}' in {source}: {msg}") from None


def _load_yaml(path: Path) -> DictConfig:
    """A config file's mapping of sections; a YAML error, a list, a single value or no keys at all is a
    MetanasError naming the file (OmegaConf would merge a list with a TypeError, and an empty file silently)."""
    example = "a mapping of sections, e.g. 'meta:' with 'iterations: 20' indented under it"
    try:
        loaded = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError, UnicodeDecodeError, OmegaConf's "Invalid loaded object type: int"
        if "Invalid loaded object type" in str(e):
            raise MetanasError(f"config file {path} holds a single value, not {example}") from None
        raise MetanasError(f"cannot parse config file {path} ({describe(e)}): fix the YAML; a config file is "
                           f"{example}") from None
    if not isinstance(loaded, DictConfig):
        raise MetanasError(f"config file {path} holds a YAML list, not {example}")
    if not loaded:
        raise MetanasError(f"config file {path} is empty (no keys): write {example}, or leave out --config")
    return loaded


def load_config(configs: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                overrides: Sequence[str] = ()) -> Config:
    """The defaults, then each config file (a path or a built-in name; several merge in order, later keys winning,
    e.g. ``["omniglot", "baseline-conv4"]``), then the ``key=value`` overrides; validated."""
    from metanas.core.resources import resolve_config

    cfg = OmegaConf.structured(Config)
    files = [] if configs is None else [configs] if isinstance(configs, (str, os.PathLike)) else list(configs)
    for f in files:
        path = resolve_config(f)
        if path.is_dir():
            raise MetanasError(f"config file {path} is a folder: pass a YAML file, e.g. --config configs/smoke.yaml")
        if not path.is_file():
            raise MetanasError(f"config file {path} not found: pass an existing YAML, e.g. --config configs/smoke.yaml")
        cfg = _merge(cfg, _load_yaml(path), str(path))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise MetanasError(f"override {bad[0]!r} is not key=value: write e.g. meta.iterations=20")
    if overrides:
        try:
            dot = OmegaConf.from_dotlist(list(overrides))
        except OmegaConfBaseException as e:
            raise MetanasError(f"cannot parse overrides {list(overrides)}: {str(e).splitlines()[0]}") from None
        cfg = _merge(cfg, dot, "command-line overrides")
    obj: Config = OmegaConf.to_object(cfg)
    validate(obj)
    return obj


def validate(cfg: Config) -> None:
    from metanas.policy.execution import POLICIES
    from metanas.space import create_space

    for key in ("ways", "shots", "queries"):
        v = getattr(cfg.task, key)
        _require(v is None or v >= 1, f"task.{key}", v, "must be >= 1")
    _require(cfg.task.ways is None or cfg.task.ways >= 2, "task.ways", cfg.task.ways,
             "a task needs >= 2 classes (a 1-way task is always right)")
    s = cfg.search
    _require(s.policy in POLICIES, "search.policy", s.policy, f"one of {', '.join(POLICIES)}")
    space = create_space(s)
    _require(s.genotype in (None, "random") or s.genotype in space.named() or Path(s.genotype).is_file(),
             "search.genotype", s.genotype, f"null, random, {''.join(n + ', ' for n in space.named())}"
             "or an existing genotype JSON file")
    i = cfg.inner
    _require(i.steps >= 0, "inner.steps", i.steps, "must be >= 0")
    _require(i.eval_steps is None or i.eval_steps >= 0, "inner.eval_steps", i.eval_steps, "must be >= 0")
    _require(i.eval_lr_alpha is None or i.eval_lr_alpha >= 0, "inner.eval_lr_alpha", i.eval_lr_alpha, "must be >= 0")
    _require(i.lr >= 0 and i.lr_alpha >= 0, "inner.lr/inner.lr_alpha", (i.lr, i.lr_alpha), "must be >= 0")
    _require(not i.learn_lr_alpha or i.lr_alpha > 0, "inner.lr_alpha", i.lr_alpha,
             "must be > 0 with inner.learn_lr_alpha: it is the learned step's initial value")
    _require(all(v >= 0 for v in [*i.select_steps, *i.select_lr_alpha]), "inner.select_steps/inner.select_lr_alpha",
             (i.select_steps, i.select_lr_alpha), "every value must be >= 0")
    _require(i.select_tasks >= 1, "inner.select_tasks", i.select_tasks, "must be >= 1")
    _require(i.select_rule in SELECT_RULES, "inner.select_rule", i.select_rule, f"use one of {', '.join(SELECT_RULES)}")
    _require(i.variant in INNER_VARIANTS, "inner.variant", i.variant, f"one of {INNER_VARIANTS}")
    _require(i.head in HEADS, "inner.head", i.head, f"one of {HEADS}")
    _require(i.temperature > 0 and (i.final_temperature is None or i.final_temperature > 0),
             "inner.temperature/inner.final_temperature", (i.temperature, i.final_temperature), "must be > 0")
    m = cfg.meta
    _require(m.algorithm in ALGORITHMS, "meta.algorithm", m.algorithm, f"one of {ALGORITHMS}")
    for key in ("iterations", "warmup", "task_chunk"):
        _require(getattr(m, key) >= 0, f"meta.{key}", getattr(m, key), "must be >= 0")
    for key in ("meta_batch", "eval_every", "eval_tasks", "test_tasks", "checkpoint_every"):
        _require(getattr(m, key) >= 1, f"meta.{key}", getattr(m, key), "must be >= 1")
    _require(m.time_budget >= 0, "meta.time_budget", m.time_budget, "seconds, >= 0")
    _require(m.cost_weight >= 0, "meta.cost_weight", m.cost_weight, "must be >= 0")
    _require(m.memory_budget > 0, "meta.memory_budget", m.memory_budget, "GB, must be > 0")
    _require(m.lr > 0 and m.lr_alpha >= 0, "meta.lr/meta.lr_alpha", (m.lr, m.lr_alpha), "lr > 0, lr_alpha >= 0")
    d = cfg.run.device
    _require(d in ("auto", "cpu", "cuda", "mps") or (d.startswith("cuda:") and d[5:].isdigit()), "run.device", d,
             "auto, cpu, cuda, cuda:N or mps")
    _require(cfg.run.threads >= 0, "run.threads", cfg.run.threads, "must be >= 0")
    _require(cfg.run.log_every >= 1, "run.log_every", cfg.run.log_every, "must be >= 1")
    _require(cfg.run.backend in BACKENDS, "run.backend", cfg.run.backend, f"one of {BACKENDS}")
    _require(cfg.run.amp in AMP, "run.amp", cfg.run.amp, f"one of {AMP}")
    _require(cfg.run.dist_timeout >= 1, "run.dist_timeout", cfg.run.dist_timeout, "seconds, must be >= 1")


def resolved(cfg: Config) -> Config:
    """A copy of ``cfg`` with the search space's defaults written out (``search.channels``, ``ops``, ...)."""
    from metanas.space import create_space

    return replace(cfg, {f"search.{key}": value for key, value in create_space(cfg.search).settings().items()})


def replace(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A new config: ``cfg`` with ``overrides`` (dotted keys to values, e.g. ``{"run.device": "cpu"}``), checked
    and validated like user input. Configs are frozen once validated: this is the one way to change a setting."""
    other = OmegaConf.create()
    for key, value in overrides.items():
        OmegaConf.update(other, key, value, force_add=True)
    obj: Config = OmegaConf.to_object(_merge(OmegaConf.structured(cfg), other, "overrides"))
    validate(obj)
    return obj


def experiment(cfg: Config) -> str:
    """The settings that define an experiment (``task``, ``search``, ``inner``, ``meta`` and the seed) as YAML, without
    those of the machine it runs on (device, threads, paths, tracking): what every rank of a run, and a resumed run,
    must share."""
    return "".join(to_yaml(getattr(cfg, k)) for k in ("task", "search", "inner", "meta")) + f"seed: {cfg.run.seed}\n"


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(text: str) -> Config:
    """Rebuild a config saved with a checkpoint (same validation as user input)."""
    cfg = _merge(OmegaConf.structured(Config), OmegaConf.create(text), "checkpoint config")
    obj: Config = OmegaConf.to_object(cfg)
    validate(obj)
    return obj


def flatten(cfg: Config) -> dict[str, Any]:
    """Dotted keys -> values, for MLflow params."""
    out: dict[str, Any] = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = ",".join(map(str, v)) if isinstance(v, list) else v

    walk(OmegaConf.to_container(OmegaConf.structured(cfg)), "")
    return out
