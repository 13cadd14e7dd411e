"""Threshold optimization equals fairlearn; group calibration lowers every group's ECE."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.postprocessing import ThresholdOptimizer
from fairwatch.intervention.metrics import ece_by_group, equal_opportunity_gap
from fairwatch.intervention.models import TabularModel
from fairwatch.intervention.postprocess import (
    GroupCalibrator,
    effective_thresholds,
    make_threshold_optimizer,
    threshold_sanity,
)
from fairwatch.intervention.preprocess import reweighing_weights
from sklearn.linear_model import LogisticRegression


@pytest.fixture(scope="module")
def model(adult_split, adult_features):
    est = LogisticRegression(max_iter=2000).fit(adult_split["x_train"], adult_split["train"]["income"])
    return TabularModel(adult_split["encoder"], est, adult_features)


@pytest.mark.parametrize(
    "constraint,fl_name",
    [
        ("equal_opportunity", "true_positive_rate_parity"),
        ("equalized_odds", "equalized_odds"),
        ("demographic_parity", "demographic_parity"),
    ],
)
def test_threshold_optimizer_equals_fairlearn_direct(adult_split, model, constraint, fl_name):
    va, te = adult_split["validation"], adult_split["test"]
    ours = make_threshold_optimizer(model, constraint).fit(va, va["income"], sensitive_features=va["sex"])
    direct = ThresholdOptimizer(
        estimator=model, constraints=fl_name, objective="accuracy_score", prefit=True, predict_method="predict_proba"
    ).fit(va, va["income"], sensitive_features=va["sex"])
    a = ours.predict(te, sensitive_features=te["sex"], random_state=11)
    b = direct.predict(te, sensitive_features=te["sex"], random_state=11)
    assert np.array_equal(a, b)
    thr = effective_thresholds(ours)
    assert set(thr) == {"Female", "Male"}
    if constraint == "equal_opportunity":  # on the data it was fitted on, TPRs are equalized
        fitted = ours.predict(va, sensitive_features=va["sex"], random_state=11)
        assert equal_opportunity_gap(va["income"], fitted, sensitive_features=va["sex"]) < 0.03


def test_group_calibration_lowers_every_groups_ece_on_held_out_data(adult_split, adult_features):
    tr, va, te = adult_split["train"], adult_split["validation"], adult_split["test"]
    # A reweighed model is miscalibrated by group by construction (weights shift base rates).
    w = reweighing_weights(tr, protected=["sex"], outcome="income")
    est = LogisticRegression(max_iter=2000).fit(adult_split["x_train"], tr["income"], sample_weight=w)
    model = TabularModel(adult_split["encoder"], est, adult_features)
    p_val, p_test = model.score_favorable(va), model.score_favorable(te)
    before = ece_by_group(te["income"], p_test, sensitive_features=te["sex"])
    for method in ("platt", "isotonic"):
        cal = GroupCalibrator(method).fit(p_val, va["income"], sensitive_features=va["sex"])
        after = ece_by_group(
            te["income"], cal.transform(p_test, sensitive_features=te["sex"]), sensitive_features=te["sex"]
        )
        for g in before:
            assert after[g] < before[g], (method, g, before[g], after[g])


def test_threshold_sanity_checks():
    ok = threshold_sanity({"a": {"threshold": 0.52}, "b": {"threshold": 0.41}})
    assert ok["in_range"] and ok["spread_ok"]
    low = threshold_sanity({"a": {"threshold": 0.25}, "b": {"threshold": 0.31}})
    assert not low["in_range"] and low["out_of_range"] == ["a"]
    wide = threshold_sanity({"a": {"threshold": 0.35}, "b": {"threshold": 0.69}})
    assert wide["in_range"] and not wide["spread_ok"]
    assert threshold_sanity({"a": {"threshold": None}})["in_range"] is False
