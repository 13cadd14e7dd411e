"""Secrets never leave the process: DSN passwords and registered secret values are masked.

Every log line (both formatters), ``/jobs``, and the CLI's error messages pass through
:func:`redact`. A DSN keeps its user, host and database: ``postgresql://user:***@host/db``.

>>> redact("connect postgresql://fw:s3cr%40t@db:5432/fairwatch failed")
'connect postgresql://fw:***@db:5432/fairwatch failed'
>>> register_secret("tok-123"); redact("Authorization: Bearer tok-123")
'Authorization: Bearer ***'
"""

from __future__ import annotations

import re
import threading

__all__ = ["redact", "redact_dsn", "register_secret"]

# scheme://user:password@ — the password is anything up to the last "@" before the host
_DSN_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*:)(?P<password>[^\s'\"]*)@")
_MIN_SECRET = 3  # shorter values would mask ordinary text
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` (a token, a SASL password) wherever it would be printed from now on."""
    if value and len(value) >= _MIN_SECRET:
        with _lock:
            _secrets.add(value)


def redact_dsn(url: str) -> str:
    """``postgresql://user:password@host/db`` → ``postgresql://user:***@host/db``."""
    return _DSN_PASSWORD.sub(lambda m: m["head"] + "***@", url)


def redact(text: str) -> str:
    """``text`` with every DSN password and registered secret masked."""
    text = redact_dsn(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text
