"""The classifier guardrail in the pure core: the cheap check decides without a call
(block_if trips, allow_if passes), an inconclusive text becomes an LLM call with purpose
"guard" whose request rebuilds from the log, and its verdict (BLOCK / ALLOW / anything
else per on_error, or a failed call) blocks, warns or lets the turn go on, on the input
and on the final answer; `redact` is refused when the agent file is loaded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.context import build_llm_request, verify_llm_request
from agents.definitions import definition_hash, parse_definitions
from agents.effects import LlmCallEffect
from agents.errors import AgentDefinitionError
from agents.events import (
    CancelTurn,
    CompleteLlmCall,
    FailLlmCall,
    GuardrailTripped,
    LlmCallCompleted,
    LlmCallRequested,
    SendMessage,
    Tick,
    TurnFailed,
)
from agents.fold import fold
from agents.guardrails import Guardrail, check, parse_verdict, precheck
from agents.llm import LlmRequest, TextBlock
from agents.phases import NEW, track
from agents.state import window_entries
from agents.state_codec import state_from_dict, state_to_dict
from tests.unit.test_fsm_support import DEFAULT_USAGE, Driver, agent, make_registry, types

PROMPT = "Answer BLOCK if the message is not about cooking, else ALLOW."


def scope(**kw: Any) -> dict[str, Any]:
    return {
        "name": "scope",
        "on": "input",
        "kind": "classifier",
        "action": "block",
        "model": "scripted-small",
        "prompt": PROMPT,
        "allow_if": ["(?i)recipe"],
        "block_if": ["(?i)bitcoin"],
        **kw,
    }


def registry(*rules: dict[str, Any]) -> Any:
    return make_registry(agent("guarded", guardrails=list(rules)))


def _consistent(d: Driver) -> None:
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state
    t = NEW
    for ev in d.log:
        t = track(t, ev.payload)
    assert t.phase is d.state.phase


def _pending(d: Driver) -> LlmCallRequested:
    turn = d.state.turn
    assert turn is not None and turn.llm is not None
    return turn.llm.request


def _texts(request: LlmRequest) -> list[str]:
    return [b.text for m in request.messages for b in m.content if isinstance(b, TextBlock)]


def _verdict(d: Driver, text: str) -> list[Any]:
    return d.send(
        CompleteLlmCall(
            call_id=d.llm_call_id,
            model="scripted-small",
            text=text,
            tool_uses=(),
            usage=DEFAULT_USAGE,
        )
    )


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Buy bitcoin now", "block"),
        ("a bitcoin recipe", "block"),  # block_if is checked first
        ("my RECIPE for bread", "allow"),
        ("what about the weather", None),
    ],
)
def test_the_cheap_check(text: str, expected: str | None) -> None:
    assert precheck(Guardrail.model_validate(scope()), text) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("BLOCK", "block"),
        ("block.", "block"),
        ("Allow: it is about soup", "allow"),
        ("  ALLOW", "allow"),
        ("I think it should be blocked", None),
        ("", None),
    ],
)
def test_the_verdict_is_the_first_word(answer: str, expected: str | None) -> None:
    assert parse_verdict(answer) == expected


def test_the_pure_check_skips_classifier_rules() -> None:
    assert check([Guardrail.model_validate(scope())], "input", "bitcoin").trips == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (scope(action="redact"), "guardrails.0: action: a classifier guardrail can block or warn"),
        (scope(model=None), "model: a classifier guardrail needs model"),
        (scope(prompt=" "), "prompt: a classifier guardrail needs a non-empty prompt"),
        (scope(block_if=["("]), "block_if: '(' is not a valid regular expression"),
        (scope(model="no-such-model"), "guardrails.scope.model: unknown model 'no-such-model'"),
        (scope(on_error="maybe"), "on_error"),
        (
            {"name": "r", "on": "input", "kind": "regex", "pattern": "x", "action": "warn",
             "prompt": "p"},
            "belong to a classifier guardrail",
        ),
    ],
)  # fmt: skip
def test_a_broken_classifier_is_refused_naming_the_field(
    spec: dict[str, Any], message: str
) -> None:
    spec = {k: v for k, v in spec.items() if v is not None}
    data = {
        "agents": {"g": {"model": "scripted-small", "system_prompt": "p", "guardrails": [spec]}}
    }
    with pytest.raises(AgentDefinitionError) as err:
        parse_definitions(data, "a.toml")
    assert "agent 'g'" in str(err.value) and message in str(err.value)


def test_existing_guardrails_keep_their_definition_hash() -> None:
    rule = {"name": "r", "on": "input", "kind": "max_length", "max": 9, "action": "warn"}
    guarded = agent("a", guardrails=[rule])
    data = guarded.model_dump(mode="json")
    for later in ("model", "prompt", "allow_if", "block_if", "on_error"):
        del data["guardrails"][0][later]  # the fields added with the classifier kind
    from agents.definitions import _LATER_DEFAULTS
    from agents.llm import canonical_json, sha256_hex

    for name, default in _LATER_DEFAULTS.items():
        if name != "guardrails" and data.get(name) == default:
            del data[name]
    del data["deadlines"]["on_unknown_outcome"]
    for name in ("alert_at", "alert_at_usd", "day_usd"):
        data["budget"].pop(name)
    assert definition_hash(guarded) == sha256_hex(canonical_json(data))
    assert definition_hash(agent("a", guardrails=[scope()])) != definition_hash(guarded)


# --------------------------------------------------------------------------- input


def test_block_if_trips_without_a_call() -> None:
    d = Driver(registry(scope()))
    events = d.send(SendMessage("should I buy bitcoin?"), agent="guarded")
    assert types(events) == [
        "SessionStarted",
        "TurnStarted",
        "UserMessageReceived",
        "GuardrailTripped",
        "TurnFailed",
    ]
    trip = events[3].payload
    assert isinstance(trip, GuardrailTripped)
    assert (trip.rule, trip.kind, trip.action, trip.on) == ("scope", "classifier", "block", "input")
    assert trip.detail == "a block_if pattern matched"
    failed = events[4].payload
    assert isinstance(failed, TurnFailed) and failed.error_type == "GuardrailBlocked"
    assert "'scope' (classifier) blocked the user's message" in failed.reason
    _consistent(d)


def test_allow_if_passes_without_a_call() -> None:
    d = Driver(registry(scope()))
    events = d.send(SendMessage("a recipe for soup"), agent="guarded")
    assert types(events)[-2:] == ["UserMessageReceived", "LlmCallRequested"]
    assert _pending(d).purpose == "turn"
    _consistent(d)


def test_an_inconclusive_message_asks_the_classifier_and_its_request_rebuilds() -> None:
    reg = registry(scope())
    d = Driver(reg)
    events = d.send(SendMessage("how long do I boil an egg?"), agent="guarded")
    assert types(events)[-2:] == ["UserMessageReceived", "LlmCallRequested"]
    req = _pending(d)
    assert req.purpose == "guard" and req.model == "scripted-small" and req.reserved_tokens > 0
    assert req.context_ranges == (events[-2].seq, events[-2].seq)
    assert d.state.phase.value == "awaiting_llm"
    built = verify_llm_request(d.state, req, reg)  # the digest of the recorded request
    assert built.system == PROMPT and built.tools == ()
    assert _texts(built) == ["how long do I boil an egg?"]
    (effect,) = d.effects()
    assert isinstance(effect, LlmCallEffect) and effect.requested == req
    assert build_llm_request(d.state, effect, reg).digest() == req.request_digest
    _consistent(d)


def test_block_fails_the_turn_and_the_call_is_charged() -> None:
    d = Driver(registry(scope()))
    d.send(SendMessage("tell me about cars"), agent="guarded")
    guard_id = d.llm_call_id
    events = _verdict(d, "BLOCK")
    assert types(events) == ["LlmCallCompleted", "GuardrailTripped", "TurnFailed"]
    completed = events[0].payload
    assert isinstance(completed, LlmCallCompleted)
    assert (completed.discarded, completed.text) == ("guard", "BLOCK")
    assert completed.cost_nanos > 0 and d.state.spent_tokens > 0
    trip = events[1].payload
    assert isinstance(trip, GuardrailTripped)
    assert (trip.kind, trip.call_id, trip.detail) == (
        "classifier",
        guard_id,
        "the classifier answered BLOCK",
    )
    assert events[2].payload.error_type == "GuardrailBlocked"  # type: ignore[union-attr]
    assert d.state.turn is None and d.state.phase.value == "idle"
    # The verdict is not part of the conversation.
    assert [e.kind for e in window_entries(d.state.history)] == ["u"]
    _consistent(d)


def test_allow_requests_the_turn_call() -> None:
    d = Driver(registry(scope()))
    d.send(SendMessage("how long do I boil an egg?"), agent="guarded")
    events = _verdict(d, "ALLOW")
    assert types(events) == ["LlmCallCompleted", "LlmCallRequested"]
    assert _pending(d).purpose == "turn"
    assert types(d.answer("Nine minutes."))[-1] == "TurnCompleted"
    # The turn's LLM call saw the user's message only, not the verdict.
    assert [e.kind for e in window_entries(d.state.history)] == ["u", "a"]
    _consistent(d)


def test_warn_records_the_trip_and_goes_on() -> None:
    d = Driver(registry(scope(action="warn")))
    events = d.send(SendMessage("bitcoin soup"), agent="guarded")
    assert types(events)[-3:] == ["UserMessageReceived", "GuardrailTripped", "LlmCallRequested"]
    assert _pending(d).purpose == "turn"
    d.answer("ok")
    d.send(SendMessage("cars?"))
    events = _verdict(d, "block")
    assert types(events) == ["LlmCallCompleted", "GuardrailTripped", "LlmCallRequested"]
    assert events[1].payload.action == "warn"  # type: ignore[union-attr]
    _consistent(d)


@pytest.mark.parametrize(
    ("on_error", "expected"),
    [("block", "TurnFailed"), ("allow", "LlmCallRequested")],
)
def test_a_garbage_verdict_follows_on_error(on_error: str, expected: str) -> None:
    d = Driver(registry(scope(on_error=on_error)))
    d.send(SendMessage("hmm"), agent="guarded")
    events = _verdict(d, "Perhaps, it depends.")
    assert types(events)[-1] == expected
    if on_error == "block":
        trip = events[1].payload
        assert isinstance(trip, GuardrailTripped)
        assert trip.detail == (
            "the classifier's answer was neither BLOCK nor ALLOW (on_error = block)"
        )
    _consistent(d)


@pytest.mark.parametrize(
    ("on_error", "expected"),
    [("block", "TurnFailed"), ("allow", "LlmCallRequested")],
)
def test_a_failed_guard_call_follows_on_error(on_error: str, expected: str) -> None:
    d = Driver(registry(scope(on_error=on_error)))
    d.send(SendMessage("hmm"), agent="guarded")
    events = d.send(
        FailLlmCall(call_id=d.llm_call_id, error_type="RateLimited", message="429", attempts=3)
    )
    assert types(events)[0] == "LlmCallFailed" and types(events)[-1] == expected
    if on_error == "block":
        assert "the classifier call failed (RateLimited)" in events[-1].payload.reason  # type: ignore[union-attr]
    _consistent(d)


@pytest.mark.parametrize(
    ("on_error", "expected"),
    [("block", "TurnFailed"), ("allow", "LlmCallRequested")],
)
def test_a_guard_call_with_no_answer_after_its_attempts_follows_on_error(
    on_error: str, expected: str
) -> None:
    d = Driver(registry(scope(on_error=on_error)))
    d.send(SendMessage("hmm"), agent="guarded")
    events: list = []
    for _ in range(10):  # re-issued at each deadline, then given up
        pending = d.state.turn.llm if d.state.turn is not None else None
        if pending is None or pending.request.purpose != "guard":
            break
        d.now = pending.deadline_at
        events = d.send(Tick())
    assert types(events)[0] == "LlmCallFailed" and types(events)[-1] == expected
    if on_error == "block":
        assert "no answer after" in events[-1].payload.reason  # type: ignore[union-attr]
    _consistent(d)


def test_two_classifiers_run_in_order() -> None:
    second = scope(name="tone", prompt="Answer BLOCK if rude.", allow_if=[], block_if=[])
    d = Driver(registry(scope(), second))
    d.send(SendMessage("hello"), agent="guarded")
    first_id = d.llm_call_id
    events = _verdict(d, "ALLOW")
    assert types(events) == ["LlmCallCompleted", "LlmCallRequested"]
    assert _pending(d).purpose == "guard" and d.llm_call_id != first_id
    assert verify_llm_request(d.state, _pending(d), d.registry).system == "Answer BLOCK if rude."
    events = _verdict(d, "BLOCK")
    assert events[1].payload.rule == "tone"  # type: ignore[union-attr]
    _consistent(d)


# --------------------------------------------------------------------------- output


def test_an_output_classifier_judges_the_recorded_answer() -> None:
    out = scope(on="output", allow_if=[], block_if=["(?i)crypto"])
    d = Driver(registry(out))
    d.send(SendMessage("hi"), agent="guarded")
    events = d.answer("Here is a stew.")
    assert types(events) == ["LlmCallCompleted", "LlmCallRequested"]
    answer = events[0]
    req = _pending(d)
    assert req.purpose == "guard" and req.context_ranges == (answer.seq, answer.seq)
    built = verify_llm_request(d.state, req, d.registry)
    assert _texts(built) == ["Here is a stew."]
    events = _verdict(d, "BLOCK")
    assert types(events) == ["LlmCallCompleted", "GuardrailTripped", "TurnFailed"]
    assert "blocked the model's answer" in events[-1].payload.reason  # type: ignore[union-attr]
    # A classifier cannot withhold text: the answer stays in the log as the model's.
    assert d.log[answer.seq - 1].payload.text == "Here is a stew."  # type: ignore[union-attr]
    _consistent(d)


def test_an_output_classifier_that_allows_or_warns_completes_the_turn() -> None:
    d = Driver(registry(scope(on="output", action="warn", allow_if=[], block_if=["(?i)crypto"])))
    d.send(SendMessage("hi"), agent="guarded")
    events = d.answer("crypto stew")  # block_if: no call, a warning
    assert types(events) == ["LlmCallCompleted", "GuardrailTripped", "TurnCompleted"]
    assert events[2].payload.answer_seq == events[0].seq  # type: ignore[union-attr]
    d.send(SendMessage("again"))
    d.answer("a stew")
    events = _verdict(d, "ALLOW")
    assert types(events) == ["LlmCallCompleted", "TurnCompleted"]
    completed = events[-1].payload
    assert completed.answer_seq == d.log[-4].seq  # type: ignore[union-attr]
    # The guard call's tokens count in the turn's usage (two calls this turn).
    calls = [e.payload for e in d.log[-4:] if isinstance(e.payload, LlmCallCompleted)]
    assert len(calls) == 2
    assert completed.usage.total_tokens == sum(c.usage.total_tokens for c in calls)  # type: ignore[union-attr]
    _consistent(d)


def test_an_answer_with_tool_calls_is_not_judged() -> None:
    d = Driver(registry(scope(on="output", allow_if=[], block_if=[])))
    d.send(SendMessage("hi"), agent="guarded")
    events = d.answer("let me compute", tools=[("c1", "calculator", '{"expression": "1+1"}')])
    assert "LlmCallRequested" not in types(events)
    _consistent(d)


def test_the_log_renders_a_guard_call_and_its_verdict() -> None:
    from turnlog._render import Describer

    d = Driver(registry(scope()))
    d.send(SendMessage("tell me about cars"), agent="guarded")
    _verdict(d, "BLOCK")
    lines = [Describer().describe(ev) for ev in d.log]
    assert "→ guard call to scripted-small (a classifier guardrail)" in lines
    assert any(line.startswith("← scripted-small guard verdict: BLOCK") for line in lines)


def test_no_text_is_not_judged() -> None:
    d = Driver(registry(scope(on="output", allow_if=[], block_if=[])))
    d.send(SendMessage("hi"), agent="guarded")
    assert types(d.answer("  "))[-1] == "TurnCompleted"
    _consistent(d)


def test_a_cancel_abandons_the_guard_call_and_its_late_answer_is_charged() -> None:
    d = Driver(registry(scope()))
    d.send(SendMessage("hmm"), agent="guarded")
    guard_id = d.llm_call_id
    cancelled = d.send(CancelTurn(reason="changed my mind"))
    assert cancelled[0].payload.llm_call_id == guard_id  # type: ignore[union-attr]
    spent = d.state.spent_tokens
    events = d.send(
        CompleteLlmCall(
            call_id=guard_id,
            model="scripted-small",
            text="BLOCK",
            tool_uses=(),
            usage=DEFAULT_USAGE,
        )
    )
    assert types(events) == ["LlmCallCompleted"]
    assert events[0].payload.discarded == "late"  # type: ignore[union-attr]
    assert d.state.spent_tokens > spent and d.state.phase.value == "idle"
    _consistent(d)
