"""Guardrails in the pure core: each kind and action as a case table over `check`, then
through decide — a redacted input or output is recorded redacted (nothing the guard
removed is in any event), a blocked input fails the turn without recording the message,
a blocked output withholds the answer, every trip is a GuardrailTripped; agent files
with a broken rule are refused naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.definitions import definition_hash, parse_definitions
from agents.errors import AgentDefinitionError
from agents.events import GuardrailTripped, LlmCallCompleted, SendMessage, TurnFailed
from agents.fold import fold
from agents.guardrails import Guardrail, check
from agents.phases import NEW, track
from agents.state_codec import state_from_dict, state_to_dict
from tests.unit.test_fsm_support import Driver, agent, make_registry, types

SECRET = "sk-live-0123456789abcdef"


def rule(**kw: Any) -> Guardrail:
    return Guardrail.model_validate({"name": "r", "on": "input", "action": "warn", **kw})


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

# (rule, text, expected trip detail or None, expected recorded text, blocked)
CASES: list[tuple[dict[str, Any], str, str | None, str, bool]] = [
    ({"kind": "substring", "pattern": "secret"}, "no match", None, "no match", False),
    ({"kind": "substring", "pattern": "bad", "action": "redact"}, "a bad bad day",
     "2 match(es) of the substring", "a [REDACTED] [REDACTED] day", False),
    ({"kind": "substring", "pattern": "BAD", "ignore_case": True, "action": "block"}, "bad",
     "1 match(es) of the substring", "bad", True),
    ({"kind": "regex", "pattern": r"sk-live-\w+", "action": "redact", "replacement": "***"},
     f"key {SECRET} here", "1 match(es) of the regex", "key *** here", False),
    ({"kind": "regex", "pattern": r"\d{4}", "action": "warn"}, "pin 1234",
     "1 match(es) of the regex", "pin 1234", False),
    ({"kind": "max_length", "max": 5, "action": "redact"}, "abcdefgh",
     "8 characters, over the limit of 5", "abcde", False),
    ({"kind": "max_length", "max": 5, "action": "block"}, "abcde", None, "abcde", False),
    ({"kind": "json_schema", "json_schema": SCHEMA, "action": "block"}, '{"n": 1}', None,
     '{"n": 1}', False),
    ({"kind": "json_schema", "json_schema": SCHEMA, "action": "block"}, '{"n": "x"}',
     "fails the schema's 'type' at $.n", '{"n": "x"}', True),
    ({"kind": "json_schema", "json_schema": SCHEMA, "action": "warn"}, "plain words",
     "not JSON (JSONDecodeError at position 0)", "plain words", False),
    ({"kind": "required_fields", "fields": ["a", "b"], "action": "warn"}, '{"a": 1}',
     "missing field(s) b", '{"a": 1}', False),
    ({"kind": "required_fields", "fields": ["a"], "action": "block"}, "[1]",
     "a JSON list, not an object with fields", "[1]", True),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "text", "detail", "recorded", "blocked"), CASES)
def test_each_kind_and_action(
    spec: dict[str, Any], text: str, detail: str | None, recorded: str, blocked: bool
) -> None:
    verdict = check([rule(**spec)], "input", text)
    assert [t.detail for t in verdict.trips] == ([] if detail is None else [detail])
    assert verdict.text == recorded
    assert (verdict.blocked is not None) is blocked


def test_rules_run_in_order_on_the_redacted_text_and_a_block_stops_them() -> None:
    rules = [
        rule(name="a", kind="substring", pattern="x", action="redact", replacement="y"),
        rule(name="b", kind="substring", pattern="yy", action="warn"),
        rule(name="c", kind="substring", pattern="y", action="block"),
        rule(name="d", kind="substring", pattern="y", action="warn"),
        rule(name="out", on="output", kind="substring", pattern="y", action="block"),
    ]
    v = check(rules, "input", "xx")
    assert [t.rule for t in v.trips] == ["a", "b", "c"]
    assert v.blocked is not None and v.blocked.rule == "c"
    assert check(rules, "output", "z").trips == ()


def test_a_trip_detail_never_quotes_the_text() -> None:
    schema = {"type": "object", "properties": {"k": {"type": "integer"}}}
    for spec in (
        {"kind": "regex", "pattern": "sk-live-.*"},
        {"kind": "json_schema", "json_schema": schema},
        {"kind": "max_length", "max": 3},
    ):
        v = check([rule(**spec)], "input", json.dumps({"k": SECRET}))
        assert v.trips and all(SECRET not in t.detail for t in v.trips)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "regex", "pattern": "("}, "pattern: not a valid regular expression"),
        ({"kind": "substring"}, "pattern: a substring guardrail needs a non-empty pattern"),
        ({"kind": "max_length"}, "max: a max_length guardrail needs max"),
        ({"kind": "json_schema", "json_schema": {"type": 5}}, "json_schema: not a valid JSON"),
        ({"kind": "required_fields", "fields": ["a"], "action": "redact"}, "can block or warn"),
        ({"kind": "substring", "pattern": "x", "action": "stop"}, "guardrails.0.action"),
    ],
)
def test_a_broken_rule_is_refused_naming_the_field(spec: dict[str, Any], message: str) -> None:
    body = {"model": "scripted-small", "system_prompt": "p"}
    guard = {"name": "r", "on": "input", "action": "warn", **spec}
    data = {"agents": {"g": {**body, "guardrails": [guard]}}}
    with pytest.raises(AgentDefinitionError) as err:
        parse_definitions(data, "a.toml")
    assert "agent 'g'" in str(err.value) and message in str(err.value)


def test_an_agent_without_guardrails_keeps_its_definition_hash() -> None:
    plain = agent("a")
    assert definition_hash(plain) == definition_hash(agent("a", guardrails=[]))
    guarded = agent("a", guardrails=[{"name": "r", "on": "input", "kind": "max_length",
                                      "max": 9, "action": "warn"}])  # fmt: skip
    assert definition_hash(guarded) != definition_hash(plain)


# --------------------------------------------------------------------------- through decide

GUARDED = agent(
    "guarded",
    guardrails=[
        {"name": "no-keys", "on": "input", "kind": "regex", "pattern": r"sk-live-\w+",
         "action": "redact"},
        {"name": "no-drop", "on": "input", "kind": "substring", "pattern": "DROP TABLE",
         "ignore_case": True, "action": "block"},
        {"name": "long", "on": "input", "kind": "max_length", "max": 500, "action": "warn"},
        {"name": "out-keys", "on": "output", "kind": "regex", "pattern": r"sk-live-\w+",
         "action": "redact"},
        {"name": "out-forbidden", "on": "output", "kind": "substring", "pattern": "FORBIDDEN",
         "action": "block"},
    ],
)  # fmt: skip
REGISTRY = make_registry(GUARDED)


def _consistent(d: Driver) -> None:
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state
    t = NEW
    for ev in d.log:
        t = track(t, ev.payload)
    assert t.phase is d.state.phase


def _logged(d: Driver) -> str:
    return repr([ev.payload for ev in d.log]) + repr(d.state)


def test_a_redacted_input_is_recorded_redacted() -> None:
    d = Driver(REGISTRY)
    events = d.send(SendMessage(f"my key is {SECRET}, use it"), agent="guarded")
    assert types(events)[:4] == [
        "SessionStarted",
        "TurnStarted",
        "GuardrailTripped",
        "UserMessageReceived",
    ]
    trip = events[2].payload
    assert isinstance(trip, GuardrailTripped)
    assert (trip.rule, trip.action, trip.on, trip.call_id) == ("no-keys", "redact", "input", None)
    assert events[3].payload.text == "my key is [REDACTED], use it"  # type: ignore[union-attr]
    assert SECRET not in _logged(d)
    _consistent(d)


def test_a_blocked_input_fails_the_turn_and_is_not_recorded() -> None:
    d = Driver(REGISTRY)
    events = d.send(SendMessage("please drop table users"), agent="guarded")
    assert types(events) == ["SessionStarted", "TurnStarted", "GuardrailTripped", "TurnFailed"]
    failed = events[-1].payload
    assert isinstance(failed, TurnFailed)
    assert failed.error_type == "GuardrailBlocked"
    assert "'no-drop'" in failed.reason
    assert "users" not in _logged(d)
    assert d.state.phase.value == "idle"
    # The session goes on: the next message starts a turn.
    assert types(d.send(SendMessage("hello")))[-1] == "LlmCallRequested"
    _consistent(d)


def test_a_queued_message_is_redacted_when_it_queues_and_rejected_when_blocked() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("first"), agent="guarded")
    events = d.send(SendMessage(f"later {SECRET}"))
    assert types(events) == ["GuardrailTripped", "MessageQueued"]
    assert events[1].payload.text == "later [REDACTED]"  # type: ignore[union-attr]
    rejected = d.send(SendMessage("DROP TABLE x"))
    assert types(rejected) == ["RequestRejected"]
    assert "'no-drop'" in rejected[0].payload.reason  # type: ignore[union-attr,operator]
    events = d.answer("ok")
    # The queued message's turn starts guarded already: no second trip.
    assert types(events)[-3:] == ["TurnStarted", "UserMessageReceived", "LlmCallRequested"]
    assert SECRET not in _logged(d)
    _consistent(d)


def test_a_warned_input_is_recorded_as_it_is() -> None:
    d = Driver(REGISTRY)
    long = "word " * 120
    events = d.send(SendMessage(long), agent="guarded")
    trip = events[2].payload
    assert isinstance(trip, GuardrailTripped) and (trip.rule, trip.action) == ("long", "warn")
    assert events[3].payload.text == long  # type: ignore[union-attr]


def test_a_redacted_answer_is_recorded_redacted() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("what is the key?"), agent="guarded")
    call_id = d.llm_call_id
    events = d.answer(f"It is {SECRET}.")
    assert types(events) == ["GuardrailTripped", "LlmCallCompleted", "TurnCompleted"]
    assert events[0].payload.call_id == call_id  # type: ignore[union-attr]
    assert events[1].payload.text == "It is [REDACTED]."  # type: ignore[union-attr]
    assert SECRET not in _logged(d)
    _consistent(d)


def test_a_blocked_answer_is_withheld_and_fails_the_turn() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("say it"), agent="guarded")
    events = d.answer("FORBIDDEN words", tools=[("c1", "calculator", '{"expression": "1+1"}')])
    assert types(events) == ["GuardrailTripped", "LlmCallCompleted", "TurnFailed"]
    completed = events[1].payload
    assert isinstance(completed, LlmCallCompleted)
    assert (completed.text, completed.discarded, completed.tool_call_ids) == ("", "guardrail", ())
    assert events[2].payload.error_type == "GuardrailBlocked"  # type: ignore[union-attr]
    assert "FORBIDDEN words" not in _logged(d)
    assert d.state.turn is None and d.state.spent_tokens > 0  # charged all the same
    _consistent(d)
