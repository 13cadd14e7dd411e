"""Structured logging: named loggers under ``fairwatch.*``, text or JSON lines, secrets masked."""

from __future__ import annotations

import logging
import sys
import time

import orjson

from fairwatch.app.redact import redact

__all__ = ["configure_logging", "JsonFormatter"]

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD:
                out[k] = v
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(out, default=str).decode())  # secrets never reach a log


class TextFormatter(logging.Formatter):
    """Human-readable, with ``extra`` fields appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = " ".join(f"{k}={v!r}" for k, v in record.__dict__.items() if k not in _STANDARD)
        return redact(f"{base} {extra}" if extra else base)


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is emitted, not as it was when logging was
    configured: a caller that runs commands in one process and swaps ``sys.stderr`` between them
    (pytest's capture, a notebook) never has records written to a closed stream."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it
        pass


def configure_logging(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("fairwatch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
