"""Fairness metrics of one attribute in one window, from per-group counts (docs/metrics.md).

Definitions follow fairlearn: between-groups ``max − min`` and ``min / max``,
worst-case equalized odds. Groups below the minimum sample sizes are reported
(their sample counts) but left out of every ratio and gap. Each ratio and gap
carries a confidence interval: Wilson for rates, Katz log for ratios, Newcombe
for differences.

>>> from fairwatch.monitor.stats import GroupCounts
>>> a, b = GroupCounts.empty(), GroupCounts.empty()
>>> for i in range(200):
...     a.update(score=0.7, decision=int(i % 2 == 0), label=int(i % 4 != 3))
...     b.update(score=0.4, decision=int(i % 4 == 0), label=int(i % 2 == 0))
>>> m = attribute_metrics({"A": a, "B": b}, min_decisions=100, min_labeled=50)
>>> m.dp_ratio, m.dp_difference, m.reference
(0.5, 0.25, 'A')
>>> [round(g.disparate_impact, 3) for g in m.groups]
[1.0, 0.5]
>>> round(m.eo_gap, 4)
0.1667
>>> lo, hi = m.dp_ratio_ci
>>> lo < 0.5 < hi
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fairwatch.monitor.intervals import katz_ratio, newcombe_difference, wilson
from fairwatch.monitor.stats import GroupCounts

__all__ = ["GroupMetrics", "AttributeMetrics", "attribute_metrics"]

Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class GroupMetrics:
    """One group's rates in one window. ``None`` = undefined or insufficient data."""

    group: str
    decisions: int
    labeled: int
    matured_decisions: int  # decisions in the (label-maturity shifted) outcome window
    sufficient: bool  # decisions ≥ min_decisions: takes part in DP and DI
    sufficient_labeled: bool  # labeled ≥ min_labeled: takes part in EO; TPR/FPR/ECE reported
    selection_rate: float | None
    selection_rate_ci: Interval | None
    disparate_impact: float | None
    disparate_impact_ci: Interval | None
    true_positive_rate: float | None
    false_positive_rate: float | None
    accuracy: float | None
    expected_calibration_error: float | None

    @property
    def labeled_share(self) -> float | None:
        """Share of the matured window's decisions whose outcome has arrived."""
        return None if self.matured_decisions == 0 else self.labeled / self.matured_decisions


@dataclass(frozen=True, slots=True)
class AttributeMetrics:
    """Between-group metrics of one attribute (``race``, ``sex``, ``race,sex``…)."""

    attribute: str
    groups: tuple[GroupMetrics, ...]
    reference: str | None
    dp_ratio: float | None
    dp_ratio_ci: Interval | None
    dp_difference: float | None
    dp_difference_ci: Interval | None
    eo_gap: float | None
    eo_gap_ci: Interval | None

    @property
    def intersectional(self) -> bool:
        return "," in self.attribute

    def group(self, name: str) -> GroupMetrics | None:
        return next((g for g in self.groups if g.group == name), None)


def _spread(
    values: dict[str, float], counts: dict[str, tuple[int, int]], confidence: float
) -> tuple[float | None, Interval | None]:
    """``max − min`` over groups with its Newcombe interval (max group vs min group)."""
    if len(values) < 2:
        return None, None
    hi = max(values, key=lambda g: (values[g], g))
    lo = min(values, key=lambda g: (values[g], g))
    ci = newcombe_difference(*counts[hi], *counts[lo], confidence=confidence)
    return values[hi] - values[lo], ci


def attribute_metrics(
    decisions: Mapping[str, GroupCounts],
    labeled: Mapping[str, GroupCounts] | None = None,
    *,
    attribute: str = "",
    min_decisions: int = 100,
    min_labeled: int = 50,
    reference: str | None = None,
    confidence: float = 0.95,
) -> AttributeMetrics:
    """Compute every metric of docs/metrics.md for one attribute.

    ``decisions`` are the window's counts per group; ``labeled`` the counts of the
    label-maturity shifted window used for outcome metrics (default: the same).
    ``reference`` is the disparate-impact reference group; when it is not given
    or has too little data, the sufficient group with the highest selection rate.
    """
    labeled = decisions if labeled is None else labeled
    names = sorted(set(decisions) | set(labeled))
    empty = GroupCounts.empty()

    sr: dict[str, float] = {}
    sr_counts: dict[str, tuple[int, int]] = {}
    for g in names:
        c = decisions.get(g, empty)
        if c.n >= min_decisions and c.n > 0:
            sr[g] = c.favorable / c.n
            sr_counts[g] = (c.favorable, c.n)

    ref = reference if reference in sr else None
    if ref is None and sr:
        ref = max(sr, key=lambda g: (sr[g], g))

    tpr: dict[str, float] = {}
    tpr_counts: dict[str, tuple[int, int]] = {}
    fpr: dict[str, float] = {}
    fpr_counts: dict[str, tuple[int, int]] = {}
    groups = []
    for g in names:
        d = decisions.get(g, empty)
        lab = labeled.get(g, empty)
        sufficient = g in sr
        sufficient_labeled = lab.n_labeled >= min_labeled and lab.n_labeled > 0
        di = di_ci = None
        if sufficient and ref is not None and sr[ref] > 0:
            di = sr[g] / sr[ref]
            di_ci = katz_ratio(*sr_counts[g], *sr_counts[ref], confidence=confidence)
        t = f = acc = ece = None
        if sufficient_labeled:
            t, f = lab.true_positive_rate, lab.false_positive_rate
            acc, ece = lab.accuracy, lab.expected_calibration_error
            if t is not None:
                tpr[g] = t
                tpr_counts[g] = (int(lab.labeled[1, 1]), lab.positives)
            if f is not None:
                fpr[g] = f
                fpr_counts[g] = (int(lab.labeled[1, 0]), lab.negatives)
        groups.append(
            GroupMetrics(
                group=g,
                decisions=d.n,
                labeled=lab.n_labeled,
                matured_decisions=lab.n,
                sufficient=sufficient,
                sufficient_labeled=sufficient_labeled,
                selection_rate=d.selection_rate,
                selection_rate_ci=wilson(d.favorable, d.n, confidence),
                disparate_impact=di,
                disparate_impact_ci=di_ci,
                true_positive_rate=t,
                false_positive_rate=f,
                accuracy=acc,
                expected_calibration_error=ece,
            )
        )

    dp_ratio = dp_ratio_ci = None
    if len(sr) >= 2:
        hi = max(sr, key=lambda g: (sr[g], g))
        lo = min(sr, key=lambda g: (sr[g], g))
        if sr[hi] > 0:
            dp_ratio = sr[lo] / sr[hi]
            dp_ratio_ci = katz_ratio(*sr_counts[lo], *sr_counts[hi], confidence=confidence)
    dp_difference, dp_difference_ci = _spread(sr, sr_counts, confidence)

    tpr_gap, tpr_ci = _spread(tpr, tpr_counts, confidence)
    fpr_gap, fpr_ci = _spread(fpr, fpr_counts, confidence)
    eo_gap, eo_gap_ci = None, None
    if tpr_gap is not None or fpr_gap is not None:
        if fpr_gap is None or (tpr_gap is not None and tpr_gap >= fpr_gap):
            eo_gap, eo_gap_ci = tpr_gap, tpr_ci
        else:
            eo_gap, eo_gap_ci = fpr_gap, fpr_ci

    return AttributeMetrics(
        attribute=attribute,
        groups=tuple(groups),
        reference=ref,
        dp_ratio=dp_ratio,
        dp_ratio_ci=dp_ratio_ci,
        dp_difference=dp_difference,
        dp_difference_ci=dp_difference_ci,
        eo_gap=eo_gap,
        eo_gap_ci=eo_gap_ci,
    )
