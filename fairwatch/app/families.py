"""Every metric family the daemon and the demo export: the monitor's (engine, daemon
health) and the alert layer's (tiers, rollbacks, pipeline runs); docs/metrics.md.

>>> from fairwatch.monitor import snapshot
>>> set(snapshot.FAMILIES) < set(FAMILIES) and "fairness_alert_tier" in FAMILIES
True
"""

from __future__ import annotations

from fairwatch.alerts.families import FAMILIES as ALERT_FAMILIES
from fairwatch.monitor.snapshot import FAMILIES as MONITOR_FAMILIES
from fairwatch.monitor.snapshot import Family

__all__ = ["FAMILIES"]

FAMILIES: dict[str, Family] = {**MONITOR_FAMILIES, **ALERT_FAMILIES}
