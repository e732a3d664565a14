"""Support for the CLI / replay integration tests (no tests here).

Rule: the stack under test is real — `turnlog worker all` runs as a subprocess (session
worker + effect runner + projector, configured only through its environment) against the
run's Kafka topics and database; commands run through typer's CliRunner on the real
`turnlog` app, or as subprocesses; waiting is on conditions with deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from tests.support.harness import ROOT, scripted_script
from tests.support.projections import wait_until

__all__ = ["DEMO_AGENTS", "WorkerAll", "cli", "cli_env", "json_lines"]

DEMO_AGENTS = ROOT / "examples" / "demo_agents.toml"
DEMO_SCRIPT = ROOT / "examples" / "demo_session.script.yaml"


def cli_env(
    bootstrap: str, prefix: str, database_url: str, tmp: Path, *, partitions: int = 4
) -> dict[str, str]:
    """Environment of the workers and the commands: this run's Kafka, topics and
    database; the demo agents on the scripted model without latency; a private
    sandbox for the shell tool."""
    sandbox = tmp / "sandbox"
    sandbox.mkdir(parents=True, exist_ok=True)
    (sandbox / "notes.txt").write_text("hello\n")
    script = scripted_script(tmp, latency_ms=0, source=DEMO_SCRIPT)
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "TURNLOG_TOPIC_PREFIX": prefix,
        "TURNLOG_PARTITIONS": str(partitions),
        "TURNLOG_AGENTS": str(DEMO_AGENTS),
        "TURNLOG_PROVIDER": f"scripted:{script}",
        "TURNLOG_SANDBOX_DIR": str(sandbox),
        "TURNLOG_LOG_LEVEL": "INFO",
    }


_runner = CliRunner()


def cli(env: Mapping[str, str], *args: str) -> Result:
    """Run `turnlog ARGS` in-process (the real app, with every extension)."""
    from turnlog.cli import app, load_extensions

    load_extensions()
    return _runner.invoke(app, list(args), env=dict(env), catch_exceptions=True)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class WorkerAll:
    """`python -m turnlog worker all` as a subprocess; SIGTERM on stop (SIGKILL when it
    does not exit), only this pid."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TURNLOG_"))
        } | dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerAll:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "turnlog", "worker", "all"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker all exited {self.proc.returncode}:\n{self.log()[-3000:]}")
        for line in self.log().splitlines():
            if '"partitions.assigned"' in line and '"partitions": []' not in line:
                return True
        return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        try:
            wait_until(self.ready, timeout_s, "worker all owning its partitions")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()[-3000:]}") from None

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None
