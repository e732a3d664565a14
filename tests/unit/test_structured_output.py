"""Structured output in the pure core: `validate_answer` as a case table, then through
decide — a valid answer is accepted (StructuredOutputAccepted, canonical JSON) before
TurnCompleted; an invalid one gets one recorded corrective attempt whose request carries
the validation error as a user-side entry; a second invalid answer fails the turn with
the error; a broken schema is refused naming output_schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.context import build_llm_request
from agents.definitions import definition_hash, parse_definitions
from agents.errors import AgentDefinitionError
from agents.events import (
    LlmCallRequested,
    SendMessage,
    StructuredOutputAccepted,
    StructuredOutputInvalid,
    TurnFailed,
)
from agents.fold import fold
from agents.phases import NEW, track
from agents.state_codec import state_from_dict, state_to_dict
from agents.structured import validate_answer
from tests.unit.test_fsm_support import Driver, agent, make_registry, types

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}

# (answer text, canonical result or None, error fragment or None)
CASES: list[tuple[str, str | None, str | None]] = [
    ('{"name": "Ada", "age": 36}', '{"age":36,"name":"Ada"}', None),
    ('```json\n{"age": 1, "name": "B"}\n```', '{"age":1,"name":"B"}', None),
    ('{"name": "Ada"}', None, "at $: 'age' is a required property"),
    ('{"name": "Ada", "age": -1}', None, "at $.age: -1 is less than the minimum of 0"),
    ('{"name": 5, "age": "x"}', None, "(and 1 more)"),
    ("Ada is 36.", None, "the answer is not JSON"),
    ('{"name": "A", "age": 1, "x": 0}', None, "Additional properties are not allowed"),
]


@pytest.mark.parametrize(("text", "result", "error"), CASES)
def test_validate_answer(text: str, result: str | None, error: str | None) -> None:
    got, why = validate_answer(SCHEMA, text)
    assert got == result
    if error is None:
        assert why is None
    else:
        assert why is not None and error in why


EXTRACTOR = agent("extractor", output_schema=SCHEMA)
REGISTRY = make_registry(EXTRACTOR)


def _consistent(d: Driver) -> None:
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state
    t = NEW
    for ev in d.log:
        t = track(t, ev.payload)
    assert t.phase is d.state.phase


def test_a_valid_answer_is_accepted_before_the_turn_completes() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("Ada, 36"), agent="extractor")
    call_id = d.llm_call_id
    events = d.answer('{"name": "Ada", "age": 36}')
    assert types(events) == ["LlmCallCompleted", "StructuredOutputAccepted", "TurnCompleted"]
    accepted = events[1].payload
    assert isinstance(accepted, StructuredOutputAccepted)
    assert (accepted.call_id, json.loads(accepted.result)) == (call_id, {"name": "Ada", "age": 36})
    _consistent(d)


def test_an_invalid_answer_gets_one_corrective_attempt_then_is_accepted() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("Ada, 36"), agent="extractor")
    first = d.llm_call_id
    events = d.answer("Ada is 36 years old.")
    assert types(events) == ["LlmCallCompleted", "StructuredOutputInvalid", "LlmCallRequested"]
    invalid = events[1].payload
    assert isinstance(invalid, StructuredOutputInvalid)
    assert (invalid.call_id, invalid.attempt) == (first, 1)
    assert "not JSON" in invalid.error
    request = events[2].payload
    assert isinstance(request, LlmCallRequested) and request.iteration == 2
    # The corrective call's request ends with the validation error as a user message.
    built = build_llm_request(d.state, request, REGISTRY).to_dict()
    last = json.dumps(built["messages"][-1])
    assert built["messages"][-1]["role"] == "user"
    assert "does not match the required JSON schema" in last and "not JSON" in last
    events = d.answer('{"name": "Ada", "age": 36}')
    assert types(events) == ["LlmCallCompleted", "StructuredOutputAccepted", "TurnCompleted"]
    _consistent(d)


def test_a_second_invalid_answer_fails_the_turn_with_the_error() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("Ada, 36"), agent="extractor")
    d.answer('{"name": "Ada"}')
    events = d.answer('{"name": "Ada", "age": "old"}')
    assert types(events) == ["LlmCallCompleted", "TurnFailed"]
    failed = events[1].payload
    assert isinstance(failed, TurnFailed)
    assert failed.error_type == "StructuredOutputInvalid"
    assert "after 1 corrective attempt(s): at $.age: 'old' is not of type 'integer'" in (
        failed.reason
    )
    # The next turn gets its own corrective attempt.
    d.send(SendMessage("Bob, 5"))
    events = d.answer("nope")
    assert types(events)[-1] == "LlmCallRequested"
    _consistent(d)


def test_an_answer_with_tool_calls_is_not_checked_until_the_final_one() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("age of 6*6?"), agent="extractor")
    events = d.answer("let me compute", tools=[("c1", "calculator", '{"expression": "6*6"}')])
    assert "StructuredOutputInvalid" not in types(events)


def test_a_broken_schema_is_refused_naming_output_schema() -> None:
    body = {"model": "scripted-small", "system_prompt": "p", "output_schema": {"type": "thing"}}
    with pytest.raises(AgentDefinitionError) as err:
        parse_definitions({"agents": {"x": body}}, "a.toml")
    assert "agent 'x': output_schema: not a valid JSON Schema" in str(err.value)


def test_an_agent_without_output_schema_keeps_its_definition_hash() -> None:
    assert definition_hash(agent("a")) == definition_hash(agent("a", output_schema=None))
    assert definition_hash(agent("a", output_schema=SCHEMA)) != definition_hash(agent("a"))
