"""Admin HTTP API (stdlib ``http.server`` in a thread), bearer-token protected.

``GET /incidents[?status=open|closed]``, ``GET /flags``, ``POST /flags/rollback``
and ``POST /flags/restore`` (JSON body ``{"model", "reason", "to"?, "dry_run"?}``),
``GET /baselines``. No ``Authorization`` header → 401; a wrong token → 403.
Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from .audit import ADMIN_ROLLBACK
from .flags import FlagStoreError
from .loop import AlertLoop

__all__ = ["serve_admin"]

log = logging.getLogger("fairwatch.alerts.admin")


def serve_admin(loop: AlertLoop, *, token: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start the admin API in a daemon thread; ``server.shutdown()`` stops it."""
    if not token:
        raise ValueError("admin API needs a non-empty bearer token")

    class Handler(BaseHTTPRequestHandler):
        server_version = "fairwatch-admin"

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug(fmt, *args)

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if code == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="fairwatch"')
            self.end_headers()
            self.wfile.write(data)

        def _auth(self) -> bool:
            header = self.headers.get("Authorization")
            if not header or not header.startswith("Bearer "):
                self._send(401, {"error": "missing bearer token"})
                return False
            if not hmac.compare_digest(header[7:].strip().encode(), token.encode()):
                self._send(403, {"error": "invalid token"})
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802
            if not self._auth():
                return
            url = urlparse(self.path)
            if url.path == "/incidents":
                status = parse_qs(url.query).get("status", [None])[0]
                if status not in (None, "open", "closed"):
                    self._send(400, {"error": f"status must be open or closed, got {status!r}"})
                    return
                self._send(200, {"incidents": loop.incidents(status)})
            elif url.path == "/flags":
                self._send(200, {"flags": loop.rollback.status() if loop.rollback else []})
            elif url.path == "/baselines":
                self._send(200, {"baselines": loop.baselines.entries()})
            else:
                self._send(404, {"error": f"no such endpoint {url.path!r}"})

        def do_POST(self) -> None:  # noqa: N802
            if not self._auth():
                return
            path = urlparse(self.path).path
            if path not in ("/flags/rollback", "/flags/restore"):
                self._send(404, {"error": f"no such endpoint {path!r}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                model, reason = body["model"], body["reason"]
                if not isinstance(model, str) or not isinstance(reason, str) or not reason.strip():
                    raise ValueError("model and a non-empty reason are required")
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, {"error": f"bad request body: {exc}"})
                return
            if loop.rollback is None:
                self._send(409, {"error": "no rollback configured (alerts.rollback.models)"})
                return
            try:
                if path == "/flags/rollback":
                    rec = loop.rollback.rollback(
                        f"manual/{model}/{loop.audit.append(ADMIN_ROLLBACK, model=model, reason=reason)['seq']}",
                        model,
                        now=_now(loop),
                        reason=reason,
                        manual=True,
                        dry_run=bool(body.get("dry_run", False)),
                        target=body.get("to"),
                    )
                    self._send(200, rec.as_dict())
                else:
                    self._send(
                        200,
                        loop.rollback.restore(
                            model, reason=reason, to=body.get("to"), dry_run=bool(body.get("dry_run", False))
                        ),
                    )
            except KeyError as exc:
                self._send(404, {"error": str(exc.args[0])})
            except (ValueError, FlagStoreError) as exc:
                self._send(409, {"error": str(exc)})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fairwatch-admin", daemon=True).start()
    return server


def _now(loop: AlertLoop) -> float:
    import time

    return time.time()
