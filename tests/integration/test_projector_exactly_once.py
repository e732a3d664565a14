"""The projector is exactly-once under kill -9, and a seq gap stops a partition loudly.

Real Kafka, real Postgres, the real worker as a subprocess (`python -m turnlog worker
projector`) connected as the application role.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from agents.events import Event, SessionStarted, TurnStarted, UserMessageReceived, event_id_for
from projections.audit import read_checkpoints, verify_audit_log
from projections.fold import Verdict, classify, fold
from projections.migrate import migrate
from projections.projector import Projector, ProjectorConfig
from projections.rebuild import rebuild, table_checksums
from projections.rows import Changes, SessionRow
from projections.store import PROJECTION_TABLES, PartitionStopped
from streams.topics import TopicNames, ensure_topics
from tests.support.projections import (
    async_wait_until,
    produce_aborted,
    produce_events,
    role_url,
    wait_until,
)
from tests.support.synthetic import generate, interleave

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
N_EVENTS = 20_000


@dataclass(frozen=True)
class Env:
    bootstrap: str
    prefix: str
    names: TopicNames
    admin_url: str
    app_url: str


@pytest.fixture
def env(kafka_bootstrap: str, unique_prefix: str, scratch_database_url: str) -> Env:
    migrate(scratch_database_url)
    names = asyncio.run(ensure_topics(kafka_bootstrap, unique_prefix, partitions=4)).names
    return Env(
        kafka_bootstrap, unique_prefix, names, scratch_database_url, role_url(scratch_database_url)
    )


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def workers(env: Env) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:  # only the processes this test started, by pid
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _start_worker(
    env: Env, workers: list[subprocess.Popen[bytes]], log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "DATABASE_URL": env.app_url,
        "KAFKA_BOOTSTRAP_SERVERS": env.bootstrap,
        "TURNLOG_TOPIC_PREFIX": env.prefix,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "turnlog",
            "worker",
            "projector",
            "--max-records",
            "700",
            "--session-timeout-ms",
            "6000",
            "--checkpoint-interval",
            "0.5",
            *extra,
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )
    workers.append(proc)
    return proc


def _expected_rows(events: list[Event]) -> dict[str, int]:
    """Row counts of a correct projection, computed without the database."""
    sessions: dict[str, SessionRow] = {}
    changes = Changes()
    for e in events:
        assert classify(sessions.get(e.session_id), e)[0] is Verdict.NEW
        sessions[e.session_id] = fold(
            sessions.get(e.session_id), e, changes, partition=0, offset=0, digest=""
        )
    counts = {
        "events": len(changes.events),
        "sessions": len(sessions),
        "entries": len(changes.entries),
        "session_links": len(changes.links),
    }
    counts.update({t: len(rows) for t, rows in changes.patches.items()})
    return counts


def test_kill9_at_random_points_then_every_table_equals_a_clean_rebuild(
    env: Env, workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    rng = random.Random(20_000)
    logs = generate(N_EVENTS, seed=3, base=T0)
    events = list(interleave(logs, seed=3))
    assert len(events) >= N_EVENTS
    half = len(events) // 2
    # Re-deliveries of already-sent events (same content) must be ignored.
    dups_a = rng.sample(events[:half], 150)
    dups_b = rng.sample(events, 150)
    # A transaction that aborts: a ghost session and a conflicting event for a real one.
    real = events[0].session_id
    ghost = [Event(event_id_for("ghost", 1), "ghost", 1, T0, "x", SessionStarted("x", "h"))]
    conflicting = [Event(event_id_for(real, 1), real, 1, T0, "x", UserMessageReceived("forged"))]

    async def produce() -> None:
        topic = env.names.events
        await produce_events(
            env.bootstrap, topic, events[:half], transactional_id=f"{env.prefix}w1"
        )
        await produce_aborted(env.bootstrap, topic, ghost + conflicting, f"{env.prefix}w2")
        await produce_events(env.bootstrap, topic, dups_a)
        await produce_events(
            env.bootstrap, topic, events[half:], transactional_id=f"{env.prefix}w1"
        )
        await produce_events(env.bootstrap, topic, dups_b, transactional_id=f"{env.prefix}w3")

    asyncio.run(produce())
    total = len(events)
    log = tmp_path / "projector.log"
    count_events = "SELECT count(*) FROM events"

    # Kill -9 at random points: each time once the projection has passed a random mark.
    # The last two marks are passed by two workers sharing the partitions (one group);
    # one of them is killed and the survivor takes its partitions over.
    marks = sorted(rng.sample(range(500, total - 2000), 5))

    def passed(mark: int, *procs: subprocess.Popen[bytes]) -> bool:
        return _count(env.app_url, count_events) >= mark or any(p.poll() is not None for p in procs)

    for mark in marks[:4]:
        proc = _start_worker(env, workers, log)
        wait_until(lambda m=mark, p=proc: passed(m, p), 120, f"the projection to pass {mark}")
        assert proc.poll() is None, f"the projector died by itself:\n{log.read_text()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def assignments() -> int:
        return log.read_text().count("partitions assigned")

    before = assignments()
    first, second = _start_worker(env, workers, log), _start_worker(env, workers, log)
    wait_until(
        lambda: (
            assignments() >= before + 2 or first.poll() is not None or second.poll() is not None
        ),
        120,
        "both workers to get partitions",
    )
    assert first.poll() is None and second.poll() is None, log.read_text()[-3000:]
    shared_from = _count(env.app_url, count_events)
    mark = min(total, max(marks[4], shared_from + 1000))
    wait_until(lambda: passed(mark, first, second), 120, f"the projection to pass {mark}")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    wait_until(lambda: passed(total, second), 120, f"the projection to reach all {total} events")
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0, log.read_text()[-3000:]

    # No event missing, none twice, nothing from the aborted transaction, no stop.
    with psycopg.connect(env.app_url) as conn:
        keys = set(conn.execute("SELECT session_id, seq FROM events").fetchall())
        stopped = conn.execute(
            "SELECT count(*) FROM projector_offsets WHERE stopped_reason IS NOT NULL"
        ).fetchone()
    assert keys == {(e.session_id, e.seq) for e in events}
    assert stopped == (0,)
    expected = _expected_rows(events)
    incremental = table_checksums(env.app_url, PROJECTION_TABLES)
    assert {t: n for t, (n, _) in incremental.items()} == expected

    # The audit log got every event exactly once, chained, matching the checkpoints.
    audit_before = table_checksums(env.admin_url, ("audit_log",))
    assert audit_before["audit_log"][0] == total
    checkpoints = asyncio.run(read_checkpoints(env.bootstrap, env.names.checkpoints))
    report = verify_audit_log(env.admin_url, checkpoints)
    assert report.ok, report.broken
    assert report.rows == total and report.checkpoints_matched == len(checkpoints) > 0

    # Every table equals a clean rebuild; the rebuild leaves the audit log alone.
    config = ProjectorConfig(
        env.bootstrap, env.app_url, env.names.events, env.names.checkpoints, group_id=None
    )
    rebuilt = asyncio.run(rebuild(config))
    assert rebuilt.events_replayed == total
    assert rebuilt.checksums == incremental
    assert table_checksums(env.admin_url, ("audit_log",)) == audit_before


# ------------------------------------------------------------------ gaps


def _session(sid: str, seqs: list[int], agent: str = "support") -> list[Event]:
    payloads = {1: SessionStarted(agent, "h")}
    return [
        Event(
            event_id_for(sid, q),
            sid,
            q,
            T0,
            agent,
            payloads.get(q) or (TurnStarted(q) if q % 2 == 0 else UserMessageReceived(f"m{q}")),
        )
        for q in seqs
    ]


def test_a_seq_gap_stops_its_partition_loudly_and_skips_nothing(
    kafka_bootstrap: str, unique_prefix: str, scratch_database_url: str, tmp_path: Path
) -> None:
    migrate(scratch_database_url)
    names = asyncio.run(ensure_topics(kafka_bootstrap, unique_prefix, partitions=1)).names
    app_url = role_url(scratch_database_url)
    # One partition: g's gap blocks h's events that come after it.
    stream = _session("g", [1, 2, 4, 5]) + _session("h", [1, 2, 3])
    asyncio.run(produce_events(kafka_bootstrap, names.events, stream))
    config = ProjectorConfig(kafka_bootstrap, app_url, names.events, None, group_id=None)

    with pytest.raises(PartitionStopped) as stopped:
        asyncio.run(Projector(config).run(until_caught_up=True))
    message = str(stopped.value)
    assert stopped.value.partition == 0 and stopped.value.offset == 2
    assert "Session g" in message and "the next must be seq 3, got seq 4" in message

    def state() -> tuple[list[tuple[str, int]], tuple[int, int | None, str | None]]:
        with psycopg.connect(app_url) as conn:
            keys = conn.execute("SELECT session_id, seq FROM events ORDER BY 1, 2").fetchall()
            offsets = conn.execute(
                "SELECT next_offset, stopped_offset, stopped_reason FROM projector_offsets"
            ).fetchone()
        assert offsets is not None
        return keys, offsets

    keys, (next_offset, stopped_offset, reason) = state()
    assert keys == [("g", 1), ("g", 2)]  # the prefix before the gap is committed
    assert (next_offset, stopped_offset) == (2, 2) and reason and "seq 4" in reason

    # A restart does not crash-loop and does not skip: the partition stays stopped.
    asyncio.run(Projector(config).run(until_caught_up=True))
    assert state()[0] == [("g", 1), ("g", 2)]

    # The worker command exits non-zero, naming the gap, for a fresh consumer too.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "turnlog",
            "worker",
            "projector",
            "--no-group",
            "--consumer",
            "other",
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        env={
            **os.environ,
            "DATABASE_URL": app_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TURNLOG_TOPIC_PREFIX": unique_prefix,
        },
    )
    assert result.returncode != 0
    assert b"the next must be seq 3, got seq 4" in result.stderr


def test_a_different_event_at_a_projected_seq_stops_the_partition(
    kafka_bootstrap: str, unique_prefix: str, scratch_database_url: str
) -> None:
    migrate(scratch_database_url)
    names = asyncio.run(ensure_topics(kafka_bootstrap, unique_prefix, partitions=1)).names
    app_url = role_url(scratch_database_url)
    original = _session("d", [1, 2, 3])
    forged = Event(event_id_for("d", 3), "d", 3, T0, "support", UserMessageReceived("forged"))
    same_again = original[1]
    asyncio.run(produce_events(kafka_bootstrap, names.events, [*original, same_again, forged]))
    config = ProjectorConfig(kafka_bootstrap, app_url, names.events, None, group_id=None)
    with pytest.raises(PartitionStopped) as stopped:
        asyncio.run(Projector(config).run(until_caught_up=True))
    assert stopped.value.offset == 4  # the harmless duplicate at offset 3 was skipped
    assert "Conflicting duplicate" in str(stopped.value) and "seq 3" in str(stopped.value)
    assert _count(app_url, "SELECT count(*) FROM events") == 3


def test_a_rebuild_while_a_worker_runs_converges_to_the_same_tables(env: Env) -> None:
    logs = generate(6000, seed=4, base=T0)
    early = list(interleave(logs[: len(logs) // 2], seed=4))
    late = list(interleave(logs[len(logs) // 2 :], seed=4))
    worker_config = ProjectorConfig(
        env.bootstrap,
        env.app_url,
        env.names.events,
        env.names.checkpoints,
        group_id=f"{env.prefix}projector",
        max_records=200,
    )
    rebuild_config = ProjectorConfig(
        env.bootstrap,
        env.app_url,
        env.names.events,
        env.names.checkpoints,
        group_id=None,
        max_records=200,
    )
    total = len(early) + len(late)

    def projected(n: int) -> bool:
        return _count(env.app_url, "SELECT count(*) FROM events") >= n

    async def scenario() -> dict[str, tuple[int, str]]:
        await produce_events(env.bootstrap, env.names.events, early)
        worker = Projector(worker_config)
        task = asyncio.create_task(worker.run())
        try:
            await async_wait_until(
                lambda: _ready(lambda: projected(len(early))),
                60,
                "the worker to project the first half",
            )
            # More events arrive while the projections are rebuilt under the worker.
            await produce_events(env.bootstrap, env.names.events, late)
            await rebuild(rebuild_config)
            await async_wait_until(
                lambda: _ready(lambda: projected(total)),
                60,
                "the worker and the replay to project everything",
            )
        finally:
            worker.stop()
            await task
        return table_checksums(env.app_url, PROJECTION_TABLES)

    concurrent = asyncio.run(scenario())
    # A clean rebuild with nobody else running gives the same tables.
    clean = asyncio.run(rebuild(rebuild_config))
    assert clean.events_replayed == total
    assert clean.checksums == concurrent
    assert table_checksums(env.admin_url, ("audit_log",))["audit_log"][0] == total
    with psycopg.connect(env.app_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM projector_offsets WHERE stopped_reason IS NOT NULL"
        ).fetchone() == (0,)


async def _ready(predicate: Callable[[], bool]) -> bool:
    return await asyncio.to_thread(predicate)
