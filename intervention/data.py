"""Loading, validating, splitting and encoding tabular pipeline inputs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .errors import BAD_VALUE, UNREADABLE_FILE, PipelineInputError

log = logging.getLogger("fairwatch.pipeline")

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
    """Read CSV (optionally ``.gz``), Parquet or JSON Lines into a DataFrame.

    A CSV is read as spreadsheets write it (:func:`_read_csv`): UTF-8 (with or without a
    byte-order mark) or else Windows-1252, separated by commas or else by the semicolons, tabs
    or bars of its header line."""
    p = Path(path)
    try:
        name = p.name.lower()
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(p)
        if name.endswith((".jsonl", ".ndjson", ".jsonl.gz")):
            return pd.read_json(p, lines=True)
        return _read_csv(p)
    except (OSError, ValueError, ImportError) as exc:
        raise PipelineInputError(UNREADABLE_FILE.format(field=field, value=str(path), reason=exc), field=field) from exc


#: suffixes pandas reads as compressed (their first bytes say nothing of the text)
_PACKED_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst", ".tar")
#: separators a spreadsheet's CSV export uses where the comma is the decimal mark
_OTHER_SEPARATORS = (";", "\t", "|")


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file as a spreadsheet saved it.

    * Text that is not UTF-8 is read as Windows-1252 (Excel's "CSV" on Windows; Latin-1 letters
      such as ``ä`` are the same bytes), with a warning; UTF-16 with a byte-order mark (Excel's
      "Unicode text") as UTF-16; text that is none of these is an error.
    * A header without a comma that splits at ``;``, tab or ``|`` is read with that separator;
      with ``;``, numbers are read with a decimal comma where that makes more columns numeric
      (``50,3`` is 50.3 in such files: with a decimal point it would be a category).
    """
    head = b""
    if path.suffix.lower() not in _PACKED_SUFFIXES:
        with path.open("rb") as fh:
            head = fh.read(4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its byte-order mark ("Unicode text")
        return _separated(path, pd.read_csv(path, encoding="utf-16"), "utf-16")
    if b"\0" in head:
        raise ValueError("holds NUL bytes: not a text file (UTF-16 without a byte-order mark?); save it as UTF-8")
    try:
        df, encoding = pd.read_csv(path), "utf-8"
    except UnicodeDecodeError as exc:
        try:
            df, encoding = pd.read_csv(path, encoding="cp1252"), "cp1252"
        except UnicodeDecodeError:
            raise ValueError(f"neither UTF-8 ({exc.reason}) nor Windows-1252 text: save it as UTF-8") from None
        log.warning("%s is not UTF-8 (%s): read as Windows-1252", path, exc.reason)
    return _separated(path, df, encoding)


def _separated(path: Path, df: pd.DataFrame, encoding: str) -> pd.DataFrame:
    """``df`` (``path`` read with commas), or ``path`` read again with the separator of its header."""
    if len(df.columns) == 1:
        header = str(df.columns[0])
        sep = max(_OTHER_SEPARATORS, key=header.count)
        if sep in header:
            df = pd.read_csv(path, sep=sep, encoding=encoding)
            if sep == ";":
                comma = pd.read_csv(path, sep=sep, encoding=encoding, decimal=",")
                if _numeric_columns(comma) > _numeric_columns(df):
                    df = comma
            log.info("%s: columns separated by %r", path, sep)
    return df


def _numeric_columns(df: pd.DataFrame) -> int:
    return sum(pd.api.types.is_numeric_dtype(t) for t in df.dtypes)


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
    if s.isna().any():  # the outcome is what every metric counts: a row without one is no row
        first = s.index[s.isna().to_numpy()][0]
        raise PipelineInputError(
            BAD_VALUE.format(
                field=field,
                value=s.name,
                reason=f"{int(s.isna().sum())} row(s) have no value (the first: data row {first + 1}); "
                "drop them, or fill them in",
            ),
            field=field,
        )
    if pd.api.types.is_numeric_dtype(s):
        uniq = set(pd.unique(s).tolist())
        if not uniq <= {0, 1}:
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
    """Standardize numeric features and one-hot encode the others (unknowns ignored).

    Missing numbers (empty cells, ``NA``) are the column's median plus a 0/1 "was missing"
    column, so the model can still learn from the gap (scikit-learn's ``SimpleImputer``). A
    missing category is a category of its own. (A column with no value in any row never gets
    here: the pipeline leaves it out of the features.)"""
    num = numeric_columns(df, features)
    cat = [c for c in features if c not in num]
    transformers: list[tuple[str, Any, list[str]]] = []
    if num:
        scaler: Any = StandardScaler()
        if df[num].isna().any().any():
            scaler = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
        transformers.append(("num", scaler, num))
    if cat:
        transformers.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, min_frequency=10), cat))
    return ColumnTransformer(transformers, sparse_threshold=0.0, verbose_feature_names_out=False)
