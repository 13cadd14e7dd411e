"""fairwatch's offline intervention pipeline (the playbook): causal analysis, pre-, in- and
post-processing, evaluation, validation gates, investigation and remediation plans.

Does not import ``monitor``, ``streaming`` or ``alerts`` (DESIGN §1).
"""

from .config import PipelineConfig, load_config
from .errors import PipelineInputError
from .inprocess import FairConstrainedLogisticRegression, make_reductions
from .pipeline import run_pipeline
from .postprocess import GroupCalibrator, make_threshold_optimizer
from .preprocess import DisparateImpactRemover, ks_integrity, reweighing_weights
from .trigger import PipelineQueue

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
