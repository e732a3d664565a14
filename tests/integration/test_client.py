"""`turnlog.Client` against the real stack: a session worker and a projector running in
this test's event loop on their own topics, Postgres for the projection queries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agents.events import (
    ApprovalRequested,
    ChildSessionRequested,
    Event,
    SessionForked,
    TokenDelta,
    TurnCompleted,
)
from projections.projector import Projector, ProjectorConfig
from streams.topics import ensure_topics
from tests.integration.test_cli_support import DEMO_AGENTS, DEMO_SCRIPT
from tests.support.harness import InProcessWorker, scripted_script
from turnlog import Client, OutcomeTimeout

TIMEOUT = 60.0


@asynccontextmanager
async def live(bootstrap: str, database_url: str, prefix: str, tmp: Path) -> AsyncIterator[Client]:
    names = (await ensure_topics(bootstrap, prefix, partitions=4)).names
    script = scripted_script(tmp, latency_ms=0, source=DEMO_SCRIPT)
    projector = Projector(
        ProjectorConfig(
            bootstrap=bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            group_id=None,
        )
    )
    async with InProcessWorker(bootstrap, names, agents=DEMO_AGENTS, script=script, sandbox=tmp):
        task = asyncio.create_task(projector.run())
        try:
            async with Client(
                bootstrap_servers=bootstrap, topic_prefix=prefix, database_url=database_url
            ) as client:
                yield client
        finally:
            projector.stop()
            await asyncio.wait_for(task, 30)


async def test_send_await_outcome_iterate_events_and_query(
    kafka_bootstrap: str, database_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    async with live(kafka_bootstrap, database_url, unique_prefix, tmp_path) as client:
        seen: list[Event | TokenDelta] = []
        sent = await client.send_message("what is 17*23?", agent="assistant")
        outcome = await client.outcome(sent, timeout=TIMEOUT, on_item=seen.append)

        assert outcome.status == "completed" and outcome.ok and outcome.exit_code == 0
        assert outcome.answer == "17 × 23 = 391."
        assert outcome.turn_id == f"{sent.session_id}:t1"
        assert outcome.cost_nanos > 0 and outcome.usage is not None
        assert any(isinstance(i, TokenDelta) for i in seen)
        assert [e.seq for e in outcome.events] == list(range(1, outcome.last_seq + 1))

        logged = [e async for e in client.events(sent.session_id)]
        assert logged == list(outcome.events)
        tail = [e async for e in client.events(sent.session_id, from_seq=5)]
        assert tail == logged[4:]

        await client.wait_projected(sent.session_id, outcome.last_seq, timeout=TIMEOUT)
        rows = await client.query(
            "SELECT model, cost_nanos FROM llm_calls WHERE session_id = %s ORDER BY requested_seq",
            (sent.session_id,),
        )
        assert [r["model"] for r in rows] == ["scripted-small", "scripted-small"]
        assert sum(r["cost_nanos"] for r in rows) == outcome.cost_nanos


async def test_approving_from_the_progress_callback_and_following_a_delegation(
    kafka_bootstrap: str, database_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    async with live(kafka_bootstrap, database_url, unique_prefix, tmp_path) as client:
        first = await client.send_message("list the files here", agent="assistant")
        asked: list[str] = []

        async def grant(item: Event | TokenDelta) -> None:
            if isinstance(item, Event) and isinstance(item.payload, ApprovalRequested):
                asked.append(item.payload.call_id)
                await client.approve(first.session_id, item.payload.call_id, by="pytest")

        done = await client.outcome(first, timeout=TIMEOUT, on_item=grant)
        assert done.status == "completed" and len(asked) == 1
        assert done.answer is not None and "These are the files" in done.answer

        second = await client.send_message(
            "research who created Apache Kafka", session_id=first.session_id
        )
        answer = await client.outcome(second, timeout=TIMEOUT)
        assert answer.status == "completed" and "Jay Kreps" in (answer.answer or "")
        children = [
            e.payload.child_session_id
            for e in answer.events
            if isinstance(e.payload, ChildSessionRequested)
        ]
        assert len(children) == 1
        child_log = [e async for e in client.events(children[0])]
        assert isinstance(child_log[-1].payload, TurnCompleted)

        # A request in the wrong phase: the outcome is the rejection, with the reason.
        late = await client.approve(first.session_id, asked[0])
        rejected = await client.outcome(late, timeout=TIMEOUT)
        assert rejected.status == "rejected" and rejected.exit_code == 5
        assert "DecideApproval is not accepted" in (rejected.reason or "")


async def test_fork_and_the_forked_log_with_its_ancestry(
    kafka_bootstrap: str, database_url: str, unique_prefix: str, tmp_path: Path
) -> None:
    async with live(kafka_bootstrap, database_url, unique_prefix, tmp_path) as client:
        base = await client.outcome(
            await client.send_message("what is 17*23?", agent="assistant"), timeout=TIMEOUT
        )
        forked = await client.outcome(
            await client.fork(base.session_id, base.last_seq, into="s-client-fork"), timeout=TIMEOUT
        )
        assert forked.status == "forked" and forked.session_id == "s-client-fork"
        assert isinstance(forked.events[0].payload, SessionForked)

        log = await client.session_log("s-client-fork")
        assert [e.session_id for e in log] == [base.session_id] * base.last_seq + ["s-client-fork"]
        assert [e.seq for e in log] == list(range(1, base.last_seq + 2))


async def test_an_outcome_nobody_answers_times_out_naming_the_request(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    await ensure_topics(kafka_bootstrap, unique_prefix, partitions=4)
    async with Client(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix) as client:
        sent = await client.send_message("anyone?", agent="assistant")
        with pytest.raises(OutcomeTimeout, match=sent.request_id):
            await client.outcome(sent, timeout=0.5)
