"""Group fairness, utility and calibration metrics, in fairlearn's vocabulary.

Definitions (the same as docs/metrics.md and fairlearn):

* selection rate ``SR(g)`` = favorable predictions / rows in ``g``;
* demographic parity ratio = ``min_g SR(g) / max_g SR(g)``
  (:func:`fairlearn.metrics.demographic_parity_ratio`), difference = ``max − min``;
* disparate impact ``DI(g) = SR(g) / SR(reference)``, reference = given group or the
  group with the highest selection rate;
* ``TPR(g) = P(ŷ=1 | y=1, g)``, ``FPR(g) = P(ŷ=1 | y=0, g)``; equalized odds gap =
  ``max(max_g TPR − min_g TPR, max_g FPR − min_g FPR)``
  (:func:`fairlearn.metrics.equalized_odds_difference`); equal-opportunity gap = the
  TPR part alone;
* ECE (Naeini et al. 2015) with ``B`` equal-width bins over [0, 1],
  ``bin = min(floor(p·B), B−1)``: ``Σ_b |L_b − S_b| / N`` where ``S_b`` is the
  score sum and ``L_b`` the label sum of bin ``b``.

A rate whose denominator is empty is ``None``, never ``0.0`` or ``NaN``; groups with
fewer than ``min_group_size`` rows are reported but left out of ratios and gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "GroupRates",
    "group_rates",
    "selection_rate_by_group",
    "demographic_parity_ratio",
    "demographic_parity_difference",
    "disparate_impact",
    "equalized_odds_gap",
    "equal_opportunity_gap",
    "expected_calibration_error",
    "calibration_bins",
    "ece_by_group",
    "intersection",
    "fairness_summary",
]

MISSING_GROUP = "__missing__"


def _labels(sensitive_features: Any) -> np.ndarray:
    """Group labels as an object array of strings; several columns are intersected."""
    if isinstance(sensitive_features, pd.DataFrame):
        return intersection(sensitive_features, list(sensitive_features.columns)).to_numpy()
    s = pd.Series(np.asarray(sensitive_features, dtype=object))
    return s.where(s.notna(), MISSING_GROUP).astype(str).to_numpy(dtype=object)


def intersection(df: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Intersectional group label of each row: the values of ``columns`` joined by ``,``.

    Attribute names are taken in alphabetical order (docs/metrics.md), missing values form
    the group ``__missing__``.

    >>> df = pd.DataFrame({"sex": ["Male", "Female"], "race": ["White", None]})
    >>> intersection(df, ["sex", "race"]).tolist()
    ['White,Male', '__missing__,Female']
    """
    cols = sorted(columns)
    parts = [df[c].astype(object).where(df[c].notna(), MISSING_GROUP).astype(str) for c in cols]
    out = parts[0]
    for p in parts[1:]:
        out = out + "," + p
    return out.rename(",".join(cols))


def _rate(num: float, den: float) -> float | None:
    return None if den == 0 else float(num) / float(den)


class GroupRates(dict):
    """Per-group counts and rates, keyed by group label (a plain ``dict`` subclass)."""


def group_rates(y_true: Any, y_pred: Any, *, sensitive_features: Any) -> GroupRates:
    """Per-group counts, selection rate, TPR, FPR and accuracy.

    >>> r = group_rates([1, 0, 1, 0], [1, 0, 0, 1], sensitive_features=["a", "a", "b", "b"])
    >>> r["a"]["selection_rate"], r["a"]["tpr"], r["b"]["fpr"], r["b"]["accuracy"]
    (0.5, 1.0, 1.0, 0.0)
    """
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    g = _labels(sensitive_features)
    out = GroupRates()
    for grp in sorted(set(g.tolist())):
        m = g == grp
        yt, yp = y_true[m], y_pred[m]
        pos, neg = yt == 1, yt == 0
        out[grp] = {
            "n": int(m.sum()),
            "n_positive": int(pos.sum()),
            "selection_rate": _rate(yp.sum(), m.sum()),
            "base_rate": _rate(yt.sum(), m.sum()),
            "tpr": _rate((yp[pos] == 1).sum(), pos.sum()),
            "fpr": _rate((yp[neg] == 1).sum(), neg.sum()),
            "accuracy": _rate((yp == yt).sum(), m.sum()),
        }
    return out


def selection_rate_by_group(y_pred: Any, *, sensitive_features: Any) -> dict[str, float]:
    """Selection rate of each group.

    >>> selection_rate_by_group([1, 1, 0, 1], sensitive_features=["a", "a", "b", "b"])
    {'a': 1.0, 'b': 0.5}
    """
    y_pred = np.asarray(y_pred).astype(int)
    g = _labels(sensitive_features)
    return {grp: float(y_pred[g == grp].mean()) for grp in sorted(set(g.tolist()))}


def _eligible(rates: GroupRates, min_group_size: int) -> list[str]:
    return [k for k, v in rates.items() if v["n"] >= min_group_size]


def _spread(values: list[float | None]) -> tuple[float, float] | None:
    """``(min, max)`` of the defined values; ``None`` with fewer than two (one group is not a
    comparison: its "ratio" would read as perfect parity).

    >>> _spread([0.4, None, 0.7]), _spread([0.4, None]), _spread([])
    ((0.4, 0.7), None, None)
    """
    vals = [v for v in values if v is not None]
    if len(vals) < 2:
        return None
    return min(vals), max(vals)


def demographic_parity_ratio(y_pred: Any, *, sensitive_features: Any, min_group_size: int = 1) -> float | None:
    """``min_g SR(g) / max_g SR(g)``; ``None`` without two eligible groups or when max is 0.

    >>> demographic_parity_ratio([1, 1, 0, 1], sensitive_features=["a", "a", "b", "b"])
    0.5
    """
    r = group_rates(np.zeros(len(np.asarray(y_pred))), y_pred, sensitive_features=sensitive_features)
    sp = _spread([r[k]["selection_rate"] for k in _eligible(r, min_group_size)])
    if sp is None or sp[1] == 0:
        return None
    return sp[0] / sp[1]


def demographic_parity_difference(y_pred: Any, *, sensitive_features: Any, min_group_size: int = 1) -> float | None:
    """``max_g SR(g) − min_g SR(g)``.

    >>> demographic_parity_difference([1, 1, 0, 1], sensitive_features=["a", "a", "b", "b"])
    0.5
    """
    r = group_rates(np.zeros(len(np.asarray(y_pred))), y_pred, sensitive_features=sensitive_features)
    sp = _spread([r[k]["selection_rate"] for k in _eligible(r, min_group_size)])
    return None if sp is None else sp[1] - sp[0]


def disparate_impact(y_pred: Any, *, sensitive_features: Any, reference: str | None = None) -> dict[str, float | None]:
    """``DI(g) = SR(g) / SR(reference)``; reference defaults to the group with max SR.

    >>> disparate_impact([1, 1, 0, 1], sensitive_features=["a", "a", "b", "b"])
    {'a': 1.0, 'b': 0.5}
    """
    sr = selection_rate_by_group(y_pred, sensitive_features=sensitive_features)
    ref = max(sr, key=lambda k: sr[k]) if reference is None else reference
    return {k: _rate(v, sr[ref]) for k, v in sr.items()}


def equalized_odds_gap(y_true: Any, y_pred: Any, *, sensitive_features: Any, min_group_size: int = 1) -> float | None:
    """``max(TPR spread, FPR spread)`` between groups (fairlearn's worst case).

    >>> equalized_odds_gap([1, 0, 1, 0], [1, 0, 0, 0], sensitive_features=["a", "a", "b", "b"])
    1.0
    """
    r = group_rates(y_true, y_pred, sensitive_features=sensitive_features)
    keys = _eligible(r, min_group_size)
    parts = [_spread([r[k][m] for k in keys]) for m in ("tpr", "fpr")]
    gaps = [hi - lo for sp in parts if sp is not None for lo, hi in [sp]]
    return max(gaps) if gaps else None


def equal_opportunity_gap(
    y_true: Any, y_pred: Any, *, sensitive_features: Any, min_group_size: int = 1
) -> float | None:
    """``max_g TPR(g) − min_g TPR(g)`` (Hardt et al. 2016).

    >>> equal_opportunity_gap([1, 1, 1, 1], [1, 1, 1, 0], sensitive_features=["a", "a", "b", "b"])
    0.5
    """
    r = group_rates(y_true, y_pred, sensitive_features=sensitive_features)
    sp = _spread([r[k]["tpr"] for k in _eligible(r, min_group_size)])
    return None if sp is None else sp[1] - sp[0]


def calibration_bins(y_true: Any, y_prob: Any, bins: int = 10) -> dict[str, np.ndarray]:
    """Per-bin count ``n``, score sum ``s`` and label sum ``l`` (equal-width bins).

    >>> b = calibration_bins([1, 0, 1], [0.95, 0.05, 1.0], bins=2)
    >>> b["n"].tolist(), b["s"].tolist(), b["l"].tolist()
    ([1, 2], [0.05, 1.95], [0.0, 2.0])
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(y_prob, dtype=float)
    idx = np.minimum(np.floor(p * bins).astype(int), bins - 1)
    return {
        "n": np.bincount(idx, minlength=bins),
        "s": np.bincount(idx, weights=p, minlength=bins),
        "l": np.bincount(idx, weights=y, minlength=bins),
    }


def expected_calibration_error(y_true: Any, y_prob: Any, bins: int = 10) -> float | None:
    """``Σ_b |L_b − S_b| / N`` with equal-width bins (Naeini et al. 2015).

    >>> round(expected_calibration_error([1, 0, 1, 0], [0.9, 0.1, 0.6, 0.4], bins=10), 6)
    0.25
    >>> expected_calibration_error([], []) is None
    True
    """
    p = np.asarray(y_prob, dtype=float)
    if p.size == 0:
        return None
    b = calibration_bins(y_true, p, bins)
    return float(np.abs(b["l"] - b["s"]).sum() / p.size)


def ece_by_group(y_true: Any, y_prob: Any, *, sensitive_features: Any, bins: int = 10) -> dict[str, float | None]:
    """ECE of each group.

    >>> ece_by_group([1, 0, 1, 1], [0.9, 0.1, 0.5, 0.5], sensitive_features=["a", "a", "b", "b"])
    {'a': 0.1, 'b': 0.5}
    """
    y = np.asarray(y_true)
    p = np.asarray(y_prob, dtype=float)
    g = _labels(sensitive_features)
    out = {}
    for grp in sorted(set(g.tolist())):
        e = expected_calibration_error(y[g == grp], p[g == grp], bins)
        out[grp] = None if e is None else round(e, 12)
    return out


def _maybe_round(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(float(x), nd)


def fairness_summary(
    y_true: Any,
    y_pred: Any,
    sensitive: pd.DataFrame,
    *,
    y_prob: Any | None = None,
    min_group_size: int = 1,
    bins: int = 10,
) -> dict[str, Any]:
    """All metrics of one candidate, per protected attribute and for their intersection.

    Returns ``{"accuracy", "f1", "precision", "recall", "selection_rate", "ece",
    "attributes": {attr: {...}}, "worst": {...}}`` where ``worst`` holds the minimum DP
    ratio, the maximum EO / EOp gaps and the maximum group ECE over the single
    attributes (the intersection is reported separately under ``"intersectional"``).

    >>> s = pd.DataFrame({"sex": ["F", "F", "M", "M"]})
    >>> out = fairness_summary([1, 0, 1, 0], [1, 0, 1, 1], s)
    >>> out["accuracy"], out["attributes"]["sex"]["dp_ratio"], out["worst"]["eo_gap"]
    (0.75, 0.5, 1.0)
    """
    yt = np.asarray(y_true).astype(int)
    yp = np.asarray(y_pred).astype(int)
    tp = int(((yp == 1) & (yt == 1)).sum())
    precision = _rate(tp, (yp == 1).sum())
    recall = _rate(tp, (yt == 1).sum())
    f1 = _rate(2 * tp, (yp == 1).sum() + (yt == 1).sum())
    out: dict[str, Any] = {
        "n": int(yt.size),
        "accuracy": _maybe_round(_rate((yt == yp).sum(), yt.size)),
        "precision": _maybe_round(precision),
        "recall": _maybe_round(recall),
        "f1": _maybe_round(f1),
        "selection_rate": _maybe_round(_rate(yp.sum(), yp.size)),
        "ece": None if y_prob is None else _maybe_round(expected_calibration_error(yt, y_prob, bins)),
        "attributes": {},
    }
    attrs = list(sensitive.columns)
    views: list[tuple[str, Any]] = [(a, sensitive[a]) for a in attrs]
    if len(attrs) > 1:
        views.append((",".join(sorted(attrs)), sensitive))
    for name, feat in views:
        rates = group_rates(yt, yp, sensitive_features=feat)
        kw = {"sensitive_features": feat, "min_group_size": min_group_size}
        eligible = _eligible(rates, min_group_size)
        sr = {k: rates[k]["selection_rate"] for k in eligible}
        ref = max(sr, key=lambda k: sr[k]) if len(sr) >= 2 else None  # one group: no comparison, no DI
        entry = {
            "dp_ratio": _maybe_round(demographic_parity_ratio(yp, **kw)),
            "dp_difference": _maybe_round(demographic_parity_difference(yp, **kw)),
            "eo_gap": _maybe_round(equalized_odds_gap(yt, yp, **kw)),
            "eop_gap": _maybe_round(equal_opportunity_gap(yt, yp, **kw)),
            "reference_group": ref,
            "insufficient_groups": sorted(set(rates) - set(eligible)),
            "groups": {
                k: {
                    **{m: (v if m.startswith("n") else _maybe_round(v)) for m, v in r.items()},
                    "disparate_impact": _maybe_round(_rate(r["selection_rate"], sr[ref]) if ref and sr[ref] else None),
                }
                for k, r in rates.items()
            },
        }
        if y_prob is not None:
            eces = ece_by_group(yt, y_prob, sensitive_features=feat, bins=bins)
            for k, e in eces.items():
                entry["groups"][k]["ece"] = _maybe_round(e)
            elig_ece = [eces[k] for k in eligible if eces[k] is not None]
            entry["max_group_ece"] = _maybe_round(max(elig_ece)) if elig_ece else None
        out["attributes"][name] = entry
    single = [out["attributes"][a] for a in attrs]

    def _agg(key: str, fn: Any) -> float | None:
        vals = [e[key] for e in single if e.get(key) is not None]
        return fn(vals) if vals else None

    out["worst"] = {
        "dp_ratio": _agg("dp_ratio", min),
        "dp_difference": _agg("dp_difference", max),
        "eo_gap": _agg("eo_gap", max),
        "eop_gap": _agg("eop_gap", max),
        "max_group_ece": _agg("max_group_ece", max),
        "min_disparate_impact": _agg_di(single),
    }
    return out


def _agg_di(entries: list[dict[str, Any]]) -> float | None:
    vals = [
        g["disparate_impact"]
        for e in entries
        for k, g in e["groups"].items()
        if k not in e["insufficient_groups"] and g["disparate_impact"] is not None
    ]
    return min(vals) if vals else None
