"""Fixtures of the intervention tests: the vendored Adult sample and synthetic loans."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from fairwatch.intervention.data import load_adult, make_encoder, split_data
from fairwatch.intervention.synthetic import loan_applications
from threadpoolctl import threadpool_limits

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(autouse=True, scope="session")
def _one_blas_thread():
    # The machine's 2 cores are shared: multi-threaded BLAS only contends.
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def adult() -> pd.DataFrame:
    return load_adult(DATA / "adult_sample.csv.gz")


@pytest.fixture(scope="session")
def adult_features(adult: pd.DataFrame) -> list[str]:
    return [c for c in adult.columns if c not in ("race", "sex", "income")]


@pytest.fixture(scope="session")
def adult_split(adult: pd.DataFrame, adult_features: list[str]):
    """(train, validation, test) frames and the encoded matrices."""
    s = split_data(adult, outcome="income", protected=["sex"], random_state=0)
    tr, va, te = (adult.iloc[i].reset_index(drop=True) for i in (s.train, s.validation, s.test))
    enc = make_encoder(tr, adult_features).fit(tr[adult_features])
    return {"train": tr, "validation": va, "test": te, "encoder": enc,
            "x_train": enc.transform(tr[adult_features]), "x_validation": enc.transform(va[adult_features]),
            "x_test": enc.transform(te[adult_features])}  # fmt: skip


@pytest.fixture(scope="session")
def loans() -> pd.DataFrame:
    return loan_applications(6000, seed=0)
