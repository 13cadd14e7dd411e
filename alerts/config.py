"""The ``alerts:`` section of the configuration: tier policy, actions, rollback, admin API.

Defaults come from the intervention playbook (docs/alerts.md): degradation against the
approved baseline of 5 %, 10 %, 20 % gives tiers 1, 2, 3; absolute guards are DP
ratio < 0.75 (tier 2), DI outside [0.80, 1.25] (tier 3), EO gap > 0.12 (tier 2),
ECE > 0.08 in any group (tier 2), intersectional DP < 0.75 (tier 2), accuracy more
than 5 % below baseline (tier 3).

>>> cfg = AlertsConfig()
>>> cfg.rule("disparate_impact").guards[0].tier, cfg.rule("disparate_impact").guards[0].below
(3, 0.8)
>>> cfg.confirm_window("5m")
'15m'
>>> ece = cfg.rule("expected_calibration_error")   # short window / confirming (and longest) window
>>> ece.min_labeled, ece.confirm_min_labeled
(300, 1000)
>>> AlertsConfig.model_validate({"policy": {"evidence": "maybe"}})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for AlertsConfig
...
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fairwatch.monitor.windows import parse_duration
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "METRICS",
    "AlertsConfig",
    "BudgetConfig",
    "Guard",
    "PolicyConfig",
    "RuleConfig",
    "SequentialConfig",
    "RollbackConfig",
    "NotifyConfig",
    "AdminConfig",
]

#: The ``metric`` label values of ``fairness_alert_tier`` and what "worse" means for each.
METRICS: dict[str, Literal["low", "high"]] = {
    "demographic_parity_ratio": "low",  # lower is worse
    "disparate_impact": "low",  # two-sided guard band; degradation on the lowest group
    "equalized_odds_gap": "high",
    "expected_calibration_error": "high",  # the worst group
    "accuracy": "low",  # the worst group
}

Evidence = Literal["point", "ci"]
#: ``sequential``: anytime-valid e-detectors (:mod:`fairwatch.alerts.sequential`); ``ci``/``point``: the
#: fixed-sample policy of multi-window checks (kept for comparison and backtests)
PolicyEvidence = Literal["sequential", "point", "ci"]


def _duration(value: Any) -> float:
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Guard(_Section):
    """An absolute threshold: ``below`` or ``above`` (or both, a band) gives ``tier``."""

    tier: int = Field(ge=1, le=3)
    below: float | None = None
    above: float | None = None
    intersectional: bool | None = None  # None: any attribute; True/False: only those

    @model_validator(mode="after")
    def _one_side(self) -> Guard:
        if self.below is None and self.above is None:
            raise ValueError("guard needs 'below' and/or 'above'")
        return self


class RuleConfig(_Section):
    """How one metric is judged. ``None`` fields inherit from :class:`PolicyConfig`."""

    enabled: bool = True
    #: degradation against the baseline: ``relative`` (x/baseline) or ``absolute`` (x − baseline)
    degradation: Literal["relative", "absolute", "none"] = "relative"
    guards: tuple[Guard, ...] = ()
    evidence: Evidence | None = None
    windows: tuple[str, ...] | None = None  # None: every window in the snapshot
    min_labeled: int | None = Field(None, ge=1)  # per group, for outcome metrics
    #: per group, for outcome metrics, in the *confirming* (longer) window; None: ``min_labeled``
    confirm_min_labeled: int | None = Field(None, ge=1)


def _default_rules() -> dict[str, RuleConfig]:
    return {
        "demographic_parity_ratio": RuleConfig(
            guards=(Guard(tier=2, below=0.75, intersectional=False), Guard(tier=2, below=0.75, intersectional=True)),
        ),
        "disparate_impact": RuleConfig(degradation="none", guards=(Guard(tier=3, below=0.80, above=1.25),)),
        # the gap is a range over groups (8 intersectional ones): with 200 labeled per group the
        # FPR alone has SE ≈ 0.06 and the expected range of 8 such values is ≈ 0.17 > 0.12, so
        # the confirming window must hold >= 1000 labeled per group (a fair stream paged tier 2
        # 18 times in 19 simulated days with 200 there; benchmarks/detection.py)
        "equalized_odds_gap": RuleConfig(
            degradation="absolute",
            guards=(Guard(tier=2, above=0.12),),
            min_labeled=200,
            confirm_min_labeled=1000,
        ),
        "expected_calibration_error": RuleConfig(
            # the conservative ECE interval needs ~3000 labeled per group to clear 0.08 for a
            # 0.15 shift, so the short window judges the point on >= 300 labeled. The point is
            # biased upwards by noise (perfectly calibrated, 10 bins: about 0.8 * sum_b sigma_b / N,
            # ~0.05 at 300 labeled, ~0.035 at 1000), so the confirming window must hold >= 1000
            # labeled of the group: without that, right after start-up (when every window holds
            # the same few hundred labels) noise alone raised tier 2 (benchmarks/detection.py).
            degradation="absolute",
            guards=(Guard(tier=2, above=0.08),),
            min_labeled=300,
            evidence="point",
            confirm_min_labeled=1000,
        ),
        # "accuracy more than 5 % below baseline" → tier 3 (relative degradation ≥ 5 %). Tier 3
        # rolls back on its own, so like ECE: >= 300 labeled per group in the short window and
        # >= 1000 in the confirming one. With only the engine's 50, the worst of the 8
        # intersectional groups (≈ 100 labeled in 15m, SE ≈ 0.04 ≈ the 5 % margin) reached tier
        # 3 on a fair stream once in 19 simulated days and rolled back (benchmarks/detection.py).
        "accuracy": RuleConfig(degradation="relative", min_labeled=300, confirm_min_labeled=1000),
    }


class BudgetConfig(_Section):
    """False-alarm budget per model: the mean time between false alarms of each tier is at least this.

    ``tier3: 365d`` reads "on a stream where every constraint holds, a false rollback
    comes no more often than once a year on average"; and the probability of one within
    a time ``t`` is at most ``t / 365d``. ``3650d`` is the 10-year budget.
    """

    tier1: Duration = 30 * 86400.0
    tier2: Duration = 365 * 86400.0
    tier3: Duration = 365 * 86400.0

    @model_validator(mode="after")
    def _positive(self) -> BudgetConfig:
        for name in ("tier1", "tier2", "tier3"):
            if getattr(self, name) <= 0:
                raise ValueError(f"budget.{name}: must be a positive duration, got {getattr(self, name)!r}")
        return self

    def seconds(self, tier: int) -> float:
        return (self.tier1, self.tier2, self.tier3)[tier - 1]


class SequentialConfig(_Section):
    """The alternatives the e-detectors are tuned for (more alternatives cost log(count) in threshold)."""

    #: DP ratio / DI: alternative ratios as factors of the null ratio (0.8 → 0.72, 0.60)
    ratio_alternatives: tuple[float, ...] = (0.9, 0.75)
    #: EO gap and calibration bias: alternatives as the null gap plus these
    gap_alternatives: tuple[float, ...] = (0.05, 0.15)
    #: accuracy: alternatives as the null accuracy minus these
    accuracy_alternatives: tuple[float, ...] = (0.05, 0.15)
    #: a raised tier holds while its evidence is at least this share of the threshold
    hold_fraction: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> SequentialConfig:
        if not self.ratio_alternatives or any(not 0 < f < 1 for f in self.ratio_alternatives):
            raise ValueError(f"ratio_alternatives: each must be in (0, 1), got {list(self.ratio_alternatives)!r}")
        for name in ("gap_alternatives", "accuracy_alternatives"):
            v = getattr(self, name)
            if not v or any(not 0 < d < 1 for d in v):
                raise ValueError(f"{name}: each must be in (0, 1), got {list(v)!r}")
        return self


class PolicyConfig(_Section):
    """The tier state machine and the multi-window confirmation."""

    #: degradation thresholds against the baseline for tiers 1, 2, 3
    degradation: tuple[float, float, float] = (0.05, 0.10, 0.20)
    #: per-metric override of the degradation thresholds (accuracy: 5 % is already tier 3)
    degradation_overrides: dict[str, tuple[float, float, float]] = {"accuracy": (0.05, 0.05, 0.05)}
    #: consecutive evaluations a higher tier must hold before it is raised
    for_: int = Field(2, ge=1, alias="for")
    #: consecutive evaluations below the current tier (with hysteresis) before it is lowered
    clear_for: int = Field(5, ge=1)
    #: margin (in the metric's units) by which the point must be back inside before lowering
    hysteresis: float = Field(0.02, ge=0)
    #: ``sequential`` (default): e-detectors with the false-alarm budget of ``alerts.budget``;
    #: ``ci``: the confidence bound on the bad side must cross; ``point``: the estimate
    evidence: PolicyEvidence = "sequential"
    #: evidence demanded of the confirming (longer) window
    confirm_evidence: Evidence = "point"
    #: short window -> the longer window that must confirm it (SRE multi-window alerts)
    confirm: dict[str, str] = {"5m": "15m", "15m": "30m", "30m": "1h", "1h": "24h"}
    rules: dict[str, RuleConfig] = Field(default_factory=_default_rules)
    sequential: SequentialConfig = SequentialConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> PolicyConfig:
        d = self.degradation
        if not 0 < d[0] <= d[1] <= d[2]:
            raise ValueError(f"degradation: must be increasing and > 0, got {list(d)!r}")
        unknown = sorted(set(self.rules) - set(METRICS))
        if unknown:
            raise ValueError(f"rules: unknown metric(s) {unknown}; valid: {sorted(METRICS)}")
        for short, long in self.confirm.items():
            if parse_duration(long) <= parse_duration(short):
                raise ValueError(f"confirm: {short!r} must be confirmed by a longer window, got {long!r}")
        return self


class BaselineEntry(_Section):
    """Approved baseline values of one model: ``{metric: {attribute: value}}``."""

    values: dict[str, dict[str, float]] = {}
    approved_by: str | None = None
    source: str = "config"


class NotifyConfig(_Section):
    """Where alerts go (Alertmanager-compatible, and/or a generic webhook)."""

    alertmanager_url: str | None = None  # e.g. http://alertmanager:9093 (POST /api/v2/alerts)
    webhook_url: str | None = None
    webhook_token_env: str | None = None  # name of the env var holding a bearer token
    queue_size: int = Field(1000, ge=1)
    timeout: Duration = 5.0
    retries: int = Field(5, ge=0)
    backoff: Duration = 0.5
    backoff_max: Duration = 30.0
    resend_interval: Duration = 60.0  # re-send firing alerts (Alertmanager resolves stale ones)
    generator_url: str = "http://fairwatch/incidents"


class ModelFlag(_Section):
    flag: str  # flag key in the store
    rollback_to: str  # the approved baseline version (variant)


class RollbackConfig(_Section):
    enabled: bool = True
    dry_run: bool = False
    cooldown: Duration = 3600.0
    flag_store: dict[str, Any] = {"kind": "flagd-file", "path": "flags.json"}
    models: dict[str, ModelFlag] = {}
    #: verification: share of new decisions that must carry the rollback version
    verify_version_share: float = Field(0.99, gt=0, le=1)
    #: decisions after the flip that may still carry the old version (in-flight requests)
    verify_grace: Duration = 30.0
    #: give up verifying (and escalate) after this long (event time)
    verify_timeout: Duration = 90 * 60.0
    state_path: str | None = None  # JSON: last rollback per model (for `flags restore`)


class AdminConfig(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9109, ge=0, le=65535)
    token_env: str = "FAIRWATCH_ADMIN_TOKEN"


class AlertsConfig(_Section):
    """Everything under ``alerts:`` in the main YAML file."""

    enabled: bool = True
    policy: PolicyConfig = PolicyConfig()
    budget: BudgetConfig = BudgetConfig()
    #: evaluation interval (s) the budget is converted with; None: the daemon's ``evaluation_interval``
    evaluation_interval: Duration | None = None
    baselines: dict[str, BaselineEntry] = {}
    baseline_path: str = "fairwatch-baselines.json"
    #: learn baselines from a named period of event time when none is approved: {model: [start, end]}
    learn_baseline: dict[str, tuple[float, float]] = {}
    notify: NotifyConfig = NotifyConfig()
    rollback: RollbackConfig = RollbackConfig()
    admin: AdminConfig = AdminConfig()
    audit_path: str = "fairwatch-audit.jsonl"
    pipeline: dict[str, Any] = {}  # passed to the intervention pipeline as incident["pipeline"]

    def rule(self, metric: str) -> RuleConfig:
        return self.policy.rules.get(metric, RuleConfig(enabled=False))

    def confirm_window(self, window: str) -> str | None:
        return self.policy.confirm.get(window)

    def windows(self) -> tuple[str, ...]:
        """The windows the alert policy reads: each short window and its confirming window
        (none when alerts are disabled). The engine must keep them all.

        >>> AlertsConfig(policy={"confirm": {"5m": "1h"}}).windows()
        ('5m', '1h')
        >>> AlertsConfig(enabled=False).windows()
        ()
        """
        if not self.enabled:
            return ()
        return tuple(dict.fromkeys(w for pair in self.policy.confirm.items() for w in pair))
