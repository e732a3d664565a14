"""`replay --verify` over a log whose tool outcome was decided inline (agents.tools.Tool
.inline): the outcome has no record among the inputs, is rebuilt from the event it caused
and re-decided; a result altered in the log shows at the next LLM call."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from agents.agentfile import registry_from_file
from agents.events import (
    CompleteLlmCall,
    Event,
    FailToolCall,
    LlmCallRequested,
    Request,
    ToolCallFailed,
    ToolCallRequested,
    ToolUse,
    Usage,
)
from agents.fsm import decide_and_evolve, initial_state
from tests.support.harness import DATA, user_message
from turnlog.replay import SessionLog
from turnlog.replay_verify import verify_log

SID = "inline-verify"
T0 = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)


def _log() -> tuple[list[Event], list[Request], str]:
    """A calc turn up to the LLM call after a refused calculator call, the refusal
    decided inline (no input record), and the inputs that are on the requests topic."""
    registry = registry_from_file(DATA / "agents.toml")
    message = dataclasses.replace(user_message(SID, "what is 1/0?", agent="calc"), occurred_at=T0)
    events, state = decide_and_evolve(initial_state(SID), message, registry)
    call = next(e.payload for e in events if isinstance(e.payload, LlmCallRequested))
    answer = Request(
        request_id=f"{call.call_id}:outcome:1",
        session_id=SID,
        occurred_at=T0 + timedelta(seconds=1),
        payload=CompleteLlmCall(
            call_id=call.call_id,
            model=call.model,
            text="Let me calculate that.",
            tool_uses=(ToolUse("toolu_1", "calculator", '{"expression": "1/0"}'),),
            stop_reason="tool_use",
            usage=Usage(120, 12, 0, 0),
            effect_attempt=1,
        ),
        causation_id=call.call_id,
    )
    more, state = decide_and_evolve(state, answer, registry)
    tool = next(e.payload for e in more if isinstance(e.payload, ToolCallRequested))
    # What the worker decides inline, at the answer's time, in the same transaction.
    inline = Request(
        request_id=f"{tool.call_id}:outcome:1",
        session_id=SID,
        occurred_at=answer.occurred_at,
        payload=FailToolCall(tool.call_id, "The calculator refuses: division by zero.", 3),
        causation_id=tool.call_id,
    )
    last, _ = decide_and_evolve(state, inline, registry)
    assert isinstance(last[0].payload, ToolCallFailed)
    assert any(isinstance(e.payload, LlmCallRequested) for e in last)
    return [*events, *more, *last], [message, answer], inline.request_id


def test_an_inline_outcome_is_rebuilt_from_its_event_and_re_decided() -> None:
    events, inputs, inline_id = _log()
    registry = registry_from_file(DATA / "agents.toml")
    report = verify_log(SessionLog(SID, tuple(events)), inputs, registry)
    assert report.ok, report.as_dict()
    assert (report.decisions_checked, report.unverified_events) == (3, 0)
    assert report.events_matched == len(events)
    assert report.llm_requests_checked == 2
    assert inline_id not in {r.request_id for r in inputs}


def test_an_altered_inline_result_diverges_at_the_next_llm_call() -> None:
    events, inputs, _ = _log()
    at = next(i for i, e in enumerate(events) if isinstance(e.payload, ToolCallFailed))
    failed = events[at].payload
    assert isinstance(failed, ToolCallFailed)
    events[at] = dataclasses.replace(
        events[at], payload=dataclasses.replace(failed, error="The answer is 7.")
    )
    registry = registry_from_file(DATA / "agents.toml")
    report = verify_log(SessionLog(SID, tuple(events)), inputs, registry)
    d = report.divergence
    assert d is not None and d.kind == "event" and d.seq == events[at].seq + 1
    assert d.request_type == "FailToolCall"
    assert "payload.request_digest" in d.fields
