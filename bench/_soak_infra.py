"""The soak's Kafka broker and PostgreSQL server, and the two restarts it inflicts on them.

Rule: nothing here is a new way to run Kafka or PostgreSQL; it is turnlog.dev's code
(ensure_up, _kafka.start/probe, _postgres.start/stop), pointed either at the `turnlog dev`
infrastructure of the current settings ("dev") or at a private instance of it: its own
state dir under /tmp and its own free loopback ports ("own", the default). A broker
restart is a clean stop of the broker process and a start on the same data dir and port;
a PostgreSQL restart is `pg_ctl stop -m fast`, a pause, `pg_ctl start`.

Why "own" by default: the restarts are the point of the soak, and restarting a broker
that other test runs share makes them fail for reasons of ours.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from turnlog.dev import DevStatus, _kafka, _postgres, down, ensure_up
from turnlog.dev._errors import DevInfraError
from turnlog.dev._proc import pid_alive, terminate, wait_for
from turnlog.settings import Settings, load_settings

__all__ = ["Infra", "start_infra"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Infra:
    mode: str  # "own" or "dev"
    settings: Settings
    status: DevStatus
    started: tuple[str, ...]

    @property
    def bootstrap(self) -> str:
        return self.status.kafka_bootstrap

    @property
    def server_url(self) -> str:
        """A superuser URL on the server's default `turnlog` database."""
        return self.status.database_url

    def describe(self) -> str:
        where = (
            "a private broker and server (turnlog.dev code, own state dir "
            f"{self.settings.state_dir})"
            if self.mode == "own"
            else f"the `turnlog dev` infrastructure ({self.settings.state_dir})"
        )
        return (
            f"{where}: Kafka {self.bootstrap}, PostgreSQL "
            f"127.0.0.1:{self.settings.dev_postgres_port}"
            + (f"; started now: {', '.join(self.started)}" if self.started else "")
        )

    # ------------------------------------------------------------------ restarts

    def can_restart_broker(self) -> bool:
        return _kafka.managed_pid(self.settings) is not None

    def can_restart_postgres(self) -> bool:
        return _postgres.managed_pid(self.settings) is not None

    def restart_broker(self, pause_s: float = 0.0) -> float:
        """Stop the broker (SIGTERM: a controlled shutdown), start it again on the same
        data dir and port; returns the seconds it did not answer."""
        pid = _kafka.managed_pid(self.settings)
        if pid is None:
            raise DevInfraError(
                "The broker was not started from this state dir: cannot restart it."
            )
        began = time.monotonic()
        terminate(pid, timeout=60)
        _kafka.paths(self.settings).pid_file.unlink(missing_ok=True)
        time.sleep(pause_s)  # the outage itself, not a synchronisation
        new = _kafka.start(self.settings)
        if not wait_for(
            lambda: _kafka.probe(self.bootstrap, timeout=3.0) is not None,
            timeout=self.settings.dev_start_timeout,
            interval=0.25,
            abort=lambda: not pid_alive(new),
        ):
            raise DevInfraError(
                "The broker did not come back after its restart.\n" + _kafka.log_tail(self.settings)
            )
        return time.monotonic() - began

    def restart_postgres(self, pause_s: float = 5.0) -> float:
        """`pg_ctl stop -m fast` (every connection cut), a pause, `pg_ctl start -w`;
        returns the seconds the server was down."""
        began = time.monotonic()
        _postgres.stop(self.settings)
        time.sleep(pause_s)  # the outage itself, not a synchronisation
        _postgres.start(self.settings)
        return time.monotonic() - began

    # ------------------------------------------------------------------ end

    def group_rebalances(self, group_id: str) -> int | None:
        """How many rebalances of `group_id` the broker's log records (None: no log)."""
        needle = f"Preparing to rebalance group {group_id} ".encode()
        logs = sorted(_kafka.paths(self.settings).logs.glob("server.log*"))
        if not logs:
            return None
        count = 0
        for path in logs:
            with contextlib.suppress(OSError), path.open("rb") as handle:
                count += sum(1 for line in handle if needle in line)
        return count

    def save_logs(self, target: Path) -> None:
        """Copy the broker's and the server's logs (for a post-mortem of a failed run)."""
        target.mkdir(parents=True, exist_ok=True)
        kafka_logs = _kafka.paths(self.settings).logs
        for source in (
            *sorted(kafka_logs.glob("server.log*")),
            kafka_logs / "kafka.out",
            _postgres.paths(self.settings).log,
        ):
            with contextlib.suppress(OSError):
                shutil.copy(source, target / source.name)

    def close(self, keep: bool) -> None:
        """A private instance is stopped and its state dir removed (unless `keep`);
        the shared dev infrastructure is left as it was found running."""
        if self.mode != "own" or keep:
            return
        with contextlib.suppress(Exception):
            down(self.settings)
        shutil.rmtree(_postgres.paths(self.settings).root, ignore_errors=True)
        shutil.rmtree(self.settings.state_dir, ignore_errors=True)


def start_infra(mode: str, heap: str = "768m") -> Infra:
    """Start (or reuse, for "dev") a broker and a server; return once both answer."""
    base = load_settings()
    if mode == "dev":
        status = ensure_up(base)
        return Infra("dev", base, status, status.started)
    state = Path(tempfile.mkdtemp(prefix="turnlog-soak-state-"))
    state.chmod(0o755)  # the server runs as the unprivileged `postgres` user under root
    settings = base.model_copy(
        update={
            "state_dir": state,
            "dev_kafka_port": _free_port(),
            "dev_kafka_controller_port": _free_port(),
            "dev_postgres_port": _free_port(),
            "dev_kafka_heap": heap,
        }
    )
    try:
        status = ensure_up(settings)
    except BaseException:
        Infra("own", settings, None, ()).close(keep=False)  # type: ignore[arg-type]
        raise
    return Infra("own", settings, status, status.started)
