"""The effect runner sends an LLM-backed effect's request only if its digest is the one
the decision recorded: for a turn's call and for a summarize compaction alike, whether
the request was handed over by the decision or rebuilt from the state. A mismatch (the
code that rebuilds context changed under an in-flight call) is reported as a failed
call, and the model is never called."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from agents.effects import CompactionEffect, LlmCallEffect, pending_effects
from agents.events import FailLlmCall, SendMessage
from agents.providers.scripted import ScriptedProvider
from streams.effects import EffectRunner
from streams.logs import get_logger
from streams.topics import topic_names
from tests.unit.test_compaction import BIG, _long_session
from tests.unit.test_fsm_support import REGISTRY, Driver


def _runner(provider: ScriptedProvider) -> EffectRunner:
    # Never started: these paths produce nothing to Kafka (deltas are off).
    return EffectRunner(
        bootstrap="unused:9092",
        topics=topic_names("t."),
        partitions=1,
        registry=REGISTRY,
        provider=provider,
        tools=None,
        stream_deltas=False,
    )


def _turn_call() -> tuple[Driver, Any]:
    d = Driver()
    d.send(SendMessage("what is 6*7?"), agent="assistant")
    (effect,) = pending_effects(d.state)
    assert isinstance(effect, LlmCallEffect)
    return d, effect


def _summarize_call() -> tuple[Driver, Any]:
    d = _long_session("summarizer")
    d.send(SendMessage(BIG))
    (effect,) = pending_effects(d.state)
    assert isinstance(effect, CompactionEffect)
    return d, effect


def _run(runner: EffectRunner, d: Driver, effect: Any) -> Any:
    if isinstance(effect, LlmCallEffect):
        return asyncio.run(runner._llm(d.state.session_id, d.state, effect))
    return asyncio.run(runner._summarize(d.state.session_id, d.state, effect, get_logger()))


def _tampered(effect: Any) -> Any:
    requested = dataclasses.replace(effect.requested, request_digest="0" * 64)
    return dataclasses.replace(effect, requested=requested)


@pytest.mark.parametrize("make", [_turn_call, _summarize_call], ids=["turn", "summarize"])
def test_a_request_whose_digest_differs_from_the_recorded_one_is_not_sent(make: Any) -> None:
    d, effect = make()
    provider = ScriptedProvider.from_dict({"otherwise": {"text": "a summary"}})
    runner = _runner(provider)
    outcome = _run(runner, d, _tampered(effect))
    assert isinstance(outcome, FailLlmCall)
    assert outcome.call_id == effect.effect_id
    assert outcome.error_type == "ContextDigestMismatch"
    assert "differs from recorded 000000000000" in outcome.message
    assert provider.calls == 0
    assert runner.stats["llm_rebuilt"] == 1


@pytest.mark.parametrize("make", [_turn_call, _summarize_call], ids=["turn", "summarize"])
def test_a_request_whose_digest_matches_is_sent(make: Any) -> None:
    d, effect = make()
    provider = ScriptedProvider.from_dict({"otherwise": {"text": "a summary"}})
    outcome = _run(_runner(provider), d, effect)
    assert not isinstance(outcome, FailLlmCall), outcome
    assert provider.calls == 1
