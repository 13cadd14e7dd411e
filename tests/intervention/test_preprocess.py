"""Reweighing and the disparate impact remover on the Adult sample."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from fairwatch.intervention.errors import PipelineInputError
from fairwatch.intervention.preprocess import DisparateImpactRemover, ks_integrity, reweighing_weights
from scipy.stats import ks_2samp

NUMERIC = ["age", "education_num", "hours_per_week", "capital_gain", "fnlwgt"]


@pytest.mark.parametrize("protected", [["race"], ["sex"], ["race", "sex"]])
def test_reweighing_weights_are_exactly_pg_py_over_pgy(adult, protected):
    w = reweighing_weights(adult, protected=protected, outcome="income")
    g = adult[protected].astype(str).agg("|".join, axis=1)
    y = adult["income"]
    n = len(adult)
    ng, ny, ngy = g.value_counts(), y.value_counts(), (g + "#" + y.astype(str)).value_counts()
    for i in np.random.default_rng(0).choice(n, 400, replace=False):
        exact = Fraction(int(ng[g[i]]), n) * Fraction(int(ny[y[i]]), n) / Fraction(int(ngy[g[i] + "#" + str(y[i])]), n)
        assert w[i] == float(exact)  # correctly rounded, not approximately
    # weighted, the label is independent of the group and the total weight is n
    assert w.sum() == pytest.approx(n)
    wy = pd.Series(w * y.to_numpy()).groupby(g.to_numpy()).sum() / pd.Series(w).groupby(g.to_numpy()).sum()
    assert np.allclose(wy.to_numpy(), y.mean())


@pytest.mark.parametrize("attr", ["sex", "race"])
def test_full_repair_makes_group_distributions_identical_in_rank(adult, attr):
    rep = DisparateImpactRemover([attr], NUMERIC, repair_level=1.0).fit_transform(adult)
    groups = adult[attr].value_counts()
    groups = groups[groups >= 50].index.tolist()
    for f in NUMERIC:
        before_max = 0.0
        for i, a in enumerate(groups):
            for b in groups[i + 1 :]:
                xa, xb = rep.loc[adult[attr] == a, f], rep.loc[adult[attr] == b, f]
                stat = ks_2samp(xa, xb).statistic
                # identical quantile function on two rank grids: KS ≤ 1/n_a + 1/n_b
                assert stat <= 1 / len(xa) + 1 / len(xb) + 1e-12, (f, a, b, stat)
                before_max = max(
                    before_max, ks_2samp(adult.loc[adult[attr] == a, f], adult.loc[adult[attr] == b, f]).statistic
                )
        if f in ("age", "hours_per_week"):
            assert before_max > 0.05  # there was something to repair


def test_zero_repair_leaves_data_unchanged(adult):
    rep = DisparateImpactRemover(["race"], NUMERIC, repair_level=0.0).fit_transform(adult)
    for f in NUMERIC:
        assert np.array_equal(rep[f].to_numpy(dtype=float), adult[f].to_numpy(dtype=float))
    assert rep.drop(columns=NUMERIC).equals(adult.drop(columns=NUMERIC))


def test_partial_repair_interpolates_and_transform_is_consistent(adult):
    full = DisparateImpactRemover(["sex"], ["age"], repair_level=1.0).fit_transform(adult)
    half = DisparateImpactRemover(["sex"], ["age"], repair_level=0.5).fit_transform(adult)
    assert np.allclose(half["age"], 0.5 * adult["age"] + 0.5 * full["age"])
    rem = DisparateImpactRemover(["sex"], ["age"], repair_level=1.0).fit(adult)
    unseen = rem.transform(adult.head(500))
    by_sex = unseen.groupby("sex")["age"].median()
    assert abs(by_sex["Male"] - by_sex["Female"]) <= 2.0  # medians aligned on unseen rows too


def test_ks_integrity_reports_repaired_feature(adult):
    rep = DisparateImpactRemover(["sex"], ["hours_per_week"], repair_level=1.0).fit_transform(adult)
    r = ks_integrity(adult, rep, ["hours_per_week", "age", "workclass"])
    assert r["age"]["p_value"] == 1.0 and r["age"]["ks_statistic"] == 0.0
    assert r["hours_per_week"]["ks_statistic"] > 0
    assert r["workclass"]["kind"] == "categorical" and r["workclass"]["tv_distance"] == 0.0


def test_remover_input_errors(adult):
    with pytest.raises(PipelineInputError, match=r"--repair-level: 1.5 is outside the valid range 0.0..1.0"):
        DisparateImpactRemover(["sex"], ["age"], repair_level=1.5).fit(adult)
    with pytest.raises(PipelineInputError, match=r"--features: column 'agee' is not in the data"):
        DisparateImpactRemover(["sex"], ["agee"]).fit(adult)
    with pytest.raises(PipelineInputError, match=r"--features: 'workclass' is not numeric"):
        DisparateImpactRemover(["sex"], ["workclass"]).fit(adult)
