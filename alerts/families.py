"""The metric families the alert layer adds to each snapshot (docs/metrics.md).

Tiers come from :mod:`fairwatch.alerts.policy`, rollbacks from
:mod:`fairwatch.alerts.rollback` via the alert loop, and pipeline runs from the
incidents the loop hands to the intervention pipeline. The application exports them
next to :data:`fairwatch.monitor.snapshot.FAMILIES` (``fairwatch.app.families``).

>>> sorted(FAMILIES)
['fairness_alert_tier', 'fairness_pipeline_runs_total', 'fairness_rollbacks_total']
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
        Family("fairness_rollbacks_total", "counter", ("model", "flag"), "Automatic or manual rollbacks executed."),
        Family("fairness_pipeline_runs_total", "counter", ("model", "result"), "Intervention pipeline runs by result."),
    )
}
