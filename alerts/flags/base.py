"""The flag-store contract: what is served now, and how to switch it.

A *flag store* holds the feature flag that picks which model version a serving app
uses. fairwatch rolls a bad version back by asking the store to serve another
variant; everything else (incidents, cooldown, audit) lives above this layer.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Any

from fairwatch.errors import FairwatchError

__all__ = [
    "FlagChange",
    "FlagStore",
    "FlagStoreError",
    "UnknownFlagError",
    "UnknownVariantError",
    "FlagStoreHTTPError",
    "UNKNOWN_FLAG",
    "UNKNOWN_VARIANT",
]

# Error messages are constants so tests (and people grepping logs) can match them.
UNKNOWN_FLAG = "flag {flag_key!r} not found in {where}; flags there: {available}"
UNKNOWN_VARIANT = "flag {flag_key!r} has no variant {variant!r}; valid variants: {valid}"
EMPTY_REASON = "set_variant needs a non-empty reason (it goes to the audit log); got {reason!r}"


class FlagStoreError(FairwatchError, RuntimeError):
    """A flag store could not read or change a flag."""


class UnknownFlagError(FlagStoreError, KeyError):
    """The flag key does not exist in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownVariantError(FlagStoreError, ValueError):
    """The requested variant is not one the flag defines."""


class FlagStoreHTTPError(FlagStoreError):
    """A remote flag service answered with an error (after retries, if retryable)."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class FlagChange:
    """The outcome of one `set_variant` call, ready for the audit log.

    `changed` is true only when the store now serves `variant` because of this call;
    a dry run or a variant that was already live leaves `changed` false.

    >>> c = FlagChange(flag_key="loan-model", previous="v3", variant="v2",
    ...                changed=True, dry_run=False, reason="tier 3", store="flagd-file")
    >>> c.noop, c.as_dict()["previous"]
    (False, 'v3')
    >>> FlagChange(flag_key="k", previous="v2", variant="v2", changed=False,
    ...            dry_run=False, reason="r", store="s").noop
    True
    """

    flag_key: str
    previous: str | None
    variant: str
    changed: bool
    dry_run: bool
    reason: str
    store: str
    at: float = field(default_factory=time.time)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def noop(self) -> bool:
        """True when the requested variant was already live (nothing to do)."""
        return self.previous == self.variant

    def as_dict(self) -> dict[str, Any]:
        return {
            "flag_key": self.flag_key,
            "previous": self.previous,
            "variant": self.variant,
            "changed": self.changed,
            "noop": self.noop,
            "dry_run": self.dry_run,
            "reason": self.reason,
            "store": self.store,
            "at": self.at,
            "detail": dict(self.detail),
        }


class FlagStore(abc.ABC):
    """Reads and switches the variant a feature flag serves.

    Implementations must be idempotent: asking for the variant already served makes
    no change request and returns a `FlagChange` with ``noop`` true. A dry run reads
    and validates but never writes.
    """

    kind: str = "abstract"

    @abc.abstractmethod
    def current(self, flag_key: str) -> str:
        """The variant (model version) the flag serves by default right now."""

    @abc.abstractmethod
    def set_variant(self, flag_key: str, variant: str, *, reason: str, dry_run: bool = False) -> FlagChange:
        """Serve `variant` from now on; `reason` is recorded with the change."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Where this store points, without secrets (for status pages and audit)."""

    def _change(
        self,
        flag_key: str,
        previous: str | None,
        variant: str,
        *,
        changed: bool,
        dry_run: bool,
        reason: str,
        **detail: Any,
    ) -> FlagChange:
        return FlagChange(
            flag_key=flag_key,
            previous=previous,
            variant=variant,
            changed=changed,
            dry_run=dry_run,
            reason=reason,
            store=self.kind,
            detail=detail,
        )


def check_reason(reason: str) -> None:
    """Every change carries a reason for the audit log."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(EMPTY_REASON.format(reason=reason))


def check_variant(flag_key: str, variant: str, valid: list[str] | tuple[str, ...]) -> None:
    """Raise `UnknownVariantError` naming the flag, the bad value and the valid ones."""
    if variant not in valid:
        raise UnknownVariantError(UNKNOWN_VARIANT.format(flag_key=flag_key, variant=variant, valid=sorted(valid)))
