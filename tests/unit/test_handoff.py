"""Handoff in the pure core: the session continues under another agent, recorded as
AgentHandedOff; its next LLM call is that agent's (system prompt, tools, model) with the
whole conversation carried over; a handoff to an agent not listed is denied with the
reason; replay (fold), the phase track and the state codec agree."""

from __future__ import annotations

import json

from agents.context import build_llm_request
from agents.events import (
    AgentHandedOff,
    DecideApproval,
    LlmCallRequested,
    SendMessage,
    SetModel,
    ToolCallCompleted,
    ToolCallFailed,
)
from agents.fold import fold
from agents.phases import NEW, track
from agents.state_codec import state_from_dict, state_to_dict
from tests.unit.test_fsm_support import Driver, agent, make_registry, types

FRONT = agent(
    "front",
    tools=["handoff", "calculator"],
    delegates=[],
    handoffs=["researcher"],
    system_prompt="You are the front desk.",
)
REGISTRY = make_registry(FRONT)


def handoff(call_id: str, agent_name: str = "researcher", note: str = "") -> tuple[str, str, str]:
    return (call_id, "handoff", json.dumps({"agent": agent_name, "note": note}))


def test_a_handoff_moves_the_session_to_the_other_agent_with_its_context() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("I need research on moons."), agent="front")
    events = d.answer("Passing you on.", tools=[handoff("h1", note="wants moons")])
    assert types(events) == [
        "LlmCallCompleted",
        "ToolCallRequested",
        "ToolCallCompleted",
        "AgentHandedOff",
        "LlmCallRequested",
    ]
    moved = events[3].payload
    assert isinstance(moved, AgentHandedOff)
    assert (moved.from_agent, moved.to_agent, moved.note) == ("front", "researcher", "wants moons")
    assert moved.to_hash == REGISTRY.find("researcher").definition_hash  # type: ignore[union-attr]
    assert d.state.agent == "researcher" and d.state.definition_hash == moved.to_hash
    assert events[4].agent == "researcher" and events[3].agent == "front"
    request = events[4].payload
    assert isinstance(request, LlmCallRequested)
    built = build_llm_request(d.state, request, REGISTRY).to_dict()
    assert built["system"] == "You are researcher."
    assert [t["name"] for t in built["tools"]] == ["calculator"]
    texts = json.dumps(built["messages"])
    assert "I need research on moons." in texts and "Handed off to researcher." in texts
    d.answer("Jupiter has 95 moons.")
    assert d.state.phase.value == "idle" and d.state.agent == "researcher"
    # The next turn is the new agent's too.
    events = d.send(SendMessage("And Saturn?"))
    assert events[-1].agent == "researcher"
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state
    t = NEW
    for ev in d.log:
        t = track(t, ev.payload)
    assert t.phase is d.state.phase


def test_the_next_agent_runs_on_its_own_model_not_a_switch_of_the_last() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("hi"), agent="front")
    d.answer("done")
    d.send(SetModel(model="scripted-medium"))
    d.send(SendMessage("research please"))
    events = d.answer("Passing you on.", tools=[handoff("h1")])
    request = events[-1].payload
    assert isinstance(request, LlmCallRequested) and request.model == "scripted-small"


def test_a_handoff_to_an_agent_not_listed_is_denied_with_the_reason() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("hi"), agent="front")
    events = d.answer("Passing you on.", tools=[handoff("h1", agent_name="summarizer")])
    failed = [e.payload for e in events if isinstance(e.payload, ToolCallFailed)]
    assert len(failed) == 1 and "may hand off only to 'researcher'" in failed[0].error
    assert d.state.agent == "front"


def test_a_handoff_that_needs_approval_happens_when_granted() -> None:
    registry = make_registry(
        FRONT.model_copy(
            update={
                "policy": FRONT.policy.model_validate(
                    {"rules": [{"name": "ask", "tool": "handoff", "action": "require_approval"}]}
                )
            }
        )
    )
    d = Driver(registry)
    d.send(SendMessage("hi"), agent="front")
    d.answer("Passing you on.", tools=[handoff("h1")])
    assert d.state.agent == "front"
    events = d.send(DecideApproval("h1", True, "ann"))
    assert types(events)[:3] == ["ApprovalGranted", "ToolCallCompleted", "AgentHandedOff"]
    assert isinstance(events[1].payload, ToolCallCompleted)
    assert d.state.agent == "researcher"
