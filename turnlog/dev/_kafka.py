"""A single-node Apache Kafka (KRaft, broker+controller in one JVM) run from Maven jars.

Layout under <state_dir>/kafka/: libs/ (the class path, copied by Maven from the pom
next to this file), server.properties + log4j2.xml (rewritten at every start from the
settings), data/ (formatted once, kept across restarts), logs/server.log (the broker's
log) and logs/kafka.out (the JVM's stdout/stderr), kafka.pid.

The broker is tuned for a 2-core test machine: small heap, few internal partitions,
fast transaction housekeeping. Transactions work on one node (RF=1, min.isr=1).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from turnlog.dev._errors import DevInfraError, MissingToolError
from turnlog.dev._proc import cmdline, pid_alive, port_open, read_pid, run_async, tail
from turnlog.settings import Settings

POM = Path(__file__).with_name("kafka-pom.xml")
_MAIN_CLASS = "kafka.Kafka"
_MIN_JAVA = 17
_RUN_MARKER = "=== turnlog dev: starting Kafka"

# Broker settings beyond listeners/paths. Why each one matters:
BROKER_TUNING: dict[str, str] = {
    # The design: topics exist only when created explicitly with their configs.
    "auto.create.topics.enable": "false",
    # One node: every internal topic must live with RF=1 or transactions/groups hang.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "min.insync.replicas": "1",
    "default.replication.factor": "1",
    # Internal topics are created on first use; 50 partitions each costs seconds on 2 cores.
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.num.partitions": "4",
    # Tests and interactive turns cannot wait 3 s for the first rebalance.
    "group.initial.rebalance.delay.ms": "0",
    # Let tests use short session timeouts so a kill -9'd member is evicted quickly.
    "group.min.session.timeout.ms": "1000",
    # Abort timed-out transactions (a kill -9'd producer) within about a second.
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    "transaction.remove.expired.transaction.cleanup.interval.ms": "60000",
    # Small machine: few threads, a small log-cleaner buffer (snapshots and agents compact).
    "num.network.threads": "2",
    "num.io.threads": "4",
    "background.threads": "4",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": "16777216",
    "num.partitions": "1",
    "auto.leader.rebalance.enable": "false",
    "delete.topic.enable": "true",
}

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by turnlog dev; rewritten at every start. -->
<Configuration status="warn">
  <Appenders>
    <RollingFile name="server" fileName="{logs}/server.log"
                 filePattern="{logs}/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="info"/>
    <Logger name="org.apache.kafka" level="info"/>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="state.change.logger" level="warn"/>
    <Logger name="kafka.log.LogCleaner" level="warn"/>
    <Root level="info"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
"""


@dataclass(frozen=True)
class KafkaPaths:
    root: Path

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def server_log(self) -> Path:
        return self.logs / "server.log"

    @property
    def stdout_log(self) -> Path:
        return self.logs / "kafka.out"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.xml"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def cluster_id(self) -> Path:
        return self.root / "cluster.id"


def paths(settings: Settings) -> KafkaPaths:
    return KafkaPaths(settings.state_dir.resolve() / "kafka")


def pinned_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise DevInfraError(f"{POM} does not pin <kafka.version>.")
    return match.group(1)


# --- tools -----------------------------------------------------------------------------


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    found = str(candidate) if candidate and candidate.exists() else shutil.which("java")
    if not found:
        raise MissingToolError(
            f"Java {_MIN_JAVA}+ is needed to run the dev Kafka broker and none was found "
            "(no JAVA_HOME, no `java` on PATH). Install a JDK or JRE 17+, e.g. "
            "`apt-get install openjdk-17-jre-headless`, or set JAVA_HOME."
        )
    return found


def java_version(java: str) -> str:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise MissingToolError(f"{java} could not be run: {exc}") from exc
    match = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    if match is None:
        raise MissingToolError(f"`{java} -version` printed no version: {out.stderr.strip()}")
    version = match.group(1)
    major = int(version.split(".")[1] if version.startswith("1.") else version.split(".")[0])
    if major < _MIN_JAVA:
        raise MissingToolError(
            f"Kafka {pinned_version()} needs Java {_MIN_JAVA}+, but {java} is Java {version}. "
            "Install openjdk-17-jre-headless (or newer) or point JAVA_HOME at it."
        )
    return version


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def jars_ready(settings: Settings) -> bool:
    marker = paths(settings).libs / ".pom-sha256"
    return marker.exists() and marker.read_text().strip() == _pom_digest()


def fetch_jars(settings: Settings) -> Path:
    """Resolve the broker's jars with Maven into <state>/kafka/libs (no-op when current)."""
    p = paths(settings)
    if jars_ready(settings):
        return p.libs
    if not POM.exists():
        raise DevInfraError(f"The Kafka pom {POM} is missing from this installation.")
    mvn = shutil.which("mvn")
    if not mvn:
        raise MissingToolError(
            "Maven is needed once to download the Kafka jars and `mvn` is not on PATH. "
            "Install it (e.g. `apt-get install maven`) and run `turnlog dev up` again."
        )
    java_version(java_executable())
    p.root.mkdir(parents=True, exist_ok=True)
    staging = p.root / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    base = [mvn, "-B", "-q", "-ntp", "-f", str(POM)]
    if settings.dev_maven_repo is not None:
        base.append(f"-Dmaven.repo.local={settings.dev_maven_repo.resolve()}")
    goal = ["dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
    # Offline first: after the first download every run works without a network.
    attempts = [[*base, "-o", *goal], base + goal]
    failure = ""
    for command in attempts:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            break
        failure = (result.stdout + result.stderr)[-4000:]
    else:
        raise DevInfraError(
            "Maven could not resolve the Kafka jars "
            f"(mvn -f {POM} dependency:copy-dependencies):\n{failure}"
        )
    (staging / ".pom-sha256").write_text(_pom_digest())
    shutil.rmtree(p.libs, ignore_errors=True)
    staging.rename(p.libs)
    return p.libs


def installed_version(settings: Settings) -> str | None:
    for jar in paths(settings).libs.glob("kafka_2.13-*.jar"):
        return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")
    return None


# --- config ----------------------------------------------------------------------------


def _cluster_id(p: KafkaPaths) -> str:
    if p.cluster_id.exists():
        return p.cluster_id.read_text().strip()
    # Kafka's Uuid text form: url-safe base64 of 16 bytes, unpadded.
    value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    p.cluster_id.write_text(value + "\n")
    return value


def render_config(settings: Settings) -> str:
    p = paths(settings)
    host = "127.0.0.1"
    port, cport = settings.dev_kafka_port, settings.dev_kafka_controller_port
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{host}:{cport}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(p.data),
        **BROKER_TUNING,
    }
    body = "\n".join(f"{key}={value}" for key, value in lines.items())
    return f"# Written by turnlog dev from the settings; rewritten at every start.\n{body}\n"


def _write_configs(settings: Settings) -> None:
    p = paths(settings)
    p.logs.mkdir(parents=True, exist_ok=True)
    p.config.write_text(render_config(settings))
    p.log4j.write_text(_LOG4J2.replace("{logs}", str(p.logs)))


def _java_command(settings: Settings, java: str, main: list[str], *, heap: str) -> list[str]:
    p = paths(settings)
    return [
        java,
        "-Xms128m",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile=file:{p.log4j}",
        f"-Dkafka.logs.dir={p.logs}",
        "-cp",
        f"{p.libs}/*",
        *main,
    ]


def _format_storage(settings: Settings, java: str) -> None:
    p = paths(settings)
    if (p.data / "meta.properties").exists():
        return
    command = _java_command(
        settings,
        java,
        # `--cluster-id=ID` in one argument: a url-safe base64 id may start with "-",
        # which the tool's parser would take for an option (1 start in 32 failed so).
        [
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={_cluster_id(p)}",
            "-c",
            str(p.config),
            "--ignore-formatted",
        ],
        heap="256m",
    )
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DevInfraError(
            f"Formatting the Kafka storage in {p.data} failed:\n"
            f"{(result.stdout + result.stderr)[-4000:]}"
        )


# --- process ---------------------------------------------------------------------------


def managed_pid(settings: Settings) -> int | None:
    """The pid of the broker started from this state dir, if it still runs."""
    p = paths(settings)
    pid = read_pid(p.pid_file)
    if pid and pid_alive(pid) and _MAIN_CLASS in cmdline(pid) and str(p.config) in cmdline(pid):
        return pid
    return None


def start(settings: Settings) -> int:
    """Start the broker process (jars fetched, storage formatted); returns its pid."""
    java = java_executable()
    java_version(java)
    fetch_jars(settings)
    p = paths(settings)
    _write_configs(settings)
    _format_storage(settings, java)
    command = _java_command(
        settings, java, [_MAIN_CLASS, str(p.config)], heap=settings.dev_kafka_heap
    )
    with p.stdout_log.open("ab") as out:
        out.write(f"{_RUN_MARKER} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        out.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI and Ctrl-C in the terminal
            cwd=p.root,
        )
    p.pid_file.write_text(f"{process.pid}\n")
    return process.pid


def probe(bootstrap: str, timeout: float = 5.0) -> dict[str, object] | None:
    """A metadata request; the cluster description, or None when no broker answers."""
    host, _, port = bootstrap.partition(",")[0].rpartition(":")
    if not port_open(host.strip("[]"), int(port)):
        return None

    async def describe() -> dict[str, object] | None:
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped,unused-ignore]

        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000)
        )
        try:
            await asyncio.wait_for(admin.start(), timeout)
            cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
            return cluster if cluster.get("brokers") else None
        except Exception:
            return None
        finally:
            try:
                await admin.close()
            except Exception:
                pass

    return run_async(describe)


def log_tail(settings: Settings, lines: int = 40, *, since: float | None = None) -> str:
    """The broker's log tails; with `since`, only what the start at that time wrote."""
    p = paths(settings)
    parts = []
    out = tail(p.stdout_log, 200).rsplit(_RUN_MARKER, 1)[-1].split("\n", 1)[-1].strip()
    if out and "no log at" not in out:
        parts.append(f"--- {p.stdout_log} ---\n" + "\n".join(out.splitlines()[-15:]))
    fresh = p.server_log.exists() and (since is None or p.server_log.stat().st_mtime >= since)
    if fresh or not parts:
        parts.insert(0, f"--- {p.server_log} ---\n{tail(p.server_log, lines)}")
    return "\n".join(parts)
