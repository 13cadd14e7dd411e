"""Drift investigation: what moved, for whom, since when, and why.

Input: an incident (model, metric, attribute, groups, windows) and recent labeled
decisions (``ts score decision label`` + attribute columns + feature columns).

* **what moved / for whom**: every group's selection rate, TPR, FPR, accuracy and ECE
  in the baseline and current windows, with deltas; groups ranked by the change;
* **since when**: the daily series of the incident's metric and its change point — the
  single split minimizing the squared error of a two-level step fit (least-squares
  mean shift);
* **which features shifted, for whom**: per group and feature, two-sample KS (numeric)
  or chi-square (categorical) between the windows;
* **label shift vs model behaviour**: the change of a group's selection rate splits
  exactly into ``Σ_y (P₁(y) − P₀(y))·P₀(d=1|y)`` (label shift: the mix of outcomes
  changed) + ``Σ_y P₁(y)·(P₁(d=1|y) − P₀(d=1|y))`` (behaviour: the model treats the
  same outcome differently).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import BAD_VALUE, PipelineInputError, check_choice, check_columns
from .metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    disparate_impact,
    ece_by_group,
    equalized_odds_gap,
    group_rates,
)

__all__ = ["INCIDENT_METRICS", "selection_rate_decomposition", "change_point", "monitored_numbers", "investigate"]

INCIDENT_METRICS = (
    "demographic_parity_ratio",
    "demographic_parity_difference",
    "disparate_impact",
    "equalized_odds_gap",
    "expected_calibration_error",
    "selection_rate",
    "accuracy",
)
_REQUIRED = ("ts", "decision", "label")


def selection_rate_decomposition(
    y0: np.ndarray, d0: np.ndarray, y1: np.ndarray, d1: np.ndarray
) -> dict[str, float | None]:
    """Split ``SR₁ − SR₀`` into label-shift and model-behaviour parts (they sum exactly).

    >>> r = selection_rate_decomposition(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]),
    ...                                  np.array([1, 0, 0, 0]), np.array([0, 0, 0, 0]))
    >>> r["total"], r["label_shift"], r["behaviour"]
    (-0.25, -0.125, -0.125)
    """
    y0, d0, y1, d1 = (np.asarray(a).astype(int) for a in (y0, d0, y1, d1))
    if y0.size == 0 or y1.size == 0:
        return {"total": None, "label_shift": None, "behaviour": None}
    label = behaviour = 0.0
    for y in (0, 1):
        p0, p1 = (y0 == y).mean(), (y1 == y).mean()
        r0 = d0[y0 == y].mean() if (y0 == y).any() else 0.0
        r1 = d1[y1 == y].mean() if (y1 == y).any() else r0
        label += (p1 - p0) * r0
        behaviour += p1 * (r1 - r0)
    return {"total": round(float(d1.mean() - d0.mean()), 6), "label_shift": round(float(label), 6),
            "behaviour": round(float(behaviour), 6)}  # fmt: skip


def change_point(values: Sequence[float]) -> int | None:
    """Index where the series' mean shifts: the split minimizing two-segment squared error.

    >>> change_point([0.8, 0.82, 0.79, 0.81, 0.6, 0.58, 0.61])
    4
    >>> change_point([0.5]) is None
    True
    """
    v = np.asarray([x for x in values], dtype=float)
    if v.size < 2 or np.isnan(v).all():
        return None
    v = np.where(np.isnan(v), np.nanmean(v), v)
    best, arg = np.inf, None
    for k in range(1, v.size):
        sse = ((v[:k] - v[:k].mean()) ** 2).sum() + ((v[k:] - v[k:].mean()) ** 2).sum()
        if sse < best:
            best, arg = sse, k
    return arg


def _metric(metric: str, y: np.ndarray, d: np.ndarray, s: np.ndarray, g: np.ndarray, groups: Sequence[str],
            min_n: int) -> float | None:  # fmt: skip
    if len(y) == 0:
        return None
    if metric == "demographic_parity_ratio":
        return demographic_parity_ratio(d, sensitive_features=g, min_group_size=min_n)
    if metric == "demographic_parity_difference":
        return demographic_parity_difference(d, sensitive_features=g, min_group_size=min_n)
    if metric == "equalized_odds_gap":
        return equalized_odds_gap(y, d, sensitive_features=g, min_group_size=min_n)
    if metric == "disparate_impact":
        di = disparate_impact(d, sensitive_features=g)
        vals = [di[k] for k in (groups or di) if k in di and di[k] is not None]
        return min(vals) if vals else None
    if metric == "expected_calibration_error":
        e = ece_by_group(y, s, sensitive_features=g)
        vals = [e[k] for k in (groups or e) if k in e and e[k] is not None]
        return max(vals) if vals else None
    r = group_rates(y, d, sensitive_features=g)
    key = "selection_rate" if metric == "selection_rate" else "accuracy"
    vals = [r[k][key] for k in (groups or r) if k in r and r[k][key] is not None]
    return min(vals) if vals else None


def _window(df: pd.DataFrame, win: Sequence[Any] | None) -> pd.Series:
    if win is None:
        return pd.Series(False, index=df.index)
    lo, hi = (pd.Timestamp(w) for w in win)
    lo = lo.tz_localize("UTC") if lo.tzinfo is None else lo
    hi = hi.tz_localize("UTC") if hi.tzinfo is None else hi
    return (df["ts"] >= lo) & (df["ts"] < hi)


def monitored_numbers(incident: Mapping[str, Any]) -> dict[str, Any]:
    """What the monitor measured when it raised the incident, as the daemon enqueued it.

    The daemon's incident carries the metric, attribute, tier, the value and its
    confidence interval, the tier of each window and the alert's reason (its evidence);
    a hand-written incident may give date windows instead. Missing fields are ``None``.

    >>> m = monitored_numbers({"id": "i1", "metric": "demographic_parity_ratio", "attribute": "race",
    ...                        "tier": 3, "value": 0.61, "ci": [0.55, 0.67], "windows": {"1h": 3, "24h": 2},
    ...                        "reason": "dp_ratio below 0.75 in 1h and 24h"})
    >>> m["value"], m["windows_text"], m["ci"]
    (0.61, '1h: tier 3, 24h: tier 2', [0.55, 0.67])
    """
    wins = incident.get("windows") or {}
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in wins.values()):
        text = ", ".join(f"{w}: tier {int(t)}" for w, t in wins.items())
    else:
        text = "; ".join(f"{w} {' … '.join(str(x) for x in v)}" for w, v in wins.items())
    ci = incident.get("ci")
    return {
        "id": incident.get("id"),
        "metric": incident.get("metric"),
        "attribute": incident.get("attribute"),
        "groups": [str(g) for g in incident.get("groups") or []],
        "tier": incident.get("tier"),
        "value": incident.get("value"),
        "ci": None if ci is None else [float(x) for x in ci],
        "windows": dict(wins),
        "windows_text": text or "n/a",
        "evidence": incident.get("reason") or incident.get("evidence"),
    }


def investigate(
    incident: Mapping[str, Any],
    decisions: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    min_group_size: int = 30,
    alpha: float = 0.01,
) -> dict[str, Any]:
    """The Drift Investigation Report as a dict (rendered to Markdown by :mod:`.plan`)."""
    check_columns("decisions", _REQUIRED, decisions.columns)
    attr = incident.get("attribute")
    if not attr:
        raise PipelineInputError("incident.attribute: the incident must name the attribute", field="incident.attribute")
    check_columns("incident.attribute", [attr], decisions.columns)
    metric = incident.get("metric", "demographic_parity_ratio")
    check_choice("incident.metric", metric, INCIDENT_METRICS)
    df = decisions.copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df = df.sort_values("ts").reset_index(drop=True)
    df[attr] = df[attr].astype(object).where(df[attr].notna(), "__missing__").astype(str)
    df = df[df["label"].notna()].reset_index(drop=True)
    wins = incident.get("windows") or {}
    if "current" in wins:
        cur = _window(df, wins["current"])
        base = (
            _window(df, wins.get("baseline"))
            if "baseline" in wins
            else (df["ts"] < pd.Timestamp(wins["current"][0], tz="UTC"))
        )
    else:  # default: the last 7 days vs everything before
        edge = df["ts"].max() - pd.Timedelta(days=7)
        cur, base = df["ts"] >= edge, df["ts"] < edge
    if cur.sum() == 0 or base.sum() == 0:
        raise PipelineInputError(
            BAD_VALUE.format(field="incident.windows", value=dict(wins), reason="a window holds no labeled decision"),
            field="incident.windows",
        )
    groups = [str(g) for g in incident.get("groups", [])]
    y, d, s, g = (df[c].to_numpy() for c in ("label", "decision", "score", attr))
    y, d = y.astype(int), d.astype(int)
    s = s.astype(float)
    b, c = base.to_numpy(), cur.to_numpy()
    rb = group_rates(y[b], d[b], sensitive_features=g[b])
    rc = group_rates(y[c], d[c], sensitive_features=g[c])
    eb = ece_by_group(y[b], s[b], sensitive_features=g[b])
    ec = ece_by_group(y[c], s[c], sensitive_features=g[c])
    per_group: dict[str, Any] = {}
    for grp in sorted(set(rb) | set(rc)):
        entry: dict[str, Any] = {}
        for key in ("n", "selection_rate", "base_rate", "tpr", "fpr", "accuracy"):
            v0 = rb.get(grp, {}).get(key)
            v1 = rc.get(grp, {}).get(key)
            entry[key] = {"baseline": _r(v0), "current": _r(v1),
                          "delta": None if v0 is None or v1 is None or key == "n" else _r(v1 - v0)}  # fmt: skip
        entry["ece"] = {
            "baseline": _r(eb.get(grp)),
            "current": _r(ec.get(grp)),
            "delta": None if eb.get(grp) is None or ec.get(grp) is None else _r(ec[grp] - eb[grp]),
        }
        m0, m1 = b & (g == grp), c & (g == grp)
        entry["decomposition"] = selection_rate_decomposition(y[m0], d[m0], y[m1], d[m1])
        per_group[grp] = entry
    ranked = sorted(
        (k for k in per_group if per_group[k]["selection_rate"]["delta"] is not None
         and (rc.get(k, {}).get("n", 0) >= min_group_size)),
        key=lambda k: abs(per_group[k]["selection_rate"]["delta"]), reverse=True,
    )  # fmt: skip
    # daily series and change point
    day = df["ts"].dt.floor("D")
    series = []
    for t, idx in df.groupby(day).groups.items():
        ii = np.asarray(list(idx))
        series.append({"day": t.date().isoformat(), "n": len(ii),
                       "value": _r(_metric(metric, y[ii], d[ii], s[ii], g[ii], groups, 1))})  # fmt: skip
    cp = change_point([np.nan if p["value"] is None else p["value"] for p in series])
    since = series[cp]["day"] if cp is not None else None
    before_cp = [p["value"] for p in series[:cp] if p["value"] is not None] if cp else []
    after_cp = [p["value"] for p in series[cp:] if p["value"] is not None] if cp else []
    # feature shift per group
    feats = list(features) if features is not None else [
        col for col in df.columns
        if col not in {"ts", "decision", "label", "score", "decision_id", "model", "model_version", attr}
        and not col.startswith("_")
    ]  # fmt: skip
    shifts = []
    for grp in sorted(set(g.tolist())):
        m0, m1 = b & (g == grp), c & (g == grp)
        if m0.sum() < 2 or m1.sum() < 2:
            continue
        for f in feats:
            a0, a1 = df.loc[m0, f], df.loc[m1, f]
            if pd.api.types.is_numeric_dtype(df[f]):
                r = stats.ks_2samp(a0.dropna().to_numpy(float), a1.dropna().to_numpy(float))
                stat, p, test = float(r.statistic), float(r.pvalue), "ks"
                mean_delta = _r(float(a1.mean() - a0.mean()))
            else:
                tab = pd.crosstab(np.r_[np.zeros(m0.sum()), np.ones(m1.sum())],
                                  np.r_[a0.astype(str).to_numpy(), a1.astype(str).to_numpy()])  # fmt: skip
                if tab.shape[1] < 2:
                    continue
                chi2, p, _, _ = stats.chi2_contingency(tab, correction=False)
                stat, test, mean_delta = float(np.sqrt(chi2 / tab.to_numpy().sum())), "chi2", None
            shifts.append({"group": grp, "feature": f, "test": test, "statistic": _r(stat), "p_value": p,
                           "mean_delta": mean_delta, "shifted": bool(p < alpha)})  # fmt: skip
    shifts.sort(key=lambda r: (not r["shifted"], -(r["statistic"] or 0)))
    mv = _metric(metric, y[b], d[b], s[b], g[b], groups, min_group_size)
    mc = _metric(metric, y[c], d[c], s[c], g[c], groups, min_group_size)
    top = ranked[0] if ranked else None
    dec = per_group[top]["decomposition"] if top else None
    driver = None
    if dec and dec["total"] is not None:
        driver = "model behaviour" if abs(dec["behaviour"] or 0) >= abs(dec["label_shift"] or 0) else "label shift"
    return {
        "incident": dict(incident),
        "monitored": monitored_numbers(incident),
        "model": incident.get("model"),
        "attribute": attr,
        "metric": metric,
        "windows": {"baseline": [str(df.loc[base, "ts"].min()), str(df.loc[base, "ts"].max())],
                    "current": [str(df.loc[cur, "ts"].min()), str(df.loc[cur, "ts"].max())]},
        "decisions": {"baseline": int(b.sum()), "current": int(c.sum())},
        "metric_value": {"baseline": _r(mv), "current": _r(mc),
                         "delta": None if mv is None or mc is None else _r(mc - mv)},
        "groups": per_group,
        "most_affected_groups": ranked[:3],
        "since": since,
        "change_point": {"index": cp, "day": since, "mean_before": _r(np.mean(before_cp)) if before_cp else None,
                         "mean_after": _r(np.mean(after_cp)) if after_cp else None},
        "daily_series": series,
        "feature_shifts": shifts,
        "shifted_features": [r for r in shifts if r["shifted"]],
        "primary_driver": driver,
    }  # fmt: skip


def _r(v: Any, nd: int = 6) -> Any:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    if not np.isfinite(f):
        return None
    return int(f) if isinstance(v, int | np.integer) else round(f, nd)
