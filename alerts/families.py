"""The metric families the alert layer adds to each snapshot (docs/metrics.md).

Tiers come from :mod:`fairwatch.alerts.policy`, rollbacks from
:mod:`fairwatch.alerts.rollback` via the alert loop, and pipeline runs from the
incidents the loop hands to the intervention pipeline. The application exports them
next to :data:`fairwatch.monitor.snapshot.FAMILIES` (``fairwatch.app.families``).

>>> sorted(FAMILIES)
['fairness_alert_evidence', 'fairness_alert_evidence_threshold', 'fairness_alert_tier',
 'fairness_pipeline_runs_total', 'fairness_rollbacks_total']
"""

from __future__ import annotations

from fairwatch.monitor.snapshot import Family

__all__ = ["FAMILIES"]

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "fairness_alert_tier",
            "gauge",
            ("model", "window", "metric", "attribute"),
            "Alert tier: 0 ok, 1..3 tiers, -1 insufficient data.",
        ),
        Family(
            "fairness_alert_evidence",
            "gauge",
            ("model", "window", "metric", "attribute", "group", "tier"),
            "Sequential evidence (CUSUM of log e-values) of the group's most-evidenced constraint"
            " of this tier; the tier is raised at fairness_alert_evidence_threshold.",
        ),
        Family(
            "fairness_alert_evidence_threshold",
            "gauge",
            ("model", "tier"),
            "log(A*K): evidence at which a tier is raised (A = the tier's false-alarm budget in"
            " evaluations, K = the model's detectors of that tier).",
        ),
        Family("fairness_rollbacks_total", "counter", ("model", "flag"), "Automatic or manual rollbacks executed."),
        Family("fairness_pipeline_runs_total", "counter", ("model", "result"), "Intervention pipeline runs by result."),
    )
}
