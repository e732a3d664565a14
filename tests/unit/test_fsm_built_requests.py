"""decide_built: the LLM requests a decision built, handed to the shell with its events.

The shell sends these objects instead of rebuilding them, so each must be exactly the
request `build_llm_request` rebuilds from the committed state, with the digest its
LlmCallRequested records; and a decision that requests no LLM call hands back nothing.
"""

from __future__ import annotations

import dataclasses

from agents.context import build_llm_request
from agents.effects import pending_effects
from agents.events import (
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    Event,
    LlmCallRequested,
    Request,
    RequestPayload,
    RequestRejected,
    SendMessage,
    ToolUse,
    Usage,
)
from agents.fsm import decide_and_evolve, decide_built
from agents.llm import LlmRequest, Message, TextBlock, canonical_json, sha256_hex
from tests.unit.test_compaction import BIG, _long_session
from tests.unit.test_fsm_support import REGISTRY, Driver, types


def _decide(
    d: Driver, payload: RequestPayload, agent: str | None = None
) -> tuple[list[Event], dict[str, LlmRequest]]:
    """decide_built on the driver's session; the driver then takes the decision."""
    req: Request = d.request(payload, agent=agent)
    before = d.state
    events, after, built = decide_built(before, req, REGISTRY)
    assert decide_and_evolve(before, req, REGISTRY) == (events, after)
    d.state = after
    d.log.extend(events)
    return events, built


def _requested(events: list[Event]) -> list[LlmCallRequested]:
    return [e.payload for e in events if isinstance(e.payload, LlmCallRequested)]


def _assert_rebuilds(d: Driver, events: list[Event], built: dict[str, LlmRequest]) -> None:
    requested = _requested(events)
    assert sorted(built) == sorted(p.call_id for p in requested)
    effects = {e.effect_id: e for e in pending_effects(d.state)}
    for payload in requested:
        request = built[payload.call_id]
        assert request.digest() == payload.request_digest
        assert request == build_llm_request(d.state, payload, REGISTRY)
        # what the effect runner gets from the state names the same call and digest
        assert effects[payload.call_id].request_digest == request.digest()


def test_a_turn_hands_back_the_request_of_its_llm_call() -> None:
    d = Driver()
    events, built = _decide(d, SendMessage("what is 6*7?"), agent="assistant")
    assert types(events)[-1] == "LlmCallRequested" and len(built) == 1
    _assert_rebuilds(d, events, built)
    (request,) = built.values()
    assert request.messages[-1] == Message("user", (TextBlock("what is 6*7?"),))


def test_a_decision_that_requests_no_llm_call_hands_back_nothing() -> None:
    d = Driver()
    _decide(d, SendMessage("go"), agent="assistant")
    call_id = d.llm_call_id
    events, built = _decide(
        d,
        CompleteLlmCall(
            call_id=call_id,
            model="scripted-small",
            text="calculating",
            tool_uses=(ToolUse("t1", "calculator", '{"expression": "6*7"}'),),
            usage=Usage(10, 1),
        ),
    )
    assert "ToolCallRequested" in types(events) and not _requested(events)
    assert built == {}


def test_a_rejected_input_hands_back_nothing() -> None:
    d = Driver()
    events, built = _decide(d, SendMessage("hi"))  # a new session needs an agent
    assert isinstance(events[0].payload, RequestRejected) and built == {}


def test_the_next_call_after_a_tool_result_is_handed_back() -> None:
    d = Driver()
    _decide(d, SendMessage("go"), agent="assistant")
    d.answer("calc", tools=[("t1", "calculator", '{"expression": "6*7"}')])
    events, built = _decide(d, CompleteToolCall(call_id="t1", result="42"))
    assert len(_requested(events)) == 1
    _assert_rebuilds(d, events, built)


def test_a_summarize_call_and_the_turn_call_after_it_are_handed_back() -> None:
    d = _long_session("summarizer")
    events, built = _decide(d, SendMessage(BIG))
    (summarize,) = _requested(events)
    assert summarize.purpose == "summarize"
    _assert_rebuilds(d, events, built)
    assert built[summarize.call_id].tools == ()

    events, built = _decide(
        d,
        CompleteCompaction(
            summarize.call_id, "They said hello; BIG text.", "scripted-summarizer", Usage(500, 20)
        ),
    )
    (call,) = _requested(events)
    assert call.purpose == "turn"
    _assert_rebuilds(d, events, built)


def test_compaction_inside_the_decision_hands_back_only_the_call_it_requested() -> None:
    d = _long_session("assistant")  # sliding_window: compacted without an LLM call
    events, built = _decide(d, SendMessage(BIG))
    assert "ContextCompacted" in types(events)
    _assert_rebuilds(d, events, built)


def test_digest_is_computed_once_and_is_that_of_the_canonical_request() -> None:
    request = LlmRequest(
        model="m",
        system="s",
        messages=(Message("user", (TextBlock("hi"),)),),
        tools=(),
        max_tokens=5,
        temperature=0.0,
    )
    body = request.to_dict()
    del body["model"]
    expected = sha256_hex(canonical_json(body))
    first = request.digest()
    assert first == expected
    assert request.digest() is first  # memoized on the object
    other = dataclasses.replace(request, system="t")
    assert other.digest() != first  # a changed copy is digested afresh
    assert dataclasses.replace(request, model="fallback").digest() == first
    # the memo is no part of the value
    fresh = LlmRequest(
        model="m",
        system="s",
        messages=(Message("user", (TextBlock("hi"),)),),
        tools=(),
        max_tokens=5,
        temperature=0.0,
    )
    assert fresh == request and hash(fresh) == hash(request)
