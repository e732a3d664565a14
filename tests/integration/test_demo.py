"""`turnlog demo`, the README's first command, run as a user runs it (a subprocess of the
real console entry point) against this run's Kafka and database: it must end with exit
code 0, having shown a tool call, an approval, a delegation and a compaction — and what
it printed must be what the log and the projections hold."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.integration.test_cli_support import DEMO_AGENTS, cli
from tests.support.harness import ROOT, free_port
from tests.support.projections import wait_until
from turnlog.dev import _kafka
from turnlog.dev._proc import terminate
from turnlog.settings import load_settings


def test_demo_runs_to_the_end_and_its_session_is_in_kafka_and_postgres(
    kafka_bootstrap: str, database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    prefix = f"{topic_prefix}demo{secrets.token_hex(2)}."
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TURNLOG_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "TURNLOG_TOPIC_PREFIX": prefix,
        "TURNLOG_PARTITIONS": "4",
        "TURNLOG_SANDBOX_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "turnlog", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    for n in range(1, 7):
        assert f"[{n}/6]" in out
    assert "✗" not in out
    for seen in (
        "✓ tool call (calculator)",
        "✓ approval (shell), shown then granted",
        "✓ delegation to the researcher",
        "✓ context compaction",
    ):
        assert seen in out
    assert "⏸ approval needed for shell" in out and "approved by demo" in out
    assert "audit log intact" in out
    match = re.search(r"\[4/6\] a session with agent 'assistant': (\S+)", out)
    assert match, out
    sid = match.group(1)

    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        session = conn.execute("SELECT * FROM sessions WHERE session_id = %s", (sid,)).fetchone()
        approval = conn.execute("SELECT * FROM approvals WHERE session_id = %s", (sid,)).fetchone()
        compactions = conn.execute(
            "SELECT strategy FROM compactions WHERE session_id = %s", (sid,)
        ).fetchall()
        child = conn.execute(
            "SELECT s.agent, s.turns_completed FROM session_links l JOIN "
            "sessions s ON s.session_id = l.child_session_id "
            "WHERE l.parent_session_id = %s",
            (sid,),
        ).fetchone()
    assert session is not None and session["turns_completed"] == 4
    assert approval is not None
    assert (approval["outcome"], approval["decided_by"]) == ("granted", "demo")
    assert [c["strategy"] for c in compactions] == ["summarize"]
    assert child == {"agent": "researcher", "turns_completed": 1}
    # The costs table printed the session's own and rolled-up cost.
    assert re.search(rf"{re.escape(sid)}\s+assistant\s+\d+\s+0\.\d{{6}}\s+0\.\d{{6}}", out)

    # The follow-up command the demo suggests works on what it left behind.
    verify = cli(
        {**env, "TURNLOG_AGENTS": str(DEMO_AGENTS)}, "replay", sid, "--verify", "--no-timeline"
    )
    assert verify.exit_code == 0, verify.output
    assert "verify: OK" in verify.output and "1 compaction(s)" in verify.output


@pytest.fixture
def fresh_broker(tmp_path: Path, kafka_bootstrap: str) -> Iterator[str]:
    """A broker of the test's own that has never served a consumer group (the state of
    a first `turnlog dev up`), on its own state dir and ports; the shared broker's jars
    (`kafka_bootstrap` has them fetched) are linked in. Yields its bootstrap address
    once it answers."""
    shared = _kafka.paths(load_settings())
    settings = load_settings(
        state_dir=tmp_path / "state",
        dev_kafka_port=free_port(),
        dev_kafka_controller_port=free_port(),
        dev_kafka_heap="384m",
    )
    own = _kafka.paths(settings)
    own.root.mkdir(parents=True)
    os.symlink(shared.libs, own.libs)
    bootstrap = f"127.0.0.1:{settings.dev_kafka_port}"
    _kafka.start(settings)
    try:
        wait_until(
            lambda: _kafka.probe(bootstrap, timeout=2.0) is not None,
            120,
            "the test's own broker answers",
        )
        yield bootstrap
    finally:
        current = _kafka.managed_pid(settings)
        if current:
            terminate(current, timeout=20)


def test_the_demo_on_a_fresh_broker_prints_no_coordinator_errors_and_its_json_result(
    fresh_broker: str, scratch_database_url: str, tmp_path: Path
) -> None:
    """On a broker that never served a consumer group, its offsets topic is created on
    the first lookup; while it loads, aiokafka's consumers log each retry as `ERROR ...
    GroupCoordinatorNotAvailableError` (or mark the coordinator dead). `worker all`
    (and so the demo) waits for the coordinators first: a new user sees no error line.
    Nothing is muted, so a real failure would still print. With --json the walkthrough
    goes to stderr and stdout is one JSON object: what the demo found."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TURNLOG_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": fresh_broker,
        "DATABASE_URL": scratch_database_url,
        "TURNLOG_PARTITIONS": "2",
        "TURNLOG_SANDBOX_DIR": str(tmp_path / "sandbox"),
        "PYTHONUNBUFFERED": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "turnlog", "demo", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "audit log intact" in done.stderr  # the walkthrough
    assert "Coordinator" not in done.stderr, done.stderr
    assert "ERROR" not in done.stderr and "WARNING:aiokafka" not in done.stderr, done.stderr

    result = json.loads(done.stdout)
    assert result["ok"] is True and result["turns"] == 4
    assert result["checks"] == {
        "tool call (calculator)": True,
        "approval (shell), shown then granted": True,
        "delegation to the researcher": True,
        "context compaction": True,
    }
    assert len(result["children"]) == 1
    assert {r["session_id"] for r in result["costs"]} == {result["session_id"], *result["children"]}
    assert result["audit"]["rows"] >= result["last_seq"]
    with psycopg.connect(scratch_database_url) as conn:
        row = conn.execute(
            "SELECT agent, turns_completed, last_seq FROM sessions WHERE session_id = %s",
            (result["session_id"],),
        ).fetchone()
    assert row == ("assistant", 4, result["last_seq"])
