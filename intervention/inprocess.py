"""In-processing: fairness-constrained logistic regression and the reductions approach."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from fairlearn.reductions import (
    DemographicParity,
    EqualizedOdds,
    ExponentiatedGradient,
    TruePositiveRateParity,
)
from scipy import optimize
from scipy.special import expit, log1p
from sklearn.base import BaseEstimator, ClassifierMixin

from .errors import check_choice, check_range
from .models import make_base_estimator

__all__ = [
    "FAIRNESS_CONSTRAINTS",
    "FairnessConstraint",
    "normalize_constraint",
    "FairConstrainedLogisticRegression",
    "make_reductions",
    "ReductionsClassifier",
    "convergence_report",
]

_PANDAS4_WARNING: type[Warning] = getattr(pd.errors, "Pandas4Warning", FutureWarning)

FairnessConstraint = Literal["demographic_parity", "equalized_odds", "equal_opportunity"]
FAIRNESS_CONSTRAINTS: tuple[str, ...] = ("demographic_parity", "equalized_odds", "equal_opportunity")
_ALIASES = {"equality_of_opportunity": "equal_opportunity", "true_positive_rate_parity": "equal_opportunity"}


def normalize_constraint(name: str, *, field: str = "--fairness-constraint") -> str:
    """Canonical constraint name (playbook aliases accepted).

    >>> normalize_constraint("equality_of_opportunity")
    'equal_opportunity'
    """
    name = _ALIASES.get(name, name)
    check_choice(field, name, FAIRNESS_CONSTRAINTS)
    return name


def _indicator_matrix(sensitive: pd.DataFrame | pd.Series | np.ndarray) -> np.ndarray:
    """One column per group of each attribute, minus one per attribute (they sum to 1)."""
    df = sensitive.to_frame() if isinstance(sensitive, pd.Series) else pd.DataFrame(sensitive)
    cols = []
    for c in df.columns:
        vals = df[c].astype(str).to_numpy()
        groups = sorted(set(vals.tolist()))
        cols.extend((vals == g).astype(float) for g in groups[:-1])
    return np.column_stack(cols) if cols else np.zeros((len(df), 0))


class FairConstrainedLogisticRegression(ClassifierMixin, BaseEstimator):
    """Zafar et al. (2017) logistic regression under a decision-boundary covariance constraint.

    Minimizes the (weighted) mean log-loss + ``‖θ‖² / (2·C·n)`` subject to, for every
    group indicator ``z`` (one per group of each attribute, less one),
    ``|Cov(z, θᵀx)| ≤ (1 − constraint_weight)·|Cov(z, θ₀ᵀx)|`` where ``θ₀`` is the
    unconstrained fit. ``constraint_weight = 0`` is plain logistic regression, ``1``
    forces zero covariance. The covariance is linear in ``θ``, so the problem is
    convex (SLSQP). ``demographic_parity`` constrains all rows; ``equalized_odds``
    constrains rows with ``y = 1`` and ``y = 0`` separately (the convex
    disparate-mistreatment proxy), ``equal_opportunity`` the ``y = 1`` rows only.

    Learned: ``coef_``, ``intercept_``, ``loss_history_``, ``converged_``,
    ``covariance_bound_``, ``covariance_``.

    >>> rng = np.random.default_rng(0)
    >>> z = rng.integers(0, 2, 400); x = np.c_[z + rng.normal(0, 1, 400), rng.normal(0, 1, 400)]
    >>> y = (x[:, 0] + x[:, 1] + rng.normal(0, 1, 400) > 0.5).astype(int)
    >>> free = FairConstrainedLogisticRegression(constraint_weight=0.0).fit(x, y, sensitive_features=z)
    >>> tight = FairConstrainedLogisticRegression(constraint_weight=1.0).fit(x, y, sensitive_features=z)
    >>> gap = lambda m: abs(m.predict(x)[z == 1].mean() - m.predict(x)[z == 0].mean())
    >>> bool(gap(tight) < gap(free)), tight.converged_
    (True, True)
    """

    def __init__(
        self,
        *,
        constraint: str = "demographic_parity",
        constraint_weight: float = 0.5,
        C: float = 1.0,
        max_iter: int = 500,
        tol: float = 1e-9,
    ) -> None:
        self.constraint = constraint
        self.constraint_weight = constraint_weight
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def _loss(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ theta
        # log(1 + e^z) − y·z, numerically stable
        lse = np.where(z > 0, z + log1p(np.exp(-np.abs(z))), log1p(np.exp(-np.abs(z))))
        n = w.sum()
        reg = np.r_[0.0, theta[1:]]
        loss = float((w * (lse - y * z)).sum() / n + (reg @ reg) / (2 * self.C * n))
        grad = x.T @ (w * (expit(z) - y)) / n + reg / (self.C * n)
        return loss, grad

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        sensitive_features: Any,
        sample_weight: Any | None = None,
    ) -> FairConstrainedLogisticRegression:
        constraint = normalize_constraint(self.constraint)
        check_range("--constraint-weight", float(self.constraint_weight), 0.0, 1.0)
        x = np.c_[np.ones(len(X)), np.asarray(X, dtype=float)]
        y = np.asarray(y, dtype=float)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        zmat = _indicator_matrix(sensitive_features)
        subsets = {
            "demographic_parity": [np.ones(len(y), dtype=bool)],
            "equalized_odds": [y == 1, y == 0],
            "equal_opportunity": [y == 1],
        }[constraint]
        # Cov(z, θᵀx) = aᵀθ with a = mean((z − z̄)·x) over the constrained rows.
        rows = []
        for m in subsets:
            zc = zmat[m] - zmat[m].mean(axis=0)
            rows.append(zc.T @ x[m] / m.sum())
        a = np.vstack(rows) if rows else np.zeros((0, x.shape[1]))
        fun = lambda t: self._loss(t, x, y, w)  # noqa: E731
        free = optimize.minimize(fun, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B",
                                 options={"maxiter": self.max_iter, "gtol": 1e-7})  # fmt: skip
        theta0 = free.x
        bound = (1.0 - float(self.constraint_weight)) * np.abs(a @ theta0)
        history: list[float] = []
        if float(self.constraint_weight) == 0.0 or a.shape[0] == 0:
            res, theta = free, theta0
            history = [float(free.fun)]
            converged = bool(free.success)
        else:
            cons = [
                {"type": "ineq", "fun": lambda t: bound - a @ t, "jac": lambda t: -a},
                {"type": "ineq", "fun": lambda t: bound + a @ t, "jac": lambda t: a},
            ]
            res = optimize.minimize(
                fun, theta0, jac=True, method="SLSQP", constraints=cons,
                callback=lambda t: history.append(fun(t)[0]),
                options={"maxiter": self.max_iter, "ftol": self.tol},
            )  # fmt: skip
            theta = res.x
            converged = bool(res.success)
        self.coef_ = theta[1:].copy()
        self.intercept_ = float(theta[0])
        self.classes_ = np.array([0, 1])
        self.loss_history_ = history or [float(res.fun)]
        self.converged_ = converged and bool(np.all(np.isfinite(theta)))
        self.solver_message_ = str(res.message)
        self.covariance_bound_ = bound
        self.covariance_ = a @ theta
        self.unconstrained_covariance_ = a @ theta0
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=float) @ self.coef_ + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        p = expit(self.decision_function(X))
        return np.c_[1 - p, p]

    def predict(self, X: Any) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)


class ReductionsClassifier(ExponentiatedGradient):
    """fairlearn's ExponentiatedGradient, unchanged except for pandas-4 deprecation warnings.

    fairlearn 0.15's ``fit`` enlarges a Series with ``.at`` and upcasts a float Series
    in place, both deprecated by pandas ≥ 3 (``Pandas4Warning``) with unchanged results
    today; those warnings, when raised from fairlearn's code, are ignored here — narrowly,
    not globally.
    """

    def fit(self, X: Any, y: Any, **kwargs: Any) -> ReductionsClassifier:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=_PANDAS4_WARNING, module=r"fairlearn\.")
            super().fit(X, y, **kwargs)
        return self


def make_reductions(
    base_estimator: str,
    constraint: str,
    *,
    eps: float = 0.01,
    max_iter: int = 50,
    random_state: int = 0,
) -> ReductionsClassifier:
    """Agarwal et al. (2018) exponentiated gradient around a named scikit-learn learner."""
    constraint = normalize_constraint(constraint)
    moment = {
        "demographic_parity": DemographicParity,
        "equalized_odds": EqualizedOdds,
        "equal_opportunity": TruePositiveRateParity,
    }[constraint](difference_bound=eps)
    return ReductionsClassifier(
        make_base_estimator(base_estimator, random_state=random_state),
        constraints=moment,
        eps=eps,
        max_iter=max_iter,
    )


def convergence_report(estimator: Any, scores: np.ndarray, warnings_: Sequence[str] = ()) -> dict[str, Any]:
    """The playbook's convergence criteria: finite outputs, solver converged, loss settled.

    "Loss settled": the last 5 recorded losses change by less than 1e-4 relative (no
    oscillation).
    """
    finite = bool(np.all(np.isfinite(scores)))
    rep: dict[str, Any] = {"finite_outputs": finite, "solver_warnings": list(warnings_)}
    if isinstance(estimator, FairConstrainedLogisticRegression):
        h = np.asarray(estimator.loss_history_[-5:])
        settled = bool(h.size < 2 or np.max(np.abs(np.diff(h))) <= 1e-4 * max(1.0, abs(h[-1])))
        rep.update(
            solver_converged=estimator.converged_,
            solver_message=estimator.solver_message_,
            final_loss=round(float(estimator.loss_history_[-1]), 6),
            iterations=len(estimator.loss_history_),
            loss_settled=settled,
        )
    elif isinstance(estimator, ExponentiatedGradient):
        rep.update(
            solver_converged=not warnings_,
            best_gap=round(float(estimator.best_gap_), 6),
            iterations=int(estimator.last_iter_ + 1),
            oracle_calls=int(estimator.n_oracle_calls_),
            loss_settled=True,
        )
    else:
        rep.update(solver_converged=not warnings_, loss_settled=True)
    rep["converged"] = bool(finite and rep["solver_converged"] and rep["loss_settled"])
    return rep
