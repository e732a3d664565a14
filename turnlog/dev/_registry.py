"""A real schema registry on loopback: Apicurio Registry, run from its Maven Central jars.

    fetch(settings)          -> Path            unpack the registry with Maven (once)
    up(settings, port, ...)  -> RegistryStatus  start it in the background unless one answers
    status(settings)         -> RegistryStatus  what runs on the port `up` used
    down(settings)           -> RegistryStatus  stop the one this state dir started

Apicurio serves the Confluent Schema Registry API under /apis/ccompat/v7, so the URL
turnlog's registry mode, confluent-kafka's SchemaRegistryClient and Kafka Connect use is
`http://127.0.0.1:<port>/apis/ccompat/v7`. Its storage is an in-memory H2 database:
every start is an empty registry and nothing is written to disk but the log.

Layout under <state_dir>/registry/: app/ (the distribution, unpacked by Maven from the
pom next to this file; marked with the pom's digest), registry.log (the JVM's output),
registry.pid and registry.port (of the one `up` started). The HTTP server binds
127.0.0.1 only and has no authentication, like the dev Kafka and PostgreSQL.

Failures raise DevInfraError (MissingToolError when java or mvn is missing) with the
tail of the registry's log; nothing here skips or waits without a deadline.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from turnlog.dev._errors import DevInfraError, MissingToolError
from turnlog.dev._kafka import java_executable, java_version
from turnlog.dev._proc import (
    cmdline,
    file_lock,
    pid_alive,
    port_open,
    read_pid,
    tail,
    terminate,
    wait_for,
)
from turnlog.settings import Settings

__all__ = [
    "CCOMPAT_PATH",
    "DEFAULT_PORT",
    "HOST",
    "RegistryStatus",
    "down",
    "fetch",
    "pinned_version",
    "probe",
    "status",
    "up",
]

POM = Path(__file__).with_name("registry-pom.xml")
HOST = "127.0.0.1"
# The Confluent registry's usual port, so clients' defaults and examples apply.
DEFAULT_PORT = 8081
CCOMPAT_PATH = "/apis/ccompat/v7"
HEAP = "384m"
_RUN_MARKER = "=== turnlog dev: starting the schema registry"

RUNNING = "running"
FOREIGN = "foreign"
STARTING = "not answering"
STOPPED = "stopped"


@dataclass(frozen=True)
class RegistryPaths:
    root: Path

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "registry.pid"

    @property
    def port_file(self) -> Path:
        return self.root / "registry.port"


@dataclass(frozen=True)
class RegistryStatus:
    state: str
    port: int
    pid: int | None
    version: str | None
    log: Path
    startup_s: float | None = None  # set by the `up` that started it

    @property
    def answering(self) -> bool:
        return self.state in (RUNNING, FOREIGN)

    @property
    def url(self) -> str:
        """The Confluent-API URL (TURNLOG_SCHEMA_REGISTRY_URL)."""
        return confluent_url(self.port)

    def lines(self) -> list[str]:
        pid = f"pid {self.pid}" if self.pid else "pid -"
        version = f"apicurio-registry {self.version}" if self.version else "apicurio-registry"
        started = [] if self.startup_s is None else [f"{'':<9}  started in {self.startup_s:.1f}s"]
        return [
            f"registry   {self.state:<13} {pid:<11} {HOST}:{self.port:<6} {version}",
            *started,
            f"{'':<9}  log: {self.log}",
            f"TURNLOG_SCHEMA_REGISTRY_URL={self.url}",
        ]


def paths(settings: Settings) -> RegistryPaths:
    return RegistryPaths(settings.state_dir.resolve() / "registry")


def confluent_url(port: int) -> str:
    return f"http://{HOST}:{port}{CCOMPAT_PATH}"


def pinned_version() -> str:
    match = re.search(r"<apicurio\.version>([^<]+)</apicurio\.version>", POM.read_text())
    if match is None:
        raise DevInfraError(f"{POM} does not pin <apicurio.version>.")
    return match.group(1)


# --- the distribution -------------------------------------------------------------------


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def app_ready(settings: Settings) -> bool:
    marker = paths(settings).app / ".pom-sha256"
    return marker.exists() and marker.read_text().strip() == _pom_digest()


def fetch(settings: Settings) -> Path:
    """Unpack the registry's distribution with Maven into <state>/registry/app (no-op
    when it is there for this pom); returns that directory."""
    p = paths(settings)
    if app_ready(settings):
        return p.app
    if not POM.exists():
        raise DevInfraError(f"The schema registry's pom {POM} is missing from this installation.")
    mvn = shutil.which("mvn")
    if not mvn:
        raise MissingToolError(
            "Maven is needed once to download the schema registry and `mvn` is not on PATH. "
            "Install it (e.g. `apt-get install maven`)."
        )
    p.root.mkdir(parents=True, exist_ok=True)
    staging = p.root / "app.partial"
    shutil.rmtree(staging, ignore_errors=True)
    base = [mvn, "-B", "-q", "-ntp", "-f", str(POM)]
    if settings.dev_maven_repo is not None:
        base.append(f"-Dmaven.repo.local={settings.dev_maven_repo.resolve()}")
    markers = p.root / "maven-markers"
    goal = ["dependency:unpack", f"-DoutputDirectory={staging}", f"-Dturnlog.markers={markers}"]
    failure = ""
    for command in ([*base, "-o", *goal], base + goal):  # offline first
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            break
        failure = (result.stdout + result.stderr)[-4000:]
    else:
        raise DevInfraError(
            f"Maven could not fetch Apicurio Registry {pinned_version()} "
            f"(mvn -f {POM} dependency:unpack):\n{failure}"
        )
    _runner(staging)  # the archive holds what we start, or fail now rather than at start
    (staging / ".pom-sha256").write_text(_pom_digest())
    shutil.rmtree(p.app, ignore_errors=True)
    staging.rename(p.app)
    return p.app


def _runner(app: Path) -> Path:
    """The jar to start: Apicurio 2.x ships <name>-runner.jar, 3.x quarkus-run.jar."""
    found = sorted(app.glob("*-runner.jar")) or sorted(app.glob("quarkus-run.jar"))
    if not found:
        raise DevInfraError(
            f"No runner jar (*-runner.jar or quarkus-run.jar) in {app}: the registry's "
            "distribution did not unpack as expected. Delete that directory and fetch again."
        )
    return found[0]


# --- the process --------------------------------------------------------------------------


def _command(java: str, jar: Path, port: int) -> list[str]:
    return [
        java,
        f"-Xmx{HEAP}",
        "-XX:+UseSerialGC",  # one small heap on a 2-core machine: no parallel GC threads
        "-XX:TieredStopAtLevel=1",  # C1 only: a quicker start; a dev registry does little
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dquarkus.http.host={HOST}",
        f"-Dquarkus.http.port={port}",
        # A management interface (Apicurio 3.x) stays on loopback too.
        f"-Dquarkus.management.host={HOST}",
        "-Dquarkus.management.port=0",
        # Like Confluent's registry: a schema registered again with other whitespace or
        # key order is the same version and id, not a new one (2.x and 3.x names).
        "-Dregistry.ccompat.use-canonical-hash=true",
        "-Dapicurio.ccompat.use-canonical-hash=true",
        "-jar",
        str(jar),
    ]


def _check_port_free(port: int) -> None:
    if port_open(HOST, port):
        raise DevInfraError(
            f"Port {port} on {HOST} is taken by a program that does not answer as a schema "
            "registry. Stop it or choose another port (turnlog dev registry up --port N)."
        )


def _start(settings: Settings, port: int, log: Path, *, detach: bool) -> subprocess.Popen[bytes]:
    _check_port_free(port)
    java = java_executable()
    java_version(java)
    app = fetch(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"{_RUN_MARKER} {time.strftime('%Y-%m-%dT%H:%M:%S')} on port {port}\n".encode())
        out.flush()
        return subprocess.Popen(
            _command(java, _runner(app), port),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=detach,  # `up`: survives the CLI and Ctrl-C in the terminal
            cwd=log.parent,
        )


# Loopback is never asked through an HTTP proxy the environment may name.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str, timeout: float) -> object:
    with _DIRECT.open(url, timeout=timeout) as response:
        return json.loads(response.read().decode())


def probe(port: int, timeout: float = 3.0) -> str | None:
    """The registry's version when one answers on the port with the Confluent API (its
    HTTP port opens once storage is initialised), else None."""
    base = f"http://{HOST}:{port}"
    if not port_open(HOST, port):
        return None
    try:
        config = _get_json(f"{base}{CCOMPAT_PATH}/config", timeout)
        if not isinstance(config, dict) or "compatibilityLevel" not in config:
            return None
        info = _get_json(f"{base}/apis/registry/v2/system/info", timeout)
    except (OSError, ValueError, urllib.error.URLError):
        return None
    version = info.get("version") if isinstance(info, dict) else None
    return str(version) if version else "unknown"


def _wait_ready(
    process: subprocess.Popen[bytes], port: int, log: Path, timeout: float, since: int
) -> str:
    version: list[str] = []

    def ready() -> bool:
        answer = probe(port)
        if answer is not None:
            version.append(answer)
        return answer is not None

    if wait_for(ready, timeout=timeout, interval=0.25, abort=lambda: process.poll() is not None):
        return version[0]
    died = process.poll() is not None
    if not died:
        terminate(process.pid, timeout=10)
    reason = (
        f"exited with code {process.returncode}" if died else f"was not ready within {timeout:.0f}s"
    )
    raise DevInfraError(
        f"The schema registry (Apicurio Registry {pinned_version()}) on {HOST}:{port} "
        f"{reason}.\n--- {log} ---\n{_log_since(log, since)}"
    )


def _log_since(log: Path, since: int) -> str:
    """The log of the start that began at byte `since` (its last lines)."""
    try:
        with log.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return tail(log)
    return "\n".join(text.splitlines()[-40:]) or f"(log {log} is empty)"


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


# --- `turnlog dev registry up|status|down` ----------------------------------------------------


def managed_pid(settings: Settings) -> int | None:
    """The pid of the registry `up` started from this state dir, if it still runs."""
    p = paths(settings)
    pid = read_pid(p.pid_file)
    if pid and pid_alive(pid) and str(p.app) in cmdline(pid):
        return pid
    return None


def _managed_port(settings: Settings) -> int | None:
    return read_pid(paths(settings).port_file)  # one integer per line, like a pid


def status(settings: Settings, port: int | None = None) -> RegistryStatus:
    p = paths(settings)
    managed_port = _managed_port(settings)
    port = port or managed_port or DEFAULT_PORT
    pid = managed_pid(settings) if port == managed_port else None
    version = probe(port)
    if pid:
        state = RUNNING if version else STARTING
    else:
        state = FOREIGN if version else STOPPED
    return RegistryStatus(state=state, port=port, pid=pid, version=version, log=p.log)


def up(settings: Settings, port: int = DEFAULT_PORT, *, timeout: float = 120.0) -> RegistryStatus:
    """Start the registry in the background on 127.0.0.1:`port` unless one answers there;
    return once it is ready."""
    p = paths(settings)
    with file_lock(p.root / "registry.lock"):
        pid = managed_pid(settings)
        if pid and _managed_port(settings) == port and probe(port):
            return status(settings, port)
        if pid:  # ours, but on another port or not answering: replace it
            terminate(pid, timeout=30)
        if probe(port):
            return status(settings, port)  # foreign: reuse it, never stop it
        _check_port_free(port)  # before a download, not after
        fetch(settings)  # a first download is not start-up time
        since = _log_size(p.log)
        began = time.monotonic()
        process = _start(settings, port, p.log, detach=True)
        p.pid_file.write_text(f"{process.pid}\n")
        p.port_file.write_text(f"{port}\n")
        _wait_ready(process, port, p.log, timeout, since)
        startup_s = time.monotonic() - began
    return replace(status(settings, port), startup_s=startup_s)


def down(settings: Settings, *, timeout: float = 30.0) -> RegistryStatus:
    """Stop the registry this state dir started (a foreign one is left alone)."""
    p = paths(settings)
    pid = managed_pid(settings)
    if pid:
        terminate(pid, timeout=timeout)
    p.pid_file.unlink(missing_ok=True)
    return status(settings)
