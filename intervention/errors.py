"""Input errors of the intervention pipeline and their messages.

Every message names the field or option, shows the bad value with ``!r`` and
lists the valid choices, so the CLI can print it verbatim (exit code 2) and
tests can match the constants.
"""

from __future__ import annotations

from collections.abc import Iterable

from fairwatch.errors import FairwatchError

__all__ = [
    "PipelineInputError",
    "BAD_CHOICE",
    "MISSING_COLUMN",
    "BAD_RANGE",
    "UNREADABLE_FILE",
    "BAD_VALUE",
    "check_choice",
    "check_columns",
    "check_range",
]

BAD_CHOICE = "{field}: {value!r} is not one of {choices}"
MISSING_COLUMN = "{field}: column {value!r} is not in the data; available columns: {choices}"
BAD_RANGE = "{field}: {value!r} is outside the valid range {low}..{high}"
UNREADABLE_FILE = "{field}: cannot read {value!r}: {reason}"
BAD_VALUE = "{field}: {value!r} is invalid: {reason}"


class PipelineInputError(FairwatchError, ValueError):
    """Bad input to a pipeline stage: a usage error, not a bug (CLI exit code 2)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _fmt_choices(choices: Iterable[object]) -> str:
    return ", ".join(repr(c) for c in choices)


def check_choice(field: str, value: object, choices: Iterable[object]) -> None:
    """Raise :class:`PipelineInputError` unless ``value`` is one of ``choices``.

    >>> check_choice("--base-estimator", "svm", ["logistic_regression"])
    Traceback (most recent call last):
    ...
    fairwatch.intervention.errors.PipelineInputError: --base-estimator: 'svm' is not one of 'logistic_regression'
    """
    choices = list(choices)
    if value not in choices:
        raise PipelineInputError(
            BAD_CHOICE.format(field=field, value=value, choices=_fmt_choices(choices)), field=field
        )


def check_columns(field: str, names: Iterable[str], columns: Iterable[str]) -> None:
    """Raise :class:`PipelineInputError` for the first of ``names`` not in ``columns``."""
    columns = list(columns)
    for name in names:
        if name not in columns:
            raise PipelineInputError(
                MISSING_COLUMN.format(field=field, value=name, choices=_fmt_choices(columns)),
                field=field,
            )


def check_range(field: str, value: float, low: float, high: float) -> None:
    """Raise :class:`PipelineInputError` unless ``low <= value <= high``.

    >>> check_range("--repair-level", 1.5, 0.0, 1.0)
    Traceback (most recent call last):
    ...
    fairwatch.intervention.errors.PipelineInputError: --repair-level: 1.5 is outside the valid range 0.0..1.0
    """
    if not (low <= value <= high):
        raise PipelineInputError(BAD_RANGE.format(field=field, value=value, low=low, high=high), field=field)
