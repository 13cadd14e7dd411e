"""Pipeline configuration: one YAML file or CLI options, validated at the boundary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import BAD_VALUE, UNREADABLE_FILE, PipelineInputError, check_choice, check_range
from .gates import GateThresholds
from .inprocess import normalize_constraint
from .models import BASE_ESTIMATORS
from .postprocess import CALIBRATION_METHODS

__all__ = ["PipelineConfig", "load_config", "PREPROCESS_TECHNIQUES", "INPROCESS_TECHNIQUES"]

PREPROCESS_TECHNIQUES = ("auto", "disparate_impact_remover", "reweighing", "none")
INPROCESS_TECHNIQUES = ("constrained_lr", "reductions")


def _split_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return [str(s) for s in v]


@dataclass
class PipelineConfig:
    """Everything one pipeline run needs (defaults: the playbook's walkthrough)."""

    data: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)
    outcome: str = ""
    output: str = "pipeline-run"
    primary_attribute: str | None = None
    features: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    mediators: list[str] = field(default_factory=list)
    expert_knowledge: Any = None
    target_fairness: str = "demographic_parity"
    fairness_constraint: str | None = None
    threshold_constraint: str | None = None
    preprocess_technique: str = "auto"
    repair_level: float = 0.8
    repair_features: list[str] = field(default_factory=list)
    inprocess_technique: str = "constrained_lr"
    constraint_weight: float = 0.5
    base_estimator: str = "logistic_regression"
    reductions_eps: float = 0.01
    reductions_max_iter: int = 50
    calibration: str = "platt"
    model_name: str = "model"
    seed: int = 0
    split: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])
    min_group_size: int = 30
    time_budget_seconds: float = 300.0
    sample: int | None = None
    progress: bool = True
    gates: GateThresholds = field(default_factory=GateThresholds)
    incident: dict[str, Any] | None = None
    decisions: str | None = None

    def __post_init__(self) -> None:
        self.data = _split_list(self.data)
        self.protected = _split_list(self.protected)
        for name in ("features", "exclude", "mediators", "repair_features"):
            setattr(self, name, _split_list(getattr(self, name)))
        if isinstance(self.gates, dict):
            self.gates = GateThresholds.from_dict(self.gates)
        self.validate()

    def validate(self) -> None:
        if not self.protected:
            raise PipelineInputError("--protected: at least one protected attribute is required", field="--protected")
        if not self.outcome:
            raise PipelineInputError("--outcome: the outcome column is required", field="--outcome")
        self.target_fairness = normalize_constraint(self.target_fairness, field="--target-fairness")
        self.fairness_constraint = normalize_constraint(
            self.fairness_constraint or self.target_fairness, field="--fairness-constraint"
        )
        self.threshold_constraint = normalize_constraint(
            self.threshold_constraint or self.target_fairness, field="threshold_constraint"
        )
        check_choice("preprocess_technique", self.preprocess_technique, PREPROCESS_TECHNIQUES)
        check_choice("inprocess_technique", self.inprocess_technique, INPROCESS_TECHNIQUES)
        check_choice("--base-estimator", self.base_estimator, BASE_ESTIMATORS)
        check_choice("calibration", self.calibration, CALIBRATION_METHODS)
        check_range("--repair-level", float(self.repair_level), 0.0, 1.0)
        check_range("--constraint-weight", float(self.constraint_weight), 0.0, 1.0)
        if self.primary_attribute is not None:
            check_choice("primary_attribute", self.primary_attribute, self.protected)
        if len(self.split) != 3 or abs(sum(self.split) - 1.0) > 1e-9 or min(self.split) <= 0:
            raise PipelineInputError(
                BAD_VALUE.format(field="split", value=self.split, reason="three positive fractions summing to 1"),
                field="split",
            )
        if not isinstance(self.time_budget_seconds, int | float) or not self.time_budget_seconds > 0:
            raise PipelineInputError(
                BAD_VALUE.format(field="time_budget_seconds", value=self.time_budget_seconds,
                                 reason="must be a positive number of seconds"),
                field="time_budget_seconds",
            )  # fmt: skip
        if self.sample is not None and int(self.sample) < 100:
            raise PipelineInputError(BAD_VALUE.format(field="sample", value=self.sample, reason="must be >= 100"),
                                     field="sample")  # fmt: skip

    @property
    def primary(self) -> str:
        return self.primary_attribute or self.protected[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gates"] = self.gates.to_dict()
        return d

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], *, base_dir: Path | None = None) -> PipelineConfig:
        """Build from a YAML mapping (``-`` in keys allowed); relative paths resolve to ``base_dir``."""
        names = {f.name for f in fields(cls)}
        clean: dict[str, Any] = {}
        for k, v in raw.items():
            key = str(k).replace("-", "_")
            if key not in names:
                raise PipelineInputError(
                    BAD_VALUE.format(
                        field="config", value=k, reason=f"unknown key; valid keys: {', '.join(sorted(names))}"
                    ),
                    field="config",
                )
            clean[key] = v
        if base_dir is not None:
            if "data" in clean:
                clean["data"] = [str(_resolve(base_dir, p)) for p in _split_list(clean["data"])]
            for key in ("expert_knowledge", "decisions"):
                if isinstance(clean.get(key), str):
                    clean[key] = str(_resolve(base_dir, clean[key]))
            if isinstance(clean.get("output"), str):
                clean["output"] = str(_resolve(base_dir, clean["output"]))
        return cls(**clean)


def _resolve(base: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else base / q


def load_config(path: str | Path, **overrides: Any) -> PipelineConfig:
    """Read ``pipeline.yaml``; ``overrides`` (non-None) replace file values."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineInputError(UNREADABLE_FILE.format(field="--config", value=str(path), reason=exc),
                                 field="--config") from exc  # fmt: skip
    if not isinstance(raw, dict):
        raise PipelineInputError(BAD_VALUE.format(field="--config", value=str(path), reason="must be a YAML mapping"),
                                 field="--config")  # fmt: skip
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return PipelineConfig.from_mapping(raw, base_dir=p.parent)
