"""A small JSON-over-HTTP client for the remote flag stores (stdlib only).

Timeouts on every request; retries with capped exponential backoff and jitter on
connection errors, 429 and 5xx (honouring a numeric ``Retry-After``); 4xx other
than 429 fail at once, because repeating a rejected change will not fix it.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .base import FlagStoreHTTPError

__all__ = ["HttpClient", "HttpResponse"]

log = logging.getLogger("fairwatch.alerts.flags")

HTTP_FAILED = "{method} {url} failed with HTTP {status}: {body}"
HTTP_UNREACHABLE = "{method} {url} failed after {attempts} attempt(s): {error}"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body.strip() else None


class HttpClient:
    """JSON requests with a timeout, bounded retries and backoff."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "fairwatch-flags/0.1",
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0; got {retries!r}")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.sleep = sleep
        self.user_agent = user_agent

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.backoff_max)
        base = min(self.backoff * (2**attempt), self.backoff_max)
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        content_type: str = "application/json",
    ) -> HttpResponse:
        data = None if json_body is None else json.dumps(json_body).encode("utf-8")
        hdrs = {"Accept": "application/json", "User-Agent": self.user_agent}
        if data is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        last_error: str = ""
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
            retry_after = None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                    return HttpResponse(resp.status, resp.read(), dict(resp.headers.items()))
            except urllib.error.HTTPError as exc:
                with exc:
                    body = exc.read().decode("utf-8", "replace")[:500]
                    retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if exc.code != 429 and exc.code < 500:
                    raise FlagStoreHTTPError(
                        HTTP_FAILED.format(method=method, url=url, status=exc.code, body=body),
                        status=exc.code,
                        body=body,
                    ) from None
                last_error = f"HTTP {exc.code}: {body}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.retries:
                delay = self._delay(attempt, retry_after)
                log.warning(
                    "%s %s failed (%s); retry %d/%d in %.2fs",
                    method,
                    url,
                    last_error,
                    attempt + 1,
                    self.retries,
                    delay,
                )
                self.sleep(delay)
        raise FlagStoreHTTPError(
            HTTP_UNREACHABLE.format(method=method, url=url, attempts=self.retries + 1, error=last_error)
        )
