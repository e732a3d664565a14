"""SetModel in the core: later calls use the model (the agent's fallbacks after it), the
call in flight is untouched, replay of the log gives the same state, a fork starts on its
agent's model, and what the model cannot do is refused with the reason."""

from __future__ import annotations

from agents.events import (
    CompleteLlmCall,
    ForkSession,
    LlmCallRequested,
    ModelChanged,
    RequestRejected,
    SendMessage,
    SetModel,
)
from agents.fold import fold, fork_base
from tests.unit.test_fsm_support import Driver, agent, make_registry, types

REGISTRY = make_registry(
    agent("switcher", fallbacks=["scripted-large"], tools=["calculator"], delegates=[])
)


def _requested(d: Driver) -> list[LlmCallRequested]:
    return [e.payload for e in d.log if isinstance(e.payload, LlmCallRequested)]


def test_later_calls_use_the_new_model_and_the_call_in_flight_keeps_its_own() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("hi"), agent="switcher")
    events = d.send(SetModel("scripted-medium"))  # mid-turn: awaiting_llm
    assert types(events) == ["ModelChanged"]
    assert d.state.phase.value == "awaiting_llm"
    assert d.state.turn is not None and d.state.turn.llm is not None
    assert d.state.turn.llm.request.model == "scripted-small"
    d.send(CompleteLlmCall(d.llm_call_id, "scripted-small", "hello"))
    d.send(SendMessage("again"))
    first, second = _requested(d)
    assert (first.model, first.fallbacks) == ("scripted-small", ("scripted-large",))
    assert (second.model, second.fallbacks) == (
        "scripted-medium",
        ("scripted-small", "scripted-large"),
    )
    assert fold(d.log, "s1") == d.state  # replay gives the same state


def test_switching_to_a_fallback_puts_it_first_once() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("hi"), agent="switcher")
    d.send(SetModel("scripted-large"))
    d.send(CompleteLlmCall(d.llm_call_id, "scripted-small", "hello"))
    d.send(SendMessage("again"))
    assert (_requested(d)[-1].model, _requested(d)[-1].fallbacks) == (
        "scripted-large",
        ("scripted-small",),
    )


def test_what_cannot_be_switched_to_is_refused_with_the_reason() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("hi"), agent="switcher")
    d.send(CompleteLlmCall(d.llm_call_id, "scripted-small", "hello"))
    before = d.state
    for model, reason in [
        ("gpt-9000", "not in the model catalog"),
        ("scripted-small", "already uses model"),
    ]:
        (event,) = d.send(SetModel(model))
        assert isinstance(event.payload, RequestRejected)
        assert reason in event.payload.reason, event.payload.reason
    assert d.state.model == before.model == ""
    d.send(SetModel("claude-3-5-haiku"))  # max_tokens 256 fits, tools it has
    assert d.state.model == "claude-3-5-haiku"
    big = make_registry(
        agent("big", model="scripted-large", max_tokens=5000, tools=["calculator"], delegates=[])
    )
    b = Driver(big)
    b.send(SendMessage("hi"), agent="big")
    (event,) = b.send(SetModel("scripted-small"))
    assert "fewer than the agent's max_tokens" in event.payload.reason


def test_a_fork_starts_on_its_agents_model() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("hi"), agent="switcher")
    d.send(CompleteLlmCall(d.llm_call_id, "scripted-small", "hello"))
    d.send(SetModel("scripted-medium"))
    assert isinstance(d.log[-1].payload, ModelChanged)
    f = Driver(REGISTRY, session_id="s2", state=fork_base(d.state, "s2"))
    f.send(ForkSession("s1", d.state.last_seq))
    assert f.state.model == ""
    f.send(SendMessage("forked"))
    assert _requested(f)[-1].model == "scripted-small"
