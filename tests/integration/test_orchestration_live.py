"""delegate_many on the live platform: every mode, each member a child session of its own.

A race whose slow member is stopped in the middle of an LLM call (and whose first call's
cost still reaches the parent and SQL), quorum 2 of 3 with a failing member, a broadcast
(`all`) and a two-stage pipeline (`sequential`) — then the projections: the orchestration
tree (mode, members by position, winner, stopped members) and the cost per orchestration
including every member.

Real broker, real Postgres, the real session worker (in this process) and the real
projector, the scripted model of tests/data/orchestration/script.yaml. LLM calls that
must be in flight are held at a gate (GatedProvider), never raced against the clock.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from agents.agentfile import registry_from_file
from agents.events import (
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    LlmCallCompleted,
    LlmCallRequested,
    OrchestrationCompleted,
    OrchestrationMemberCancelled,
    OrchestrationStarted,
    SendMessage,
    ToolCallCompleted,
    TurnCancelled,
    TurnCompleted,
)
from agents.providers.scripted import ScriptedProvider
from agents.registry import AgentRegistry
from projections.projector import Projector, ProjectorConfig
from streams.topics import TopicNames
from tests.support.live import GatedProvider, live_platform, new_session_id

DATA = Path(__file__).resolve().parents[1] / "data" / "orchestration"


def registry() -> AgentRegistry:
    return registry_from_file(DATA / "agents.toml")


def script() -> ScriptedProvider:
    return ScriptedProvider.from_file(DATA / "script.yaml")


async def _project(bootstrap: str, database_url: str, names: TopicNames) -> None:
    projector = Projector(
        ProjectorConfig(
            bootstrap=bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            consumer=f"live-orchestration-{secrets.token_hex(4)}",
            group_id=None,
        )
    )
    await asyncio.wait_for(projector.run(until_caught_up=True), 60)


def _rows(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(sql, args).fetchall()


def _llm_cost(events: list[Any]) -> int:
    return sum(e.payload.cost_nanos for e in events if isinstance(e.payload, LlmCallCompleted))


async def test_every_mode_live_with_a_stopped_race_member_whose_cost_counts(
    kafka_bootstrap: str, names: TopicNames, database_url: str, tmp_path: Path
) -> None:
    quick_gate = GatedProvider(script(), "HOLD-QUICK")
    provider = GatedProvider(quick_gate, "HOLD-STEADY")
    async with live_platform(
        kafka_bootstrap, names, registry=registry(), provider=provider, sandbox=tmp_path
    ) as live:
        log = live.log
        race, quorum = new_session_id("race"), new_session_id("quorum")
        broadcast, pipeline = new_session_id("all"), new_session_id("pipe")
        await live.client.send(race, SendMessage("Please race them."), agent="boss")
        await live.client.send(quorum, SendMessage("Ask two of three."), agent="boss")
        await live.client.send(broadcast, SendMessage("Please ask everyone."), agent="boss")
        await live.client.send(pipeline, SendMessage("Run the pipeline."), agent="boss")
        panel = new_session_id("panel")
        await live.client.send(panel, SendMessage("Which planet has two moons?"), agent="panel")

        # --- race: slow computes (a priced call), then thinks; quick is held meanwhile.
        slow_child = f"{race}/child/"
        started = await log.wait_for_type(race, OrchestrationStarted)
        assert (started.mode, started.agents) == ("race", ("slow", "quick"))
        members = {c.agent: c for c in await _members(log, race, 2)}
        slow_child = members["slow"].child_session_id
        await log.wait_for(
            slow_child,
            lambda evs: (
                [e for e in evs if isinstance(e.payload, ToolCallCompleted)]
                and len([e for e in evs if isinstance(e.payload, LlmCallRequested)]) == 2
            ),
            "the slow member's second LLM call",
        )
        await quick_gate.wait_held()
        quick_gate.gate.set()
        done = await log.wait_for_type(race, OrchestrationCompleted)
        assert (done.status, done.winner_call_id) == ("completed", members["quick"].call_id)
        assert (done.completed, done.failed, done.cancelled) == (1, 0, 1)
        assert done.result == "quick: Mars has 2 moons."
        stopped = log.of_type(race, OrchestrationMemberCancelled)
        assert [s.member_call_id for s in stopped] == [members["slow"].call_id]
        await log.wait_for_type(race, TurnCompleted)
        # The slow child's turn was cancelled, not failed; it reported what it had spent.
        slow_events = log.events(slow_child)
        assert [type(e.payload) for e in slow_events].count(TurnCancelled) == 1
        slow_cost = _llm_cost(slow_events)
        assert slow_cost > 0
        reports = {c.call_id: c for c in log.of_type(race, ChildSessionCompleted)}
        slow_report = reports[members["slow"].call_id]
        assert (slow_report.status, slow_report.cost_nanos) == (ChildStatus.CANCELLED, slow_cost)
        # Its cost is in the parent's turn, before the combined result (seq order).
        race_events = log.events(race)
        seq = {type(e.payload): e.seq for e in race_events}
        assert seq[ChildSessionCompleted] < seq[OrchestrationCompleted]
        quick_cost = _llm_cost(log.events(members["quick"].child_session_id))
        turn_done = log.of_type(race, TurnCompleted)[0]
        assert turn_done.cost_nanos == _llm_cost(race_events) + slow_cost + quick_cost

        # --- quorum 2 of 3: broken fails, quick answers, steady is held until then.
        qmembers = {c.agent: c for c in await _members(log, quorum, 3)}
        await log.wait_for(
            quorum,
            lambda evs: len([e for e in evs if isinstance(e.payload, ChildSessionCompleted)]) == 2,
            "quick's answer and broken's failure",
        )
        provider.gate.set()
        qdone = await log.wait_for_type(quorum, OrchestrationCompleted)
        assert (qdone.status, qdone.completed, qdone.failed, qdone.cancelled) == (
            "completed",
            2,
            1,
            0,
        )
        assert "quick: Mars has 2 moons." in qdone.result and "Phobos" in qdone.result
        assert "refused" in qdone.result  # the failure is told to the model too
        await log.wait_for_type(quorum, TurnCompleted)

        # --- broadcast and pipeline.
        bdone = await log.wait_for_type(broadcast, OrchestrationCompleted)
        assert (bdone.status, bdone.completed) == ("completed", 2)
        assert "quick:" in bdone.result and "steady:" in bdone.result
        pdone = await log.wait_for_type(pipeline, OrchestrationCompleted)
        stages = log.of_type(pipeline, ChildSessionRequested)
        assert [s.agent for s in stages] == ["quick", "editor"]
        assert stages[1].task.endswith("The previous step's result:\nquick: Mars has 2 moons.")
        assert pdone.status == "completed" and pdone.result.startswith("edited: Edit this.")
        assert pdone.winner_call_id == stages[1].call_id
        for sid in (broadcast, pipeline):
            await log.wait_for_type(sid, TurnCompleted)

        # --- a team agent: no model call of its own; the members' result is its answer.
        answered = await log.wait_for_type(panel, TurnCompleted)
        panel_events = log.events(panel)
        assert not [e for e in panel_events if isinstance(e.payload, LlmCallRequested)]
        result = next(e.payload for e in panel_events if e.seq == answered.answer_seq)
        assert isinstance(result, OrchestrationCompleted) and "steady:" in result.result
        assert [c.agent for c in log.of_type(panel, ChildSessionRequested)] == ["quick", "steady"]

    await _project(kafka_bootstrap, database_url, names)
    tree = _rows(
        database_url,
        "SELECT o.mode, o.status, o.winner_call_id, m.position, m.agent, m.status AS member,"
        " m.stopped, m.winner, m.cost_nanos FROM orchestrations o"
        " JOIN orchestration_members m USING (session_id, call_id)"
        " WHERE o.session_id = %s ORDER BY m.position",
        race,
    )
    assert [(r["agent"], r["member"], r["stopped"], r["winner"]) for r in tree] == [
        ("slow", "cancelled", True, False),
        ("quick", "completed", False, True),
    ]
    assert {(r["mode"], r["status"]) for r in tree} == {("race", "completed")}
    assert tree[0]["cost_nanos"] == slow_cost
    costs = _rows(database_url, "SELECT * FROM orchestration_costs WHERE session_id = %s", race)
    assert len(costs) == 1
    assert costs[0]["reported_cost_nanos"] == slow_cost + quick_cost
    assert costs[0]["ledger_cost_nanos"] == slow_cost + quick_cost
    assert costs[0]["stopped_members"] == 1
    qrows = _rows(
        database_url,
        "SELECT agent, status FROM orchestration_members WHERE session_id = %s ORDER BY position",
        quorum,
    )
    assert [(r["agent"], r["status"]) for r in qrows] == [
        ("quick", "completed"),
        ("broken", "failed"),
        ("steady", "completed"),
    ]
    # Members are no tool calls of the model's: only the delegate_many call has a row.
    calls = _rows(
        database_url,
        "SELECT name, status FROM tool_calls WHERE session_id = ANY(%s)",
        [race, quorum, broadcast, pipeline],
    )
    assert sorted((r["name"], r["status"]) for r in calls) == [("delegate_many", "completed")] * 4
    assert qmembers["broken"].child_session_id.endswith(".m1")
    team_rows = _rows(
        database_url,
        "SELECT o.mode, o.status, count(m.*) AS members FROM orchestrations o"
        " JOIN orchestration_members m USING (session_id, call_id) WHERE o.session_id = %s"
        " GROUP BY o.mode, o.status",
        panel,
    )
    assert [(r["mode"], r["status"], r["members"]) for r in team_rows] == [("all", "completed", 2)]
    answer = _rows(
        database_url,
        "SELECT kind, content FROM entries WHERE session_id = %s ORDER BY seq DESC LIMIT 1",
        panel,
    )
    assert answer[0]["kind"] == "assistant" and "quick:" in answer[0]["content"]


async def _members(log: Any, session_id: str, n: int) -> list[ChildSessionRequested]:
    await log.wait_for(
        session_id,
        lambda evs: len([e for e in evs if isinstance(e.payload, ChildSessionRequested)]) >= n,
        f"{n} members started",
    )
    return list(log.of_type(session_id, ChildSessionRequested))
