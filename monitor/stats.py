"""Mergeable per-group sufficient statistics (docs/metrics.md).

One :class:`GroupCounts` per (model, bucket, attribute, group) holds

* decision counts by ``decision``,
* labeled counts by (``decision``, ``label``),
* per calibration bin ``b`` the labeled count ``n_b``, score sum ``S_b`` and label sum ``L_b``
  (bin = min(floor(score·B), B−1)).

Every metric of docs/metrics.md is a pure function of these counts, so Grafana, the
offline replay and the audit export cannot disagree. The engine stores many of
them at once as numpy arrays (:class:`CountsTable`); a :class:`GroupCounts` is one
row of such a table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GroupCounts", "CountsTable", "calibration_bin", "DEFAULT_BINS"]

DEFAULT_BINS = 10


def calibration_bin(score: float | np.ndarray, bins: int) -> int | np.ndarray:
    """Bin of ``score`` among ``bins`` equal-width bins over [0, 1]; 1.0 falls in the last.

    >>> calibration_bin(0.0, 10), calibration_bin(0.95, 10), calibration_bin(1.0, 10)
    (0, 9, 9)
    """
    if isinstance(score, np.ndarray):
        return np.minimum((score * bins).astype(np.int64), bins - 1)
    return min(int(score * bins), bins - 1)


def _ratio(num: int | float, den: int | float) -> float | None:
    return None if den == 0 else num / den


@dataclass(slots=True)
class GroupCounts:
    """Confusion counts and calibration bins for one group in one bucket or window.

    A rate with an empty denominator is ``None``, never 0 or NaN.

    >>> c = GroupCounts.empty(bins=4)
    >>> c.update(score=0.9, decision=1, label=1)
    >>> c.n, c.selection_rate, c.true_positive_rate
    (1, 1.0, 1.0)
    >>> c.update(score=0.2, decision=0, label=1)
    >>> c.n, c.selection_rate, c.true_positive_rate, c.false_positive_rate
    (2, 0.5, 0.5, None)
    >>> c.update(score=0.6, decision=1)          # no label yet
    >>> c.n, c.n_labeled, round(c.selection_rate, 4), c.accuracy
    (3, 2, 0.6667, 0.5)
    >>> round(c.expected_calibration_error, 4)   # (|1-0.9| + |1-0.2|) / 2
    0.45
    >>> c.revert(score=0.6, decision=1)
    >>> c.n, c.selection_rate
    (2, 0.5)
    >>> (c + GroupCounts.empty(bins=4)).selection_rate
    0.5
    >>> e = GroupCounts.empty(bins=4) + GroupCounts.empty(bins=4)
    >>> e.n, e.selection_rate, e.expected_calibration_error
    (0, None, None)
    """

    decisions: np.ndarray  # int64[2]          by decision
    labeled: np.ndarray  # int64[2, 2]         by (decision, label)
    cal_n: np.ndarray  # int64[B]
    cal_s: np.ndarray  # float64[B]
    cal_l: np.ndarray  # int64[B]

    @classmethod
    def empty(cls, bins: int = DEFAULT_BINS) -> GroupCounts:
        return cls(
            np.zeros(2, np.int64),
            np.zeros((2, 2), np.int64),
            np.zeros(bins, np.int64),
            np.zeros(bins, np.float64),
            np.zeros(bins, np.int64),
        )

    @property
    def bins(self) -> int:
        return len(self.cal_n)

    # -- updates ---------------------------------------------------------------
    def update(self, *, score: float, decision: int, label: int | None = None) -> None:
        """Count one decision, and its label when known."""
        self.decisions[decision] += 1
        if label is not None:
            self.update_label(score=score, decision=decision, label=label)

    def update_label(self, *, score: float, decision: int, label: int) -> None:
        """Count the label of an already counted decision (an outcome arriving later)."""
        self.labeled[decision, label] += 1
        b = calibration_bin(score, self.bins)
        self.cal_n[b] += 1
        self.cal_s[b] += score
        self.cal_l[b] += label

    def revert(self, *, score: float, decision: int, label: int | None = None) -> None:
        """Exact inverse of :meth:`update` (counts are integers; score sums up to rounding)."""
        self.decisions[decision] -= 1
        if label is not None:
            self.labeled[decision, label] -= 1
            b = calibration_bin(score, self.bins)
            self.cal_n[b] -= 1
            self.cal_s[b] -= score
            self.cal_l[b] -= label

    def __iadd__(self, other: GroupCounts) -> GroupCounts:
        self.decisions += other.decisions
        self.labeled += other.labeled
        self.cal_n += other.cal_n
        self.cal_s += other.cal_s
        self.cal_l += other.cal_l
        return self

    def __add__(self, other: GroupCounts) -> GroupCounts:
        out = self.copy()
        out += other
        return out

    def copy(self) -> GroupCounts:
        return GroupCounts(
            self.decisions.copy(),
            self.labeled.copy(),
            self.cal_n.copy(),
            self.cal_s.copy(),
            self.cal_l.copy(),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroupCounts):
            return NotImplemented
        return all(
            np.array_equal(a, b) for a, b in zip(self.to_state().values(), other.to_state().values(), strict=True)
        )

    # -- checkpoints -----------------------------------------------------------
    def to_state(self) -> dict[str, list]:
        return {
            "decisions": self.decisions.tolist(),
            "labeled": self.labeled.tolist(),
            "cal_n": self.cal_n.tolist(),
            "cal_s": self.cal_s.tolist(),
            "cal_l": self.cal_l.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, list]) -> GroupCounts:
        return cls(
            np.asarray(state["decisions"], np.int64),
            np.asarray(state["labeled"], np.int64),
            np.asarray(state["cal_n"], np.int64),
            np.asarray(state["cal_s"], np.float64),
            np.asarray(state["cal_l"], np.int64),
        )

    # -- reads -----------------------------------------------------------------
    @property
    def n(self) -> int:
        # Read through .tolist(): Python ints, an order of magnitude cheaper than a numpy
        # reduction on arrays this small (a snapshot reads thousands of these).
        no, yes = self.decisions.tolist()
        return no + yes

    @property
    def favorable(self) -> int:
        return int(self.decisions[1])

    @property
    def n_labeled(self) -> int:
        (a, b), (c, d) = self.labeled.tolist()
        return a + b + c + d

    @property
    def positives(self) -> int:
        """Labeled decisions whose true outcome was favorable (label = 1)."""
        (_, a), (_, b) = self.labeled.tolist()
        return a + b

    @property
    def negatives(self) -> int:
        (a, _), (b, _) = self.labeled.tolist()
        return a + b

    @property
    def selection_rate(self) -> float | None:
        return _ratio(self.favorable, self.n)

    @property
    def true_positive_rate(self) -> float | None:
        return _ratio(int(self.labeled[1, 1]), self.positives)

    @property
    def false_positive_rate(self) -> float | None:
        return _ratio(int(self.labeled[1, 0]), self.negatives)

    @property
    def accuracy(self) -> float | None:
        return _ratio(int(self.labeled[0, 0] + self.labeled[1, 1]), self.n_labeled)

    @property
    def expected_calibration_error(self) -> float | None:
        """Σ_b |L_b − S_b| / N over labeled decisions (docs/metrics.md)."""
        n = sum(self.cal_n.tolist())
        if n == 0:
            return None
        return float(np.abs(self.cal_l - self.cal_s).sum()) / n


_TABLE_FIELDS = ("dec", "lab", "cal_n", "cal_s", "cal_l")


class CountsTable:
    """:class:`GroupCounts` for many groups (and optionally many buckets) as arrays.

    Arrays have shape ``lead + (groups, ...)``; ``lead`` is ``(slots,)`` for a
    bucket ring and ``()`` for totals and window sums. Adding rows is vectorised
    with ``np.bincount`` over flat indices, the engine's hot path.

    >>> t = CountsTable((), groups=2, bins=4)
    >>> t.add_decisions(np.array([0, 0, 1]), np.array([1, 0, 1]))
    >>> t.add_labels(np.array([0]), np.array([0.9]), np.array([1]), np.array([1]))
    >>> t.row(0).selection_rate, t.row(0).true_positive_rate, t.row(1).n
    (0.5, 1.0, 1)
    """

    __slots__ = ("lead", "groups", "bins", "dec", "lab", "cal_n", "cal_s", "cal_l")

    def __init__(self, lead: tuple[int, ...], *, groups: int, bins: int):
        self.lead = lead
        self.groups = groups
        self.bins = bins
        self.dec = np.zeros(lead + (groups, 2), np.int64)
        self.lab = np.zeros(lead + (groups, 2, 2), np.int64)
        self.cal_n = np.zeros(lead + (groups, bins), np.int64)
        self.cal_s = np.zeros(lead + (groups, bins), np.float64)
        self.cal_l = np.zeros(lead + (groups, bins), np.int64)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.dec, self.lab, self.cal_n, self.cal_s, self.cal_l

    def grow(self, groups: int) -> None:
        """Make room for ``groups`` groups (new groups start empty)."""
        if groups <= self.groups:
            return
        axis = len(self.lead)
        extra = groups - self.groups

        def pad(a: np.ndarray) -> np.ndarray:
            widths = [(0, 0)] * a.ndim
            widths[axis] = (0, extra)
            return np.pad(a, widths)

        self.dec, self.lab, self.cal_n, self.cal_s, self.cal_l = map(pad, self.arrays())
        self.groups = groups

    def clear(self, index: np.ndarray | slice | int) -> None:
        for a in self.arrays():
            a[index] = 0

    def _flat(self, lead_index: np.ndarray | None, group: np.ndarray) -> np.ndarray:
        if lead_index is None:
            return group
        return lead_index * self.groups + group

    def _cells(self) -> int:
        return int(np.prod(self.lead, dtype=np.int64)) * self.groups

    def add_decisions(self, group: np.ndarray, decision: np.ndarray, lead_index: np.ndarray | None = None) -> None:
        """Count decisions of ``group`` (row per event); ``lead_index`` picks the bucket slot."""
        if len(group) == 0:
            return
        cell = self._flat(lead_index, group)
        flat = self.dec.reshape(-1)
        flat += np.bincount(cell * 2 + decision, minlength=flat.size)

    def add_labels(
        self,
        group: np.ndarray,
        score: np.ndarray,
        decision: np.ndarray,
        label: np.ndarray,
        lead_index: np.ndarray | None = None,
    ) -> None:
        """Count labels of already counted decisions."""
        if len(group) == 0:
            return
        cell = self._flat(lead_index, group)
        lab = self.lab.reshape(-1)
        lab += np.bincount(cell * 4 + decision * 2 + label, minlength=lab.size)
        b = cell * self.bins + calibration_bin(score, self.bins)
        size = self._cells() * self.bins
        self.cal_n.reshape(-1)[:] += np.bincount(b, minlength=size)
        self.cal_s.reshape(-1)[:] += np.bincount(b, weights=score, minlength=size)
        self.cal_l.reshape(-1)[:] += np.bincount(b[label == 1], minlength=size)

    def sum_lead(self, index: np.ndarray) -> CountsTable:
        """Sum over the selected lead positions (bucket slots) → a table without lead."""
        out = CountsTable((), groups=self.groups, bins=self.bins)
        for dst, src in zip(out.arrays(), self.arrays(), strict=True):
            dst[...] = src[index].sum(axis=0)
        return out

    def row(self, group: int) -> GroupCounts:
        """One group's counts (a copy) — only for tables without a lead axis."""
        assert self.lead == ()
        return GroupCounts(
            self.dec[group].copy(),
            self.lab[group].copy(),
            self.cal_n[group].copy(),
            self.cal_s[group].copy(),
            self.cal_l[group].copy(),
        )

    def view(self, group: int) -> GroupCounts:
        """One group's counts as views into this table (no copy): for reading at once,
        e.g. a snapshot's metrics over a window table built for it."""
        assert self.lead == ()
        return GroupCounts(self.dec[group], self.lab[group], self.cal_n[group], self.cal_s[group], self.cal_l[group])

    def to_state(self) -> dict:
        return {
            "lead": list(self.lead),
            "groups": self.groups,
            "bins": self.bins,
            **{name: a.tolist() for name, a in zip(_TABLE_FIELDS, self.arrays(), strict=True)},
        }

    @classmethod
    def from_state(cls, state: dict) -> CountsTable:
        t = cls(tuple(state["lead"]), groups=state["groups"], bins=state["bins"])
        t.dec[...] = np.asarray(state["dec"], np.int64).reshape(t.dec.shape)
        t.lab[...] = np.asarray(state["lab"], np.int64).reshape(t.lab.shape)
        t.cal_n[...] = np.asarray(state["cal_n"], np.int64).reshape(t.cal_n.shape)
        t.cal_s[...] = np.asarray(state["cal_s"], np.float64).reshape(t.cal_s.shape)
        t.cal_l[...] = np.asarray(state["cal_l"], np.int64).reshape(t.cal_l.shape)
        return t
