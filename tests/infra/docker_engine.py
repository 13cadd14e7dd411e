"""Is there a Docker engine that testcontainers could use? Answered quickly, once."""

from __future__ import annotations

import functools
import os
import socket

_FALSE = {"0", "false", "no", "off"}


@functools.cache
def docker_available(timeout: float = 2.0) -> bool:
    """True when a Docker engine answers ``/_ping`` within ``timeout`` seconds.

    ``FAIRWATCH_TEST_DOCKER=0`` turns the Docker path off. Without ``DOCKER_HOST`` and
    without ``/var/run/docker.sock`` the answer is False at once, with no client import.
    """
    if os.environ.get("FAIRWATCH_TEST_DOCKER", "").strip().lower() in _FALSE:
        return False
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return _ping_unix_socket("/var/run/docker.sock", timeout)
    if host.startswith("unix://"):
        return _ping_unix_socket(host[len("unix://") :], timeout)
    try:
        import docker  # testcontainers' own client, for tcp:// and ssh:// engines

        client = docker.from_env(timeout=max(1, int(timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _ping_unix_socket(path: str, timeout: float) -> bool:
    if not os.path.exists(path):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = s.recv(256)
    except OSError:
        return False
    status_line = reply.split(b"\r\n", 1)[0].split()
    return len(status_line) >= 2 and status_line[0].startswith(b"HTTP/") and status_line[1] == b"200"
