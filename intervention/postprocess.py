"""Post-processing: group-specific calibration and fair threshold optimization."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from scipy.special import logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from .errors import check_choice
from .inprocess import normalize_constraint
from .metrics import _labels

__all__ = [
    "CALIBRATION_METHODS",
    "GroupCalibrator",
    "make_threshold_optimizer",
    "effective_thresholds",
    "threshold_sanity",
]

CalibrationMethod = Literal["platt", "isotonic"]
CALIBRATION_METHODS: tuple[str, ...] = ("platt", "isotonic")
_TO_CONSTRAINTS = {
    "demographic_parity": "demographic_parity",
    "equalized_odds": "equalized_odds",
    "equal_opportunity": "true_positive_rate_parity",
}
_EPS = 1e-6


class GroupCalibrator:
    """Group-specific calibration of scores (Pleiss et al. 2017): one map per group.

    ``platt``: logistic regression on ``logit(p)`` (Platt 1999); ``isotonic``:
    isotonic regression clipped to [0, 1] (Zadrozny & Elkan 2002). Groups unseen at
    fit time, or with a single label, keep their scores.

    >>> p = np.array([0.2, 0.4, 0.6, 0.8] * 25); g = np.array(["a"] * 100)
    >>> y = np.array([0, 0, 1, 1] * 25)
    >>> cal = GroupCalibrator("isotonic").fit(p, y, sensitive_features=g)
    >>> cal.transform(np.array([0.2, 0.8]), sensitive_features=np.array(["a", "a"])).tolist()
    [0.0, 1.0]
    """

    def __init__(self, method: str = "platt") -> None:
        check_choice("calibration method", method, CALIBRATION_METHODS)
        self.method = method

    def fit(self, scores: Any, y: Any, *, sensitive_features: Any) -> GroupCalibrator:
        p = np.clip(np.asarray(scores, dtype=float), _EPS, 1 - _EPS)
        y = np.asarray(y).astype(int)
        g = _labels(sensitive_features)
        self.maps_: dict[str, Any] = {}
        for grp in sorted(set(g.tolist())):
            m = g == grp
            if len(set(y[m].tolist())) < 2:
                continue
            if self.method == "platt":
                self.maps_[grp] = LogisticRegression(C=1e6).fit(logit(p[m])[:, None], y[m])
            else:
                self.maps_[grp] = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p[m], y[m])
        return self

    def transform(self, scores: Any, *, sensitive_features: Any) -> np.ndarray:
        p = np.clip(np.asarray(scores, dtype=float), _EPS, 1 - _EPS)
        g = _labels(sensitive_features)
        out = np.asarray(scores, dtype=float).copy()
        for grp, mp in self.maps_.items():
            m = g == grp
            if not m.any():
                continue
            if self.method == "platt":
                out[m] = mp.predict_proba(logit(p[m])[:, None])[:, 1]
            else:
                out[m] = mp.predict(p[m])
        return out


def make_threshold_optimizer(estimator: Any, constraint: str, *, grid_size: int = 1000) -> ThresholdOptimizer:
    """Hardt et al. (2016) group thresholds via fairlearn's ThresholdOptimizer (prefit model)."""
    constraint = normalize_constraint(constraint)
    return ThresholdOptimizer(
        estimator=estimator,
        constraints=_TO_CONSTRAINTS[constraint],
        objective="accuracy_score",
        grid_size=grid_size,
        prefit=True,
        predict_method="predict_proba",
    )


def effective_thresholds(to: ThresholdOptimizer) -> dict[str, dict[str, Any]]:
    """Per group: the two randomized thresholds, their probabilities, and their mean.

    fairlearn randomizes between ``operation0`` (prob ``p0``) and ``operation1``
    (prob ``p1``); the *effective* threshold is ``p0·t0 + p1·t1``. Equalized odds may
    also mix in a constant prediction with probability ``p_ignore``.
    """
    out: dict[str, dict[str, Any]] = {}
    for grp, d in to.interpolated_thresholder_.interpolation_dict.items():
        t0, t1 = float(d["operation0"].threshold), float(d["operation1"].threshold)
        p0, p1 = float(d["p0"]), float(d["p1"])
        eff = p0 * t0 + p1 * t1 if np.isfinite(t0) and np.isfinite(t1) else None
        out[str(grp)] = {
            "threshold": None if eff is None else round(eff, 6),
            "threshold0": t0 if np.isfinite(t0) else None,
            "threshold1": t1 if np.isfinite(t1) else None,
            "p0": round(p0, 6),
            "p1": round(p1, 6),
            "p_ignore": round(float(d.get("p_ignore", 0.0)), 6),
        }
    return out


def threshold_sanity(
    thresholds: dict[str, dict[str, Any]],
    *,
    low: float = 0.3,
    high: float = 0.7,
    max_spread: float = 0.15,
) -> dict[str, Any]:
    """The playbook's sanity checks: every threshold in [low, high], spread ≤ max_spread.

    >>> threshold_sanity({"a": {"threshold": 0.52}, "b": {"threshold": 0.48}})
    {'in_range': True, 'spread': 0.04, 'spread_ok': True, 'out_of_range': []}
    >>> threshold_sanity({"a": {"threshold": 0.8}, "b": {"threshold": 0.5}})["spread_ok"]
    False
    """
    vals = {k: v["threshold"] for k, v in thresholds.items()}
    bad = sorted(k for k, t in vals.items() if t is None or not (low <= t <= high))
    finite = [t for t in vals.values() if t is not None]
    spread = round(max(finite) - min(finite), 6) if finite else None
    return {
        "in_range": not bad,
        "spread": spread,
        "spread_ok": spread is not None and spread <= max_spread,
        "out_of_range": bad,
    }


def pmf_scores(to: ThresholdOptimizer, df: pd.DataFrame, sensitive: Any) -> np.ndarray:
    """P(favorable) of the randomized threshold classifier for each row."""
    return to._pmf_predict(df, sensitive_features=sensitive)[:, 1]
