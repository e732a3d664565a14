"""A rejected first input makes no session: real worker, real Kafka, real Postgres.

A session's log may begin with rejections (a first message naming an unknown agent, an
approval sent to a mistyped session id, a fork of a source that does not exist). Those
RequestRejected events stay in the log and in `events` (clients follow them), but no
`sessions` row appears for a session that never started, so `turnlog sessions` and
`turnlog costs --by agent` show no empty agent. A later successful start of the same id
is projected as usual, also when its start arrives in a later projector batch than its
rejections, and `projections rebuild` gives the same tables.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agents.events import DecideApproval, ForkSession, RequestRejected, SessionStarted
from projections.migrate import migrate
from projections.projector import Projector, ProjectorConfig
from projections.rebuild import rebuild, table_checksums
from projections.store import PROJECTION_TABLES
from streams.topics import TopicNames
from tests.conftest import create_database, drop_database
from tests.support.harness import (
    ROOT,
    EventLog,
    InProcessWorker,
    RequestSender,
    request_for,
    user_message,
)
from tests.support.projections import role_url

GHOSTS = ("ghost-agent", "ghost-approval", "ghost-fork")


@pytest.fixture
def app_url(database_admin_url: str) -> Iterator[str]:
    name = f"turnlog_phantom_{secrets.token_hex(4)}"
    admin = create_database(database_admin_url, name)
    migrate(admin)
    yield role_url(admin)
    drop_database(database_admin_url, name)


def _rows(url: str, query: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(query, args).fetchall())


def _cli_json(env: dict[str, str], *argv: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "turnlog", *argv, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


async def test_rejected_first_inputs_make_no_session_and_a_later_start_does(
    kafka_bootstrap: str, names: TopicNames, app_url: str, tmp_path: Path
) -> None:
    config = ProjectorConfig(kafka_bootstrap, app_url, names.events, None, group_id=None)
    async with (
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path),
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await send.request(user_message("ghost-agent", "hello?", agent="nobody"))
        await send.request(
            request_for(
                "ghost-approval", DecideApproval("call-1", True, "alice"), "ghost-approval:a1"
            )
        )
        await send.request(
            request_for("ghost-fork", ForkSession("no-such-source", 3), "ghost-fork:f1")
        )
        await send.request(user_message("late", "what is 6*7?", agent="nobody"))
        for sid in (*GHOSTS, "late"):
            await log.wait_for(
                lambda s=sid: bool(log.of(s, RequestRejected)), 30, f"{sid}'s first input rejected"
            )
        # Batch one: the rejections alone.
        await Projector(config).run(until_caught_up=True)
        # The same id starts for real; its start is projected in a later batch.
        await send.request(user_message("late", "what is 6*7?", agent="calc", turn=2))
        await log.wait_for(lambda: log.turns_completed("late") == 1, 30, "late's turn")
        await Projector(config).run(until_caught_up=True)

    assert [type(e.payload) for e in log.of("late")][:2] == [RequestRejected, SessionStarted]
    late_last = log.of("late")[-1].seq
    # The rejections are in `events` (and so in what clients and the audit log see) ...
    rejected = _rows(
        app_url,
        "SELECT session_id, seq, event_type FROM events "
        "WHERE session_id = ANY(%s) AND seq = 1 ORDER BY session_id",
        [*GHOSTS, "late"],
    )
    assert rejected == [(s, 1, "RequestRejected") for s in sorted([*GHOSTS, "late"])]
    # ... but only the session that started has a row, with its whole log counted.
    assert _rows(
        app_url,
        "SELECT session_id, agent, phase, first_seq, last_seq, turns_completed "
        "FROM sessions ORDER BY session_id",
    ) == [("late", "calc", "idle", 1, late_last, 1)]

    # The client waits for the projection of a rejected-only session like any other.
    from turnlog.client import Client

    client = Client(bootstrap_servers=kafka_bootstrap, database_url=app_url)
    for sid in GHOSTS:
        await client.wait_projected(sid, 1, timeout=10)

    env = {**os.environ, "DATABASE_URL": app_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    assert [r["session_id"] for r in _cli_json(env, "sessions")] == ["late"]
    assert [(r["agent"], r["sessions"]) for r in _cli_json(env, "costs", "--by", "agent")] == [
        ("calc", 1)
    ]

    before = table_checksums(app_url, PROJECTION_TABLES)
    report = await rebuild(config)
    assert report.events_replayed == sum(len(log.of(s)) for s in (*GHOSTS, "late"))
    assert report.checksums == before
