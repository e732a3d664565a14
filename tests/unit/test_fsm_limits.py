"""Case tables for what an input may carry (agents.limits): text Postgres cannot store,
sizes over the limits, and times that come from the log, not from the sender.

A person's or client's bad value -> one RequestRejected naming the problem, state
unchanged. An effect's bad text -> cleaned (U+FFFD, cut with a note) into the event,
never rejected. Time: events carry the ingest time; the sender's claim is kept beside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.errors import ContractError, DecodeError, InvalidRecord
from agents.events import (
    CancelTurn,
    CloseSession,
    CompleteLlmCall,
    CompleteToolCall,
    DecideApproval,
    Event,
    FailLlmCall,
    FailToolCall,
    ForkSession,
    LlmCallCompleted,
    LlmCallFailed,
    LlmCallRequested,
    Request,
    RequestPayload,
    RequestRejected,
    SendMessage,
    Tick,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolUse,
    TurnFailed,
)
from agents.fsm import decide, decide_built, initial_state
from agents.limits import (
    MAX_ID_BYTES,
    Limits,
    clean_text,
    truncate_utf8,
    utf8_size,
)
from agents.registry import AgentRegistry
from schemas.codec import decode_request, encode_event, encode_request
from tests.unit.test_fsm_support import REGISTRY, T0, Driver, agent, check_decision, types

LIMITED = AgentRegistry(
    [agent("assistant"), agent("researcher", tools=["calculator"], delegates=[])],
    limits=Limits(max_text_bytes=100),
)


def _strings(value: Any) -> list[str]:
    """Every string inside a record (dataclasses, tuples), for the storable check."""
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [s for f in dataclasses.fields(value) for s in _strings(getattr(value, f.name))]
    if isinstance(value, tuple):
        return [s for item in value for s in _strings(item)]
    return []


def assert_storable(events: list[Event]) -> None:
    for ev in events:
        for text in _strings(ev):
            assert "\x00" not in text and text == clean_text(text), (ev, text)
        encode_event(ev)  # and the codec can write it


# --------------------------------------------------------------------------- setups


def new() -> Driver:
    return Driver()


def awaiting_llm(registry: AgentRegistry = REGISTRY) -> Driver:
    d = Driver(registry)
    d.send(SendMessage("hello"), agent="assistant")
    return d


def idle() -> Driver:
    d = awaiting_llm()
    d.answer("hi there")
    return d


def awaiting_approval() -> Driver:
    d = awaiting_llm()
    d.answer("", tools=[("c2", "shell", '{"command": "ls"}')])
    return d


def awaiting_tools(registry: AgentRegistry = REGISTRY) -> Driver:
    d = awaiting_llm(registry)
    d.answer("", tools=[("c1", "calculator", '{"expression": "6*7"}')])
    return d


# --------------------------------------------------------------------------- client inputs

# (setup, payload, agent, request_id, what the reason must say)
REJECTED: list[tuple[Callable[[], Driver], RequestPayload, str | None, str | None, str]] = [
    (
        new,
        SendMessage("what is 6*7?\x00"),
        "assistant",
        None,
        "text contains U+0000 (NUL) at character 12",
    ),
    (idle, SendMessage("again\x00"), None, None, "text contains U+0000 (NUL)"),
    (
        idle,
        SendMessage("lone \ud800 surrogate"),
        None,
        None,
        "text contains a lone surrogate U+D800",
    ),
    (
        awaiting_approval,
        DecideApproval("c2", False, "bob", "no\x00way"),
        None,
        None,
        "reason contains U+0000",
    ),
    (
        awaiting_approval,
        DecideApproval("c2", True, "b\x00b"),
        None,
        None,
        "decided_by contains U+0000",
    ),
    (
        awaiting_approval,
        DecideApproval("c\x002", True, "bob"),
        None,
        None,
        "call_id contains U+0000",
    ),
    (awaiting_llm, CancelTurn("stop\x00"), None, None, "reason contains U+0000"),
    (idle, CloseSession("bye\x00"), None, None, "reason contains U+0000"),
    (new, ForkSession("s0\x00", 1), None, None, "source_session_id contains U+0000"),
    (new, SendMessage("hi"), "assi\x00stant", None, "agent contains U+0000"),
    (new, SendMessage("hi"), "assistant", "r\x00-1", "request_id contains U+0000"),
    (
        idle,
        SendMessage("hi"),
        None,
        "x" * (MAX_ID_BYTES + 1),
        f"request_id is {MAX_ID_BYTES + 1} bytes, over the id limit",
    ),
    (
        awaiting_approval,
        DecideApproval("c2", True, "b" * (MAX_ID_BYTES + 1)),
        None,
        None,
        "decided_by is 4097 bytes, over the id limit (MAX_ID_BYTES) of 4096 bytes",
    ),
]


@pytest.mark.parametrize(("setup", "payload", "agent_name", "request_id", "says"), REJECTED)
def test_unstorable_or_oversized_client_input_is_rejected_with_the_state_unchanged(
    setup: Callable[[], Driver],
    payload: RequestPayload,
    agent_name: str | None,
    request_id: str | None,
    says: str,
) -> None:
    d = setup()
    before = d.state
    events = d.send(payload, agent=agent_name, request_id=request_id)
    assert types(events) == ["RequestRejected"]
    rejected = events[0].payload
    assert isinstance(rejected, RequestRejected)
    assert says in rejected.reason
    assert d.state == before._replace(last_seq=before.last_seq + 1)
    # The rejection itself must be storable: it carries no byte it rejects.
    assert_storable(events)


# (max_text_bytes registry, setup, payload, the reason must say)
OVER_LIMIT: list[tuple[Callable[[], Driver], RequestPayload, str]] = [
    (
        lambda: Driver(LIMITED),
        SendMessage("x" * 101),
        "text is 101 bytes, over the text limit (TURNLOG_MAX_TEXT_BYTES) of 100 bytes",
    ),
    # bytes, not characters: 60 characters of 2 bytes each
    (lambda: Driver(LIMITED), SendMessage("é" * 60), "text is 120 bytes"),
    (lambda: awaiting_llm(LIMITED), CancelTurn("r" * 200), "reason is 200 bytes"),
]


@pytest.mark.parametrize(("setup", "payload", "says"), OVER_LIMIT)
def test_client_text_over_the_text_limit_is_rejected_naming_limit_and_size(
    setup: Callable[[], Driver], payload: RequestPayload, says: str
) -> None:
    d = setup()
    before = d.state
    events = d.send(payload, agent="assistant" if d.state.phase.value == "new" else None)
    assert types(events) == ["RequestRejected"]
    assert isinstance(events[0].payload, RequestRejected)
    assert says in events[0].payload.reason
    assert d.state == before._replace(last_seq=before.last_seq + 1)


def test_text_at_the_limit_is_accepted() -> None:
    d = Driver(LIMITED)
    events = d.send(SendMessage("x" * 100), agent="assistant")
    assert "RequestRejected" not in types(events)


def test_a_session_id_no_event_can_carry_is_the_shells_to_dead_letter() -> None:
    for sid in ("s\x00", "s" * (MAX_ID_BYTES + 1)):
        req = Request("r1", sid, T0, SendMessage("hi"), agent="assistant")
        with pytest.raises(ContractError, match="dead-letter"):
            decide(initial_state(sid), req, REGISTRY)


# --------------------------------------------------------------------------- outcomes


def _outcome_cases() -> list[tuple[str, Callable[[Driver], RequestPayload], type, str, str]]:
    # (name, outcome for the driver's pending effect, event type, its field, expected text)
    return [
        (
            "tool result",
            lambda d: CompleteToolCall("c1", "4\x002"),
            ToolCallCompleted,
            "result",
            "4\ufffd2",
        ),
        (
            "tool error",
            lambda d: FailToolCall("c1", "bad \x00 thing"),
            ToolCallFailed,
            "error",
            "bad \ufffd thing",
        ),
        (
            "tool result, lone surrogate",
            lambda d: CompleteToolCall("c1", "a\udc80b"),
            ToolCallCompleted,
            "result",
            "a\ufffdb",
        ),
    ]


@pytest.mark.parametrize(("name", "outcome", "kind", "field", "expected"), _outcome_cases())
def test_an_effects_unstorable_text_is_cleaned_into_the_event_not_rejected(
    name: str,
    outcome: Callable[[Driver], RequestPayload],
    kind: type,
    field: str,
    expected: str,
) -> None:
    d = awaiting_tools()
    events = d.send(outcome(d))
    assert "RequestRejected" not in types(events), name
    (payload,) = [e.payload for e in events if isinstance(e.payload, kind)]
    assert getattr(payload, field) == expected
    assert_storable(events)


def test_an_llm_answer_with_nul_is_cleaned_in_text_and_tool_arguments() -> None:
    d = awaiting_llm()
    call_id = d.llm_call_id
    events = d.send(
        CompleteLlmCall(
            call_id,
            "scripted-small",
            "let me \x00 compute",
            tool_uses=(ToolUse("c1", "calculator", '{"expression": "6*7\x00"}'),),
        )
    )
    completed = [e.payload for e in events if isinstance(e.payload, LlmCallCompleted)]
    requested = [e.payload for e in events if isinstance(e.payload, ToolCallRequested)]
    assert completed[0].text == "let me \ufffd compute"
    assert requested[0].arguments_json == '{"expression": "6*7\ufffd"}'
    assert_storable(events)


def test_a_failed_llm_call_message_is_cleaned_in_the_failure_and_the_turn_reason() -> None:
    d = awaiting_llm()
    events = d.send(FailLlmCall(d.llm_call_id, "Boom", "broke \x00 here"))
    failed = [e.payload for e in events if isinstance(e.payload, LlmCallFailed)]
    turn = [e.payload for e in events if isinstance(e.payload, TurnFailed)]
    assert failed[0].message == "broke \ufffd here"
    assert "\x00" not in turn[0].reason and "\ufffd" in turn[0].reason
    assert_storable(events)


def test_an_effects_text_over_the_limit_is_cut_with_a_note_not_rejected() -> None:
    d = awaiting_tools(LIMITED)
    events = d.send(CompleteToolCall("c1", "y" * 1000))
    (done,) = [e.payload for e in events if isinstance(e.payload, ToolCallCompleted)]
    assert utf8_size(done.result) <= 100
    assert done.result.startswith("y") and "truncated: 1000 bytes" in done.result


def test_cleaning_is_deterministic_so_replay_rederives_the_same_events() -> None:
    d = awaiting_tools()
    req = d.request(CompleteToolCall("c1", "x\x00y"))
    assert decide(d.state, req, REGISTRY) == decide(d.state, req, REGISTRY)


@pytest.mark.parametrize(
    ("text", "limit"),
    [("abc", 3), ("abcd", 3), ("é" * 50, 99), ("🙂" * 40, 150), ("x" * 300, 10)],
)
def test_truncate_utf8_stays_within_the_limit_at_a_character_boundary(
    text: str, limit: int
) -> None:
    cut = truncate_utf8(text, limit)
    assert utf8_size(cut) <= limit
    cut.encode("utf-8")  # whole characters only
    assert (cut == text) == (utf8_size(text) <= limit)


# --------------------------------------------------------------------------- time

INGEST = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _send(
    claimed: datetime,
    ingested: datetime | None,
    payload: RequestPayload | None = None,
    state: Any = None,
) -> tuple[list[Event], Any]:
    state = state if state is not None else initial_state("s1")
    req = Request("r1", "s1", claimed, payload or SendMessage("hi"), agent="assistant")
    events, after, _ = decide_built(state, req, REGISTRY, ingested_at=ingested)
    check_decision(state, events, after)
    return events, after


# (claimed, ingested, accepted?, reason fragment, the events' occurred_at, claimed_at)
TIMES: list[tuple[datetime, datetime | None, bool, str, datetime | None, datetime | None]] = [
    (INGEST - timedelta(hours=1), INGEST, True, "", INGEST, INGEST - timedelta(hours=1)),
    (INGEST, INGEST, True, "", INGEST, None),
    (INGEST, None, True, "", INGEST, None),
    (INGEST + timedelta(hours=23), INGEST, True, "", INGEST, INGEST + timedelta(hours=23)),
    (datetime(1, 1, 1, tzinfo=UTC), INGEST, False, "before 2000-01-01", INGEST, None),
    (datetime(1, 1, 1, tzinfo=UTC), None, False, "EARLIEST_CLAIM", None, None),
    (datetime(1999, 12, 31, 23, 59, tzinfo=UTC), INGEST, False, "before 2000-01-01", INGEST, None),
    (INGEST + timedelta(days=2), INGEST, False, "more than 1 day, 0:00:00 ahead", INGEST, None),
]


@pytest.mark.parametrize(
    ("claimed", "ingested", "accepted", "says", "occurred", "claim_kept"), TIMES
)
def test_time_comes_from_ingest_and_absurd_claims_are_rejected(
    claimed: datetime,
    ingested: datetime | None,
    accepted: bool,
    says: str,
    occurred: datetime | None,
    claim_kept: datetime | None,
) -> None:
    events, _ = _send(claimed, ingested)
    if not accepted:
        assert types(events) == ["RequestRejected"]
        assert isinstance(events[0].payload, RequestRejected)
        assert says in events[0].payload.reason
        assert events[0].claimed_at == (None if ingested is None else claimed)
        return
    assert "RequestRejected" not in types(events)
    assert {e.occurred_at for e in events} == {occurred}
    assert {e.claimed_at for e in events} == {claim_kept}
    (llm,) = [e.payload for e in events if isinstance(e.payload, LlmCallRequested)]
    assert occurred is not None
    assert llm.deadline_at == occurred + timedelta(seconds=60)  # llm_s of the test agent


def test_an_hour_old_claim_does_not_make_the_llm_call_overdue_at_once() -> None:
    claimed = INGEST - timedelta(hours=1)
    _, state = _send(claimed, INGEST)
    tick = Request("t1", "s1", INGEST + timedelta(seconds=1), Tick())
    events, _, _ = decide_built(state, tick, REGISTRY, ingested_at=INGEST + timedelta(seconds=1))
    assert events == []  # nothing is due: the deadline is ingest + llm_s


def test_an_effects_clock_never_costs_its_result() -> None:
    d = awaiting_tools()
    req = Request("o1", d.session_id, datetime(1, 1, 1, tzinfo=UTC), CompleteToolCall("c1", "42"))
    events, _, _ = decide_built(d.state, req, REGISTRY, ingested_at=d.now)
    assert "ToolCallCompleted" in types(events)
    assert {e.occurred_at for e in events} == {d.now}


def test_deciding_with_an_ingest_time_is_deterministic() -> None:
    req = Request("r1", "s1", INGEST - timedelta(minutes=5), SendMessage("hi"), agent="assistant")
    state = initial_state("s1")
    assert decide(state, req, REGISTRY, ingested_at=INGEST) == decide(
        state, req, REGISTRY, ingested_at=INGEST
    )


# --------------------------------------------------------------------------- the codec


def test_the_codec_refuses_to_write_a_lone_surrogate() -> None:
    req = Request("r1", "s1", T0, SendMessage("a\ud800b"), agent="assistant")
    with pytest.raises(InvalidRecord):
        encode_request(req)


def test_invalid_utf8_on_the_wire_is_a_decode_error_so_it_is_dead_lettered() -> None:
    good = encode_request(Request("r1", "s1", T0, SendMessage("AAAA"), agent="assistant"))
    for bad in (b"\xed\xa0\x80A", b"\xff\xfeAA", b"A\xc3AA"):
        with pytest.raises(DecodeError):
            decode_request(good.replace(b"AAAA", bad))


def test_nul_travels_in_avro_so_the_core_must_decide_it() -> None:
    req = Request("r1", "s1", T0, SendMessage("a\x00b"), agent="assistant")
    assert decode_request(encode_request(req)) == req
