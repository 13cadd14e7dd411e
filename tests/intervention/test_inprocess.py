"""Constrained LR (Zafar) and reductions (fairlearn) on the Adult sample."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
from fairwatch.intervention.errors import PipelineInputError
from fairwatch.intervention.inprocess import FairConstrainedLogisticRegression, convergence_report, make_reductions
from fairwatch.intervention.metrics import demographic_parity_difference
from sklearn.linear_model import LogisticRegression


@pytest.mark.parametrize("constraint", ["demographic_parity", "equalized_odds"])
def test_constrained_lr_reduces_dp_gap_monotonically(adult_split, constraint):
    x, tr = adult_split["x_train"], adult_split["train"]
    gaps, accs = [], []
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):
        m = FairConstrainedLogisticRegression(constraint=constraint, constraint_weight=w)
        m.fit(x, tr["income"], sensitive_features=tr["sex"])
        assert m.converged_, m.solver_message_
        assert np.all(np.abs(m.covariance_) <= m.covariance_bound_ + 1e-6)
        pred = m.predict(x)
        gaps.append(demographic_parity_difference(pred, sensitive_features=tr["sex"]))
        accs.append(float((pred == tr["income"]).mean()))
    assert all(b < a for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[-1] < 0.75 * gaps[0]
    assert accs[0] >= accs[-1]  # fairness costs accuracy, it is not free


def test_constrained_lr_zero_weight_is_logistic_regression(adult_split):
    x, y = adult_split["x_train"], adult_split["train"]["income"]
    ours = FairConstrainedLogisticRegression(constraint_weight=0.0, C=1.0).fit(
        x, y, sensitive_features=adult_split["train"]["sex"]
    )
    ref = LogisticRegression(C=len(y) * 1.0 / len(y), max_iter=5000).fit(x, y)
    # same objective up to sklearn's scaling of C: compare decisions, not raw coefficients
    agree = (ours.predict(x) == ref.predict(x)).mean()
    assert agree > 0.995


@pytest.mark.filterwarnings(r"ignore::pandas.errors.Pandas4Warning:fairlearn\.")
def test_reductions_equal_fairlearn_direct(adult_split):
    x, tr = adult_split["x_train"], adult_split["train"]
    ours = make_reductions("logistic_regression", "demographic_parity", eps=0.02, max_iter=20)
    ours.fit(x, tr["income"], sensitive_features=tr["sex"])
    direct = ExponentiatedGradient(
        LogisticRegression(max_iter=2000), constraints=DemographicParity(difference_bound=0.02), eps=0.02, max_iter=20
    )
    direct.fit(x, tr["income"], sensitive_features=tr["sex"])
    xt = adult_split["x_test"]
    assert np.array_equal(ours.predict(xt, random_state=3), direct.predict(xt, random_state=3))
    assert np.allclose(ours._pmf_predict(xt), direct._pmf_predict(xt))
    assert np.allclose(ours.weights_.to_numpy(), direct.weights_.to_numpy())
    rep = convergence_report(ours, ours._pmf_predict(xt)[:, 1])
    assert rep["finite_outputs"] and rep["iterations"] >= 1


def test_reductions_constraint_and_estimator_names():
    eg = make_reductions("random_forest", "equalized_odds")
    assert isinstance(eg.constraints, EqualizedOdds)
    assert type(eg.estimator).__name__ == "RandomForestClassifier"
    with pytest.raises(
        PipelineInputError,
        match=r"--base-estimator: 'svm' is not one of 'logistic_regression', "
        r"'gradient_boosting', 'random_forest'",
    ):
        make_reductions("svm", "demographic_parity")
    with pytest.raises(PipelineInputError, match=r"--fairness-constraint: 'parity' is not one of"):
        make_reductions("logistic_regression", "parity")


def test_convergence_report_flags_nan():
    m = FairConstrainedLogisticRegression(constraint_weight=0.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    m.fit(x, (x[:, 0] > 0).astype(int), sensitive_features=(x[:, 1] > 0).astype(int))
    assert convergence_report(m, np.array([0.2, 0.4]))["converged"] is True
    assert convergence_report(m, np.array([0.2, np.nan]))["converged"] is False
