"""The tier state machine of one (model, window, metric, attribute).

Each evaluation feeds two candidate tiers computed by the policy:

``raise_to``
    the tier the *evidence* supports (with ``evidence: ci`` the confidence bound on
    the bad side crossed, and the confirming window agrees);
``hold``
    the tier the point estimate still supports after the hysteresis margin (a tier
    is kept while the point is not back inside by the margin);

or ``None`` for insufficient data. A tier is raised to ``L`` after ``for_``
consecutive evaluations with ``raise_to ≥ L``; it is lowered after ``clear_for``
consecutive evaluations with ``hold`` below the current tier (to the highest
``hold`` seen during that streak). Insufficient data is its own state,
:data:`INSUFFICIENT` (−1): it never reads as "ok"; a raised tier survives
``clear_for`` insufficient evaluations before it gives way.

>>> m = TierMachine(for_=2, clear_for=3)
>>> [m.update(r, h) for r, h in [(0, 0), (3, 3), (3, 3), (3, 3), (0, 2), (0, 0), (0, 0), (0, 0)]]
[0, 0, 3, 3, 3, 3, 2, 2]
>>> m.update(None, None), m.update(None, None), m.update(None, None), m.state
(2, 2, -1, -1)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["INSUFFICIENT", "TierMachine", "TierChange"]

INSUFFICIENT = -1


@dataclass(frozen=True, slots=True)
class TierChange:
    """A transition of one state machine, as the policy reports it."""

    model: str
    window: str
    metric: str
    attribute: str
    previous: int
    tier: int
    at: float  # event time of the evaluation
    value: float | None
    ci: tuple[float, float] | None
    reason: str
    group: str | None = None  # the group whose evidence decided (sequential policy)
    evidence: float | None = None  # its CUSUM statistic (log e-value)
    threshold: float | None = None  # the threshold it was judged against

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.window, self.metric, self.attribute)

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "window": self.window,
            "metric": self.metric,
            "attribute": self.attribute,
            "previous": self.previous,
            "tier": self.tier,
            "at": self.at,
            "value": self.value,
            "ci": list(self.ci) if self.ci else None,
            "reason": self.reason,
            "group": self.group,
            "evidence": self.evidence,
            "threshold": self.threshold,
        }


class TierMachine:
    """``for`` to go up, hysteresis + ``clear_for`` to go down, explicit insufficient data."""

    __slots__ = ("for_", "clear_for", "state", "_up", "_down", "_missing")

    def __init__(self, *, for_: int = 2, clear_for: int = 5) -> None:
        if for_ < 1 or clear_for < 1:
            raise ValueError(f"for_ and clear_for must be >= 1, got {for_!r}, {clear_for!r}")
        self.for_ = for_
        self.clear_for = clear_for
        self.state = INSUFFICIENT
        self._up: deque[int] = deque(maxlen=for_)
        self._down: deque[int] = deque(maxlen=clear_for)
        self._missing = 0

    def update(self, raise_to: int | None, hold: int | None) -> int:
        """Feed one evaluation; returns the (possibly new) state."""
        if raise_to is None or hold is None:
            self._up.clear()
            self._down.clear()
            self._missing += 1
            if self.state <= 0 or self._missing >= self.clear_for:
                self.state = INSUFFICIENT
            return self.state
        self._missing = 0
        current = max(self.state, 0)
        self._up.append(raise_to)
        up = min(self._up) if len(self._up) == self.for_ else 0
        if up > current:
            self.state = up
            self._down.clear()
            return self.state
        if hold < current:
            self._down.append(hold)
            if len(self._down) == self.clear_for:
                self.state = max(self._down)
                self._down.clear()
                self._up.clear()
                return self.state
        else:
            self._down.clear()
        self.state = current
        return self.state
