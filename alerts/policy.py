"""The tier policy: snapshot → candidate tiers → state machines → tier changes.

With ``policy.evidence: sequential`` (the default) every rule is judged by anytime-valid
e-detectors with the false-alarm budget of ``alerts.budget`` (:mod:`fairwatch.alerts.sequential`);
the rest of this docstring describes the fixed-sample policy (``ci`` / ``point``), kept to
compare with and to backtest.

For every (model, window, metric, attribute) the policy reads the metric from the
snapshot's structured :class:`~fairwatch.monitor.snapshot.WindowMetrics`, turns it into two
candidate tiers (see :mod:`fairwatch.alerts.tiers`) and feeds the state machine:

* **guards** — absolute thresholds (DI outside [0.80, 1.25] → 3, …);
* **degradation** against the approved baseline (5 / 10 / 20 % → 1 / 2 / 3);
* **evidence** — with ``ci`` the confidence bound on the bad side must cross
  (e.g. the *upper* bound of a DI below 0.80), with ``point`` the estimate;
* **multi-window confirmation** — a short window may raise a tier only while its
  confirming (longer) window crosses the same threshold too (``confirm_evidence``,
  default the point), as SRE multi-window burn-rate alerts do: the short window
  gives speed, the long one keeps a blip in a small sample from paging anyone;
* **hysteresis** — a raised tier holds while the point is within ``hysteresis`` of
  the threshold, and falls only after ``clear_for`` evaluations.

Per-group metrics (DI, ECE, accuracy) are judged on every group with enough data;
the attribute's tier is the worst group's. ECE has no closed-form interval, so the
policy computes a conservative one from the calibration bins (:func:`ece_interval`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fairwatch.monitor.intervals import wilson, z_value
from fairwatch.monitor.metrics import AttributeMetrics
from fairwatch.monitor.snapshot import Sample, Snapshot
from fairwatch.monitor.stats import GroupCounts
from fairwatch.monitor.windows import parse_duration

from .baseline import BaselineStore
from .config import METRICS, AlertsConfig, Guard, RuleConfig
from .sequential import WINDOW, ModelEvidence, counts_from_snapshot
from .tiers import INSUFFICIENT, TierChange, TierMachine

#: evaluation interval (s) when neither the caller nor ``alerts.evaluation_interval`` names one
DEFAULT_INTERVAL = 10.0


def _constraint(metric: str, spec, group: str | None, other: str | None) -> str:
    """The constraint a detector tests against, in words."""
    if spec.kind == "ratio":
        return f"rate({group}) < {spec.null:.3g} x rate({other})"
    if spec.kind == "diff":
        rate = "TPR" if spec.sub == 0 else "FPR"
        return f"{rate}({other}) - {rate}({group}) > {spec.null:.3g}"
    if spec.kind == "bias":
        side = "above" if spec.sub > 0 else "below"
        return f"outcomes of {group} {side} its scores by > {spec.null:.3g}"
    return f"accuracy({group}) < {spec.null:.3g}"


__all__ = ["Policy", "Item", "ece_interval", "candidate", "LabelCounts"]

Interval = tuple[float, float]
#: (model, window) → {(attribute, group): labeled GroupCounts}; e.g. ``engine.window_counts(m, w, labeled=True)``
LabelCounts = Callable[[str, str], Mapping[tuple[str, str], GroupCounts]]


@dataclass(frozen=True, slots=True)
class Item:
    """One judged number: the attribute's ratio/gap, or one group's rate."""

    value: float
    ci: Interval | None
    group: str | None = None


def ece_interval(c: GroupCounts, confidence: float = 0.95) -> Interval | None:
    """A conservative interval for a group's ECE from its calibration bins.

    Per bin the label sum ``L_b`` has variance at most ``σ_b² = n_b m_b (1 − m_b)``
    (``m_b`` the bin's mean score; Jensen) under calibration. The lower bound takes
    each bin's excess ``|L_b − S_b| − z σ_b`` (never below 0), so noise alone rarely
    makes it positive; the upper bound adds ``z σ_b``. Both are divided by ``N``.

    >>> c = GroupCounts.empty(bins=10)
    >>> for i in range(400):
    ...     c.update(score=0.8, decision=1, label=int(i % 10 < 5))   # says 0.8, is 0.5
    >>> round(c.expected_calibration_error, 3)
    0.3
    >>> lo, hi = ece_interval(c)
    >>> round(lo, 3), round(hi, 3)
    (0.261, 0.339)
    """
    n = int(c.cal_n.sum())
    if n == 0:
        return None
    z = z_value(confidence)
    lo = hi = 0.0
    for nb, sb, lb in zip(c.cal_n.tolist(), c.cal_s.tolist(), c.cal_l.tolist(), strict=True):
        if nb == 0:
            continue
        m = sb / nb
        sigma = math.sqrt(nb * m * (1.0 - m))
        d = abs(lb - sb)
        lo += max(0.0, d - z * sigma)
        hi += d + z * sigma
    return lo / n, min(1.0, hi / n)


def _guard_tier(g: Guard, item: Item, evidence: str, margin: float) -> tuple[int, int]:
    """(raise, hold) tiers of one guard for one item."""
    x = item.value
    lo, hi = item.ci if (evidence == "ci" and item.ci) else (x, x)
    r = h = 0
    if g.below is not None:
        if hi < g.below:
            r = g.tier
        if x < g.below + margin:
            h = g.tier
    if g.above is not None:
        if lo > g.above:
            r = g.tier
        if x > g.above - margin:
            h = g.tier
    return r, h


def _degradation_tier(
    direction: str, kind: str, base: float, item: Item, evidence: str, thresholds, margin: float
) -> tuple[int, int]:
    if kind == "none":
        return 0, 0
    x = item.value
    lo, hi = item.ci if (evidence == "ci" and item.ci) else (x, x)
    ev = hi if direction == "low" else lo  # the bound closest to "fine"
    sign = 1.0 if direction == "low" else -1.0

    def deg(v: float) -> float:
        d = sign * (base - v)
        if kind == "relative":
            return d / base if base > 0 else 0.0
        return d

    unit = (margin / base if base > 0 else 0.0) if kind == "relative" else margin

    def tier(d: float) -> int:
        return max((k + 1 for k, t in enumerate(thresholds) if d >= t - 1e-12), default=0)

    return tier(deg(ev)), tier(deg(x) + unit)


def candidate(
    metric: str,
    items: list[Item],
    rule: RuleConfig,
    *,
    intersectional: bool,
    baseline: float | None,
    evidence: str,
    thresholds,
    margin: float,
) -> tuple[int, int, Item | None]:
    """(raise, hold, worst item) over items; used for both the window and its confirmer.

    >>> from fairwatch.alerts.config import AlertsConfig
    >>> cfg = AlertsConfig()
    >>> rule = cfg.rule("disparate_impact")
    >>> items = [Item(1.0, (0.95, 1.05), "White"), Item(0.7, (0.62, 0.79), "Black")]
    >>> candidate("disparate_impact", items, rule, intersectional=False, baseline=None,
    ...           evidence="ci", thresholds=(0.05, 0.1, 0.2), margin=0.02)[:2]
    (3, 3)
    >>> items = [Item(0.78, (0.70, 0.86), "Black")]       # the point crossed, the bound did not
    >>> candidate("disparate_impact", items, rule, intersectional=False, baseline=None,
    ...           evidence="ci", thresholds=(0.05, 0.1, 0.2), margin=0.02)[:2]
    (0, 3)
    """
    direction = METRICS[metric]
    best_r = best_h = 0
    worst: Item | None = None
    for item in items:
        r = h = 0
        for g in rule.guards:
            if g.intersectional is not None and g.intersectional != intersectional:
                continue
            gr, gh = _guard_tier(g, item, evidence, margin)
            r, h = max(r, gr), max(h, gh)
        if baseline is not None:
            dr, dh = _degradation_tier(direction, rule.degradation, baseline, item, evidence, thresholds, margin)
            r, h = max(r, dr), max(h, dh)
        worse = (
            (item.value < worst.value)
            if (worst is not None and direction == "low")
            else (worst is not None and item.value > worst.value)
        )
        if worst is None or (r, h) > (best_r, best_h) or ((r, h) == (best_r, best_h) and worse):
            worst = item
        best_r, best_h = max(best_r, r), max(best_h, h)
    return best_r, best_h, worst


class Policy:
    """Evaluates snapshots; keeps one :class:`TierMachine` per (model, window, metric, attribute)."""

    def __init__(
        self,
        config: AlertsConfig | None = None,
        *,
        baselines: BaselineStore | None = None,
        confidence: float = 0.95,
        interval: float | None = None,
        reference_groups: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config or AlertsConfig()
        #: evaluation interval the budget is converted with (s)
        self.interval = float(interval or self.config.evaluation_interval or DEFAULT_INTERVAL)
        self.reference_groups = dict(reference_groups or {})
        self.evidence: dict[str, ModelEvidence] = {}
        self.baselines = baselines or BaselineStore(
            self.config.baseline_path, defaults={m: e.values for m, e in self.config.baselines.items()}
        )
        self.confidence = confidence
        self.machines: dict[tuple[str, str, str, str], TierMachine] = {}
        self.last: dict[tuple[str, str, str, str], tuple[int, Item | None]] = {}
        self.evaluations = 0

    # -- reading the snapshot ------------------------------------------------------
    def items(
        self,
        metric: str,
        am: AttributeMetrics,
        counts: Mapping[tuple[str, str], GroupCounts] | None,
        rule: RuleConfig,
        *,
        confirming: bool = False,
    ) -> list[Item] | None:
        """What is judged for ``metric`` on one attribute; ``None`` = insufficient data.

        ``confirming``: the attribute is the confirming (longer) window's, which demands
        ``rule.confirm_min_labeled`` labeled outcomes per group when set (also used for a
        window that has no confirming window: it is its own confirmation).
        """
        min_lab = (rule.confirm_min_labeled if confirming and rule.confirm_min_labeled else rule.min_labeled) or 0
        if metric == "demographic_parity_ratio":
            return None if am.dp_ratio is None else [Item(am.dp_ratio, am.dp_ratio_ci)]
        if metric == "equalized_odds_gap":
            # a gap between extremes of tiny labeled groups is noise: demand rule.min_labeled of each
            used = [g.labeled for g in am.groups if g.sufficient_labeled]
            if am.eo_gap is None or min(used, default=0) < min_lab:
                return None
            return [Item(am.eo_gap, am.eo_gap_ci)]
        if metric == "disparate_impact":
            out = [
                Item(g.disparate_impact, g.disparate_impact_ci, g.group)
                for g in am.groups
                if g.sufficient and g.disparate_impact is not None and g.group != am.reference
            ]
            return out or None
        out = []
        for g in am.groups:
            if not g.sufficient_labeled or g.labeled < min_lab:
                continue
            if metric == "accuracy" and g.accuracy is not None:
                correct = round(g.accuracy * g.labeled)
                out.append(Item(g.accuracy, wilson(correct, g.labeled, self.confidence), g.group))
            elif metric == "expected_calibration_error" and g.expected_calibration_error is not None:
                ci = None
                if counts is not None and (am.attribute, g.group) in counts:
                    ci = ece_interval(counts[(am.attribute, g.group)], self.confidence)
                out.append(Item(g.expected_calibration_error, ci, g.group))
        return out or None

    # -- one evaluation -----------------------------------------------------------------
    def evaluate(self, snap: Snapshot, *, label_counts: LabelCounts | None = None) -> list[TierChange]:
        """Feed one snapshot to every state machine; returns the transitions."""
        pol = self.config.policy
        self.evaluations += 1
        if pol.evidence == "sequential":
            return self._evaluate_sequential(snap)
        by_key = {(wm.model, wm.window, wm.metrics.attribute): wm.metrics for wm in snap.windows}
        windows_of = {}
        for wm in snap.windows:
            windows_of.setdefault(wm.model, set()).add(wm.window)
        counts_cache: dict[tuple[str, str], Mapping] = {}

        def counts_for(model: str, window: str):
            if label_counts is None:
                return None
            if (model, window) not in counts_cache:
                counts_cache[(model, window)] = label_counts(model, window)
            return counts_cache[(model, window)]

        changes: list[TierChange] = []
        for (model, window, attribute), am in sorted(by_key.items()):
            t = snap.event_time.get(model, snap.created)
            confirm = pol.confirm.get(window)
            conf_am = by_key.get((model, confirm, attribute)) if confirm in windows_of.get(model, ()) else None
            for metric, rule in pol.rules.items():
                if not rule.enabled or (rule.windows is not None and window not in rule.windows):
                    continue
                evidence = rule.evidence or pol.evidence
                thresholds = pol.degradation_overrides.get(metric, pol.degradation)
                need_counts = metric == "expected_calibration_error" and "ci" in (evidence, pol.confirm_evidence)
                base = self.baselines.get(model, metric, attribute)
                # a window nobody confirms (the longest) is its own confirmation: it needs the
                # confirming window's sample size (rule.confirm_min_labeled)
                unconfirmed = confirm is None or confirm not in windows_of.get(model, ())
                items = self.items(
                    metric, am, counts_for(model, window) if need_counts else None, rule, confirming=unconfirmed
                )
                key = (model, window, metric, attribute)
                machine = self.machines.get(key)
                if machine is None:
                    machine = self.machines[key] = TierMachine(for_=pol.for_, clear_for=pol.clear_for)
                before = machine.state
                worst = None
                reason = "insufficient data"
                if items is None:
                    state = machine.update(None, None)
                else:
                    kw = dict(
                        intersectional=am.intersectional, baseline=base, thresholds=thresholds, margin=pol.hysteresis
                    )
                    r, h, worst = candidate(metric, items, rule, evidence=evidence, **kw)
                    reason = f"{evidence} evidence on {window}"
                    if confirm is not None and confirm in windows_of.get(model, ()):
                        c_items = (
                            None
                            if conf_am is None
                            else self.items(
                                metric,
                                conf_am,
                                counts_for(model, confirm) if need_counts else None,
                                rule,
                                confirming=True,
                            )
                        )
                        cr = (
                            0
                            if c_items is None
                            else candidate(metric, c_items, rule, evidence=pol.confirm_evidence, **kw)[0]
                        )
                        if cr < r:
                            reason += f"; {confirm} confirms only tier {cr}"
                        else:
                            reason += f"; confirmed by {confirm}"
                        r = min(r, cr)
                    state = machine.update(r, h)
                self.last[key] = (state, worst)
                if state != before:
                    changes.append(
                        TierChange(
                            model,
                            window,
                            metric,
                            attribute,
                            before,
                            state,
                            t,
                            None if worst is None else worst.value,
                            None if worst is None else worst.ci,
                            reason + (f" (group {worst.group})" if worst is not None and worst.group else ""),
                        )
                    )
        return changes

    def _evaluate_sequential(self, snap: Snapshot) -> list[TierChange]:
        """The e-detectors of every model on the counts since the last evaluation."""
        changes: list[TierChange] = []
        for model, (names, (dec, lab, cal_n, cal_s, cal_l)) in sorted(counts_from_snapshot(snap).items()):
            ev = self.evidence.get(model)
            if ev is None:
                ev = self.evidence[model] = ModelEvidence(
                    self.config, interval=self.interval, reference_groups=self.reference_groups
                )
            before = None if ev.tiers is None else ev.tiers.state[0].copy()
            prev_machines = [] if ev.layout is None else list(ev.layout.machines)
            states = ev.step(
                names, dec, lab, cal_n, cal_s, cal_l, lambda metric, attr, m=model: self.baselines.get(m, metric, attr)
            )
            if states is None:
                continue
            t = snap.event_time.get(model, snap.created)
            old = dict(zip(prev_machines, [] if before is None else before.tolist(), strict=False))
            for i, (metric, attribute) in enumerate(ev.layout.machines):
                key = (model, WINDOW, metric, attribute)
                state = int(states[0, i])
                prev = old.get((metric, attribute), INSUFFICIENT)
                dec_ = ev.deciding(i)
                self.last[key] = (state, None)
                if state == prev:
                    continue
                spec, stat, thr = dec_ if dec_ is not None else (None, None, None)
                group = None if spec is None else ev.layout.names[spec.g][1]
                other = None if spec is None or spec.h < 0 else ev.layout.names[spec.h][1]
                reason = "insufficient data"
                if state >= 0 and spec is not None:
                    reason = (
                        f"sequential evidence {stat:.2f} vs threshold {thr:.2f} (tier {spec.tier}): "
                        f"{_constraint(metric, spec, group, other)}"
                    )
                changes.append(
                    TierChange(model, WINDOW, metric, attribute, prev, state, t, None, None, reason, group, stat, thr)
                )
        return changes

    # -- exposition ------------------------------------------------------------------------
    def samples(self) -> list[Sample]:
        """``fairness_alert_tier`` for every state machine (−1 = insufficient data), and the evidence."""
        out = [
            Sample("fairness_alert_tier", {"model": m, "window": w, "metric": k, "attribute": a}, float(st))
            for (m, w, k, a), (st, _) in sorted(self.last.items())
        ]
        for model, ev in sorted(self.evidence.items()):
            for metric, attribute, group, tier, value in ev.series_values():
                labels = {
                    "model": model,
                    "window": WINDOW,
                    "metric": metric,
                    "attribute": attribute,
                    "group": group,
                    "tier": str(tier),
                }
                out.append(Sample("fairness_alert_evidence", labels, value))
            for tier, thr in sorted(ev.tier_thresholds().items()):
                out.append(Sample("fairness_alert_evidence_threshold", {"model": model, "tier": str(tier)}, thr))
        return out

    def tier(self, model: str, metric: str | None = None, attribute: str | None = None) -> int:
        """Highest current tier of a model (optionally one metric/attribute), −1 if all insufficient."""
        states = [
            st
            for (m, _, k, a), (st, _) in self.last.items()
            if m == model and metric in (None, k) and attribute in (None, a)
        ]
        return max(states, default=INSUFFICIENT)

    def window_seconds(self, window: str) -> float:
        return parse_duration(window)
