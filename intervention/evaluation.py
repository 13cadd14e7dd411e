"""Evaluation: intersectional report and the Pareto frontier of candidates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .metrics import group_rates, intersection

__all__ = ["intersectional_report", "pareto_frontier"]


def intersectional_report(
    y_true: Any,
    y_pred: Any,
    sensitive: pd.DataFrame,
    *,
    min_group_size: int = 1,
) -> dict[str, Any]:
    """Every intersectional group (e.g. race × sex): DP, EO gap, accuracy, deviations.

    Per group ``g``: ``dp_ratio = SR(g) / max_h SR(h)``; ``eo_gap = max(|TPR(g) − TPR|,
    |FPR(g) − FPR|)`` against the overall rates; ``accuracy``. Summary (eligible groups
    only): ``average_accuracy`` (unweighted mean over groups), ``worst_accuracy_deviation
    = max_g (average − accuracy(g))``, ``worst_outcome_ratio = min_g acc / max_g acc``,
    ``min_dp_ratio`` and ``max_eo_gap`` (Buolamwini & Gebru 2018 style disaggregation); each
    ``None`` with fewer than two eligible groups.

    >>> s = pd.DataFrame({"race": ["A", "A", "B", "B"], "sex": ["F", "M", "F", "M"]})
    >>> r = intersectional_report([1, 0, 1, 0], [1, 0, 0, 0], s)
    >>> r["attribute"], r["groups"]["A,F"]["dp_ratio"], r["min_dp_ratio"]
    ('race,sex', 1.0, 0.0)
    """
    yt = np.asarray(y_true).astype(int)
    yp = np.asarray(y_pred).astype(int)
    labels = intersection(sensitive, list(sensitive.columns))
    rates = group_rates(yt, yp, sensitive_features=labels.to_numpy())
    overall = group_rates(yt, yp, sensitive_features=np.full(len(yt), "all"))["all"]
    eligible = [k for k, v in rates.items() if v["n"] >= min_group_size]
    max_sr = max((rates[k]["selection_rate"] for k in eligible), default=None)
    groups: dict[str, Any] = {}
    for k, r in rates.items():
        gaps = [abs(r[m] - overall[m]) for m in ("tpr", "fpr") if r[m] is not None and overall[m] is not None]
        groups[k] = {
            "n": r["n"],
            "eligible": k in eligible,
            "selection_rate": round(r["selection_rate"], 6),
            "dp_ratio": None if not max_sr else round(r["selection_rate"] / max_sr, 6),
            "tpr": None if r["tpr"] is None else round(r["tpr"], 6),
            "fpr": None if r["fpr"] is None else round(r["fpr"], 6),
            "eo_gap": round(max(gaps), 6) if gaps else None,
            "accuracy": round(r["accuracy"], 6),
        }
    # the summaries compare groups: with fewer than two eligible ones there is nothing to compare
    # (one group's "deviation" 0 and "ratio" 1 would read as a pass)
    compared = eligible if len(eligible) >= 2 else []
    accs = [groups[k]["accuracy"] for k in compared]
    avg = float(np.mean(accs)) if accs else None
    dps = [groups[k]["dp_ratio"] for k in compared if groups[k]["dp_ratio"] is not None]
    eos = [groups[k]["eo_gap"] for k in compared if groups[k]["eo_gap"] is not None]
    worst_dev = max((avg - a for a in accs), default=None) if avg is not None else None
    return {
        "attribute": labels.name,
        "groups": groups,
        "insufficient_groups": sorted(set(rates) - set(eligible)),
        "average_accuracy": None if avg is None else round(avg, 6),
        "worst_accuracy_deviation": None if worst_dev is None else round(worst_dev, 6),
        "worst_accuracy_group": min(compared, key=lambda k: groups[k]["accuracy"]) if compared else None,
        "worst_outcome_ratio": round(min(accs) / max(accs), 6) if accs and max(accs) > 0 else None,
        "min_dp_ratio": min(dps) if dps else None,
        "max_eo_gap": max(eos) if eos else None,
    }


def pareto_frontier(
    points: Sequence[dict[str, Any]],
    *,
    x: str = "accuracy",
    y: str = "dp_ratio",
    maximize: tuple[bool, bool] = (True, True),
) -> list[str]:
    """Names of the non-dominated candidates (Wick et al. 2019 trade-off view).

    A point dominates another if it is at least as good on both axes and strictly better
    on one. Points missing a value are never on the frontier.

    >>> pts = [{"name": "a", "accuracy": 0.8, "dp_ratio": 0.9},
    ...        {"name": "b", "accuracy": 0.85, "dp_ratio": 0.7},
    ...        {"name": "c", "accuracy": 0.79, "dp_ratio": 0.6}]
    >>> pareto_frontier(pts)
    ['a', 'b']
    """
    sx = 1 if maximize[0] else -1
    sy = 1 if maximize[1] else -1
    valid = [p for p in points if p.get(x) is not None and p.get(y) is not None]
    out = []
    for p in valid:
        px, py = sx * p[x], sy * p[y]
        dominated = any(
            sx * q[x] >= px and sy * q[y] >= py and (sx * q[x] > px or sy * q[y] > py) for q in valid if q is not p
        )
        if not dominated:
            out.append(p["name"])
    return out
