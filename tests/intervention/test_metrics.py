"""Oracle tests: our metric functions equal fairlearn's on the Adult sample."""

from __future__ import annotations

import numpy as np
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
