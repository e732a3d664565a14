"""An LLM answer decided inline (streams._partition, TURNLOG_INLINE_LLM_MS) has no record
on the requests topic: `agents.effects.llm_outcome_of` rebuilds it from the events it
caused — the worker decides it inline only when that gives it back whole — and
`replay --verify` re-decides it from there."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from agents.agentfile import registry_from_file
from agents.effects import llm_outcome_of
from agents.events import (
    CompleteLlmCall,
    CompleteToolCall,
    Event,
    LlmCallCompleted,
    LlmCallRequested,
    ProviderCircuitOpened,
    Request,
    ThinkingBlock,
    ToolCallRequested,
    ToolUse,
    TurnCompleted,
    Usage,
)
from agents.fsm import decide_and_evolve, initial_state
from agents.state import SessionState
from tests.support.harness import DATA, user_message
from turnlog.replay import SessionLog
from turnlog.replay_verify import verify_log

SID = "inline-llm"
T0 = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
REGISTRY = registry_from_file(DATA / "agents.toml")


def _answer(call: LlmCallRequested, **fields: object) -> CompleteLlmCall:
    base: dict[str, object] = {
        "call_id": call.call_id,
        "model": call.model,
        "text": "Let me calculate that.",
        "tool_uses": (ToolUse("toolu_1", "calculator", '{"expression": "6*7"}'),),
        "stop_reason": "tool_use",
        "usage": Usage(120, 12, 0, 0),
        "latency_ms": 1,
        "effect_attempt": 1,
    }
    base.update(fields)
    return CompleteLlmCall(**base)  # type: ignore[arg-type]


def _outcome(payload: object, call_id: str, at: datetime) -> Request:
    return Request(
        request_id=f"{call_id}:outcome:1",
        session_id=SID,
        occurred_at=at,
        payload=payload,  # type: ignore[arg-type]
        causation_id=call_id,
    )


def _first_call() -> tuple[list[Event], SessionState, Request, LlmCallRequested]:
    message = dataclasses.replace(user_message(SID, "what is 6*7?", agent="calc"), occurred_at=T0)
    events, state = decide_and_evolve(initial_state(SID), message, REGISTRY)
    call = next(e.payload for e in events if isinstance(e.payload, LlmCallRequested))
    return events, state, message, call


def test_an_answer_is_rebuilt_whole_from_its_events() -> None:
    _, state, _, call = _first_call()
    answer = _answer(
        call,
        circuits_opened=("anthropic/claude-x",),
        thinking=(ThinkingBlock("first the product", "sig-1"),),
        usage=Usage(120, 12, 30, 4),
    )
    events, _ = decide_and_evolve(state, _outcome(answer, call.call_id, T0), REGISTRY)
    assert isinstance(events[0].payload, ProviderCircuitOpened)
    assert any(isinstance(e.payload, ToolCallRequested) for e in events)
    assert llm_outcome_of(events, call.call_id, 1) == answer
    # Another issue's answer, or another call's events, are not this one.
    assert llm_outcome_of(events, call.call_id, 2) != answer
    assert llm_outcome_of(events, "llm_other", 1) is None


def test_an_answer_its_events_do_not_hold_whole_is_not_given_back() -> None:
    _, state, _, call = _first_call()
    # A refusal records no tool calls, whatever the answer carried.
    refusal = _answer(call, stop_reason="refusal")
    events, _ = decide_and_evolve(state, _outcome(refusal, call.call_id, T0), REGISTRY)
    assert llm_outcome_of(events, call.call_id, 1) != refusal
    # An answer cut inside a tool call is recorded for its cost only.
    cut = _answer(call, stop_reason="max_tokens")
    events, _ = decide_and_evolve(state, _outcome(cut, call.call_id, T0), REGISTRY)
    completed = next(e.payload for e in events if isinstance(e.payload, LlmCallCompleted))
    assert completed.discarded is not None
    assert llm_outcome_of(events, call.call_id, 1) is None


def _inline_turn() -> tuple[list[Event], list[Request]]:
    """A whole calc turn whose two answers and calculator result were decided inline:
    the requests topic holds the user's message only."""
    events, state, message, call = _first_call()
    first = _answer(call)
    more, state = decide_and_evolve(state, _outcome(first, call.call_id, T0), REGISTRY)
    tool = next(e.payload for e in more if isinstance(e.payload, ToolCallRequested))
    result = _outcome(CompleteToolCall(tool.call_id, "42", 1), tool.call_id, T0)
    tail, state = decide_and_evolve(state, result, REGISTRY)
    second = next(e.payload for e in tail if isinstance(e.payload, LlmCallRequested))
    last = _answer(second, text="6*7 is 42.", tool_uses=(), stop_reason="end_turn")
    end, _ = decide_and_evolve(state, _outcome(last, second.call_id, T0), REGISTRY)
    assert any(isinstance(e.payload, TurnCompleted) for e in end)
    # The worker decides them at the input's time (T0), as it stamps inline outcomes.
    log = [*events, *more, *tail, *end]
    assert all(e.occurred_at == T0 for e in log)
    return log, [message]


def test_verify_re_decides_answers_decided_inline() -> None:
    events, inputs = _inline_turn()
    report = verify_log(SessionLog(SID, tuple(events)), inputs, REGISTRY)
    assert report.ok, report.as_dict()
    assert (report.decisions_checked, report.unverified_events) == (4, 0)
    assert report.events_matched == len(events)
    assert report.llm_requests_checked == 2


def test_an_altered_inline_answer_diverges_at_the_next_llm_call() -> None:
    events, inputs = _inline_turn()
    at = next(i for i, e in enumerate(events) if isinstance(e.payload, LlmCallCompleted))
    completed = events[at].payload
    assert isinstance(completed, LlmCallCompleted)
    events[at] = dataclasses.replace(
        events[at], payload=dataclasses.replace(completed, text="I will guess.")
    )
    report = verify_log(SessionLog(SID, tuple(events)), inputs, REGISTRY)
    d = report.divergence
    assert d is not None and d.kind == "event", report.as_dict()
    assert d.request_type == "CompleteToolCall"
    assert "payload.request_digest" in d.fields
    second = next(
        e
        for e in events[at + 1 :]
        if isinstance(e.payload, LlmCallRequested) and e.seq > events[at].seq
    )
    assert d.seq == second.seq
