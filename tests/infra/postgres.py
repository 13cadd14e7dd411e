"""A real PostgreSQL server for tests, from the first source that works.

1. ``FAIRWATCH_POSTGRES_DSN``: a server someone else runs (any libpq DSN or URL).
2. testcontainers' ``PostgresContainer``, if a Docker engine answers
   (image: ``FAIRWATCH_POSTGRES_IMAGE``, default ``postgres:16-alpine``).
3. A throwaway cluster made with the installed PostgreSQL binaries (Debian's package puts
   them in ``/usr/lib/postgresql/<major>/bin``; ``FAIRWATCH_PG_BIN`` overrides) in a temporary
   directory, listening on a free port on 127.0.0.1 only, trust authentication, no fsync.

``initdb`` and ``postgres`` refuse to run as root. Run as root, the server processes drop to
the ``postgres`` system user that Debian's package creates (``FAIRWATCH_PG_OS_USER``
overrides; ``nobody`` is the fallback); the cluster's directory is made theirs.

The DSN (``postgresql://postgres@127.0.0.1:<port>/postgres``) works with psycopg 3.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

from tests.infra.processes import (
    ServiceUnavailable,
    child_setup,
    free_ports,
    log_tail,
    make_workdir,
    provide_service,
    register_for_exit,
    started,
    terminate,
    unregister_for_exit,
    wait_until,
)

log = logging.getLogger("fairwatch.tests.infra.postgres")

DSN_ENV = "FAIRWATCH_POSTGRES_DSN"
POSTGRES_IMAGE = "postgres:16-alpine"

_HOW_TO_GET_IT = (
    "To get one: set FAIRWATCH_POSTGRES_DSN=postgresql://user:pass@host:port/db to use a "
    "running server; or run a Docker engine (testcontainers); or install Debian's PostgreSQL "
    "(apt-get install postgresql, or `bash .ci/install.d/10-services.sh`)."
)


def find_pg_bin() -> Path:
    """The directory with ``initdb``, ``postgres`` and ``pg_isready`` (newest major first)."""
    override = os.environ.get("FAIRWATCH_PG_BIN", "").strip()
    candidates = [Path(override)] if override else []
    found = glob.glob("/usr/lib/postgresql/*/bin")

    def major(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/", path + "/")
        return tuple(int(g) for g in m.groups() if g) if m else (0,)

    candidates += [Path(p) for p in sorted(found, key=major, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bin_dir in candidates:
        if all((bin_dir / tool).is_file() for tool in ("initdb", "postgres", "pg_isready")):
            return bin_dir
    raise ServiceUnavailable(
        f"no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin or on PATH. {_HOW_TO_GET_IT}"
    )


def _os_user() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("FAIRWATCH_PG_OS_USER", "").strip()
    for name in [wanted] if wanted else ["postgres", "nobody"]:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ServiceUnavailable(
        "running as root, and neither a `postgres` nor a `nobody` system user exists to run "
        f"the PostgreSQL server as (initdb refuses root). {_HOW_TO_GET_IT}"
    )


class LocalPostgres:
    """A throwaway PostgreSQL cluster: ``initdb`` into a temp dir, ``postgres`` as a child."""

    kind = "local"

    def __init__(self, *, start_timeout: float = 60.0, stop_timeout: float = 30.0) -> None:
        self.bin_dir = find_pg_bin()
        self.user = _os_user()
        self.host = "127.0.0.1"
        (self.port,) = free_ports(1, self.host)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        # Under /tmp, not $TMPDIR: the dropped-privilege user must be able to reach it.
        base = "/tmp" if self.user is not None else None
        self.workdir = make_workdir("fairwatch-pg-", base)
        self.data_dir = self.workdir / "data"
        self.socket_dir = self.workdir / "socket"
        self.log_path = self.workdir.parent / f"{self.workdir.name}.log"
        self.dsn = f"postgresql://postgres@{self.host}:{self.port}/postgres"
        self.last_start_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        self._initialized = False
        self._failed = False
        self._closed = False
        self.log_path.touch()
        self.socket_dir.mkdir()
        if self.user is not None:
            for path in (self.workdir, self.socket_dir, self.log_path):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        register_for_exit(self)

    def _run_as(self) -> dict:
        setup = child_setup(uid=self.user.pw_uid, gid=self.user.pw_gid) if self.user is not None else child_setup()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", TZ="UTC")
        if self.user is not None:
            env.update(HOME=self.user.pw_dir or "/", USER=self.user.pw_name)
        return {"preexec_fn": setup, "env": env, "cwd": self.workdir, "stdin": subprocess.DEVNULL}

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LocalPostgres:
        if self._closed:
            raise RuntimeError("this PostgreSQL cluster was closed; make a new one")
        if self.is_running():
            return self
        began = time.monotonic()
        if not self._initialized:
            self._initdb()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        cmd = [
            str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
            "-p", str(self.port), "-k", str(self.socket_dir),
            "-c", f"listen_addresses={self.host}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=100", "-c", "shared_buffers=32MB",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            cmd, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
            **self._run_as(),
        )  # fmt: skip
        try:
            ready = wait_until(self._ready, timeout=self.start_timeout, alive=self.is_running)
        except BaseException:  # Ctrl-C while waiting: leave no server behind
            self._failed = True
            self.stop()
            raise
        if not ready:
            exited = self._proc.poll()
            self._failed = True
            self.stop()
            state = f"exited with code {exited}" if exited is not None else "did not get ready"
            raise ServiceUnavailable(
                f"PostgreSQL on {self.host}:{self.port} {state} within "
                f"{self.start_timeout:.0f} s; log: {self.log_path}\n{log_tail(self.log_path)}"
            )
        self.last_start_seconds = time.monotonic() - began
        log.info("PostgreSQL ready at %s in %.1f s", self.dsn, self.last_start_seconds)
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back sessions, checkpoint), SIGKILL after the bound."""
        if self._proc is not None:
            terminate(self._proc, sig=2, timeout=self.stop_timeout)
            self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            if not self._failed and not os.environ.get("FAIRWATCH_KEEP_TEST_LOGS"):
                with contextlib.suppress(OSError):
                    self.log_path.unlink()
            unregister_for_exit(self)

    def __enter__(self) -> LocalPostgres:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LocalPostgres {self.dsn} log={self.log_path}>"

    def _initdb(self) -> None:
        cmd = [
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions",
        ]  # fmt: skip
        with open(self.log_path, "ab") as out:
            try:
                done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=120, **self._run_as())
            except subprocess.TimeoutExpired as exc:
                self._failed = True
                raise ServiceUnavailable(f"initdb did not finish in 120 s; log: {self.log_path}") from exc
        if done.returncode != 0:
            self._failed = True
            raise ServiceUnavailable(
                f"initdb failed (exit {done.returncode}); log: {self.log_path}\n{log_tail(self.log_path)}"
            )
        self._initialized = True

    def _ready(self) -> bool:
        try:
            done = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port),
                 "-U", "postgres", "-d", "postgres", "-t", "2"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=10,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0


class ExternalPostgres:
    """A server from ``FAIRWATCH_POSTGRES_DSN``, used as is."""

    kind = "external"
    log_path = None

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def start(self) -> ExternalPostgres:
        return self

    def close(self) -> None:
        pass

    def __enter__(self) -> ExternalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContainerPostgres:
    """testcontainers' PostgresContainer."""

    kind = "testcontainers"
    log_path = None

    def __init__(self, image: str | None = None) -> None:
        self.image = image or os.environ.get("FAIRWATCH_POSTGRES_IMAGE", "").strip() or POSTGRES_IMAGE
        self.dsn = ""
        self._container = None

    def start(self) -> ContainerPostgres:
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:
            try:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    from testcontainers.postgres import PostgresContainer
            except ImportError as exc:
                raise ServiceUnavailable(
                    "a Docker engine answers but `testcontainers` is not installed (pip install 'testcontainers>=4')"
                ) from exc
        container = PostgresContainer(self.image, driver=None)
        try:
            container.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                container.stop()
            raise ServiceUnavailable(f"testcontainers could not start {self.image}: {exc}") from exc
        self._container = container
        self.dsn = container.get_connection_url(driver=None)
        register_for_exit(self)
        return self

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.stop()
            self._container = None
            unregister_for_exit(self)

    def __enter__(self) -> ContainerPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


PostgresServer = LocalPostgres | ExternalPostgres | ContainerPostgres


def provide_postgres():
    """A started server from the first source that works; raises :class:`ServiceUnavailable`."""
    return provide_service(DSN_ENV, ExternalPostgres, ContainerPostgres, LocalPostgres)


def postgres_server():
    """``with postgres_server() as pg: psycopg.connect(pg.dsn)`` — started, then removed."""
    return started(provide_postgres)
