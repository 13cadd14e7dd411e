"""Model wrappers shared by the stages: encoder + estimator behind one DataFrame API."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from .errors import check_choice

__all__ = [
    "BASE_ESTIMATORS",
    "BaseEstimatorName",
    "make_base_estimator",
    "TabularModel",
    "RepairedModel",
    "CalibratedModel",
    "ThresholdedModel",
    "fit_quietly",
]

BaseEstimatorName = Literal["logistic_regression", "gradient_boosting", "random_forest"]
BASE_ESTIMATORS: tuple[str, ...] = ("logistic_regression", "gradient_boosting", "random_forest")


def make_base_estimator(name: str, *, random_state: int = 0) -> BaseEstimator:
    """A fresh scikit-learn classifier by playbook name.

    >>> type(make_base_estimator("random_forest")).__name__
    'RandomForestClassifier'
    """
    check_choice("--base-estimator", name, BASE_ESTIMATORS)
    if name == "logistic_regression":
        return LogisticRegression(max_iter=2000)
    if name == "gradient_boosting":
        return HistGradientBoostingClassifier(max_iter=100, random_state=random_state)
    return RandomForestClassifier(n_estimators=100, min_samples_leaf=5, n_jobs=1, random_state=random_state)


def fit_quietly(fit: Any, *args: Any, **kwargs: Any) -> list[str]:
    """Call ``fit`` and return the convergence warnings it raised (as messages).

    Convergence is a gate criterion, so the warning is recorded, not ignored.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit(*args, **kwargs)
    other = [w for w in caught if not issubclass(w.category, ConvergenceWarning)]
    for w in other:  # re-emit anything we did not expect, so it is not swallowed
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


class _Prefit:
    """Marks a wrapper as already fitted (for fairlearn's ``prefit=True`` checks)."""

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{type(self).__name__} wraps fitted parts; it is not refitted")


class TabularModel(_Prefit, ClassifierMixin, BaseEstimator):
    """A fitted encoder + classifier taking the raw DataFrame (protected columns unused).

    ``predict_proba`` returns P(favorable); ``predict`` thresholds at 0.5 unless the
    estimator has its own (randomized) ``predict``, e.g. a reductions model.
    """

    def __init__(
        self,
        encoder: ColumnTransformer,
        estimator: Any,
        features: Sequence[str],
        *,
        name: str = "model",
        random_state: int = 0,
    ) -> None:
        self.encoder = encoder
        self.estimator = estimator
        self.features = list(features)
        self.name = name
        self.random_state = random_state
        self.classes_ = np.array([0, 1])

    def _x(self, df: pd.DataFrame) -> np.ndarray:
        return self.encoder.transform(df[self.features])

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        x = self._x(df)
        if hasattr(self.estimator, "_pmf_predict"):
            return self.estimator._pmf_predict(x)
        return self.estimator.predict_proba(x)

    def score_favorable(self, df: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(df)[:, 1]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        x = self._x(df)
        if hasattr(self.estimator, "_pmf_predict"):
            return np.asarray(self.estimator.predict(x, random_state=self.random_state)).astype(int)
        return (self.estimator.predict_proba(x)[:, 1] >= 0.5).astype(int)


class RepairedModel(_Prefit, ClassifierMixin, BaseEstimator):
    """A model trained on repaired data: rows are repaired before scoring."""

    def __init__(self, remover: Any, model: TabularModel) -> None:
        self.remover = remover
        self.model = model
        self.classes_ = np.array([0, 1])

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self.remover.transform(df))

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return self.model.predict(self.remover.transform(df))


class CalibratedModel(_Prefit, ClassifierMixin, BaseEstimator):
    """A model whose scores pass through a group calibrator (group read from ``attribute``)."""

    def __init__(self, model: Any, calibrator: Any, attribute: str) -> None:
        self.model = model
        self.calibrator = calibrator
        self.attribute = attribute
        self.classes_ = np.array([0, 1])

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        p = self.model.predict_proba(df)[:, 1]
        q = self.calibrator.transform(p, sensitive_features=df[self.attribute].to_numpy())
        return np.c_[1 - q, q]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(df)[:, 1] >= 0.5).astype(int)


class ThresholdedModel(_Prefit, ClassifierMixin, BaseEstimator):
    """A fitted fairlearn ThresholdOptimizer behind the DataFrame API (group from ``attribute``)."""

    def __init__(self, optimizer: Any, attribute: str, *, random_state: int = 0) -> None:
        self.optimizer = optimizer
        self.attribute = attribute
        self.random_state = random_state
        self.classes_ = np.array([0, 1])

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Calibrated scores of the underlying model (thresholds change decisions only)."""
        return self.optimizer.estimator_.predict_proba(df)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return np.asarray(
            self.optimizer.predict(
                df, sensitive_features=df[self.attribute].to_numpy(), random_state=self.random_state
            )  # fmt: skip
        ).astype(int)
