"""Delegation on the live platform: a parent delegates to two child agents in one step,
each child runs as its own session (own key, own partition), the parent answers from
both, and costs roll up — in the parent's log and in the Postgres cost view. A failed
child fails only its own tool call.

Real broker, real Postgres, the real session worker (in this process) and the real
projector, the scripted model of tests/data/live/script.yaml.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from agents.context import build_llm_request
from agents.events import (
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    Event,
    LlmCallCompleted,
    LlmCallFailed,
    LlmCallRequested,
    SendMessage,
    SessionStarted,
    ToolCallRequested,
    TurnCompleted,
    TurnFailed,
)
from agents.fsm import fold
from agents.llm import ToolResultBlock
from agents.registry import AgentRegistry
from projections.projector import Projector, ProjectorConfig
from streams.partitioning import partition_for
from streams.topics import TopicNames
from tests.support.live import (
    PARTITIONS,
    EventLog,
    live_platform,
    load_agents,
    load_script,
    new_session_id,
    payloads,
)


def _answer(events: list[Event]) -> LlmCallCompleted:
    done = payloads(events, TurnCompleted)[-1]
    answer = next(e for e in events if e.seq == done.answer_seq).payload
    assert isinstance(answer, LlmCallCompleted)
    return answer


def _seq_of(events: list[Event], kind: type, **match: Any) -> int:
    return next(
        e.seq
        for e in events
        if isinstance(e.payload, kind) and all(getattr(e.payload, k) == v for k, v in match.items())
    )


def _own_llm_cost(events: list[Event]) -> int:
    return sum(p.cost_nanos for p in payloads(events, LlmCallCompleted))


def _last_tool_results(events: list[Event], registry: AgentRegistry) -> dict[str, ToolResultBlock]:
    """The tool results of the last LLM request, rebuilt from the log (digest-checked)."""
    last = max((e for e in events if isinstance(e.payload, LlmCallRequested)), key=lambda e: e.seq)
    assert isinstance(last.payload, LlmCallRequested)
    state = fold([e for e in events if e.seq <= last.seq], last.session_id)
    request = build_llm_request(state, last.payload, registry)
    assert request.digest() == last.payload.request_digest
    return {b.call_id: b for b in request.messages[-1].content if isinstance(b, ToolResultBlock)}


async def _delegated(log: EventLog, parent: str) -> dict[str, ChildSessionRequested]:
    """agent -> ChildSessionRequested of the parent's first step, once its turn ended."""
    await log.wait_for(
        parent,
        lambda evs: payloads(evs, TurnCompleted) or payloads(evs, TurnFailed),
        f"the end of {parent}'s turn",
    )
    return {c.agent: c for c in log.of_type(parent, ChildSessionRequested)}


async def _project(bootstrap: str, database_url: str, names: TopicNames) -> None:
    projector = Projector(
        ProjectorConfig(
            bootstrap=bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            consumer=f"live-delegation-{secrets.token_hex(4)}",
            group_id=None,
        )
    )
    await asyncio.wait_for(projector.run(until_caught_up=True), 60)


def _cost_rows(database_url: str, sessions: list[str]) -> dict[str, dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT * FROM cost_by_session WHERE session_id = ANY(%s)", (sessions,)
        ).fetchall()
    return {r["session_id"]: r for r in rows}


async def test_parent_delegates_to_two_children_in_parallel_answers_from_both_costs_roll_up(
    kafka_bootstrap: str, names: TopicNames, database_url: str, tmp_path: Path
) -> None:
    registry = load_agents()
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=registry,
        provider=load_script("script.yaml"),
        sandbox=tmp_path,
    ) as live:
        parent = new_session_id("lead")
        await live.client.send(parent, SendMessage("Please ask alpha and beta."), agent="lead")
        children = await _delegated(live.log, parent)
        assert set(children) == {"alpha", "beta"}
        log = live.log
        events = log.events(parent)
        assert payloads(events, TurnCompleted), log.describe(parent)

        # Both delegations come from ONE model step and both children are requested
        # before either reports back: they run in parallel, not one after the other.
        uses = {p.call_id: p for p in payloads(events, ToolCallRequested)}
        assert {uses[c.call_id].llm_call_id for c in children.values()} == {
            uses[children["alpha"].call_id].llm_call_id
        }
        first_report = min(e.seq for e in events if isinstance(e.payload, ChildSessionCompleted))
        for child in children.values():
            assert _seq_of(events, ChildSessionRequested, call_id=child.call_id) < first_report

        child_costs: dict[str, int] = {}
        for agent, child in children.items():
            sid = child.child_session_id
            assert sid != parent
            child_events = log.events(sid)
            # Its own session: its own log, on the partition its own key maps to.
            started = payloads(child_events, SessionStarted)
            assert [(s.agent, s.parent_session_id, s.parent_call_id) for s in started] == [
                (agent, parent, child.call_id)
            ]
            assert log.partition_of[sid] == {partition_for(sid, PARTITIONS)}
            assert [e.seq for e in child_events] == list(range(1, len(child_events) + 1))
            done = payloads(child_events, TurnCompleted)
            assert len(done) == 1
            child_costs[sid] = _own_llm_cost(child_events)
            assert child_costs[sid] > 0 and done[0].cost_nanos == child_costs[sid]
            # The parent's record of the child carries the child's outcome and its cost.
            reported = [
                p for p in payloads(events, ChildSessionCompleted) if p.call_id == child.call_id
            ]
            assert len(reported) == 1
            assert reported[0].status is ChildStatus.COMPLETED
            assert reported[0].child_session_id == sid
            assert reported[0].cost_nanos == child_costs[sid]
            assert reported[0].usage == done[0].usage

        # The parent answers after both children, from both answers.
        turn_done = payloads(events, TurnCompleted)[0]
        turn_done_seq = _seq_of(events, TurnCompleted)
        assert all(
            e.seq < turn_done_seq for e in events if isinstance(e.payload, ChildSessionCompleted)
        )
        answer = _answer(events)
        assert "95 known moons" in answer.text and "13 known rings" in answer.text
        # Costs roll up in the log: the turn's cost is its own calls plus both children.
        own = _own_llm_cost(events)
        assert turn_done.cost_nanos == own + sum(child_costs.values())
        live.worker.assert_alive()

    # ... and in Postgres: the projector over the same topic, the cost view by session.
    await _project(kafka_bootstrap, database_url, names)
    rows = _cost_rows(database_url, [parent, *child_costs])
    assert rows[parent]["own_cost_nanos"] == own
    assert rows[parent]["total_cost_nanos"] == own + sum(child_costs.values())
    for sid, cost in child_costs.items():
        assert rows[sid]["parent_session_id"] == parent
        assert rows[sid]["own_cost_nanos"] == rows[sid]["total_cost_nanos"] == cost


async def test_a_failed_child_fails_only_its_own_tool_call(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    registry = load_agents()
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=registry,
        provider=load_script("script.yaml"),
        sandbox=tmp_path,
    ) as live:
        parent = new_session_id("lead-broken")
        await live.client.send(parent, SendMessage("Please ask alpha and broken."), agent="lead")
        children = await _delegated(live.log, parent)
        events = live.log.events(parent)
        assert payloads(events, TurnCompleted) and not payloads(events, TurnFailed), (
            live.log.describe(parent)
        )
        broken = children["broken"]
        broken_log = live.log.events(broken.child_session_id)
        failure = payloads(broken_log, LlmCallFailed)
        assert len(failure) == 1 and failure[0].error_type == "invalid_request"
        assert len(payloads(broken_log, TurnFailed)) == 1

        reports = {p.call_id: p for p in payloads(events, ChildSessionCompleted)}
        assert reports[children["alpha"].call_id].status is ChildStatus.COMPLETED
        assert reports[broken.call_id].status is ChildStatus.FAILED
        assert "refused" in reports[broken.call_id].answer
        # The model is told: an error result for the broken child, the answer for alpha.
        sent = _last_tool_results(events, registry)
        assert sent[broken.call_id].is_error and "failed" in sent[broken.call_id].content
        assert not sent[children["alpha"].call_id].is_error
        answer = _answer(events)
        assert "95 known moons" in answer.text and "refused" in answer.text
        live.worker.assert_alive()
