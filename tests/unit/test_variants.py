"""Prompt variants (A/B tests) in the pure core: assignment is a function of the session
id (stable, one of the variants, each getting its weight's share); a session records its
variant in SessionStarted and every call of the session is built with the variant's
system prompt and model — the same request the shell rebuilds from the state (verified);
agent files with a broken variant are refused naming the field; an agent without
variants keeps its definition hash."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.context import verify_llm_request
from agents.definitions import definition_hash, parse_definitions
from agents.errors import AgentDefinitionError
from agents.events import CompleteToolCall, LlmCallRequested, SendMessage, SessionStarted
from agents.fold import fold
from agents.llm import sha256_hex
from agents.state_codec import state_from_dict, state_to_dict
from agents.variants import Variant, assign
from tests.unit.test_fsm_support import Driver, agent, make_registry

ARMS = (
    Variant(name="control", weight=0.2),
    Variant(name="terse", weight=0.8, system_prompt="Answer in one word.", model="scripted-medium"),
)


def test_assignment_is_stable_and_weight_proportional() -> None:
    ids = [f"session-{i}" for i in range(20_000)]
    got = Counter(assign(sid, ARMS) for sid in ids)
    assert set(got) == {"control", "terse"}
    assert abs(got["control"] / len(ids) - 0.2) < 0.015
    assert [assign(sid, ARMS) for sid in ids[:100]] == [assign(sid, ARMS) for sid in ids[:100]]
    assert assign("any", ()) is None
    # Equal weights split evenly; the order of the list does not move a session whose
    # point is not near an edge, but the weights do: shares follow weights.
    even = Counter(
        assign(sid, (Variant(name="a", weight=1), Variant(name="b", weight=1))) for sid in ids
    )
    assert abs(even["a"] / len(ids) - 0.5) < 0.015


@given(st.text(min_size=1, max_size=80), st.lists(st.integers(1, 100), min_size=1, max_size=5))
def test_a_session_always_gets_the_same_one_of_the_variants(sid: str, weights: list[int]) -> None:
    arms = tuple(Variant(name=f"v{i}", weight=w) for i, w in enumerate(weights))
    first = assign(sid, arms)
    assert first in {a.name for a in arms}
    assert assign(sid, arms) == first


def test_an_agent_without_variants_keeps_its_definition_hash() -> None:
    assert definition_hash(agent("a")) == definition_hash(agent("a", variants=[]))
    with_arms = agent("a", variants=[{"name": "x", "weight": 1, "system_prompt": "p"}])
    assert definition_hash(with_arms) != definition_hash(agent("a"))


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        (
            [{"name": "x", "weight": 1}, {"name": "x", "weight": 2}],
            "two variants have the same name",
        ),
        ([{"name": "x", "weight": 1, "model": "gpt-9"}], "variants.x.model: unknown model 'gpt-9'"),
        ([{"name": "x", "weight": 0}], "variants.0.weight: must be > 0"),
        ([{"name": "x y", "weight": 1}], "variants.0.name: must match"),
        ([{"name": "x", "weight": 1, "prompt": "p"}], "variants.0.prompt: is not a known field"),
    ],
)
def test_a_broken_variant_is_refused_naming_the_field(
    variants: list[dict[str, Any]], message: str
) -> None:
    data = {
        "agents": {"ab": {"model": "scripted-small", "system_prompt": "p", "variants": variants}}
    }
    with pytest.raises(AgentDefinitionError) as err:
        parse_definitions(data, "a.toml")
    assert "agent 'ab'" in str(err.value) and message in str(err.value)


# --------------------------------------------------------------------------- through decide

AB = agent(
    "ab",
    tools=["calculator"],
    delegates=[],
    variants=[
        {"name": "control", "weight": 0.2},
        {"name": "terse", "weight": 0.8, "system_prompt": "Answer in one word.",
         "model": "scripted-medium"},
    ],
)  # fmt: skip
REGISTRY = make_registry(AB)


def _session_for(arm: str) -> str:
    return next(f"s{i}" for i in range(1000) if assign(f"s{i}", ARMS) == arm)


@pytest.mark.parametrize(
    ("arm", "prompt", "model"),
    [
        ("terse", "Answer in one word.", "scripted-medium"),
        ("control", "You are ab.", "scripted-small"),
    ],
)
def test_a_session_records_its_variant_and_every_call_uses_it(
    arm: str, prompt: str, model: str
) -> None:
    sid = _session_for(arm)
    d = Driver(REGISTRY, session_id=sid)
    events = d.send(SendMessage("hi"), agent="ab")
    started = events[0].payload
    assert isinstance(started, SessionStarted) and started.variant == arm
    assert d.state.variant == arm
    d.answer("", tools=[("c1", "calculator", '{"expression": "1+1"}')])
    d.send(CompleteToolCall("c1", "2"))
    calls = [e.payload for e in d.log if isinstance(e.payload, LlmCallRequested)]
    assert len(calls) == 2
    for call in calls:
        assert call.system_prompt_hash == sha256_hex(prompt)
        assert call.model == model
    # The shell rebuilds the pending call from the state: the same request, digest and all.
    turn = d.state.turn
    assert turn is not None and turn.llm is not None
    built = verify_llm_request(d.state, turn.llm, REGISTRY)
    assert built.system == prompt
    assert fold(d.log, sid) == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state


def test_an_agent_without_variants_records_none() -> None:
    d = Driver()
    started = d.send(SendMessage("hi"), agent="assistant")[0].payload
    assert isinstance(started, SessionStarted) and started.variant is None
    assert d.state.variant == ""
