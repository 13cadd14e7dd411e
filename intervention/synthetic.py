"""Seeded synthetic loan-approval data: the playbook's walkthrough, runnable offline.

The generating process follows the walkthrough's causal story: ``race → zip_code``
(residential segregation, so ``zip_code`` is a proxy), ``race → education``,
``sex → employment_history``, ``education, employment_history, zip_code → income →
credit_score → approved``, plus a direct historical penalty on the credit score of
some groups (the "biased mediator"). ``repaid`` is the favorable true outcome and
does not carry that penalty; ``approved`` is the historical decision that does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

__all__ = [
    "RACES",
    "SEXES",
    "LOAN_EXPERT_KNOWLEDGE",
    "loan_applications",
    "loan_decisions",
]

RACES = ("White", "Black", "Hispanic", "Asian")
SEXES = ("Male", "Female")
_RACE_P = (0.55, 0.2, 0.15, 0.10)
_CREDIT_PENALTY = {"White": 0.0, "Black": 12.0, "Hispanic": 6.0, "Asian": 0.0}

LOAN_EXPERT_KNOWLEDGE: dict[str, object] = {
    "description": "Causal assumptions of the loan-approval walkthrough.",
    "approved": True,
    "edges": [
        ["race", "zip_code"],
        ["race", "education"],
        ["race", "credit_score"],
        ["sex", "employment_history"],
        ["zip_code", "income"],
        ["education", "income"],
        ["employment_history", "income"],
        ["income", "credit_score"],
        ["credit_score", "approved"],
        ["income", "approved"],
        ["employment_history", "approved"],
    ],  # fmt: skip
    "proxies": ["zip_code"],
    "resolving": ["employment_history"],
    "biased_mediators": ["credit_score"],
}


def _applicants(rng: np.random.Generator, n: int, credit_shift: dict[str, float]) -> pd.DataFrame:
    race = rng.choice(np.array(RACES), size=n, p=_RACE_P)
    sex = rng.choice(np.array(SEXES), size=n)
    sorted_races = sorted(RACES)
    # Segregation: 70 % live in one of the 3 zip codes of their group's cluster.
    own = rng.random(n) < 0.7
    cluster = np.array([sorted_races.index(r) for r in race])
    zip_idx = np.where(own, cluster * 3 + rng.integers(0, 3, n), rng.integers(0, 12, n))
    zip_code = np.char.add("Z", (10100 + zip_idx).astype(str))
    zip_effect = np.array([0.06, -0.08, -0.04, 0.04])[zip_idx // 3]  # by cluster
    education = np.clip(
        rng.normal(14.0, 2.2, n) - np.where(race == "Black", 0.4, 0.0)
        - np.where(race == "Hispanic", 0.5, 0.0), 8, 21
    )  # fmt: skip
    employment_history = np.clip(rng.gamma(4.0, 2.0, n) - np.where(sex == "Female", 1.2, 0.0), 0, 40).round(1)
    log_income = 9.6 + 0.07 * education + 0.03 * employment_history + zip_effect + rng.normal(0, 0.35, n)
    income = np.exp(log_income).round(-2)
    penalty = np.array([_CREDIT_PENALTY[r] for r in race])
    shift = np.array([credit_shift.get(r, 0.0) for r in race])
    credit_true = 560 + 95 * (log_income - 10.6) + 4 * employment_history + rng.normal(0, 45, n)
    credit_score = np.clip(credit_true - penalty + shift, 300, 850).round()
    return pd.DataFrame(
        {
            "race": race.astype(object),
            "sex": sex.astype(object),
            "zip_code": zip_code.astype(object),
            "education": education.round(1),
            "employment_history": employment_history,
            "income": income,
            "credit_score": credit_score,
            "_credit_true": np.clip(credit_true, 300, 850),
        }
    )


def loan_applications(n: int = 5000, *, seed: int = 0) -> pd.DataFrame:
    """Historical loan applications with the walkthrough's protected attributes and bias.

    Columns: ``race sex zip_code education employment_history income credit_score
    approved repaid``.

    >>> df = loan_applications(2000, seed=1)
    >>> sorted(df["race"].unique())
    ['Asian', 'Black', 'Hispanic', 'White']
    >>> bool(df.groupby("race")["approved"].mean().idxmax() in ("White", "Asian"))
    True
    >>> loan_applications(50, seed=3).equals(loan_applications(50, seed=3))
    True
    """
    rng = np.random.default_rng(seed)
    df = _applicants(rng, n, {})
    true_logit = (df["_credit_true"] - 640) / 35 + 0.04 * df["employment_history"]
    df["repaid"] = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    # The historical decision used the biased score and an extra penalty by zip cluster.
    hist_logit = (df["credit_score"] - 610) / 12 + 0.05 * df["employment_history"]
    df["approved"] = (rng.random(n) < 1 / (1 + np.exp(-hist_logit))).astype(int)
    return df.drop(columns="_credit_true")


def _score(df: pd.DataFrame) -> np.ndarray:
    z = (df["credit_score"] - 650) / 30 + 0.03 * df["employment_history"]
    return 1 / (1 + np.exp(-z.to_numpy()))


def loan_decisions(
    n: int = 20000,
    *,
    seed: int = 0,
    start: datetime | None = None,
    days: int = 60,
    drift_day: int | None = 40,
    drift_credit_shift: dict[str, float] | None = None,
    model: str = "loan-approval",
    model_version: str = "v3",
) -> pd.DataFrame:
    """Recent labeled decisions of a served model, with a drift from ``drift_day`` on.

    After the drift the credit scores of the shifted groups (default: Black applicants,
    −40 points) move, so the served model's approvals drop for them: a feature shift
    that changes model behaviour. Columns: ``decision_id model model_version ts score
    decision label race sex`` + the features.

    >>> d = loan_decisions(3000, seed=2, days=10, drift_day=5)
    >>> int(d["decision"].isin([0, 1]).all()), d["ts"].is_monotonic_increasing
    (1, True)
    """
    rng = np.random.default_rng(seed)
    start = start or datetime(2026, 10, 1, tzinfo=UTC)
    shift = drift_credit_shift if drift_credit_shift is not None else {"Black": -40.0}
    offsets = np.sort(rng.random(n)) * days
    before = np.ones(n, dtype=bool) if drift_day is None else offsets < drift_day
    df0 = _applicants(rng, n, {})
    df1 = _applicants(rng, n, shift)
    df = df1.copy()
    df.loc[before] = df0.loc[before]
    for c in ("education", "employment_history", "income", "credit_score", "_credit_true"):
        df[c] = df[c].astype(float)
    score = _score(df)
    true_logit = (df["_credit_true"] - 640) / 35 + 0.04 * df["employment_history"]
    label = (rng.random(n) < 1 / (1 + np.exp(-true_logit.to_numpy()))).astype(int)
    ts = [start + timedelta(days=float(o)) for o in offsets]
    out = pd.DataFrame(
        {
            "decision_id": [f"d{seed}-{i:07d}" for i in range(n)],
            "model": model,
            "model_version": model_version,
            "ts": pd.to_datetime(ts, utc=True),
            "score": score.round(6),
            "decision": (score >= 0.5).astype(int),
            "label": label,
        }
    )
    feats = df.drop(columns="_credit_true").reset_index(drop=True)
    return pd.concat([out, feats], axis=1)
