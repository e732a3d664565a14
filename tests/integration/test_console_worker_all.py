"""`turnlog worker all --ui` serves the console beside its workers, on the same event
loop: a session started through its API runs and shows on its pages; SIGTERM stops
both."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx2 as httpx

from streams.topics import ensure_topics
from tests.integration.test_cli_support import WorkerAll, cli_env
from tests.integration.test_console_support import csrf_client
from tests.support.harness import free_port
from tests.support.projections import wait_until


def test_worker_all_with_ui_serves_the_console(
    kafka_bootstrap: str, database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    prefix = f"{topic_prefix}wui{secrets.token_hex(2)}."
    asyncio.run(ensure_topics(kafka_bootstrap, prefix, partitions=4))
    port = free_port()
    env = cli_env(kafka_bootstrap, prefix, database_url, tmp_path) | {
        "TURNLOG_UI_PORT": str(port),
        "TURNLOG_METRICS_PORT": "0",
        "TURNLOG_PROJECTOR_METRICS_PORT": "0",
    }
    worker = _worker_all_ui(env, tmp_path)
    try:
        worker.wait_ready()
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(base), 60, "the console of worker all answering")
        assert f"web console: {base}" in worker.log()
        api = csrf_client(base)
        try:
            started = api.post(
                "/api/sessions?wait=true", json={"agent": "assistant", "text": "what is 17*23?"}
            )
            assert started.status_code == 200, started.text
            sid = started.json()["session_id"]
            wait_until(
                lambda: "17 × 23 = 391." in api.get(f"/sessions/{sid}").text,
                30,
                "the answer on the session page",
            )
        finally:
            api.close()
    finally:
        code = worker.stop()
    assert code == 0, worker.log()[-3000:]


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _worker_all_ui(env: dict[str, str], tmp: Path) -> WorkerAll:
    import subprocess
    import sys

    from tests.support.harness import ROOT

    worker = WorkerAll(env, tmp / "worker-all-ui.log")
    with worker.log_path.open("ab") as log:
        worker.proc = subprocess.Popen(
            [sys.executable, "-m", "turnlog", "worker", "all", "--ui"],
            cwd=ROOT,
            env=worker.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    return worker
