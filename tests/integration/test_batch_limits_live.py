"""Stage limits live: a pipeline whose agent file allows 2 items researching and 1
editing at once runs 12 items, 8 admitted at a time, through a real session worker; the
worker is SIGKILLed and the submitter dies with it after a few items, and a new worker
and a new submitter run finish the batch.

Counted where the work lands — the events topic read afresh: each stage session is in
flight from its TurnStarted to its turn's end (the worker's clock); at no moment are more
than 2 research or 1 editing sessions in flight, before the kill or after it (the limits
were reached: without them 8 would research at once). Every item ran each stage once
and completed; in SQL the batch counts 12 items, 12 completed, at the cost the
submitter summed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from agents.agentfile import registry_from_file
from agents.events import Event, SendMessage, TurnCompleted, TurnFailed, TurnStarted
from projections.projector import Projector, ProjectorConfig
from schemas.codec import decode_event
from streams.batch import Batch, progress_sql, stage_session_id, stages_of
from streams.topics import TopicNames, ensure_topics
from tests.support.harness import (
    WorkerGroup,
    read_records,
    read_requests,
    scripted_script,
    seq_problems,
    worker_env,
)

PARTITIONS = 4
ITEMS = 12
DATA = Path(__file__).resolve().parents[1] / "data" / "orchestration"


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


def _batch(bootstrap: str, names: TopicNames) -> Batch:
    definition = registry_from_file(DATA / "agents.toml").info("limited").definition
    return Batch(
        bootstrap=bootstrap,
        topics=names,
        partitions=PARTITIONS,
        batch_id="limits",
        agent="limited",
        items=[f"Item {n}: how many moons?" for n in range(1, ITEMS + 1)],
        concurrency=8,
        stages=stages_of(definition),
    )


def most_at_once(events: list[Event], suffix: str) -> int:
    """The most sessions whose id ends with `suffix` between TurnStarted and their turn's
    end at one moment (an end and a start at the same instant: the end first)."""
    marks = []
    for e in events:
        if not e.session_id.endswith(suffix):
            continue
        if isinstance(e.payload, TurnStarted):
            marks.append((e.occurred_at, 1))
        elif isinstance(e.payload, TurnCompleted | TurnFailed):
            marks.append((e.occurred_at, -1))
    now = most = 0
    for _, step in sorted(marks, key=lambda m: (m[0], m[1])):
        now += step
        most = max(most, now)
    return most


async def test_stage_limits_hold_across_a_kill9_of_the_worker_and_the_submitter(
    kafka_bootstrap: str, names: TopicNames, unique_prefix: str, tmp_path: Path, database_url: str
) -> None:
    script = scripted_script(tmp_path, latency_ms=250, source=DATA / "script.yaml")
    env = worker_env(
        kafka_bootstrap, unique_prefix, agents=DATA / "agents.toml", script=script, sandbox=tmp_path
    )
    async with WorkerGroup(env, tmp_path) as group:
        first = group.start("w1")
        await first.wait_assigned(at_least=PARTITIONS)
        some_ended = asyncio.Event()

        def progress(done: int, completed: int, failed: int) -> None:
            if done >= 3:
                some_ended.set()

        batch = _batch(kafka_bootstrap, names)
        submitter = asyncio.create_task(batch.run(progress))
        await asyncio.wait_for(some_ended.wait(), 120)
        first.kill()
        submitter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await submitter
        # The first run kept to the limits as it counted them.
        assert batch.summary().max_in_flight == {"quick": 2, "editor": 1}

        group.start("w2")
        again = _batch(kafka_bootstrap, names)
        summary = await asyncio.wait_for(again.run(), 180)
        assert (summary.items, summary.completed, summary.failed) == (ITEMS, ITEMS, 0)
        assert summary.sent_now < 2 * ITEMS  # what the first run sent was not sent again
    events = [decode_event(r.value) for r in await read_records(kafka_bootstrap, names.events)]
    assert seq_problems(events) == []
    assert most_at_once(events, "/1of2") == 2
    assert most_at_once(events, "/2of2") == 1
    stage_ids = {stage_session_id("limits", n, k, 2) for n in range(1, ITEMS + 1) for k in (1, 2)}
    turns = Counter(e.session_id for e in events if isinstance(e.payload, TurnStarted))
    ends = Counter(e.session_id for e in events if isinstance(e.payload, TurnCompleted))
    assert {s: (turns[s], ends[s]) for s in stage_ids} == dict.fromkeys(stage_ids, (1, 1))
    # Each stage request was sent once (the restart recounted what was sent, from the
    # requests topic); stage 2 was given stage 1's answer, as the team would pass it.
    sent = [r for r in await read_requests(kafka_bootstrap, names) if r.session_id in stage_ids]
    ours = [r for r in sent if r.request_id.endswith(":item")]
    assert Counter(r.session_id for r in ours) == dict.fromkeys(stage_ids, 1)
    (edit,) = [r for r in ours if r.session_id == stage_session_id("limits", 5, 2, 2)]
    assert isinstance(edit.payload, SendMessage) and edit.agent == "editor"
    assert edit.payload.text == (
        "Item 5: how many moons?\n\nThe previous step's result:\nquick: Mars has 2 moons."
    )
    # In SQL an item run stage by stage is one item (its stages' sessions counted once).
    projector = Projector(
        ProjectorConfig(
            bootstrap=kafka_bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            consumer=f"live-limits-{secrets.token_hex(4)}",
            group_id=None,
        )
    )
    await asyncio.wait_for(projector.run(until_caught_up=True), 120)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(progress_sql(), ("limits",)).fetchone()
    assert row == (ITEMS, ITEMS, 0, summary.cost_nanos)
