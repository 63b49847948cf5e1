"""A real, single-node Apache Kafka broker for tests and the demo.

Why a real broker rather than a fake: the failure modes we care about (group
rebalances, commit semantics, a broker that disappears and comes back, SASL
rejections) live in the broker and in aiokafka's handling of it, so a mock would
test our assumptions instead of the system.

How it works, end to end:

1. :func:`ensure_jars` writes a tiny Maven ``pom.xml`` into a cache directory and
   lets Maven download Kafka (``KAFKA_VERSION``) and its runtime dependencies (plus an
   slf4j binding, so the broker can log). A marker file makes later calls instant.
2. :class:`LocalKafka` picks free ports on 127.0.0.1, writes ``server.properties``
   and a log4j2 configuration into a data directory, formats KRaft storage once,
   and starts ``kafka.Kafka`` as a child process in its own process group.
3. It is ready when *its own* broker serves clients: the JVM it started is alive and
   listening on the port, and aiokafka's admin client, asked on that port, reports the
   cluster id this launcher generated and our node as a live broker. Another broker
   answering on a port we wanted is never taken for ours; a port already in use is
   refused before any JVM starts, in one line.

Only the standard library is imported at module level; aiokafka is imported lazily
by the functions that talk to the broker, so importing this module has no side effects.

The command line::

    python -m devtools.local_kafka fetch                      # just download the jars
    python -m devtools.local_kafka run [--port N] [--data-dir D]

``run`` prints ``BOOTSTRAP=127.0.0.1:NNNN`` on one line once the broker is ready
and stays in the foreground until SIGTERM or SIGINT, then stops the broker cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import enum
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from monitor.errors import MonitorError, ServiceStateError

if TYPE_CHECKING:
    from aiokafka.admin import AIOKafkaAdminClient

__all__ = [
    "DEFAULT_JVM_OPTIONS",
    "KAFKA_VERSION",
    "SINGLE_NODE_PROPERTIES",
    "LocalKafka",
    "LocalKafkaError",
    "cluster_id",
    "create_topics",
    "default_cache_dir",
    "ensure_jars",
    "main",
]

KAFKA_VERSION = "4.1.1"
_SCALA_VERSION = "2.13"
# Kafka 4.1 resolves slf4j-api 1.7.36; log4j-slf4j-impl (not -slf4j2-impl) binds that line.
_LOG4J_VERSION = "2.24.3"
_DEPENDENCY_PLUGIN_VERSION = "3.8.1"

# A small, quick-to-start JVM: the CI machine has 2 cores and the broker shares them with pytest.
# C1-only compilation (TieredStopAtLevel=1) starts noticeably faster; pass your own options for
# benchmarks.
DEFAULT_JVM_OPTIONS: tuple[str, ...] = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

# What a single node needs. Kafka's defaults assume three brokers: internal topics with
# three replicas, and the transaction log with min.insync.replicas 2, so on one node the
# first consumer group, the first transaction (InitProducerId) or the first share group
# would wait for replicas that never come. docker-compose.yml's broker has the same
# settings (tests/test_local_kafka.py checks it).
SINGLE_NODE_PROPERTIES: dict[str, str] = {
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
}

_CACHE_ENV = "MONITOR_KAFKA_CACHE"
_MARKER = ".complete"
_LOG_FILE = "broker.log"
_STDOUT_FILE = "broker.out"
_SASL_USER_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_NODE_ID = 1
_PROBE_NAME = "local-kafka-readiness"  # the group / transactional id the readiness probe asks for
_T = TypeVar("_T")


class LocalKafkaError(MonitorError):
    """The local test broker could not be fetched, started or used.

    The message carries what is needed to fix it without rerunning: Maven's last
    output lines, or the tail of the broker's log.
    """


# --------------------------------------------------------------------------- jars


def default_cache_dir() -> Path:
    """Where the Kafka jars are cached: ``$MONITOR_KAFKA_CACHE`` or a per-user cache directory."""
    override = os.environ.get(_CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-model-monitor" / f"kafka-{KAFKA_VERSION}"


def _pom_xml() -> str:
    # The text is fingerprinted by ensure_jars: any edit, even of the comment (which still
    # names the module's old home), makes every checkout sharing the cache fetch again.
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by monitor.local_kafka: fetches the Kafka broker's runtime classpath. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kafka-model-monitor</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{_SCALA_VERSION}</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{_LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>{_DEPENDENCY_PLUGIN_VERSION}</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""


def ensure_jars(cache_dir: Path | str | None = None, *, verbose: bool = False) -> Path:
    """Make sure the broker's jars are in ``cache_dir/libs`` and return that directory.

    The first call runs Maven (tens of seconds on a cold Maven repository); later calls
    only read a marker file. The marker records a fingerprint of the pom, so changing
    the Kafka version here fetches again instead of silently using stale jars. A file
    lock serialises concurrent first calls (parallel test runs, setup script).
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    libs = cache / "libs"
    pom = _pom_xml()
    fingerprint = hashlib.sha256(pom.encode()).hexdigest()
    marker = cache / _MARKER
    if _marker_ok(marker, fingerprint, libs):
        return libs

    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalKafkaError(f"cannot create the Kafka jar cache {cache}: {exc}") from exc
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _marker_ok(marker, fingerprint, libs):  # another process fetched while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(
                "Maven ('mvn') is not on PATH; it is needed once to download Kafka "
                f"{KAFKA_VERSION} (e.g. apt-get install maven)"
            )
        (cache / "pom.xml").write_text(pom)
        staging = cache / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(cache / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        if verbose:
            print(f"fetching Kafka {KAFKA_VERSION} jars with Maven into {libs}", file=sys.stderr)
        started = time.monotonic()
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        jars = sorted(staging.glob("*.jar")) if staging.is_dir() else []
        if result.returncode != 0 or not any(j.name.startswith("kafka_") for j in jars):
            tail = "\n".join(result.stdout.strip().splitlines()[-25:]) or "(no output)"
            raise LocalKafkaError(
                f"Maven failed to fetch Kafka {KAFKA_VERSION} (exit code {result.returncode}).\n"
                f"command: {' '.join(command)}\nlast output lines:\n{tail}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(fingerprint + "\n")
        if verbose:
            size = sum(j.stat().st_size for j in libs.glob("*.jar")) / 1e6
            print(
                f"fetched {len(jars)} jars ({size:.0f} MB) in {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
    return libs


def _marker_ok(marker: Path, fingerprint: str, libs: Path) -> bool:
    try:
        return marker.read_text().strip() == fingerprint and libs.is_dir()
    except OSError:
        return False


# --------------------------------------------------------------------------- broker


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"  # process gone, data dir still there: start()/restart() may follow
    CLOSED = "closed"  # stopped for good; a temporary data dir has been removed


class LocalKafka:
    """One KRaft broker+controller on 127.0.0.1, as a child process.

    >>> kafka = LocalKafka()  # nothing happens until start()
    >>> kafka.running
    False

    Use it as a context manager (``with LocalKafka() as kafka: kafka.bootstrap_servers``)
    or call :meth:`start` and :meth:`stop`. :meth:`kill` and :meth:`restart` exist for
    fault tests: the broker comes back on the *same* ports and data directory, so
    clients reconnect to the address they already have.

    ``sasl_plain_users`` (name -> password) adds a second listener using SASL/PLAIN
    over plaintext, exposed as :attr:`sasl_bootstrap_servers`.

    ``cluster_id`` formats new storage with that id instead of a random one (tests pin it);
    a data directory that is already formatted keeps its own, which must then agree.

    ``die_with_parent`` (Linux) asks the kernel to SIGKILL the broker when this process
    dies, so a crashed or killed test run never leaves a JVM behind. It applies only to
    starts from the main thread (see ``_bind_lifetime``); starts from other threads work
    but are not bound.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | str | None = None,
        keep_data: bool = False,
        sasl_plain_users: dict[str, str] | None = None,
        cache_dir: Path | str | None = None,
        startup_timeout: float = 60.0,
        jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS,
        log_level: str = "INFO",
        extra_properties: dict[str, str] | None = None,
        die_with_parent: bool = True,
        cluster_id: str | None = None,
    ) -> None:
        if cluster_id is not None and not _is_cluster_id(cluster_id):
            raise ValueError(
                f"cluster id {cluster_id!r} is not a Kafka Uuid (22 url-safe base64 characters)"
            )
        for name, password in (sasl_plain_users or {}).items():
            if not _SASL_USER_RE.match(name):
                raise ValueError(f"SASL user name {name!r} must match {_SASL_USER_RE.pattern}")
            if any(c in password for c in '"\\\n\r') or not password.isprintable():
                raise ValueError(f"SASL password of {name!r} has characters JAAS cannot quote")
        self.port = port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.keep_data = keep_data
        self.sasl_plain_users = dict(sasl_plain_users) if sasl_plain_users else None
        self.cache_dir = cache_dir
        self.startup_timeout = startup_timeout
        self.jvm_options = tuple(jvm_options)
        self.log_level = log_level
        self.extra_properties = dict(extra_properties or {})
        self.die_with_parent = die_with_parent

        self._cluster_id = cluster_id
        self._state = _State.NEW
        self._process: subprocess.Popen[bytes] | None = None
        self._root: Path | None = None
        self._owns_root = False
        self._ports: dict[str, int] = {}
        self._log_offset = 0

    # ---------------------------------------------------------------- properties

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"`` of the PLAINTEXT listener."""
        return f"127.0.0.1:{self._port('plaintext')}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"`` of the SASL_PLAINTEXT listener (only with ``sasl_plain_users``)."""
        if self.sasl_plain_users is None:
            raise ServiceStateError("this broker was created without sasl_plain_users")
        return f"127.0.0.1:{self._port('sasl')}"

    @property
    def root(self) -> Path:
        """The data directory: configuration, ``broker.log`` and the KRaft log dirs."""
        if self._root is None:
            raise ServiceStateError("the broker has not been started")
        return self._root

    @property
    def log_path(self) -> Path:
        """The broker's log4j log file (INFO by default): read it when a test fails."""
        return self.root / _LOG_FILE

    @property
    def cluster_id(self) -> str:
        """The KRaft cluster id this broker was formatted with: how readiness knows it is ours."""
        if self._cluster_id is None:
            raise ServiceStateError("the broker has not been started; the id is chosen at start()")
        return self._cluster_id

    @property
    def pid(self) -> int | None:
        """The broker JVM's process id while it runs."""
        return self._process.pid if self.running and self._process else None

    def _port(self, name: str) -> int:
        if name not in self._ports:
            raise ServiceStateError("the broker has not been started; ports are chosen at start()")
        return self._ports[name]

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> LocalKafka:
        """Start the broker and return once it serves clients; raise LocalKafkaError otherwise.

        The first start fetches jars if needed, chooses ports and formats storage; a
        start after :meth:`kill` or :meth:`restart` reuses all three.
        """
        if self._state is _State.RUNNING:
            raise ServiceStateError("the broker is already running")
        if self._state is _State.CLOSED:
            raise ServiceStateError("the broker was stopped for good; create a new LocalKafka")
        if self._state is _State.NEW and self.port is not None:
            _check_ports_free({"PLAINTEXT": self.port})  # before jars, storage and a JVM
        java = _find_java()
        libs = ensure_jars(self.cache_dir)
        if self._state is _State.NEW:
            self._prepare(java, libs)
        self._launch(java, libs)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``) and clean up; idempotent.

        A temporary data directory is removed unless ``keep_data`` was set; a data
        directory given by the caller is never removed.
        """
        if self._state is _State.CLOSED:
            return
        self._terminate(signal.SIGTERM, timeout)
        if self._owns_root and not self.keep_data and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._state = _State.CLOSED

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; the data stays so :meth:`start` can follow."""
        if self._state is not _State.RUNNING:
            return
        self._terminate(signal.SIGKILL, 10.0)

    def restart(self, *, down_for: float = 0.0, hard: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL if ``hard``), stay down ``down_for`` seconds, start again.

        Ports and data survive, so topics, committed offsets and client bootstrap
        addresses stay valid: clients see an outage, not a new cluster.
        """
        if self._state is _State.RUNNING:
            self._terminate(signal.SIGKILL if hard else signal.SIGTERM, 30.0)
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f" {self.bootstrap_servers}" if self._ports else ""
        return f"<LocalKafka {self._state.value}{where}>"

    def create_topics(self, names: Iterable[str], partitions: int = 1) -> None:
        """Create topics on this broker (existing ones are left as they are)."""
        create_topics(self.bootstrap_servers, names, partitions=partitions)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log and console output, for error messages."""
        if self._root is None:
            return "(no log: the broker was never started)"
        parts = []
        for name in (_LOG_FILE, _STDOUT_FILE):
            path = self._root / name
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").strip()
                if text:
                    tail = "\n".join(text.splitlines()[-lines:])
                    parts.append(f"--- {path} (last {lines} lines) ---\n{tail}")
        return "\n".join(parts) or f"(no log output in {self._root})"

    # ---------------------------------------------------------------- internals

    def _prepare(self, java: str, libs: Path) -> None:
        if self.data_dir is None:
            self._root = Path(tempfile.mkdtemp(prefix="local-kafka-"))
            self._owns_root = True
        else:
            self._root = self.data_dir.resolve()
            self._root.mkdir(parents=True, exist_ok=True)
        names = ["controller"] + (["sasl"] if self.sasl_plain_users else [])
        free = _free_ports(len(names) + (self.port is None), exclude={self.port or 0})
        self._ports = {"plaintext": self.port if self.port is not None else free.pop()}
        self._ports.update(zip(names, free, strict=True))

        properties = self._root / "server.properties"
        properties.write_text(self._server_properties())
        (self._root / "log4j2.properties").write_text(self._log4j2_properties())

        stored = _stored_cluster_id(self._root / "kraft" / "meta.properties")
        if stored is not None:
            if self._cluster_id is not None and self._cluster_id != stored:
                raise LocalKafkaError(
                    f"{self._root} holds cluster {stored!r}, not the requested {self._cluster_id!r}"
                )
            self._cluster_id = stored
        else:
            cluster_id = self._cluster_id or _new_cluster_id()
            command = [
                java,
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={self._root / 'log4j2.properties'}",
                "-cp",
                f"{libs}/*",
                "kafka.tools.StorageTool",
                "format",
                # One argv element each, "--name=value": an id that begins with '-' (one random
                # id in 64) would otherwise be read as an option ("expected one argument").
                f"--cluster-id={cluster_id}",
                f"--config={properties}",
            ]
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                output = (result.stdout + result.stderr).strip()[-3000:]
                raise LocalKafkaError(f"formatting KRaft storage in {self._root} failed:\n{output}")
            self._cluster_id = cluster_id
        self._state = _State.STOPPED

    def _launch(self, java: str, libs: Path) -> None:
        root = self.root
        # Also on a restart: something may have taken a port while the broker was down.
        _check_ports_free({name.upper(): port for name, port in self._ports.items()})
        with contextlib.suppress(OSError):
            self._log_offset = (root / _LOG_FILE).stat().st_size
        command = [
            java,
            *self.jvm_options,
            f"-Dlog4j2.configurationFile={root / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(root / "server.properties"),
        ]
        with open(root / _STDOUT_FILE, "ab") as out:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
                start_new_session=True,  # own process group: signals from a terminal miss it
                preexec_fn=_die_with_parent if self._bind_lifetime() else None,
            )
        self._state = _State.RUNNING
        try:
            self._wait_ready()
        except BaseException:
            self._terminate(signal.SIGKILL, 10.0)
            raise

    def _bind_lifetime(self) -> bool:
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits. Only the main thread
        # lives as long as the process; from a worker thread (asyncio.to_thread, an executor)
        # the broker would die with that thread, so there we give up the guarantee.
        return self.die_with_parent and threading.current_thread() is threading.main_thread()

    def _wait_ready(self) -> None:
        _run_sync(self._await_ready)

    async def _await_ready(self) -> None:
        assert self._process is not None
        process = self._process
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = process.poll()
            if code is not None:
                raise self._exit_error(code)
            problem = await self._readiness_problem(process.pid)
            if problem is None:
                return
            if time.monotonic() >= deadline:
                raise LocalKafkaError(
                    f"the Kafka broker did not accept clients within {self.startup_timeout:.0f} s "
                    f"(last check: {problem})\n{self.log_tail()}"
                )
            await asyncio.sleep(0.2)

    async def _readiness_problem(self, pid: int) -> str | None:
        """Why the broker does not serve clients yet, or None once it does.

        Each step rules out an impostor the previous one lets through: a port that accepts
        connections may belong to another process; a broker that answers may be another
        broker (another cluster id); a broker of our cluster may still be registering.
        """
        port = self._port("plaintext")
        if not _listens(pid, port):
            return f"the broker process {pid} does not listen on 127.0.0.1:{port} yet"

        async def ask(admin: AIOKafkaAdminClient) -> str | None:
            cluster = await admin.describe_cluster()
            if cluster.get("cluster_id") != self._cluster_id:
                return (
                    f"127.0.0.1:{port} answers for cluster {cluster.get('cluster_id')!r}, "
                    f"not for ours ({self._cluster_id!r})"
                )
            brokers = cluster.get("brokers") or []
            if not any(b.get("node_id") == _NODE_ID and b.get("port") == port for b in brokers):
                return "the broker answered Metadata but does not list itself as live yet"
            # Only now that it is ours: have it create and load its group and transaction
            # coordinators, or the first consumer group and the first transaction of a test
            # wait for that, and aiokafka logs "GroupCoordinatorNotAvailableError" meanwhile.
            await admin.find_coordinator(_PROBE_NAME, coordinator_type=0)
            await admin.find_coordinator(_PROBE_NAME, coordinator_type=1)
            return None

        try:
            problem = await _with_admin(self.bootstrap_servers, 2.0, ask)
        except LocalKafkaError as exc:
            return str(exc)
        if problem is not None:
            return problem
        if self.sasl_plain_users and not _listens(pid, self._port("sasl")):
            return f"the SASL listener on 127.0.0.1:{self._port('sasl')} is not open yet"
        return None

    def _exit_error(self, code: int) -> LocalKafkaError:
        tail = self.log_tail()
        new_log = self._new_log()
        bind_failure = re.search(r"failed to bind to (\S+): Address already in use", new_log)
        if bind_failure:
            return LocalKafkaError(
                f"the Kafka broker exited (code {code}): {bind_failure[1]} is already in use, "
                f"taken by another process while the broker started\n{tail}"
            )
        return LocalKafkaError(f"the Kafka broker exited with code {code} during startup\n{tail}")

    def _new_log(self) -> str:
        """What the broker logged since the last launch (the log file is appended to)."""
        try:
            with open(self.root / _LOG_FILE, "rb") as log:
                log.seek(self._log_offset)
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _terminate(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10.0)
        self._process = None
        if self._state is _State.RUNNING:
            self._state = _State.STOPPED

    def _server_properties(self) -> str:
        ports = self._ports
        listeners = [
            f"PLAINTEXT://127.0.0.1:{ports['plaintext']}",
            f"CONTROLLER://127.0.0.1:{ports['controller']}",
        ]
        advertised = [f"PLAINTEXT://127.0.0.1:{ports['plaintext']}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(_NODE_ID),
            "controller.quorum.voters": f"{_NODE_ID}@127.0.0.1:{ports['controller']}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.root / "kraft"),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            **SINGLE_NODE_PROPERTIES,
            # One partition each for the internal topics: the first consumer group and the
            # first transaction otherwise wait for 50 partitions to be created.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a kill, the restarted broker cannot register until the controller expires
            # its previous session (9 s by default): keep outage tests fast.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "2000",
            # Few threads: the machine has 2 cores and the tests need them too.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "background.threads": "2",
        }
        if self.sasl_plain_users:
            listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{ports['sasl']}")
            advertised.append(f"SASL_PLAINTEXT://127.0.0.1:{ports['sasl']}")
            protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            users = " ".join(f'user_{n}="{p}"' for n, p in self.sasl_plain_users.items())
            props["sasl.enabled.mechanisms"] = "PLAIN"
            props["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] = "PLAIN"
            props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};"
            )
        props["listeners"] = ",".join(listeners)
        props["advertised.listeners"] = ",".join(advertised)
        props["listener.security.protocol.map"] = ",".join(protocols)
        props.update(self.extra_properties)
        lines = ["# Written by devtools.local_kafka; rewritten at every first start."]
        lines += [f"{key}={_escape_property(value)}" for key, value in props.items()]
        return "\n".join(lines) + "\n"

    def _log4j2_properties(self) -> str:
        log_file = self.root / _LOG_FILE
        level = self.log_level.upper()
        return "\n".join(
            [
                "status = warn",
                "name = local-kafka",
                # Kafka logs its own shutdown from a JVM shutdown hook; log4j's hook must not
                # close the appender first (the file appender flushes every line anyway).
                "shutdownHook = disable",
                "appender.file.type = File",
                "appender.file.name = file",
                f"appender.file.fileName = {_escape_property(str(log_file))}",
                "appender.file.append = true",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d{ISO8601}] %p %m (%c)%n",
                f"rootLogger.level = {level}",
                "rootLogger.appenderRef.file.ref = file",
                # The full configuration dumps (hundreds of lines per start) drown the rest.
                "logger.config.name = org.apache.kafka.common.config",
                "logger.config.level = WARN",
                "logger.clients.name = org.apache.kafka.clients",
                "logger.clients.level = WARN",
                "",
            ]
        )


def _escape_property(value: str) -> str:
    """Escape a value for a Java .properties file (backslash is its escape character)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise LocalKafkaError("Java ('java') is not on PATH; Kafka needs Java 17 or newer")
    return java


def _free_ports(count: int, exclude: set[int]) -> list[int]:
    """Ports the kernel considers free now; all held open together so they differ."""
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in exclude:
                s.close()
                continue
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)


# --------------------------------------------------------------------------- identity


def _new_cluster_id() -> str:
    """A random KRaft cluster id, never starting with '-' (as Kafka's ``Uuid.randomUuid``).

    The argv form in ``_prepare`` already makes such an id safe; this keeps our ids
    copy-pasteable into Kafka's own shell tools, which take ``-t <id>``.
    """
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):
            return value


def _is_cluster_id(value: str) -> bool:
    """True for what Kafka's ``Uuid.fromString`` accepts: 16 bytes in unpadded url-safe base64."""
    if len(value) != 22:
        return False
    try:
        raw = base64.urlsafe_b64decode(value + "==")
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == value


def _stored_cluster_id(meta_properties: Path) -> str | None:
    """The ``cluster.id`` of formatted KRaft storage, or None if it is not formatted."""
    try:
        text = meta_properties.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalKafkaError(f"cannot read {meta_properties}: {exc}") from exc
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    raise LocalKafkaError(f"{meta_properties} has no cluster.id: remove the data directory")


def _check_ports_free(ports: dict[str, int]) -> None:
    """Refuse, in one line, a port that something on 127.0.0.1 already listens on.

    Without this the JVM formats storage, starts, and only then dies with "Address already
    in use"; meanwhile whatever holds the port answers clients as if it were our broker.
    """
    for listener, port in ports.items():
        if _port_in_use(port):
            raise LocalKafkaError(
                f"port {port} on 127.0.0.1 (the {listener} listener) is already in use by "
                "another process, perhaps another broker: choose another port or stop it"
            )


def _port_in_use(port: int) -> bool:
    # SO_REUSEADDR as the JVM sets it: connections of a previous run in TIME_WAIT do not
    # count, a listening socket does (also one bound to 0.0.0.0).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise LocalKafkaError(f"cannot check port {port} on 127.0.0.1: {exc}") from exc
    return False


def _listens(pid: int, port: int) -> bool:
    """True if process ``pid`` itself has a listening socket on ``port``.

    Linux: the socket's inode from ``/proc/net/tcp{,6}`` among the process's file
    descriptors. Elsewhere only "something accepts connections there" can be checked;
    the cluster id check then tells our broker from another.
    """
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1.0):
            return True
        return False
    inodes: set[str] = set()
    for table in tables:
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                # local_address is HEXIP:HEXPORT, state 0A is LISTEN, field 9 the inode
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return False
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in descriptors:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return True
    return False


def cluster_id(bootstrap_servers: str, *, timeout: float = 10.0) -> str:
    """The cluster id of the broker at ``bootstrap_servers``, asked through aiokafka's admin client.

    Synchronous, like :func:`create_topics`, so fixtures and scripts can call it.
    """

    async def ask(admin: AIOKafkaAdminClient) -> dict[str, Any]:
        return await admin.describe_cluster()

    cluster = _run_sync(lambda: _with_admin(bootstrap_servers, timeout, ask))
    value = cluster.get("cluster_id")
    if not isinstance(value, str):
        raise LocalKafkaError(f"{bootstrap_servers} did not report a cluster id")
    return value


async def _with_admin(
    bootstrap_servers: str,
    request_timeout: float,
    ask: Callable[[AIOKafkaAdminClient], Awaitable[_T]],
) -> _T:
    """Run ``ask`` with a started admin client; aiokafka's errors come out as LocalKafkaError."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(request_timeout * 1000)
    )
    try:
        async with asyncio.timeout(request_timeout * 3):
            await admin.start()
            return await ask(admin)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise LocalKafkaError(
            f"asking the broker at {bootstrap_servers}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        await admin.close()


def _run_sync(work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to its end from synchronous code.

    Inside a running event loop (a blocking ``restart()`` in an async test, a fixture)
    ``asyncio.run`` is not allowed, so the coroutine gets its own loop in a worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-kafka") as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


# --------------------------------------------------------------------------- topics


def create_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> None:
    """Create topics on any broker (ours or ``$MONITOR_TEST_KAFKA_BOOTSTRAP``); existing ones stay.

    Synchronous so fixtures can call it; when called inside a running event loop it
    runs its own loop in a worker thread instead of failing.
    """
    topics = list(names)
    if not topics:
        return
    _run_sync(
        lambda: _create_topics(
            bootstrap_servers, topics, partitions, replication_factor, int(timeout * 1000)
        )
    )


async def _create_topics(
    bootstrap_servers: str,
    names: list[str],
    partitions: int,
    replication_factor: int,
    timeout_ms: int,
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(n, partitions, replication_factor) for n in names],
            timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise LocalKafkaError(f"creating topics {names} on {bootstrap_servers}: {exc}") from exc
    finally:
        await admin.close()
    failures = []
    for topic_error in getattr(response, "topic_errors", ()):
        topic, code = topic_error[0], topic_error[1]
        if code not in (0, TopicAlreadyExistsError.errno):
            failures.append(f"{topic}: error code {code} {topic_error[2:]}")
    if failures:
        raise LocalKafkaError(f"creating topics on {bootstrap_servers} failed: {failures}")


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devtools.local_kafka fetch|run``: see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.local_kafka", description="A local Kafka broker for tests."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download the Kafka jars into the cache and exit")
    run = commands.add_parser("run", help="run a broker in the foreground until SIGTERM/SIGINT")
    run.add_argument("--port", type=int, default=None, help="PLAINTEXT port (default: free)")
    run.add_argument(
        "--data-dir", type=Path, default=None, help="kept after exit (default: temporary)"
    )
    run.add_argument("--startup-timeout", type=float, default=60.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    # Readiness probes knock on a broker that is still starting: the refused connections
    # aiokafka would log are expected, and a real failure ends in our own error line.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    try:
        if args.command == "fetch":
            print(ensure_jars(verbose=True))
            return 0
        return _run(args.port, args.data_dir, args.startup_timeout)
    except MonitorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


class _StopRequested(Exception):
    """SIGTERM/SIGINT arrived while the broker was still starting."""


def _run(port: int | None, data_dir: Path | None, startup_timeout: float) -> int:
    stop = threading.Event()
    ready = False

    def request_stop(signum: int, frame: object) -> None:
        stop.set()
        if not ready:  # abort start(); its cleanup kills the half-started JVM
            raise _StopRequested

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    kafka = LocalKafka(port=port, data_dir=data_dir, startup_timeout=startup_timeout)
    try:
        ensure_jars(verbose=True)
        started = time.monotonic()
        kafka.start()
        ready = True
        elapsed = time.monotonic() - started
        print(f"broker ready in {elapsed:.1f} s, log: {kafka.log_path}", file=sys.stderr)
        print(f"BOOTSTRAP={kafka.bootstrap_servers}", flush=True)
        while not stop.wait(0.5):
            if not kafka.running:
                print(f"error: the broker died\n{kafka.log_tail()}", file=sys.stderr)
                return 1
    except _StopRequested:
        print("stopped before the broker was ready", file=sys.stderr)
        return 1
    finally:
        kafka.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
