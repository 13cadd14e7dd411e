"""Loading, validating, splitting and encoding tabular pipeline inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .errors import BAD_VALUE, UNREADABLE_FILE, PipelineInputError

__all__ = [
    "ADULT_COLUMNS",
    "load_table",
    "load_adult",
    "binary_outcome",
    "Split",
    "split_data",
    "make_encoder",
    "numeric_columns",
]

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
    "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
    "hours_per_week", "native_country", "income",
]  # fmt: skip


def load_table(path: str | Path, *, field: str = "--data") -> pd.DataFrame:
    """Read CSV (optionally ``.gz``), Parquet or JSON Lines into a DataFrame."""
    p = Path(path)
    try:
        name = p.name.lower()
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(p)
        if name.endswith((".jsonl", ".ndjson", ".jsonl.gz")):
            return pd.read_json(p, lines=True)
        return pd.read_csv(p)
    except (OSError, ValueError, ImportError) as exc:
        raise PipelineInputError(UNREADABLE_FILE.format(field=field, value=str(path), reason=exc), field=field) from exc


def load_adult(*paths: str | Path) -> pd.DataFrame:
    """Read UCI Adult files (``adult.data``, ``adult.test``, or a vendored CSV sample).

    Raw UCI files have no header, ``?`` for missing values and test labels ending in
    ``.``; the outcome column ``income`` becomes 1 for ``>50K``.
    """
    frames = []
    for path in paths:
        p = Path(path)
        try:
            if p.suffix in (".data", ".test"):
                df = pd.read_csv(
                    p, header=None, names=ADULT_COLUMNS, skipinitialspace=True,
                    na_values="?", comment="|",
                )  # fmt: skip
            else:
                df = pd.read_csv(p)
        except OSError as exc:
            raise PipelineInputError(
                UNREADABLE_FILE.format(field="adult", value=str(p), reason=exc), field="adult"
            ) from exc
        frames.append(df.dropna(how="all"))
    df = pd.concat(frames, ignore_index=True)
    if df["income"].dtype != np.int64:
        df["income"] = df["income"].astype(str).str.rstrip(".").str.strip().eq(">50K").astype(int)
    for c in df.columns:
        if df[c].dtype == object or str(df[c].dtype) in ("str", "string"):
            df[c] = df[c].fillna("__missing__").astype(str)
    return df


def binary_outcome(values: pd.Series, *, field: str = "--outcome") -> np.ndarray:
    """The outcome as 0/1 ints; accepts 0/1, booleans and yes/no-like strings."""
    s = values
    if s.dtype == bool:
        return s.to_numpy().astype(int)
    if pd.api.types.is_numeric_dtype(s):
        uniq = set(pd.unique(s.dropna()).tolist())
        if s.isna().any() or not uniq <= {0, 1}:
            raise PipelineInputError(
                BAD_VALUE.format(field=field, value=s.name, reason=f"must be 0/1, found {sorted(uniq)[:5]!r}"),
                field=field,
            )
        return s.to_numpy().astype(int)
    mapping = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0}
    low = s.astype(str).str.strip().str.lower()
    bad = sorted(set(low[~low.isin(list(mapping))].tolist()))
    if bad:
        raise PipelineInputError(
            BAD_VALUE.format(field=field, value=s.name, reason=f"not binary, found {bad[:5]!r}"),
            field=field,
        )
    return low.map(mapping).to_numpy().astype(int)


class Split:
    """Train / validation / test partition of one table (row-index arrays)."""

    def __init__(self, train: np.ndarray, validation: np.ndarray, test: np.ndarray) -> None:
        self.train, self.validation, self.test = train, validation, test

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def split_data(
    df: pd.DataFrame,
    *,
    outcome: str,
    protected: Sequence[str],
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    random_state: int = 0,
) -> Split:
    """Seeded split stratified by label × intersectional group (where every stratum allows).

    >>> df = pd.DataFrame({"y": [0, 1] * 50, "g": ["a"] * 50 + ["b"] * 50})
    >>> s = split_data(df, outcome="y", protected=["g"])
    >>> s.sizes()
    {'train': 60, 'validation': 20, 'test': 20}
    """
    idx = np.arange(len(df))
    strata = df[outcome].astype(str) + "|" + df[list(protected)].astype(str).agg("|".join, axis=1)
    counts = strata.value_counts()
    strat = strata.to_numpy() if counts.min() >= 5 else None
    tr, va, te = fractions
    train, rest = train_test_split(idx, train_size=tr, random_state=random_state, stratify=strat)
    rest_strat = None if strat is None else strat[rest]
    if rest_strat is not None and pd.Series(rest_strat).value_counts().min() < 2:
        rest_strat = None
    val, test = train_test_split(rest, train_size=va / (va + te), random_state=random_state, stratify=rest_strat)
    return Split(np.sort(train), np.sort(val), np.sort(test))


def numeric_columns(df: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns of ``columns`` holding numbers (booleans excluded)."""
    return [
        c for c in columns
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]  # fmt: skip


def make_encoder(df: pd.DataFrame, features: Sequence[str]) -> ColumnTransformer:
    """Standardize numeric features and one-hot encode the others (unknowns ignored)."""
    num = numeric_columns(df, features)
    cat = [c for c in features if c not in num]
    transformers: list[tuple[str, Any, list[str]]] = []
    if num:
        transformers.append(("num", StandardScaler(), num))
    if cat:
        transformers.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, min_frequency=10), cat))
    return ColumnTransformer(transformers, sparse_threshold=0.0, verbose_feature_names_out=False)
