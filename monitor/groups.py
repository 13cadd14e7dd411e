"""Protected attributes and their groups: which are monitored, and their indices.

Each monitored *column* is one attribute (``race``) or a configured intersection
(``race,sex``, group ``Black,Female``). A missing or null value is the group
``__missing__``; an attribute's groups are capped (default 50) and the rest fold
into ``__other__``, so Prometheus label cardinality stays bounded. Every
(column, group) pair gets a dense index into the engine's count arrays.

With no configuration every attribute seen is monitored, plus one intersection
of all of them (names in alphabetical order, joined by ``,``).

>>> t = GroupTable(attributes=["race", "sex"], intersections=[["race", "sex"]], max_groups=3)
>>> idx = t.encode([{"race": "Black", "sex": "Female"}, {"race": None}, {"race": "Asian", "sex": "Male"},
...                 {"race": "White", "sex": "Male"}])
>>> [t.name(int(i)) for i in idx[0]]
[('race', 'Black'), ('sex', 'Female'), ('race,sex', 'Black,Female')]
>>> [t.name(int(i))[1] for i in idx[:, 0]]   # cap of 3 groups: the fourth folds into __other__
['Black', '__missing__', 'Asian', '__other__']
>>> [t.name(int(i))[1] for i in idx[1]]
['__missing__', '__missing__', '__missing__,__missing__']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from fairwatch.streaming.events import MISSING_GROUP, OTHER_GROUP

__all__ = ["GroupTable", "MISSING_GROUP", "OTHER_GROUP"]

_ROW_CACHE_LIMIT = 1 << 16
_KEY_BASE = 1 << 21  # combines up to 3 part indices of < 2M groups into one int64 key


class GroupTable:
    """Dense indices for every monitored (column, group) pair of one model."""

    def __init__(
        self,
        *,
        attributes: Sequence[str] | None = None,
        intersections: Sequence[Sequence[str]] | None = None,
        max_groups: int = 50,
        max_columns: int = 16,
    ):
        self.auto = attributes is None and intersections is None
        self.max_groups = max_groups
        self.max_columns = max_columns
        self.columns: list[tuple[str, ...]] = []  # parts of each column; index = column id
        self.active: list[bool] = []
        self.names: list[tuple[str, str]] = []  # global index → (column name, group)
        self._index: dict[tuple[str, str], int] = {}
        self._groups_per_column: list[int] = []
        self._value_map: dict[str, dict[str | None, int]] = {}  # attribute → raw value → index
        self._combo_map: list[dict[int, int]] = []  # column → combined part key → index
        self._row_cache: dict[tuple, int] = {}  # attribute items → row of _rows
        self._rows = np.zeros((0, 0), np.int64)  # encoded rows of the cached attribute sets
        self._set_rows = np.zeros(0, np.int64)  # attribute-set registry id → row of _rows (-1: not yet)
        self._set_generation = -1
        wanted = [tuple([a]) for a in attributes or ()]
        for inter in intersections or ():
            parts = tuple(sorted(inter))
            wanted.extend((p,) for p in parts)
            wanted.append(parts)
        for col in wanted:
            self._add_column(col)

    # -- structure -------------------------------------------------------------
    @staticmethod
    def column_name(parts: tuple[str, ...]) -> str:
        return ",".join(parts)

    def _add_column(self, parts: tuple[str, ...]) -> int | None:
        if parts in self.columns:
            return self.columns.index(parts)
        if len(self.columns) >= self.max_columns:
            return None
        if len(parts) > 3:
            raise ValueError(f"intersections: at most 3 attributes per intersection, got {self.column_name(parts)!r}")
        self.columns.append(parts)
        self.active.append(True)
        self._groups_per_column.append(0)
        self._combo_map.append({})
        if len(parts) == 1:
            self._value_map.setdefault(parts[0], {})
        return len(self.columns) - 1

    def _discover(self, attrs_list: Sequence[dict]) -> None:
        seen = set().union(*attrs_list) if attrs_list else set()
        known = {c[0] for c in self.columns if len(c) == 1}
        new = sorted(seen - known)
        if not new:
            return
        for a in new:
            self._add_column((a,))
        singles = sorted(c[0] for c in self.columns if len(c) == 1)
        if len(singles) >= 2:
            parts = tuple(singles[:3])
            for i, col in enumerate(self.columns):
                if len(col) > 1 and col != parts:
                    self.active[i] = False  # an older "all attributes" intersection stops here
            self._add_column(parts)

    def _register(self, col: int, group: str) -> int:
        name = self.column_name(self.columns[col])
        key = (name, group)
        idx = self._index.get(key)
        if idx is not None:
            return idx
        if group != OTHER_GROUP:
            if self._groups_per_column[col] >= self.max_groups:
                return self._register(col, OTHER_GROUP)
            self._groups_per_column[col] += 1
        idx = len(self.names)
        self._index[key] = idx
        self.names.append(key)
        return idx

    @property
    def size(self) -> int:
        return len(self.names)

    def name(self, index: int) -> tuple[str, str]:
        return self.names[index]

    def index(self, column: str, group: str) -> int | None:
        return self._index.get((column, group))

    def active_columns(self) -> list[str]:
        return [self.column_name(c) for c, on in zip(self.columns, self.active, strict=True) if on]

    # -- encoding (the hot path) ----------------------------------------------
    def _encode_value(self, col: int, attribute: str, value: str | None) -> int:
        group = MISSING_GROUP if value is None or value == "" else value
        idx = self._register(col, group)
        self._value_map[attribute][value] = idx
        return idx

    def encode(self, attrs_list: Sequence[dict]) -> np.ndarray:
        """Global group index per event and column, shape ``(n, columns)``; -1 = not monitored."""
        if self.auto:
            self._discover(attrs_list)
        n = len(attrs_list)
        out = np.full((n, len(self.columns)), -1, np.int64)
        for col, parts in enumerate(self.columns):
            if not self.active[col] or len(parts) != 1:
                continue
            a = parts[0]
            vmap = self._value_map[a]
            codes = [vmap.get(x.get(a), -1) for x in attrs_list]
            if -1 in codes:
                codes = [
                    c if c != -1 else self._encode_value(col, a, x.get(a))
                    for c, x in zip(codes, attrs_list, strict=True)
                ]
            out[:, col] = codes
        for col, parts in enumerate(self.columns):
            if not self.active[col] or len(parts) == 1:
                continue
            part_cols = [self.columns.index((p,)) for p in parts]
            key = np.zeros(n, np.int64)
            for pc in part_cols:
                key = key * _KEY_BASE + out[:, pc]
            uniq, inverse = np.unique(key, return_inverse=True)
            cmap = self._combo_map[col]
            mapped = np.empty(len(uniq), np.int64)
            for i, k in enumerate(uniq.tolist()):
                idx = cmap.get(k)
                if idx is None:
                    first = int(np.argmax(key == k))
                    group = ",".join(self.names[int(out[first, pc])][1] for pc in part_cols)
                    idx = self._register(col, group)
                    cmap[k] = idx
                mapped[i] = idx
            out[:, col] = mapped[inverse]
        return out

    def encode_sets(self, sets: np.ndarray, generation: int, key_of: Callable[[int], tuple]) -> np.ndarray:
        """Like :meth:`encode` for attribute sets given as registry ids (``key_of(id)``
        is ``tuple(attributes.items())``; ids are valid within one ``generation``).

        Rows are cached per distinct attribute set (bounded, dropped whenever the
        columns change): the common case is one numpy gather, no per-event work at all.
        """
        if generation != self._set_generation:
            self._set_rows = np.zeros(0, np.int64)
            self._set_generation = generation
        top = int(sets.max()) + 1 if len(sets) else 0
        if top > len(self._set_rows):
            grown = np.full(max(top, 2 * len(self._set_rows)), -1, np.int64)
            grown[: len(self._set_rows)] = self._set_rows
            self._set_rows = grown
        rows = self._set_rows[sets]
        if len(rows) and rows.min() < 0:
            # in order of first appearance in this model's events (not of the registry's ids,
            # which the engine's models share): a model's groups are ordered as if it were alone
            uniq = list(dict.fromkeys(sets.tolist()))
            keys = [key_of(i) for i in uniq]
            self._cache_keys(keys)
            self._set_rows[uniq] = list(map(self._row_cache.__getitem__, keys))
            rows = self._set_rows[sets]
        return self._rows[rows]

    def _cache_keys(self, keys: Sequence[tuple]) -> None:
        """Put every attribute set of ``keys`` in the row cache, in one :meth:`encode`."""
        cache = self._row_cache
        new = [k for k in dict.fromkeys(keys) if k not in cache]
        width = len(self.columns)
        if self.auto:
            self._discover([dict(k) for k in new])  # first, so the width stays fixed below
        if len(self.columns) != width or self._rows.shape[1] != width or len(cache) + len(new) > _ROW_CACHE_LIMIT:
            cache.clear()  # new columns: every cached row is too short
            self._set_rows[:] = -1
            self._rows = np.zeros((0, len(self.columns)), np.int64)
            new = list(dict.fromkeys(keys))
        rows = self.encode([dict(k) for k in new])
        cache.update(zip(new, range(len(self._rows), len(self._rows) + len(new)), strict=True))
        self._rows = np.concatenate([self._rows, rows])

    # -- checkpoints -----------------------------------------------------------
    def to_state(self) -> dict:
        return {
            "auto": self.auto,
            "max_groups": self.max_groups,
            "max_columns": self.max_columns,
            "columns": [list(c) for c in self.columns],
            "active": self.active,
            "names": [list(n) for n in self.names],
        }

    def absorb(self, state: dict) -> np.ndarray:
        """Add another table's columns and groups (its :meth:`to_state`); returns, per group
        of that table, its index here (an overflowing group maps to ``OTHER_GROUP``).
        A column is active here only while every absorbed table has it active."""
        for parts, on in zip(state["columns"], state["active"], strict=True):
            col = self._add_column(tuple(parts))
            if col is not None and not on:
                self.active[col] = False
        out = np.empty(len(state["names"]), np.int64)
        for i, (column, group) in enumerate(state["names"]):
            out[i] = self._register(self.columns.index(tuple(column.split(","))), group)
        return out

    @classmethod
    def from_state(cls, state: dict) -> GroupTable:
        t = cls(max_groups=state["max_groups"], max_columns=state["max_columns"])
        t.auto = state["auto"]
        for parts in state["columns"]:
            t._add_column(tuple(parts))
        t.active = list(state["active"])
        for column, group in state["names"]:
            col = t.columns.index(tuple(column.split(",")))
            t._register(col, group)
        return t
