"""The response cache: the core records a cached answer as an LlmCallCompleted with
`cached_from`, zero usage and cost 0 (so budgets and the tokens-per-minute window are
not charged, and replay re-decides it like any answer); the key is the requested model
plus the recorded request digest; what the effect runner stores is what the core would
record (an output guardrail's redaction applied, a blocked or incomplete answer not
stored) — shown through the store's seam with an in-memory store, not a mock."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from agents.definitions import definition_hash, parse_definitions
from agents.effects import LlmCallEffect, pending_effects
from agents.errors import AgentDefinitionError
from agents.events import CompleteLlmCall, LlmCallCompleted, SendMessage, ToolUse, Usage
from agents.fold import fold
from agents.response_cache import cache_key
from agents.state_codec import state_from_dict, state_to_dict
from streams.response_cache import (
    CachedAnswer,
    PostgresResponseCache,
    answer_from_cache,
    remember_answer,
)
from tests.unit.test_fsm_support import Driver, agent, make_registry, types

CACHED = agent("cached", cache={"ttl_s": 300})
GUARDED = agent(
    "guardedcache",
    cache={"ttl_s": 60},
    guardrails=[
        {"name": "keys", "on": "output", "kind": "regex", "pattern": r"sk-\w+",
         "action": "redact"},
        {"name": "nope", "on": "output", "kind": "substring", "pattern": "FORBIDDEN",
         "action": "block"},
    ],
)  # fmt: skip
REGISTRY = make_registry(CACHED, GUARDED)


class MemoryCache:
    """The ResponseCache seam in memory: keys to (call id, answer), ages by hand."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, dict[str, Any], float]] = {}
        self.age_s = 0.0
        self.lookups: list[tuple[str, float]] = []

    async def lookup(self, key: str, ttl_s: float) -> CachedAnswer | None:
        self.lookups.append((key, ttl_s))
        row = self.rows.get(key)
        if row is None or self.age_s >= ttl_s:
            return None
        return CachedAnswer(row[0], row[1])

    async def store(self, key: str, **kw: Any) -> None:
        self.rows[key] = (kw["call_id"], kw["answer"], 0.0)


def _effect(d: Driver) -> LlmCallEffect:
    (effect,) = [e for e in pending_effects(d.state) if isinstance(e, LlmCallEffect)]
    return effect


def test_a_cached_answer_is_recorded_with_its_origin_at_cost_zero() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("hello"), agent="cached")
    events = d.send(
        CompleteLlmCall(
            call_id=d.llm_call_id,
            model="scripted-small",
            text="hi there",
            usage=Usage(),
            cached_from="other/llm/3",
        )
    )
    assert types(events) == ["LlmCallCompleted", "TurnCompleted"]
    done = events[0].payload
    assert isinstance(done, LlmCallCompleted)
    assert (done.cached_from, done.cost_nanos, done.usage) == ("other/llm/3", 0, Usage())
    assert d.state.spent_tokens == 0 and d.state.spent_nanos == 0
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state
    # an answer from the model records no origin and its cost
    d.send(SendMessage("again"))
    paid = d.answer("ok")[0].payload
    assert isinstance(paid, LlmCallCompleted)
    assert paid.cached_from is None and paid.cost_nanos > 0


def test_the_key_is_the_requested_model_and_the_digest() -> None:
    keys = {cache_key(m, dg) for m in ("a", "b") for dg in ("d1", "d2")}
    assert len(keys) == 4
    assert cache_key("a", "d1") == cache_key("a", "d1")


async def test_a_stored_answer_is_served_for_the_same_request_until_its_ttl() -> None:
    cache = MemoryCache()
    first, second = Driver(REGISTRY, "s1"), Driver(REGISTRY, "s2")
    for d in (first, second):
        d.send(SendMessage("same question"), agent="cached")
    e1, e2 = _effect(first), _effect(second)
    # The same request in two sessions: the same digest, so the same key.
    assert e1.request_digest == e2.request_digest
    assert await answer_from_cache(cache, CACHED, e1) is None
    answer = CompleteLlmCall(
        call_id=e1.effect_id,
        model="scripted-small",
        text="42",
        tool_uses=(ToolUse("t1", "calculator", '{"expression": "6*7"}'),),
        stop_reason="tool_use",
        usage=Usage(120, 8),
    )
    await remember_answer(cache, CACHED, e1, "s1", answer)
    hit = await answer_from_cache(cache, CACHED, e2)
    assert hit is not None
    assert (hit.call_id, hit.cached_from, hit.usage) == (e2.effect_id, e1.effect_id, Usage())
    assert (hit.text, hit.tool_uses, hit.stop_reason) == ("42", answer.tool_uses, "tool_use")
    assert cache.lookups[-1] == (cache_key(e2.model, e2.request_digest), 300)
    cache.age_s = 300
    assert await answer_from_cache(cache, CACHED, e2) is None
    # An agent without [cache] never looks.
    plain = Driver(REGISTRY, "s3")
    plain.send(SendMessage("same question"), agent="assistant")
    n = len(cache.lookups)
    assert await answer_from_cache(cache, agent("assistant"), _effect(plain)) is None
    assert len(cache.lookups) == n


@pytest.mark.parametrize(
    ("text", "stop", "stored"),
    [
        ("key sk-abc123 here", "end_turn", "key [REDACTED] here"),
        ("this is FORBIDDEN", "end_turn", None),
        ("cut", "max_tokens", None),
        ("no", "refusal", None),
        ("fine", "stop_sequence", "fine"),
    ],
)
async def test_what_is_stored_is_what_the_core_would_record(
    text: str, stop: str, stored: str | None
) -> None:
    cache = MemoryCache()
    d = Driver(REGISTRY)
    d.send(SendMessage("q"), agent="guardedcache")
    e = _effect(d)
    out = CompleteLlmCall(e.effect_id, "scripted-small", text, stop_reason=stop)
    await remember_answer(cache, GUARDED, e, "s1", out)
    got = [row[1]["text"] for row in cache.rows.values()]
    assert got == ([] if stored is None else [stored])


def test_an_agent_without_a_cache_keeps_its_hash_and_a_bad_ttl_is_refused() -> None:
    assert definition_hash(agent("a")) == definition_hash(agent("a", cache=None))
    assert definition_hash(CACHED) != definition_hash(agent("cached"))
    body = {"model": "scripted-small", "system_prompt": "p"}
    for cache, message in (({"ttl_s": 0}, "cache.ttl_s"), ({"ttl": 5}, "cache.ttl")):
        with pytest.raises(AgentDefinitionError) as err:
            parse_definitions({"agents": {"g": {**body, "cache": cache}}}, "a.toml")
        assert "agent 'g'" in str(err.value) and message in str(err.value)


def test_a_cached_answer_charges_no_tokens_to_the_rate_window() -> None:
    d = Driver(make_registry(agent("both", cache={"ttl_s": 60},
                                   rate_limit={"tokens_per_minute": 100})))  # fmt: skip
    d.send(SendMessage("q"), agent="both")
    d.send(CompleteLlmCall(d.llm_call_id, "scripted-small", "a", cached_from="x/llm/1"))
    assert sum(t for _, _, t in d.state.rate) == 0
    assert "UserMessageReceived" in types(d.send(SendMessage("next"), advance=0.5))
    assert d.state.rate[-1][0] - d.state.rate[0][0] < timedelta(seconds=60) // timedelta(
        microseconds=1
    )


async def test_a_database_that_does_not_answer_costs_no_answer() -> None:
    """Nothing listens on port 9: the lookup and the store fail, are counted, and the
    call would go to the model (None), never an exception."""
    cache = PostgresResponseCache("postgresql://turnlog@127.0.0.1:9/none", connect_timeout_s=2)
    d = Driver(REGISTRY)
    d.send(SendMessage("q"), agent="cached")
    e = _effect(d)
    assert await answer_from_cache(cache, CACHED, e) is None
    out = CompleteLlmCall(e.effect_id, "scripted-small", "fine")
    await remember_answer(cache, CACHED, e, "s1", out)
    assert cache.stats == {"hits": 0, "misses": 1, "errors": 2}
    await cache.close()
