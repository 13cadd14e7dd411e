"""Oracle tests: our metric functions equal fairlearn's on the Adult sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    selection_rate,
)
from fairwatch.intervention import metrics as m


@pytest.fixture(scope="module")
def preds(adult):
    rng = np.random.default_rng(7)
    score = np.clip(0.2 + 0.5 * adult["income"].to_numpy() + rng.normal(0, 0.25, len(adult)), 0, 1)
    return adult["income"].to_numpy(), (score > 0.5).astype(int), score


@pytest.mark.parametrize("attr", ["race", "sex"])
def test_group_metrics_equal_fairlearn(adult, preds, attr):
    y, yp, _ = preds
    s = adult[attr]
    assert m.demographic_parity_ratio(yp, sensitive_features=s) == pytest.approx(
        demographic_parity_ratio(y, yp, sensitive_features=s), abs=1e-12
    )
    assert m.demographic_parity_difference(yp, sensitive_features=s) == pytest.approx(
        demographic_parity_difference(y, yp, sensitive_features=s), abs=1e-12
    )
    assert m.equalized_odds_gap(y, yp, sensitive_features=s) == pytest.approx(
        equalized_odds_difference(y, yp, sensitive_features=s), abs=1e-12
    )
    frame = MetricFrame(metrics=selection_rate, y_true=y, y_pred=yp, sensitive_features=s)
    ours = m.selection_rate_by_group(yp, sensitive_features=s)
    assert ours == pytest.approx(frame.by_group.to_dict(), abs=1e-12)


def test_ece_matches_bin_definition(preds):
    y, _, p = preds
    idx = np.minimum(np.floor(p * 10).astype(int), 9)
    expected = sum(abs(y[idx == b].sum() - p[idx == b].sum()) for b in range(10)) / len(y)
    assert m.expected_calibration_error(y, p) == pytest.approx(expected, abs=1e-12)


def test_min_group_size_excludes_small_groups(adult, preds):
    y, yp, _ = preds
    small = adult["race"].value_counts().idxmin()
    keep = adult["race"] != small
    full = m.demographic_parity_ratio(yp[keep.to_numpy()], sensitive_features=adult["race"][keep])
    n_small = int((~keep).sum())
    assert m.demographic_parity_ratio(yp, sensitive_features=adult["race"], min_group_size=n_small + 1) == full


def test_empty_denominator_is_none():
    r = m.group_rates([0, 0], [1, 0], sensitive_features=["a", "a"])
    assert r["a"]["tpr"] is None and r["a"]["fpr"] == 0.5


def test_one_eligible_group_is_no_comparison():
    """With one group of at least ``min_group_size`` rows the others are left out, and there is
    nothing left to compare: every ratio, gap, disparate impact and intersectional summary is
    ``None`` (read as "cannot be assessed", a failed gate), not the 1.0 / 0.0 of perfect parity."""
    from fairwatch.intervention.evaluation import intersectional_report

    rng = np.random.default_rng(3)
    sex = np.array(["M"] * 200 + ["F"] * 12)
    y, yp = rng.integers(0, 2, 212), np.r_[rng.integers(0, 2, 200), np.zeros(12, int)]
    kw = {"sensitive_features": sex, "min_group_size": 30}
    assert m.demographic_parity_ratio(yp, **kw) is None
    assert m.demographic_parity_difference(yp, **kw) is None
    assert m.equalized_odds_gap(y, yp, **kw) is None
    assert m.equal_opportunity_gap(y, yp, **kw) is None
    s = m.fairness_summary(y, yp, pd.DataFrame({"sex": sex}), min_group_size=30)
    entry = s["attributes"]["sex"]
    assert entry["dp_ratio"] is None and entry["reference_group"] is None
    assert entry["insufficient_groups"] == ["F"] and s["worst"]["min_disparate_impact"] is None
    inter = intersectional_report(y, yp, pd.DataFrame({"sex": sex}), min_group_size=30)
    assert inter["min_dp_ratio"] is None and inter["worst_accuracy_deviation"] is None
    assert inter["worst_outcome_ratio"] is None and inter["groups"]["F"]["eligible"] is False
    # two eligible groups: compared as before (F selected 0 times: ratio 0)
    s2 = m.fairness_summary(y, yp, pd.DataFrame({"sex": sex}), min_group_size=10)["attributes"]["sex"]
    assert s2["dp_ratio"] == 0.0 and s2["reference_group"] == "M"
