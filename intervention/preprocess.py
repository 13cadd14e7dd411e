"""Pre-processing: disparate impact removal, reweighing, and the data-integrity check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import PipelineInputError, check_columns, check_range
from .metrics import intersection

__all__ = [
    "DisparateImpactRemover",
    "reweighing_weights",
    "ks_integrity",
    "weighted_ks_2samp",
    "outlier_rate",
]

NOT_NUMERIC = "--features: {value!r} is not numeric; the disparate impact remover repairs numeric features only"


def _groups(df: pd.DataFrame, protected: Sequence[str]) -> np.ndarray:
    if len(protected) == 1:
        s = df[protected[0]]
        return s.astype(object).where(s.notna(), "__missing__").astype(str).to_numpy(dtype=object)
    return intersection(df, protected).to_numpy(dtype=object)


class DisparateImpactRemover:
    """Feldman et al. (2015) rank-preserving repair of numeric features.

    For each feature and group ``g`` the value ``x`` at within-group rank quantile
    ``u = (r + ½) / n_g`` (ordinal rank ``r``, ties broken by a seeded random order) is
    moved toward the *median distribution* ``Q̃(u) = median_g Q_g(u)``::

        x' = (1 − λ)·x + λ·Q̃(u)              λ = repair_level ∈ [0, 1]

    At ``λ = 0`` the data is unchanged; at ``λ = 1`` every group's repaired values are
    ``Q̃`` evaluated on its own uniform rank grid, so the per-group distributions are
    identical up to grid resolution (two-sample KS ≤ 1/n_a + 1/n_b). Unseen rows
    (``transform``) use the mid-rank of ``x`` in the group's training sample.

    >>> df = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 4, "x": [1, 2, 3, 4, 11, 12, 13, 14]})
    >>> DisparateImpactRemover(["g"], ["x"], repair_level=1.0).fit_transform(df)["x"].tolist()
    [6.0, 7.0, 8.0, 9.0, 6.0, 7.0, 8.0, 9.0]
    >>> DisparateImpactRemover(["g"], ["x"], repair_level=0.5).fit_transform(df)["x"].tolist()
    [3.5, 4.5, 5.5, 6.5, 8.5, 9.5, 10.5, 11.5]
    """

    def __init__(
        self,
        protected: Sequence[str],
        features: Sequence[str],
        *,
        repair_level: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.protected = list(protected)
        self.features = list(features)
        self.repair_level = repair_level
        self.random_state = random_state

    def _validate(self, df: pd.DataFrame) -> None:
        check_range("--repair-level", float(self.repair_level), 0.0, 1.0)
        check_columns("--protected", self.protected, df.columns)
        check_columns("--features", self.features, df.columns)
        for f in self.features:
            if not pd.api.types.is_numeric_dtype(df[f]):
                raise PipelineInputError(NOT_NUMERIC.format(value=f), field="--features")
        if not self.features:
            raise PipelineInputError("--features: no feature to repair was given", field="--features")

    def fit(self, df: pd.DataFrame) -> DisparateImpactRemover:
        self._validate(df)
        g = _groups(df, self.protected)
        self.groups_ = sorted(set(g.tolist()))
        self.sorted_ = {
            f: {grp: np.sort(df[f].to_numpy(dtype=float)[g == grp]) for grp in self.groups_} for f in self.features
        }
        return self

    def _median_quantile(self, f: str, u: np.ndarray) -> np.ndarray:
        qs = []
        for grp in self.groups_:
            vals = self.sorted_[f][grp]
            idx = np.minimum((u * len(vals)).astype(int), len(vals) - 1)
            qs.append(vals[idx])
        return np.median(np.vstack(qs), axis=0)

    def fit_transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Fit, then repair the training rows using their ordinal within-group ranks."""
        self.fit(df)
        g = _groups(df, self.protected)
        rng = np.random.default_rng(self.random_state)
        out = df.copy()
        lam = float(self.repair_level)
        for f in self.features:
            x = df[f].to_numpy(dtype=float)
            new = x.copy()
            for grp in self.groups_:
                m = np.flatnonzero(g == grp)
                order = np.lexsort((rng.random(m.size), x[m]))  # ties: random, seeded
                ranks = np.empty(m.size)
                ranks[order] = np.arange(m.size)
                u = (ranks + 0.5) / m.size
                new[m] = (1 - lam) * x[m] + lam * self._median_quantile(f, u)
            out[f] = new
        return out

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Repair unseen rows; a group not seen in training is left unchanged."""
        g = _groups(df, self.protected)
        out = df.copy()
        lam = float(self.repair_level)
        for f in self.features:
            x = df[f].to_numpy(dtype=float)
            new = x.copy()
            for grp in self.groups_:
                m = g == grp
                if not m.any():
                    continue
                vals = self.sorted_[f][grp]
                lo = np.searchsorted(vals, x[m], side="left")
                hi = np.searchsorted(vals, x[m], side="right")
                u = np.clip((lo + hi) / 2 / len(vals), 0.0, 1.0 - 1e-12)
                new[m] = (1 - lam) * x[m] + lam * self._median_quantile(f, u)
            out[f] = new
        return out


def reweighing_weights(df: pd.DataFrame, *, protected: Sequence[str], outcome: str) -> np.ndarray:
    """Kamiran & Calders (2012) instance weights ``w(g, y) = P(g)·P(y) / P(g, y)``.

    Computed from counts as ``n_g·n_y / (n·n_gy)`` in one division, so each weight is
    the correctly rounded value of the exact fraction. Weighted, the label is
    independent of the group and the total weight equals ``n``.

    >>> df = pd.DataFrame({"g": ["a", "a", "a", "b"], "y": [1, 1, 0, 0]})
    >>> reweighing_weights(df, protected=["g"], outcome="y").tolist()
    [0.75, 0.75, 1.5, 0.5]
    """
    check_columns("--protected", protected, df.columns)
    check_columns("--outcome", [outcome], df.columns)
    g = pd.Series(_groups(df, protected), index=df.index)
    y = df[outcome].astype(str)
    n = len(df)
    n_g = g.map(g.value_counts()).to_numpy(dtype=np.int64)
    n_y = y.map(y.value_counts()).to_numpy(dtype=np.int64)
    key = g + "\x00" + y
    n_gy = key.map(key.value_counts()).to_numpy(dtype=np.int64)
    return (n_g * n_y) / (np.int64(n) * n_gy)


def weighted_ks_2samp(
    x: np.ndarray, y: np.ndarray, wx: np.ndarray | None = None, wy: np.ndarray | None = None
) -> tuple[float, float]:
    """Two-sample KS statistic between weighted empirical CDFs, p from Kish's effective n.

    Unweighted, it is :func:`scipy.stats.ks_2samp`'s asymptotic test.

    >>> stat, p = weighted_ks_2samp(np.arange(10.0), np.arange(10.0))
    >>> stat, round(p, 6)
    (0.0, 1.0)
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    wx = np.ones_like(x) if wx is None else np.asarray(wx, dtype=float)
    wy = np.ones_like(y) if wy is None else np.asarray(wy, dtype=float)
    grid = np.union1d(x, y)

    def cdf(v: np.ndarray, w: np.ndarray) -> np.ndarray:
        o = np.argsort(v, kind="stable")
        cw = np.concatenate([[0.0], np.cumsum(w[o])]) / w.sum()
        return cw[np.searchsorted(v[o], grid, side="right")]

    stat = float(np.max(np.abs(cdf(x, wx) - cdf(y, wy)))) if grid.size else 0.0
    nx = wx.sum() ** 2 / (wx**2).sum()
    ny = wy.sum() ** 2 / (wy**2).sum()
    en = nx * ny / (nx + ny)
    p = float(stats.kstwobign.sf(stat * np.sqrt(en))) if stat > 0 else 1.0
    return stat, min(max(p, 0.0), 1.0)


def outlier_rate(x: np.ndarray, reference: np.ndarray | None = None) -> float:
    """Share of values outside the Tukey fences (1.5·IQR) of ``reference`` (default ``x``).

    >>> outlier_rate(np.array([1.0, 2, 3, 4, 100]))
    0.2
    """
    x = np.asarray(x, dtype=float)
    ref = x if reference is None else np.asarray(reference, dtype=float)
    q1, q3 = np.percentile(ref, [25, 75])
    iqr = q3 - q1
    return float(((x < q1 - 1.5 * iqr) | (x > q3 + 1.5 * iqr)).mean())


def ks_integrity(
    original: pd.DataFrame,
    transformed: pd.DataFrame,
    features: Sequence[str],
    *,
    weights: np.ndarray | None = None,
    repaired: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """KS test, new missing values and outlier rate for each numeric non-protected feature.

    ``weights`` are the transformed rows' instance weights (reweighing); categorical
    features are compared by their category shares (total-variation distance, with a
    chi-square-free p of 1.0 when unchanged). Features in ``repaired`` are the ones the
    intervention changes on purpose: their entry carries ``"repaired": True`` and the
    pre-processing gate reports their change instead of treating it as corruption (the
    playbook's check is on the features *other than* those being repaired).
    """
    out: dict[str, dict[str, Any]] = {}
    for f in features:
        a, b = original[f], transformed[f]
        new_missing = int(b.isna().sum() - a.isna().sum())
        if pd.api.types.is_numeric_dtype(a):
            av, bv = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            ok_a, ok_b = ~np.isnan(av), ~np.isnan(bv)
            if weights is None:
                if np.array_equal(av[ok_a], bv[ok_b]):
                    stat, p = 0.0, 1.0
                else:
                    r = stats.ks_2samp(av[ok_a], bv[ok_b])
                    stat, p = float(r.statistic), float(r.pvalue)
            else:
                stat, p = weighted_ks_2samp(av[ok_a], bv[ok_b], None, weights[ok_b])
            out[f] = {
                "kind": "numeric",
                "ks_statistic": round(stat, 6),
                "p_value": round(p, 6),
                "new_missing": new_missing,
                "outlier_rate_before": round(outlier_rate(av[ok_a]), 6),
                "outlier_rate_after": round(outlier_rate(bv[ok_b], av[ok_a]), 6),
                "repaired": f in repaired,
            }
        else:
            w = np.ones(len(b)) if weights is None else weights
            pa = a.astype(str).value_counts(normalize=True)
            pb = pd.Series(w, index=b.index).groupby(b.astype(str)).sum() / w.sum()
            tv = float(0.5 * pa.subtract(pb, fill_value=0).abs().sum())
            out[f] = {"kind": "categorical", "tv_distance": round(tv, 6), "new_missing": new_missing,
                      "repaired": f in repaired}  # fmt: skip
    return out
