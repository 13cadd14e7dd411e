"""Child processes for test services: free ports, bounded shutdown, log tails, cleanup at exit."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("fairwatch.tests.infra")

_PR_SET_PDEATHSIG = 1


class ServiceUnavailable(RuntimeError):
    """A test service cannot be provided; the message says what is missing and how to get it."""


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that nothing listens on right now (the kernel picks them)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path | str, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, indented, for error messages."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"    (log unreadable: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join("    " + line for line in tail) or "    (log is empty)"


def child_setup(*, uid: int | None = None, gid: int | None = None, die_with_parent: bool = True) -> Callable[[], None]:
    """A ``preexec_fn``: drop to ``uid``/``gid`` if given, then die with this process.

    The parent-death signal is tied to the thread that forks; it is only set when that is
    the main thread (which lives as long as the process), otherwise a service started from
    a helper thread would die with that thread. It is set after the credential change,
    which would clear it.
    """
    on_main_thread = threading.current_thread() is threading.main_thread()

    def _setup() -> None:
        if gid is not None:
            os.setgroups([gid])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        if die_with_parent and on_main_thread:
            with contextlib.suppress(Exception):
                libc = ctypes.CDLL("libc.so.6", use_errno=True)
                libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return _setup


def terminate(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
    """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL; always reaps the child."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("pid %d ignored signal %d for %.0f s; killing it", proc.pid, sig, timeout)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return proc.wait(timeout=10)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.25,
    alive: Callable[[], bool] | None = None,
) -> bool:
    """Poll ``check`` until it is true (True), ``timeout`` passes or ``alive()`` is false (False).

    ``check`` handles its own transient errors; anything it raises ends the wait.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            return False
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def make_workdir(prefix: str, base: str | None = None) -> Path:
    """A fresh temp dir that records its owner's pid; dirs of dead owners are removed first.

    A test process killed with SIGKILL cannot clean up after itself (its services die with
    it, see :func:`child_setup`); the next run removes what it left behind.
    """
    root = Path(base or tempfile.gettempdir())
    for stale in root.glob(f"{prefix}*"):
        owner = stale / ".owner-pid"
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being made
        if not _pid_alive(pid):
            shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    (workdir / ".owner-pid").write_text(str(os.getpid()))
    return workdir


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Everything started by this package, closed at interpreter exit if a test forgot to.
_live: weakref.WeakSet = weakref.WeakSet()
_live_lock = threading.Lock()


def register_for_exit(service: object) -> None:
    """Remember ``service`` (it has ``close()``) so it is closed when the interpreter exits."""
    with _live_lock:
        _live.add(service)


def unregister_for_exit(service: object) -> None:
    with _live_lock:
        _live.discard(service)


@atexit.register
def _close_all() -> None:
    with _live_lock:
        services = list(_live)
    for service in services:
        with contextlib.suppress(Exception):
            service.close()  # type: ignore[attr-defined]


def provide_service(env_var: str, external: Callable, container: Callable, local: Callable):
    """The first source that works, in the fixtures' order, started.

    ``env_var`` set → ``external(value)``; a Docker engine answers → ``container()``;
    else ``local()``, closed again if its start fails. Raises :class:`ServiceUnavailable`.
    """
    from tests.infra.docker_engine import docker_available

    given = os.environ.get(env_var, "").strip()
    if given:
        return external(given).start()
    if docker_available():
        return container().start()
    service = local()
    try:
        return service.start()
    except BaseException:
        service.close()
        raise


@contextlib.contextmanager
def started(provide: Callable):
    """``with started(provide_kafka) as service: …`` — started, and closed afterwards."""
    service = provide()
    try:
        yield service
    finally:
        service.close()
