"""A generic HTTP webhook: POST the desired variant as JSON to a service you own.

Body::

    {"flag_key": "...", "variant": "v2", "previous": "v3", "reason": "...",
     "dry_run": false, "idempotency_key": "<flag_key>:<variant>:<uuid>"}

with ``Authorization: Bearer <token>`` when a token is configured and an
``Idempotency-Key`` header equal to the body's key, so a receiver can drop a retried
delivery. What is live is read from ``state_url`` (GET, JSON ``{"variant": "..."}``)
when one is configured; otherwise the store remembers the last variant it set.
"""

from __future__ import annotations

import uuid
from typing import Any

from .base import FlagChange, FlagStore, FlagStoreError, check_reason, check_variant
from .transport import HttpClient

__all__ = ["WebhookStore"]

NO_STATE = "webhook store has no state_url and has not set flag {flag_key!r} yet: the live variant is unknown"
BAD_STATE = "GET {url} returned no string field {field!r}: {body!r}"


class WebhookStore(FlagStore):
    """POSTs a variant change to a URL; optionally reads the live variant from another."""

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        state_url: str | None = None,
        state_field: str = "variant",
        variants: list[str] | None = None,
        client: HttpClient | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self.state_url = state_url
        self.state_field = state_field
        self.variants = list(variants) if variants else None
        self.client = client or HttpClient()
        self._last: dict[str, str] = {}

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _state_url(self, flag_key: str) -> str | None:
        return self.state_url.format(flag_key=flag_key) if self.state_url else None

    def _read(self, flag_key: str) -> str | None:
        url = self._state_url(flag_key)
        if url is None:
            return self._last.get(flag_key)
        body = self.client.request("GET", url, headers=self._headers).json()
        value = body.get(self.state_field) if isinstance(body, dict) else None
        if not isinstance(value, str):
            raise FlagStoreError(BAD_STATE.format(url=url, field=self.state_field, body=body))
        return value

    def current(self, flag_key: str) -> str:
        value = self._read(flag_key)
        if value is None:
            raise FlagStoreError(NO_STATE.format(flag_key=flag_key))
        return value

    def set_variant(self, flag_key: str, variant: str, *, reason: str, dry_run: bool = False) -> FlagChange:
        check_reason(reason)
        if self.variants is not None:
            check_variant(flag_key, variant, self.variants)
        previous = self._read(flag_key)
        if previous == variant or dry_run:
            return self._change(flag_key, previous, variant, changed=False, dry_run=dry_run, reason=reason)
        key = f"{flag_key}:{variant}:{uuid.uuid4()}"
        body = {
            "flag_key": flag_key,
            "variant": variant,
            "previous": previous,
            "reason": reason,
            "dry_run": False,
            "idempotency_key": key,
        }
        headers = {**self._headers, "Idempotency-Key": key}
        self.client.request("POST", self.url.format(flag_key=flag_key), headers=headers, json_body=body)
        self._last[flag_key] = variant
        return self._change(
            flag_key,
            previous,
            variant,
            changed=True,
            dry_run=False,
            reason=reason,
            idempotency_key=key,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "state_url": self.state_url,
            "auth": "bearer" if self._token else "none",
        }
