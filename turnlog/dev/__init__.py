"""Local infrastructure without Docker: a real Kafka broker and a real PostgreSQL server.

    ensure_up(settings)  -> DevStatus   start what is not running; return when both answer
    status(settings)     -> DevStatus   what runs now (pids, ports, versions, logs)
    down(settings)       -> DevStatus   stop what this state dir started
    fetch_kafka_jars(settings) -> Path  resolve the broker's jars (and Kafka's CLI tools)
                                        with Maven (once)
    kafka_cli(settings, tool, args)     run one of Kafka's CLI tools (kafka-topics, ...)
    registry_up(settings, port)         a real schema registry (Apicurio) on loopback, in
    registry_status / registry_down     the background (`turnlog dev registry up`)

Everything lives under settings.state_dir (default .turnlog/, gitignored). A service that
already answers on the configured port but was started from another state dir (another
clone's `turnlog dev up`) is reused and reported as "foreign"; `down` leaves it alone.

`ensure_up` is idempotent and serialised by a file lock, so parallel test runs and CLI
calls never start two brokers. It raises DevInfraError (MissingToolError when java, mvn
or PostgreSQL is missing) with the tail of the failing service's log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from turnlog.dev import _kafka, _postgres, _tools
from turnlog.dev._errors import DevInfraError, MissingToolError
from turnlog.dev._proc import file_lock, pid_alive, port_open, terminate, wait_for
from turnlog.dev._registry import RegistryStatus
from turnlog.dev._registry import down as registry_down
from turnlog.dev._registry import fetch as fetch_registry
from turnlog.dev._registry import status as registry_status
from turnlog.dev._registry import up as registry_up
from turnlog.settings import Settings, load_settings

__all__ = [
    "DevInfraError",
    "DevStatus",
    "MissingToolError",
    "RegistryStatus",
    "ServiceStatus",
    "down",
    "ensure_up",
    "fetch_kafka_jars",
    "fetch_registry",
    "kafka_cli",
    "registry_down",
    "registry_status",
    "registry_up",
    "status",
]

RUNNING = "running"  # started from this state dir and answering
FOREIGN = "foreign"  # answering, but started elsewhere: reused, never stopped by us
STARTING = "not answering"  # our process exists but does not answer (yet)
STOPPED = "stopped"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str
    host: str
    port: int
    pid: int | None = None
    version: str | None = None
    log: Path | None = None
    data: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def answering(self) -> bool:
        return self.state in (RUNNING, FOREIGN)


@dataclass(frozen=True)
class DevStatus:
    state_dir: Path
    kafka: ServiceStatus
    postgres: ServiceStatus
    kafka_bootstrap: str
    database_url: str  # the superuser `turnlog` on database `turnlog`
    elapsed: float = 0.0
    started: tuple[str, ...] = ()

    @property
    def up(self) -> bool:
        return self.kafka.answering and self.postgres.answering

    def database_url_for(self, database: str) -> str:
        return self.database_url.rsplit("/", 1)[0] + "/" + database

    def lines(self) -> list[str]:
        rows = [f"state dir  {self.state_dir}"]
        for svc in (self.kafka, self.postgres):
            pid = f"pid {svc.pid}" if svc.pid else "pid -"
            version = f"{svc.name} {svc.version}" if svc.version else svc.name
            rows.append(
                f"{svc.name:<9}  {svc.state:<13} {pid:<11} {svc.host}:{svc.port:<6} {version}"
            )
            for key, value in svc.extra.items():
                rows.append(f"{'':<9}  {key}: {value}")
            if svc.data is not None:
                rows.append(f"{'':<9}  data: {svc.data}")
            if svc.log is not None:
                rows.append(f"{'':<9}  log: {svc.log}")
        rows.append(f"KAFKA_BOOTSTRAP_SERVERS={self.kafka_bootstrap}")
        rows.append(f"DATABASE_URL={self.database_url}")
        return rows


def _bootstrap(settings: Settings) -> str:
    return f"127.0.0.1:{settings.dev_kafka_port}"


def _kafka_status(settings: Settings) -> ServiceStatus:
    p = _kafka.paths(settings)
    pid = _kafka.managed_pid(settings)
    cluster = _kafka.probe(_bootstrap(settings), timeout=3.0)
    if pid:
        state = RUNNING if cluster else STARTING
    else:
        state = FOREIGN if cluster else STOPPED
    extra = {"controller": f"127.0.0.1:{settings.dev_kafka_controller_port}"}
    if cluster and cluster.get("cluster_id"):
        extra["cluster id"] = str(cluster["cluster_id"])
    return ServiceStatus(
        name="kafka",
        state=state,
        host="127.0.0.1",
        port=settings.dev_kafka_port,
        pid=pid,
        version=_kafka.installed_version(settings) or _kafka.pinned_version(),
        log=p.server_log,
        data=p.data,
        extra=extra,
    )


def _postgres_status(settings: Settings) -> ServiceStatus:
    p = _postgres.paths(settings)
    pid = _postgres.managed_pid(settings)
    version = (
        _postgres.probe(_postgres.url(settings))
        if port_open(_postgres.HOST, settings.dev_postgres_port)
        else None
    )
    if pid:
        state = RUNNING if version else STARTING
    else:
        state = FOREIGN if version else STOPPED
    return ServiceStatus(
        name="postgres",
        state=state,
        host=_postgres.HOST,
        port=settings.dev_postgres_port,
        pid=pid,
        version=version,
        log=p.log,
        data=p.data,
    )


def status(settings: Settings | None = None) -> DevStatus:
    settings = settings or load_settings()
    return DevStatus(
        state_dir=settings.state_dir.resolve(),
        kafka=_kafka_status(settings),
        postgres=_postgres_status(settings),
        kafka_bootstrap=_bootstrap(settings),
        database_url=_postgres.url(settings),
    )


def fetch_kafka_jars(settings: Settings | None = None) -> Path:
    """Download (first time) and copy the Kafka broker's jars and Kafka's CLI tools;
    returns the broker's libs dir."""
    settings = settings or load_settings()
    with file_lock(settings.state_dir.resolve() / "dev.lock"):
        libs = _kafka.fetch_jars(settings)
        _tools.fetch_tools(settings)
        return libs


def kafka_cli(settings: Settings, tool: str, args: list[str]) -> int:
    """Run Kafka's `tool` (kafka-topics, kafka-consumer-groups, ...) against
    KAFKA_BOOTSTRAP_SERVERS; the tools' jars are fetched first if needed. Returns the
    tool's exit code."""
    _tools.tool_named(tool)  # an unknown name fails before anything is downloaded
    if not _tools.tools_ready(settings):
        with file_lock(settings.state_dir.resolve() / "dev.lock"):
            _tools.fetch_tools(settings)
    return _tools.run_tool(settings, tool, args)


def _start_kafka(settings: Settings) -> int | None:
    """Start the broker unless one answers already; the new pid, or None."""
    if _kafka.managed_pid(settings):
        return None
    bootstrap = _bootstrap(settings)
    if port_open("127.0.0.1", settings.dev_kafka_port):
        if _kafka.probe(bootstrap) is not None:
            return None  # foreign broker: reuse it
        raise DevInfraError(
            f"Port {settings.dev_kafka_port} is taken by a program that does not answer as a "
            "Kafka broker. Stop it or set TURNLOG_DEV_KAFKA_PORT (and KAFKA_BOOTSTRAP_SERVERS)."
        )
    if port_open("127.0.0.1", settings.dev_kafka_controller_port):
        raise DevInfraError(
            f"Port {settings.dev_kafka_controller_port} (Kafka controller) is taken. Stop "
            "that program or set TURNLOG_DEV_KAFKA_CONTROLLER_PORT."
        )
    return _kafka.start(settings)


def _wait_kafka(settings: Settings, pid: int | None, timeout: float, since: float) -> None:
    bootstrap = _bootstrap(settings)
    pid = pid or _kafka.managed_pid(settings)
    ready = wait_for(
        lambda: _kafka.probe(bootstrap, timeout=3.0) is not None,
        timeout=timeout,
        interval=0.25,
        abort=(lambda: not pid_alive(pid)) if pid else None,
    )
    if ready:
        return
    died = pid is not None and not pid_alive(pid)
    if pid is not None and not died:
        terminate(pid, timeout=10)
    reason = "exited" if died else f"did not answer a metadata request within {timeout:.0f}s"
    raise DevInfraError(f"Kafka on {bootstrap} {reason}.\n{_kafka.log_tail(settings, since=since)}")


def _start_postgres(settings: Settings) -> bool:
    if _postgres.managed_pid(settings):
        if _postgres.probe(_postgres.url(settings)) is not None:
            return False
        _postgres.stop(settings)  # running but not answering us: restart it cleanly
    elif _postgres.answers_on_port(settings):
        if _postgres.probe(_postgres.url(settings)) is not None:
            return False  # foreign server with our credentials: reuse it
        raise DevInfraError(
            f"Port {settings.dev_postgres_port} is taken by a program that is not turnlog's "
            "dev PostgreSQL (the turnlog/turnlog login fails). Stop it or set "
            "TURNLOG_DEV_POSTGRES_PORT (and DATABASE_URL)."
        )
    _postgres.start(settings)
    if _postgres.probe(_postgres.url(settings, "postgres"), timeout=10) is None:
        raise DevInfraError(
            "PostgreSQL started but refuses the turnlog login.\n" + _postgres.log_tail(settings)
        )
    return True


def ensure_up(settings: Settings | None = None, *, timeout: float | None = None) -> DevStatus:
    """Start Kafka and PostgreSQL unless they answer already; return once both answer."""
    settings = settings or load_settings()
    timeout = timeout or settings.dev_start_timeout
    began = time.monotonic()
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    with file_lock(state_dir / "dev.lock"):
        since = time.time()
        kafka_pid = _start_kafka(settings)  # the JVM boots while PostgreSQL starts
        if kafka_pid:
            started.append("kafka")
        if _start_postgres(settings):
            started.append("postgres")
        _postgres.ensure_database(settings)
        _wait_kafka(settings, kafka_pid, timeout, since)
    result = status(settings)
    if not result.up:
        raise DevInfraError("The dev infrastructure did not come up:\n" + "\n".join(result.lines()))
    return DevStatus(
        state_dir=result.state_dir,
        kafka=result.kafka,
        postgres=result.postgres,
        kafka_bootstrap=result.kafka_bootstrap,
        database_url=result.database_url,
        elapsed=time.monotonic() - began,
        started=tuple(started),
    )


def down(settings: Settings | None = None, *, timeout: float = 60.0) -> DevStatus:
    """Stop the broker and the server started from this state dir (foreign ones stay),
    and the schema registry if `turnlog dev registry up` started one there."""
    settings = settings or load_settings()
    state_dir = settings.state_dir.resolve()
    registry_down(settings)
    with file_lock(state_dir / "dev.lock"):
        pid = _kafka.managed_pid(settings)
        if pid:
            terminate(pid, timeout=timeout)
            _kafka.paths(settings).pid_file.unlink(missing_ok=True)
        _postgres.stop(settings)
    return status(settings)
