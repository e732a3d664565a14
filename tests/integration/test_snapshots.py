"""Bounded session workers: snapshots on Kafka, restore from them, lazy sessions.

Against the real broker, with in-process workers (their counters are what is checked):

- a worker that takes over partitions with idle sessions reads their snapshots and no
  event older than the restore point, holds none of them in memory, and a session that
  gets a message is loaded from its snapshot and continues at the next seq;
- with a budget of a few sessions, idle sessions are evicted and come back on demand,
  every turn completing with gap-free seqs; a fork of an evicted session works;
- a snapshot this code cannot read (a state format from another version) is ignored
  and that session is rebuilt from its events, counted;
- snapshots and restore points are written in the transactions of the events they
  cover: each snapshot's seq is a committed event of its session.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from agents.events import ForkSession, SessionForked, SessionSnapshot, TurnCompleted
from agents.snapshots import RESTORE_POINT_KEY
from schemas.codec import decode_event, decode_snapshot, encode_snapshot
from streams._snapshots import SnapshotReader
from streams.topics import TopicNames, ensure_topics
from tests.support.harness import (
    EventLog,
    InProcessWorker,
    RequestSender,
    read_records,
    request_for,
    seq_problems,
    user_message,
)

PARTITIONS = 2


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


async def _turns(
    send: RequestSender, log: EventLog, sessions: list[str], turn: int, *, agent: str | None = None
) -> None:
    await send.requests(
        user_message(s, f"what is {turn}*7?", agent=agent, turn=turn) for s in sessions
    )
    await log.wait_for(
        lambda: all(log.turns_completed(s) >= turn for s in sessions),
        60,
        f"turn {turn} of every session",
        diagnose=log.summary,
    )


async def test_a_takeover_reads_snapshots_and_loads_sessions_on_demand(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    sessions = [f"snap-{i:02d}" for i in range(20)]
    async with (
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        # LLM calls not inline: a transaction holds one hop of a turn, whose events the
        # bound below counts (inline, a partition's last transaction holds whole turns).
        async with InProcessWorker(
            kafka_bootstrap, names, partitions=PARTITIONS, sandbox=tmp_path, inline_llm_ms=0
        ) as first:
            await _turns(send, log, sessions, 1, agent="calc")
            await _turns(send, log, sessions, 2)
            assert first.worker.stats["snapshots"] >= len(sessions) * 2  # each turn end
        total = len(log.events)
        async with InProcessWorker(
            kafka_bootstrap, names, partitions=PARTITIONS, sandbox=tmp_path
        ) as second:
            stats = second.worker.stats
            # Every session is idle and in its snapshot: none is held, and the only events
            # read are those of each partition's last transaction (a restore point is a
            # lower bound written before its own transaction's offsets are known).
            assert stats["restore_events_read"] <= 3 * len(sessions), (stats, total)
            assert second.worker.sessions() == {}
            await _turns(send, log, sessions[:3], 3)
            assert stats["sessions_loaded"] == 3
            assert stats["sessions_rebuilt"] == 0
    events = [decode_event(r.value) for r in await read_records(kafka_bootstrap, names.events)]
    assert seq_problems(events) == []
    ended = Counter(e.session_id for e in events if isinstance(e.payload, TurnCompleted))
    assert [ended[s] for s in sessions[:3]] == [3, 3, 3]
    # Each snapshot names a committed event of its session; restore points exist.
    seqs = {(e.session_id, e.seq) for e in events}
    points = 0
    for rec in await read_records(kafka_bootstrap, names.snapshots):
        snap = decode_snapshot(rec.value)
        if isinstance(snap.payload, SessionSnapshot):
            assert (snap.session_id, snap.payload.seq) in seqs
        else:
            assert snap.session_id == RESTORE_POINT_KEY
            points += 1
    assert points > 0


async def test_idle_sessions_are_evicted_and_come_back(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    sessions = [f"evict-{i:02d}" for i in range(30)]
    async with (
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
        InProcessWorker(
            kafka_bootstrap, names, partitions=PARTITIONS, sandbox=tmp_path, max_sessions=6
        ) as process,
    ):
        await _turns(send, log, sessions, 1, agent="calc")
        stats = process.worker.stats
        assert stats["sessions_evicted"] > 0
        assert len(process.worker.sessions()) <= 6 + PARTITIONS  # budget, plus the busy
        await _turns(send, log, sessions, 2)
        assert stats["sessions_loaded"] > 0
        # A fork of an evicted session, at its head.
        source = sessions[0]
        head = max(e.seq for e in log.of(source))
        await send.request(request_for("evict-fork", ForkSession(source, head), "fork-1"))
        await log.wait_for(lambda: bool(log.of("evict-fork", SessionForked)), 30, "the fork")
        await _turns(send, log, ["evict-fork"], 1)
        # At the source's head: from memory or its snapshot, no read of the events.
        assert stats["fork_source_in_hand"] == 1 and stats["fork_source_reads"] == 0
    events = [decode_event(r.value) for r in await read_records(kafka_bootstrap, names.events)]
    assert seq_problems(events) == []


async def test_a_snapshot_in_an_unknown_state_format_is_ignored_and_rebuilt(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    sessions = ["old-format-a", "old-format-b"]
    async with (
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        async with InProcessWorker(kafka_bootstrap, names, partitions=PARTITIONS, sandbox=tmp_path):
            await _turns(send, log, sessions, 1, agent="calc")
        # What a newer version with another state shape would have written for one of
        # them: its latest snapshot, in a format this code does not read.
        latest = {}
        for rec in await read_records(kafka_bootstrap, names.snapshots):
            snap = decode_snapshot(rec.value)
            if snap.session_id == sessions[0]:
                latest = {"snap": snap, "partition": rec.partition}
        snap = latest["snap"]
        other = dataclasses.replace(
            snap,
            written_at=datetime.now(UTC),
            payload=dataclasses.replace(
                snap.payload, state_format=999, state=b"not the state this code knows"
            ),
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(
                names.snapshots,
                encode_snapshot(other),
                key=sessions[0].encode(),
                partition=latest["partition"],
            )
        finally:
            await producer.stop()
        async with InProcessWorker(
            kafka_bootstrap, names, partitions=PARTITIONS, sandbox=tmp_path
        ) as process:
            assert process.worker.stats["snapshots_unreadable"] == 1
            await _turns(send, log, sessions, 2)
    events = [decode_event(r.value) for r in await read_records(kafka_bootstrap, names.events)]
    assert seq_problems(events) == []
    ended = Counter(e.session_id for e in events if isinstance(e.payload, TurnCompleted))
    assert [ended[s] for s in sessions] == [2, 2]


async def test_the_snapshot_reader_fetches_nothing_between_loads(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    # A session loaded on demand (an evicted one's next input) reads one snapshot record.
    # The partition it was read from is paused again after it: left resumed, the
    # reader's consumer would fetch ahead and, at the partition's end, poll the broker
    # every fetch wait for as long as the worker runs.
    sessions = [f"reader-{i}" for i in range(6)]
    async with (
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
        InProcessWorker(kafka_bootstrap, names, partitions=PARTITIONS, sandbox=tmp_path),
    ):
        await _turns(send, log, sessions, 1, agent="calc")
    latest = {
        (rec.partition, decode_snapshot(rec.value).session_id): rec.offset
        for rec in await read_records(kafka_bootstrap, names.snapshots)
    }
    reader = SnapshotReader(kafka_bootstrap, names.snapshots, client_id="test-reader")
    await reader.start()
    try:
        read_from: set[int] = set()
        for (partition, session), offset in sorted(latest.items()):
            if session not in sessions:
                continue
            state = await reader.state(partition, offset)
            assert state is not None and state.session_id == session
            read_from.add(partition)
            consumer = reader._consumer  # what it fetches: aiokafka's assignment
            assert consumer is not None
            assert {tp.partition for tp in consumer.assignment()} == read_from
            assert {tp.partition for tp in consumer.paused()} == read_from
        assert read_from == set(range(PARTITIONS)), latest
    finally:
        await reader.stop()
