"""Batches live: 120 work items through a two-stage pipeline agent (a sequential team),
10 at a time, with a kill -9 of the session worker and a crash of the submitter in the
middle; a second submitter run on a new worker finishes the batch. And a batch from a
topic: `batch consume`, then `batch consume --follow` until SIGTERM.

Checked on the events topic read afresh: every item's session ran exactly one turn (one
TurnStarted, one end), every stage of every item ran once, the poisoned item failed and
is on the DLQ; in SQL: 120 started, 119 completed, 1 failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.events import SessionStarted, TurnCompleted, TurnFailed, TurnStarted
from projections.projector import Projector, ProjectorConfig
from schemas.codec import decode_event
from streams.batch import Batch, item_session_id, progress_sql, topic_items
from streams.topics import TopicNames, ensure_topics
from tests.support.harness import (
    ROOT,
    EventLog,
    WorkerGroup,
    group_caught_up,
    read_records,
    read_requests,
    scripted_script,
    seq_problems,
    wait_until,
    worker_env,
)
from tests.support.live import turnlog_cli

PARTITIONS = 4
ITEMS = 120
DATA = Path(__file__).resolve().parents[1] / "data" / "orchestration"


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


def _batch(bootstrap: str, names: TopicNames) -> Batch:
    items = [f"Item {n}: how many moons?" for n in range(1, ITEMS + 1)]
    items[6] = "Item 7: POISON"
    return Batch(
        bootstrap=bootstrap,
        topics=names,
        partitions=PARTITIONS,
        batch_id="moons",
        agent="stages",
        items=items,
        concurrency=10,
    )


async def test_a_batch_survives_kill9_of_the_worker_and_of_the_submitter(
    kafka_bootstrap: str, names: TopicNames, unique_prefix: str, database_url: str, tmp_path: Path
) -> None:
    script = scripted_script(tmp_path, latency_ms=20, source=DATA / "script.yaml")
    env = worker_env(
        kafka_bootstrap, unique_prefix, agents=DATA / "agents.toml", script=script, sandbox=tmp_path
    )
    async with WorkerGroup(env, tmp_path) as group:
        first = group.start("w1")
        await first.wait_assigned(at_least=PARTITIONS)
        ended = asyncio.Event()

        def progress(done: int, completed: int, failed: int) -> None:
            if done >= 30:
                ended.set()

        submitter = asyncio.create_task(_batch(kafka_bootstrap, names).run(progress))
        await asyncio.wait_for(ended.wait(), 120)
        first.kill()
        submitter.cancel()  # the submitter dies with it
        with contextlib.suppress(asyncio.CancelledError):
            await submitter

        group.start("w2")
        again = _batch(kafka_bootstrap, names)
        summary = await asyncio.wait_for(again.run(), 240)
        assert (summary.items, summary.completed, summary.failed) == (ITEMS, ITEMS - 1, 1)
        assert summary.sent_now < ITEMS  # the first run's items were not sent again
        group_id = names.requests[: -len("turnlog.requests")] + "turnlog-session"
        await wait_until(
            lambda: group_caught_up(kafka_bootstrap, group_id, names.requests),
            60,
            "the session worker committed every input",
            interval_s=0.25,
        )
    events = [decode_event(r.value) for r in await read_records(kafka_bootstrap, names.events)]
    assert seq_problems(events) == []
    items = {item_session_id("moons", n) for n in range(1, ITEMS + 1)}
    turns = Counter(e.session_id for e in events if isinstance(e.payload, TurnStarted))
    ends = Counter(
        e.session_id for e in events if isinstance(e.payload, (TurnCompleted, TurnFailed))
    )
    assert {s: turns[s] for s in items} == dict.fromkeys(items, 1)
    assert {s: ends[s] for s in items} == dict.fromkeys(items, 1)
    # Every stage of every item ran once (a child session each, started once).
    stages = Counter(
        e.session_id
        for e in events
        if isinstance(e.payload, SessionStarted) and "/child/" in e.session_id
    )
    assert set(stages.values()) == {1}
    assert len(stages) == 2 * (ITEMS - 1) + 1  # the poisoned item stopped at stage 1
    failed = [e for e in events if isinstance(e.payload, TurnFailed) and e.session_id in items]
    assert [e.session_id for e in failed] == [item_session_id("moons", 7)]
    dlq = await read_records(kafka_bootstrap, names.dlq)
    poisoned = {r.key for r in dlq if dict(r.headers).get("turnlog.batch.item") == b"7"}
    assert poisoned == {item_session_id("moons", 7).encode()}

    projector = Projector(
        ProjectorConfig(
            bootstrap=kafka_bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            consumer=f"live-batch-{secrets.token_hex(4)}",
            group_id=None,
        )
    )
    await asyncio.wait_for(projector.run(until_caught_up=True), 120)
    with psycopg.connect(database_url) as conn:
        started, completed, failed_n, cost = conn.execute(progress_sql(), ("moons",)).fetchone()  # type: ignore[misc]
    assert (started, completed, failed_n) == (ITEMS, ITEMS - 1, 1)
    assert cost == summary.cost_nanos


async def _produce(bootstrap: str, topic: str, *values: tuple[int, bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, value in values:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def test_a_batch_from_a_topic_runs_each_record_once_and_a_following_rerun_adds_new_ones(
    kafka_bootstrap: str,
    names: TopicNames,
    unique_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`batch consume` up to the topic's end, then `batch consume --follow` (a restart of
    the same batch): it sends only the record produced in between, picks up a record
    produced while it runs, stops cleanly on SIGTERM (exit 0, its summary), and every
    item was submitted once over both runs."""
    monkeypatch.setenv("TURNLOG_PARTITIONS", str(PARTITIONS))
    topic = f"{unique_prefix}work.items"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    await _produce(
        kafka_bootstrap,
        topic,
        *(
            (i % 2, (f"Question {i}" if i % 2 else json.dumps({"text": f"Question {i}"})).encode())
            for i in range(8)
        ),
    )
    script = scripted_script(tmp_path, latency_ms=0, source=DATA / "script.yaml")
    env = worker_env(
        kafka_bootstrap, unique_prefix, agents=DATA / "agents.toml", script=script, sandbox=tmp_path
    )
    cli_env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TURNLOG_TOPIC_PREFIX": unique_prefix,
        "TURNLOG_PARTITIONS": str(PARTITIONS),
    }
    args = ["batch", "consume", topic, "--agent", "stages", "--id", "topic", "--json"]
    async with (
        WorkerGroup(env, tmp_path) as group,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await group.start("w1").wait_assigned(at_least=PARTITIONS)
        code, out, err = await turnlog_cli(kafka_bootstrap, names, *args, timeout=120)
        assert code == 0, out + err
        first = json.loads(out)
        assert (first["items"], first["completed"], first["sent_now"]) == (8, 8, 8)

        await _produce(kafka_bootstrap, topic, (0, b"Question 8"))
        follow = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "turnlog",
            *args,
            "--follow",
            cwd=ROOT,
            env=cli_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await log.wait_for(
                lambda: log.turns_completed(item_session_id("topic", "p0o4")) == 1,
                60,
                "the record produced between the runs",
            )
            await _produce(kafka_bootstrap, topic, (1, b"Question 9"))
            await log.wait_for(
                lambda: log.turns_completed(item_session_id("topic", "p1o4")) == 1,
                60,
                "the record produced while following",
            )
            follow.send_signal(signal.SIGTERM)
            out_b, err_b = await asyncio.wait_for(follow.communicate(), 60)
        finally:
            if follow.returncode is None:
                follow.kill()  # only the process this test started
                await follow.wait()
        assert follow.returncode == 0, (out_b + err_b).decode(errors="replace")
        again = json.loads(out_b)
        assert (again["items"], again["completed"], again["sent_now"]) == (10, 10, 2)
    sent = Counter(
        r.session_id
        for r in await read_requests(kafka_bootstrap, names)
        if r.session_id.startswith("batch/topic/") and r.request_id.endswith(":item")
    )
    assert sorted(sent.values()) == [1] * 10 and len(sent) == 10
    items = await topic_items(kafka_bootstrap, topic)
    assert items["p0o0"] == "Question 0" and items["p1o0"] == "Question 1"
