"""RFC 3339 timestamps of a whole batch to epoch seconds, vectorised with numpy.

The batch fast path's timestamp parser. It reads the forms producers emit —
``YYYY-MM-DDTHH:MM:SS`` with 0 to 9 fraction digits, then ``Z`` or ``±HH:MM``,
``T``/``t``/space between date and time, ``Z``/``z`` — and gives exactly
:func:`fairwatch.streaming.schema.parse_timestamp`'s value (a tested property):
the calendar arithmetic is in integers (microseconds, fraction digits past the
sixth truncated as :meth:`datetime.fromisoformat` does) and the one division is
correctly rounded. Anything else, or any invalid value, gives ``None``: the
caller then validates event by event, which names the reason.

Written by hand because neither numpy's nor pandas' ISO parser is as strict as
:meth:`datetime.fromisoformat` about what it accepts, and both are slower. msgspec
parses RFC 3339 in C (its ``datetime`` plus ``.timestamp()`` per event measured a
little cheaper for the µs and offset forms, ``benchmarks/decode_paths.py``), but it
rounds fraction digits past the sixth where fromisoformat truncates: the fast path
and the per-event validator would disagree on nanosecond stamps (docs/events.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from fairwatch.streaming.schema import MAX_TS, MIN_TS

__all__ = ["stamps_to_epoch"]

_SHORTEST, _LONGEST = 20, 35  # "…SSZ" … "…SS.fffffffff+HH:MM"
_DIGITS_AT = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18], np.intp)
_DASH_COLON_AT = np.array([4, 7, 13, 16], np.intp)
_DASH_COLON = np.array([ord(c) for c in "--::"], np.uint8)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
_POW10 = 10 ** np.arange(5, -1, -1, dtype=np.int64)  # weights of the first six fraction digits
_T, _LT, _SPACE, _DOT = ord("T"), ord("t"), ord(" "), ord(".")
_Z, _LZ, _PLUS, _MINUS, _COLON = ord("Z"), ord("z"), ord("+"), ord("-"), ord(":")


def stamps_to_epoch(stamps: Sequence[object]) -> np.ndarray | None:
    """Epoch seconds of RFC 3339 stamps, vectorised; ``None`` if any stamp is not text in
    one of the fast forms or is not a valid time in 2000 … 2100.

    >>> stamps_to_epoch(["2026-11-21T10:15:00.123Z", "2000-01-01T00:00:00Z"]).tolist()
    [1795256100.123, 946684800.0]
    >>> stamps_to_epoch(["2026-11-21T12:15:00.123456789+02:00", "2026-11-21t10:15:00z"]).tolist()
    [1795256100.123456, 1795256100.0]
    >>> stamps_to_epoch(["2026-02-29T00:00:00.000Z"]) is None  # not a leap year
    True
    """
    n = len(stamps)
    try:
        lens = np.fromiter(map(len, stamps), np.int64, n)  # TypeError for numbers
        text = "".join(stamps).encode("ascii")  # str only (else TypeError), ASCII only
    except (TypeError, UnicodeEncodeError):
        return None
    if n == 0:
        return np.zeros(0)
    lo, hi = int(lens.min()), int(lens.max())
    if lo < _SHORTEST or hi > _LONGEST:
        return None
    buf = np.frombuffer(text, np.uint8)
    if lo == hi:  # the usual case: one producer, one form
        return _same_length(buf.reshape(n, lo))
    # Mixed lengths (datetime.isoformat() drops a zero fraction): one padded matrix, then
    # the rows of each length (ASCII was checked above, so uint8 holds every code point).
    wide = np.array(stamps, f"U{hi}").view(np.uint32).reshape(n, hi).astype(np.uint8)
    out = np.empty(n)
    for length in np.unique(lens).tolist():
        idx = np.nonzero(lens == length)[0]
        part = _same_length(wide[idx, :length])
        if part is None:
            return None
        out[idx] = part
    return out


def _same_length(chars: np.ndarray) -> np.ndarray | None:
    """Stamps of one length (rows of ``chars``): ``Z`` and offset forms can share a length."""
    length = chars.shape[1]
    last = chars[:, -1]
    zulu = (last == _Z) | (last == _LZ)
    if zulu.all():
        return _parse(chars, length - 21 if length > 20 else 0, offset=False)
    if not zulu.any():
        return _parse(chars, length - 26 if length > 25 else 0, offset=True)
    out = np.empty(len(chars))
    for mask, offset in ((zulu, False), (~zulu, True)):
        k = length - (26 if offset else 21) if length > (25 if offset else 20) else 0
        part = _parse(chars[mask], k, offset=offset)
        if part is None:
            return None
        out[mask] = part
    return out


def _parse(chars: np.ndarray, k: int, *, offset: bool) -> np.ndarray | None:
    """Rows ``YYYY-MM-DD?HH:MM:SS`` + (``.`` and ``k`` digits if ``k``) + ``Z`` or ``±HH:MM``."""
    if k < 0 or k > 9 or (k == 0 and chars.shape[1] != (25 if offset else 20)):
        return None  # e.g. "…SS.Z": fromisoformat takes it, the fast path leaves it to it
    if not (chars[:, _DASH_COLON_AT] == _DASH_COLON).all():
        return None
    sep = chars[:, 10]
    if not ((sep == _T) | (sep == _LT) | (sep == _SPACE)).all():
        return None
    at = _DIGITS_AT.tolist()
    if k:
        if not (chars[:, 19] == _DOT).all():
            return None
        at += range(20, 20 + k)
    if offset:
        p = 20 + k if k else 19
        sign = chars[:, p]
        if not (((sign == _PLUS) | (sign == _MINUS)) & (chars[:, p + 3] == _COLON)).all():
            return None
        at += [p + 1, p + 2, p + 4, p + 5]
    d = chars[:, at].astype(np.int64)
    if d.min() < 48 or d.max() > 57:
        return None
    d -= 48
    c = d.T  # one row per digit position (no BLAS: its threads cost more than they save here)
    year = c[0] * 1000 + c[1] * 100 + c[2] * 10 + c[3]
    month, day, hour, minute, second = c[4:14:2] * 10 + c[5:14:2]
    if month.min() < 1 or month.max() > 12 or hour.max() > 23 or minute.max() > 59 or second.max() > 59:
        return None
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    if day.min() < 1 or (day > _DAYS_IN_MONTH[month] + (leap & (month == 2))).any():
        return None
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    seconds = ((days * 24 + hour) * 60 + minute) * 60 + second
    if offset:
        oh, om = c[14 + k] * 10 + c[15 + k], c[16 + k] * 10 + c[17 + k]
        if oh.max() > 23 or om.max() > 59:
            return None
        seconds -= np.where(sign == _MINUS, -1, 1) * (oh * 3600 + om * 60)
    micros = seconds * 1_000_000
    if k:
        micros += _fraction(c[14 : 14 + k])
    # int64 → float64 is exact below 2**53; then one correctly rounded division, as
    # datetime.timestamp() (timedelta / timedelta(seconds=1)) does.
    ts = micros / 1e6
    if not (ts.min() >= MIN_TS and ts.max() < MAX_TS):
        return None
    return ts


def _fraction(digits: np.ndarray) -> np.ndarray:
    """Microseconds of the fraction digits (one row per digit); past the sixth truncated."""
    us = np.zeros(digits.shape[1], np.int64)
    for j in range(min(len(digits), 6)):
        us += digits[j] * _POW10[j]
    return us
