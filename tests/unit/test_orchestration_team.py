"""Team agents (`[agents.X.team]`): an orchestration defined in the agent file runs every
turn with no model deciding it; the combined result is the turn's answer (and what a
parent that delegated to the team is told). Bad team config names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.agentfile import registry_from_file
from agents.definitions import AgentDefinition, definition_hash
from agents.effects import child_report
from agents.errors import AgentDefinitionError
from agents.events import (
    ChildSessionRequested,
    ChildStatus,
    CompleteChildSession,
    LlmCallRequested,
    OrchestrationCompleted,
    OrchestrationStarted,
    SendMessage,
    TurnCompleted,
    TurnFailed,
    Usage,
)
from agents.fold import fold
from agents.phases import NEW, track
from agents.registry import AgentRegistry
from agents.state import Phase
from tests.unit.test_fsm_support import Driver, agent, make_registry, types


def team(name: str, **team: object) -> AgentDefinition:
    return agent(name, tools=[], delegates=[], team=team)


REGISTRY = make_registry(
    team("panel", members=["researcher", "summarizer", "researcher"], mode="quorum:2"),
    team("line", members=["researcher", "summarizer"], mode="sequential"),
)


def reply(d: Driver, call: str, status: ChildStatus, answer: str) -> list[object]:
    return d.send(CompleteChildSession(call, f"s1/child/{call}", status, answer, Usage(5, 5), 100))


def test_a_team_turn_runs_its_members_on_the_message_and_answers_with_the_result() -> None:
    d = Driver(REGISTRY)
    events = d.send(SendMessage("How many moons has Mars?"), agent="panel")
    assert types(events) == [
        "SessionStarted",
        "TurnStarted",
        "UserMessageReceived",
        "OrchestrationStarted",
        "ChildSessionRequested",
        "ChildSessionRequested",
        "ChildSessionRequested",
    ]
    started = events[3].payload
    assert isinstance(started, OrchestrationStarted)
    assert (started.call_id, started.mode, started.quorum) == ("@team:1", "quorum", 2)
    assert {p.task for e in events if isinstance(p := e.payload, ChildSessionRequested)} == {
        "How many moons has Mars?"
    }
    assert d.state.phase is Phase.AWAITING_CHILDREN
    reply(d, "@team:1.m0", ChildStatus.COMPLETED, "two")
    events = reply(d, "@team:1.m2", ChildStatus.COMPLETED, "2")
    assert types(events) == ["ChildSessionCompleted", "OrchestrationMemberCancelled"]
    events = reply(d, "@team:1.m1", ChildStatus.CANCELLED, "stopped")
    assert types(events) == ["ChildSessionCompleted", "OrchestrationCompleted", "TurnCompleted"]
    done = events[-1].payload
    assert isinstance(done, TurnCompleted)
    assert done.answer_seq == events[1].seq and done.iterations == 0
    assert done.cost_nanos == 300  # every member, the stopped one included
    assert not [e for e in d.log if isinstance(e.payload, LlmCallRequested)]
    assert d.state.phase is Phase.IDLE
    assert fold(d.log, "s1") == d.state
    t = NEW
    for ev in d.log:
        t = track(t, ev.payload)
    assert t.phase is Phase.IDLE


def test_a_second_turn_runs_the_team_again_and_a_failure_fails_the_turn() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("first"), agent="line")
    reply(d, "@team:1.m0", ChildStatus.COMPLETED, "facts")
    events = reply(d, "@team:1.m1", ChildStatus.COMPLETED, "summary")
    assert isinstance(events[-1].payload, TurnCompleted)
    events = d.send(SendMessage("second"))
    assert [p.call_id for e in events if isinstance(p := e.payload, ChildSessionRequested)] == [
        "@team:2.m0"
    ]
    events = reply(d, "@team:2.m0", ChildStatus.FAILED, "no sources")
    assert types(events)[-2:] == ["OrchestrationCompleted", "TurnFailed"]
    failed = events[-1].payload
    assert isinstance(failed, TurnFailed)
    assert failed.error_type == "TeamFailed" and "no sources" in failed.reason


def test_a_team_delegated_to_reports_its_combined_result_to_the_parent() -> None:
    d = Driver(REGISTRY, session_id="p/child/k1")
    d.send(
        SendMessage("Summarize it.", parent_session_id="p", parent_call_id="k1"),
        agent="line",
    )
    reply_id = "p/child/k1/child/@team:1.m{}"
    for i, answer in enumerate(["facts", "the summary"]):
        d.send(
            CompleteChildSession(
                f"@team:1.m{i}", reply_id.format(i), ChildStatus.COMPLETED, answer, Usage(1, 1), 7
            )
        )
    report = child_report(d.state, d.log[-1])
    assert report is not None and report.session_id == "p"
    assert isinstance(report.payload, CompleteChildSession)
    assert (report.payload.answer, report.payload.cost_nanos) == ("the summary", 14)
    assert isinstance(d.log[-2].payload, OrchestrationCompleted)


@pytest.mark.parametrize(
    ("team_config", "message"),
    [
        ({"members": ["researcher"], "mode": "quorum:3"}, "mode: quorum:N needs 1 <= N <= 1"),
        ({"members": [], "mode": "all"}, "team.members"),
        ({"members": ["researcher"], "combine": "median"}, "team.combine"),
        ({"members": ["nobody"]}, "team.members: unknown agent 'nobody'"),
    ],
)
def test_bad_team_config_names_the_field(team_config: dict[str, object], message: str) -> None:
    with pytest.raises((AgentDefinitionError, ValueError), match=message):
        AgentRegistry([agent("researcher", tools=[], delegates=[]), team("t", **team_config)])


def test_an_agent_without_a_team_keeps_its_definition_hash() -> None:
    plain = agent("researcher", tools=[], delegates=[])
    assert "team" not in plain.model_dump(exclude_defaults=True)
    assert definition_hash(plain) == definition_hash(plain.model_copy(update={"team": None}))


def test_the_example_agent_file_loads() -> None:
    registry = registry_from_file(
        Path(__file__).resolve().parents[2] / "examples/orchestration.toml"
    )
    panel = registry.find("panel")
    assert panel is not None and panel.definition.team is not None
    assert panel.definition.team.mode == "quorum:2"
    lead = registry.find("lead")
    assert lead is not None and lead.definition.handoffs == ("editor",)
