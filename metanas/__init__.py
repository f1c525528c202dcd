"""metanas: meta-learning neural architecture search across task distributions.

The Python API (see :mod:`metanas.api`): ``load_config``, ``train``, ``load``, ``adapt``, ``evaluate``,
``select_adaptation``, and ``Adaptation`` (how a warm start adapts).
Imported lazily, so ``metanas --help`` does not pay for torch and MLflow.
"""

from metanas.core.errors import MetanasError

__version__ = "0.1.0"
__all__ = ["MetanasError", "__version__", "Adaptation", "load_config", "train", "load", "adapt", "evaluate",
           "select_adaptation"]


def __getattr__(name):
    if name == "Adaptation":
        from metanas.meta.adaptation import Adaptation

        return Adaptation
    if name == "load_config":
        from metanas.config import load_config

        return load_config
    if name == "train":
        from metanas.training.loop import train

        return train
    if name in ("load", "adapt", "evaluate", "select_adaptation"):
        from metanas import api

        return getattr(api, name)
    raise AttributeError(f"module 'metanas' has no attribute {name!r}")
