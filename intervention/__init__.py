"""fairwatch's offline intervention pipeline (the playbook): causal analysis, pre-, in- and
post-processing, evaluation, validation gates, investigation and remediation plans.

Does not import ``monitor``, ``streaming`` or ``alerts`` (docs/architecture.md, "Layers").
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it; loaded on first use (PEP 562) so that the
# ``fairwatch`` command line can build the ``pipeline`` parser without scikit-learn & co.
_API = {
    "PipelineConfig": ".config",
    "load_config": ".config",
    "PipelineInputError": ".errors",
    "FairConstrainedLogisticRegression": ".inprocess",
    "make_reductions": ".inprocess",
    "run_pipeline": ".pipeline",
    "GroupCalibrator": ".postprocess",
    "make_threshold_optimizer": ".postprocess",
    "DisparateImpactRemover": ".preprocess",
    "ks_integrity": ".preprocess",
    "reweighing_weights": ".preprocess",
    "PipelineQueue": ".trigger",
}

__all__ = [
    "PipelineConfig",
    "load_config",
    "PipelineInputError",
    "FairConstrainedLogisticRegression",
    "make_reductions",
    "run_pipeline",
    "GroupCalibrator",
    "make_threshold_optimizer",
    "DisparateImpactRemover",
    "ks_integrity",
    "reweighing_weights",
    "PipelineQueue",
]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .config import PipelineConfig, load_config
    from .errors import PipelineInputError
    from .inprocess import FairConstrainedLogisticRegression, make_reductions
    from .pipeline import run_pipeline
    from .postprocess import GroupCalibrator, make_threshold_optimizer
    from .preprocess import DisparateImpactRemover, ks_integrity, reweighing_weights
    from .trigger import PipelineQueue
