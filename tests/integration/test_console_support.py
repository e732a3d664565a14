"""Support for the console's API and browser tests (no tests here).

Rule: the stack is real — `turnlog worker all` (session worker, effect runner,
projector) and `turnlog ui` run as subprocesses of the real CLI against this run's Kafka
topics (a prefix of their own) and database, on the demo agents with the scripted model
(a small latency, so answers stream as token deltas). Waiting is on conditions with
deadlines; only the pids started here are stopped.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.integration.test_cli_support import DEMO_SCRIPT, WorkerAll, cli_env
from tests.support.harness import ROOT, free_port, scripted_script
from tests.support.projections import wait_until

__all__ = ["Console", "Stack", "console_stack", "csrf_client", "start_console"]


class Console:
    """`python -m turnlog ui` as a subprocess on a free loopback port."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TURNLOG_"))
        } | dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> Console:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "turnlog", "ui", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"turnlog ui exited {self.proc.returncode}:\n{self.log()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        try:
            wait_until(self.healthy, timeout_s, "turnlog ui answering /healthz")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log()[-3000:]}") from None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Stack:
    env: dict[str, str]
    console: Console
    worker: WorkerAll
    database_url: str
    tmp: Path

    @property
    def url(self) -> str:
        return self.console.url


def start_console(env: Mapping[str, str], tmp: Path, **extra_env: str) -> Console:
    console = Console({**env, **extra_env}, tmp / f"ui-{secrets.token_hex(2)}.log").start()
    console.wait_healthy()
    return console


@pytest.fixture(scope="module")
def console_stack(
    kafka_bootstrap: str,
    database_url: str,
    topic_prefix: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Topics of their own, `worker all` and `turnlog ui` (loopback, no tokens)."""
    import asyncio

    from streams.topics import ensure_topics

    tmp = tmp_path_factory.mktemp("console")
    prefix = f"{topic_prefix}ui{secrets.token_hex(2)}."
    asyncio.run(ensure_topics(kafka_bootstrap, prefix, partitions=4))
    env = cli_env(kafka_bootstrap, prefix, database_url, tmp)
    # Streamed answers: a little latency and several chunks per answer.
    script = scripted_script(tmp, latency_ms=60, source=DEMO_SCRIPT, chunks=6)
    env |= {
        "TURNLOG_PROVIDER": f"scripted:{script}",
        "TURNLOG_METRICS_PORT": "0",
        "TURNLOG_PROJECTOR_METRICS_PORT": "0",
    }
    worker = WorkerAll(env, tmp / "worker-all.log").start()
    console = None
    try:
        worker.wait_ready()
        console = start_console(env, tmp)
        yield Stack(env, console, worker, database_url, tmp)
    finally:
        if console is not None:
            console.stop()
        worker.stop()


def csrf_client(base_url: str, **kwargs: Any) -> httpx.Client:
    """A client holding the console's CSRF cookie and sending it back as the header
    (what console.js does)."""
    client = httpx.Client(base_url=base_url, timeout=30, **kwargs)
    first = client.get("/api/me")
    assert first.status_code == 200, first.text
    token = client.cookies.get("turnlog_csrf")
    assert token, first.headers
    client.headers["x-csrf-token"] = token
    return client


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)
