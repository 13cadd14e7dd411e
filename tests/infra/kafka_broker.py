"""A real Kafka broker for tests, from the first source that works.

1. ``FAIRWATCH_KAFKA_BOOTSTRAP`` (``host:port[,host:port]``): a broker someone else runs.
2. testcontainers' Kafka, if a Docker engine answers (image: ``FAIRWATCH_KAFKA_IMAGE``).
3. A single-node Apache Kafka 4.x in KRaft mode (broker + controller in one JVM) started
   from its Maven Central jars. ``tests/infra/kafka/pom.xml`` lists them; Maven copies them
   once into ``$FAIRWATCH_KAFKA_LIBS`` (default ``~/.cache/fairwatch/kafka-<version>/libs``).
   It listens on free loopback ports only, and :meth:`LocalKafkaBroker.stop` /
   :meth:`LocalKafkaBroker.start` restart the same broker with its data and its port.

Use::

    with kafka_broker() as broker:
        KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

Environment: ``FAIRWATCH_KAFKA_VERSION`` (default :data:`KAFKA_VERSION`),
``FAIRWATCH_KAFKA_LIBS``, ``FAIRWATCH_KAFKA_HEAP_OPTS`` (default ``-Xms256m -Xmx512m``),
``FAIRWATCH_KAFKA_START_TIMEOUT`` (seconds, default 90), ``FAIRWATCH_TEST_DOCKER=0`` (skip
the Docker path), ``FAIRWATCH_TEST_LOG_DIR`` (where broker logs go), ``JAVA_HOME``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from pathlib import Path

from tests.infra.processes import (
    ServiceUnavailable,
    child_setup,
    free_ports,
    log_tail,
    make_workdir,
    port_accepts,
    port_is_free,
    provide_service,
    register_for_exit,
    started,
    terminate,
    unregister_for_exit,
    wait_until,
)

log = logging.getLogger("fairwatch.tests.infra.kafka")

#: The Apache Kafka release started from Maven Central; keep in sync with kafka/pom.xml.
KAFKA_VERSION = "4.1.1"
#: Image for the Docker path (Confluent Platform 7.9 = Apache Kafka 3.9, KRaft).
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"

POM_PATH = Path(__file__).resolve().parent / "kafka" / "pom.xml"
BOOTSTRAP_ENV = "FAIRWATCH_KAFKA_BOOTSTRAP"

_HOW_TO_GET_IT = (
    "To get a broker: set FAIRWATCH_KAFKA_BOOTSTRAP=host:port to use a running one; or run a "
    "Docker engine (testcontainers); or install Java 17 + Maven (apt-get install "
    "openjdk-17-jre-headless maven) and run `bash .ci/install.d/10-services.sh` to fetch the "
    "Apache Kafka jars."
)


class RestartUnsupported(ServiceUnavailable):
    """This broker cannot be stopped and started again by the tests (not ours to stop)."""


def kafka_version() -> str:
    return os.environ.get("FAIRWATCH_KAFKA_VERSION", "").strip() or KAFKA_VERSION


def default_libs_dir(version: str | None = None) -> Path:
    """``$FAIRWATCH_KAFKA_LIBS``, else ``<XDG cache>/fairwatch/kafka-<version>/libs``."""
    override = os.environ.get("FAIRWATCH_KAFKA_LIBS", "").strip()
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache")
    return cache / "fairwatch" / f"kafka-{version or kafka_version()}" / "libs"


def _jars_complete(libs: Path, version: str) -> bool:
    return (libs / ".complete").is_file() and (libs / f"kafka_2.13-{version}.jar").is_file()


def ensure_kafka_jars(version: str | None = None, libs_dir: Path | None = None) -> Path:
    """The directory of the broker's jars, fetched with Maven on first use (then cached).

    Safe to call from several processes at once: the fetch happens under a file lock into a
    temporary directory that is renamed into place when complete.
    """
    version = version or kafka_version()
    libs = Path(libs_dir) if libs_dir else default_libs_dir(version)
    if _jars_complete(libs, version):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceUnavailable(
            f"Apache Kafka {version} jars are not in {libs} and Maven (`mvn`) is not installed "
            f"to fetch them. {_HOW_TO_GET_IT}"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.parent / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _jars_complete(libs, version):
            return libs
        partial = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=libs.parent))
        cmd = [
            mvn, "-q", "-B", "-f", str(POM_PATH),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]  # fmt: skip
        log.info("fetching Apache Kafka %s jars: %s", version, shlex.join(cmd))
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise ServiceUnavailable(f"`{shlex.join(cmd)}` did not finish in 900 s. {_HOW_TO_GET_IT}") from exc
        if done.returncode != 0 or not (partial / f"kafka_2.13-{version}.jar").is_file():
            shutil.rmtree(partial, ignore_errors=True)
            output = (done.stdout + done.stderr).strip()[-3000:]
            raise ServiceUnavailable(
                f"Maven could not fetch Apache Kafka {version} (exit {done.returncode}) with "
                f"`{shlex.join(cmd)}`:\n{output}\n{_HOW_TO_GET_IT}"
            )
        (partial / ".complete").write_text(f"kafka_2.13 {version}\n")
        if libs.exists():
            shutil.rmtree(libs)
        partial.rename(libs)
    return libs


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME", "").strip()
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ServiceUnavailable(f"Java is not installed (no `java` on PATH). {_HOW_TO_GET_IT}")
    return java


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as ``Uuid``)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka's Uuid.randomUuid() rejects these too
            return cid


def kafka_ready(bootstrap_servers: str, *, timeout_ms: int = 5000) -> bool:
    """True when a metadata round-trip through the admin API lists at least one broker."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="fairwatch-infra-readiness",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        return bool(admin.describe_cluster().get("brokers"))
    finally:
        admin.close()


def _log_dir() -> Path:
    path = Path(
        os.environ.get("FAIRWATCH_TEST_LOG_DIR", "").strip() or Path(tempfile.gettempdir()) / "fairwatch-test-logs"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""


class LocalKafkaBroker:
    """One Apache Kafka 4.x node (``process.roles=broker,controller``) in a child JVM.

    Data lives in a temporary directory until :meth:`close`; :meth:`stop` then
    :meth:`start` restarts the same node on the same ports with the same data. The JVM's
    output goes to :attr:`log_path`, which every error message names.
    """

    kind = "local"
    restartable = True

    def __init__(
        self,
        *,
        version: str | None = None,
        libs_dir: Path | None = None,
        heap_opts: str | None = None,
        start_timeout: float | None = None,
        stop_timeout: float = 30.0,
        extra_properties: dict[str, str] | None = None,
    ) -> None:
        self.version = version or kafka_version()
        self.libs_dir = Path(libs_dir) if libs_dir else None
        self.heap_opts = heap_opts or os.environ.get("FAIRWATCH_KAFKA_HEAP_OPTS", "").strip() or "-Xms256m -Xmx512m"
        self.start_timeout = start_timeout or float(os.environ.get("FAIRWATCH_KAFKA_START_TIMEOUT", "") or 90)
        self.stop_timeout = stop_timeout
        self.extra_properties = dict(extra_properties or {})
        self.host = "127.0.0.1"
        self.port, self.controller_port = free_ports(2, self.host)
        self.workdir = make_workdir("fairwatch-kafka-")
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "server.properties"
        self.log_path = _log_dir() / f"{self.workdir.name}.log"
        self.cluster_id = random_cluster_id()
        self.last_start_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._log_file = None
        self._formatted = False
        self._failed = False
        self._closed = False
        self._last_probe_error = "none yet"
        register_for_exit(self)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": (f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
        }
        props.update(self.extra_properties)
        return props

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalKafkaBroker:
        """Start the node (format its storage the first time) and wait until it serves."""
        if self._closed:
            raise RuntimeError("this broker was closed; make a new one")
        if self.is_running():
            return self
        began = time.monotonic()
        libs = ensure_kafka_jars(self.version, self.libs_dir)
        java = java_executable()
        classpath = str(libs / "*")
        if not self._formatted:
            self._write_config()
            self._format(java, classpath)
        self._wait_ports_free()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the JVM
        self._log_file.write(f"\n=== fairwatch: starting kafka.Kafka {self.version} ===\n".encode())
        self._log_file.flush()
        cmd = [java, *self._jvm_opts(), "-cp", classpath, "kafka.Kafka", str(self.config_path)]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, which stops us
            preexec_fn=child_setup(),
        )
        try:
            ready = wait_until(self._ready_probe, timeout=self.start_timeout, interval=0.25, alive=self.is_running)
        except BaseException:  # a broken probe or Ctrl-C: leave no JVM behind
            self._failed = True
            self._kill()
            raise
        if not ready:
            exited = self._proc.poll()
            self._failed = True
            self._kill()
            state = (
                f"exited with code {exited}"
                if exited is not None
                else f"not ready after {self.start_timeout:.0f} s (last check: {self._last_probe_error})"
            )
            raise ServiceUnavailable(
                f"Apache Kafka {self.version} broker on {self.bootstrap_servers} {state}; "
                f"broker log: {self.log_path}\n{log_tail(self.log_path)}"
            )
        self.last_start_seconds = time.monotonic() - began
        log.info(
            "Kafka %s ready on %s in %.1f s (pid %d, log %s)",
            self.version, self.bootstrap_servers, self.last_start_seconds,
            self._proc.pid, self.log_path,
        )  # fmt: skip
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Shut the node down cleanly (SIGTERM, then SIGKILL after ``timeout``); keep its data."""
        if self._proc is None:
            return
        code = terminate(self._proc, timeout=self.stop_timeout if timeout is None else timeout)
        log.info("Kafka on %s stopped (exit %s)", self.bootstrap_servers, code)
        self._proc = None
        self._close_log_file()

    def kill(self) -> None:
        """SIGKILL the node (a crash); :meth:`start` recovers it from its data."""
        self._kill()

    def close(self) -> None:
        """Stop the node and remove its data; its log is kept only if something failed."""
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

    def __enter__(self) -> LocalKafkaBroker:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        where = f"{self.bootstrap_servers} {state} log={self.log_path}"
        return f"<LocalKafkaBroker {self.version} {where}>"

    # -- internals ---------------------------------------------------------------------------

    def _jvm_opts(self, heap_opts: str | None = None) -> list[str]:
        return [
            *shlex.split(self.heap_opts if heap_opts is None else heap_opts),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.workdir}",
        ]

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}={v}" for k, v in self.properties().items()]
        self.config_path.write_text("# generated by tests/infra/kafka_broker.py\n" + "\n".join(lines) + "\n")
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)

    def _format(self, java: str, classpath: str) -> None:
        cmd = [
            java, *self._jvm_opts("-Xmx256m"),
            "-cp", classpath, "kafka.tools.StorageTool", "format",
            "--cluster-id", self.cluster_id, "--config", str(self.config_path),
        ]  # fmt: skip
        with open(self.log_path, "ab") as out:
            out.write(f"=== fairwatch: {shlex.join(cmd)} ===\n".encode())
            out.flush()
            try:
                done = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.workdir, timeout=120, preexec_fn=child_setup(),
                )  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                self._failed = True
                raise ServiceUnavailable(
                    f"Kafka StorageTool format did not finish in 120 s; log: {self.log_path}"
                ) from exc
        if done.returncode != 0:
            self._failed = True
            raise ServiceUnavailable(
                f"Kafka StorageTool format failed (exit {done.returncode}); log: "
                f"{self.log_path}\n{log_tail(self.log_path)}"
            )
        self._formatted = True

    def _wait_ports_free(self) -> None:
        """After a stop the kernel may hold the ports briefly; wait, then fail loudly."""
        ports = (self.port, self.controller_port)
        if wait_until(lambda: all(port_is_free(p, self.host) for p in ports), timeout=15):
            return
        self._failed = True
        raise ServiceUnavailable(
            f"ports {ports} on {self.host} are taken by another process; Kafka cannot restart "
            f"on its old address; log: {self.log_path}"
        )

    def _ready_probe(self) -> bool:
        if not port_accepts(self.port, self.host):
            self._last_probe_error = f"nothing accepts connections on {self.bootstrap_servers}"
            return False
        from kafka.errors import KafkaError

        try:
            return kafka_ready(self.bootstrap_servers, timeout_ms=3000)
        except (KafkaError, OSError) as exc:  # not yet; anything else is a bug: raise it
            self._last_probe_error = f"{type(exc).__name__}: {exc}"
            return False

    def _kill(self) -> None:
        if self._proc is not None:
            terminate(self._proc, sig=9, timeout=10)
            self._proc = None
        self._close_log_file()

    def _close_log_file(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class ExternalKafka:
    """A broker from ``FAIRWATCH_KAFKA_BOOTSTRAP``: used as is, never stopped by the tests."""

    kind = "external"
    restartable = False

    def __init__(self, bootstrap_servers: str, *, timeout: float = 30.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout = timeout
        self.log_path: Path | None = None

    def start(self) -> ExternalKafka:
        from kafka.errors import KafkaError

        def ready() -> bool:
            try:
                return kafka_ready(self.bootstrap_servers)
            except (KafkaError, OSError):
                return False

        if not wait_until(ready, timeout=self.timeout):
            raise ServiceUnavailable(
                f"no Kafka broker answers at {BOOTSTRAP_ENV}={self.bootstrap_servers!r} within {self.timeout:.0f} s"
            )
        return self

    def stop(self, timeout: float | None = None) -> None:
        raise RestartUnsupported(
            f"the broker at {self.bootstrap_servers} comes from {BOOTSTRAP_ENV}; the tests do "
            "not stop it. Unset the variable to let the tests run their own broker."
        )

    def close(self) -> None:
        pass

    def __enter__(self) -> ExternalKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class ContainerKafka:
    """testcontainers' Kafka (KRaft) in Docker. Its mapped port changes on a container
    restart, so it does not offer stop()/start() of the same address."""

    kind = "testcontainers"
    restartable = False

    def __init__(self, image: str | None = None) -> None:
        self.image = image or os.environ.get("FAIRWATCH_KAFKA_IMAGE", "").strip() or KAFKA_IMAGE
        self.log_path: Path | None = None
        self._container = None
        self.bootstrap_servers = ""

    def start(self) -> ContainerKafka:
        if self._container is not None:
            raise RestartUnsupported("a testcontainers Kafka cannot be restarted on its address")
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    from testcontainers.kafka import KafkaContainer
            except ImportError as exc:
                raise ServiceUnavailable(
                    "a Docker engine answers but `testcontainers` is not installed (pip install 'testcontainers>=4')"
                ) from exc
        container = KafkaContainer(self.image).with_kraft()
        try:
            container.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                container.stop()
            raise ServiceUnavailable(f"testcontainers could not start {self.image}: {exc}") from exc
        self._container = container
        self.bootstrap_servers = container.get_bootstrap_server()
        register_for_exit(self)
        return self

    def stop(self, timeout: float | None = None) -> None:
        raise RestartUnsupported(
            "a testcontainers Kafka gets a new host port when restarted, so the tests cannot "
            "stop and start it on the same address; set FAIRWATCH_TEST_DOCKER=0 to use the "
            "local Apache Kafka broker instead"
        )

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.stop()
            self._container = None
            unregister_for_exit(self)

    def __enter__(self) -> ContainerKafka:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


KafkaBroker = LocalKafkaBroker | ExternalKafka | ContainerKafka


def provide_kafka():
    """A started broker from the first source that works; raises :class:`ServiceUnavailable`."""
    return provide_service(BOOTSTRAP_ENV, ExternalKafka, ContainerKafka, LocalKafkaBroker)


def kafka_broker():
    """``with kafka_broker() as b: b.bootstrap_servers`` — started, and closed afterwards."""
    return started(provide_kafka)
