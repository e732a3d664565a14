"""The effect runner's side of inline LLM calls (streams.effects.EffectRunner with a real
ScriptedProvider; nothing is sent to Kafka on these paths): which calls may run inline,
a call started inside a decision, and the same issue asked for again — as when its
transaction failed and the inputs are decided anew — answered without a second call."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from agents.agentfile import registry_from_file
from agents.effects import LlmCallEffect, outcome_request_id, pending_effects
from agents.events import CompleteLlmCall, Request
from agents.fsm import decide_and_evolve, initial_state
from agents.providers import ScriptedProvider
from agents.state import SessionState
from agents.tools import builtin_registry
from streams.effects import EffectRunner
from streams.topics import topic_names
from tests.support.harness import DATA, scripted_script, user_message


def _runner(provider: ScriptedProvider, inline_llm_ms: float = 1000) -> EffectRunner:
    return EffectRunner(
        bootstrap="127.0.0.1:1",  # never dialled: nothing here produces
        topics=topic_names(""),
        partitions=4,
        registry=registry_from_file(DATA / "agents.toml"),
        provider=provider,
        tools=builtin_registry(),
        stream_deltas=False,
        inline_llm_ms=inline_llm_ms,
    )


def _call(runner: EffectRunner, session: str) -> tuple[SessionState, LlmCallEffect]:
    message = user_message(session, "what is 6*7?", agent="calc")
    _, state = decide_and_evolve(initial_state(session), message, runner.registry)
    (effect,) = pending_effects(state)
    assert isinstance(effect, LlmCallEffect)
    return state, effect


async def test_a_model_runs_inline_once_timed_and_an_issue_is_called_once() -> None:
    provider = ScriptedProvider.from_file(DATA / "calc.script.yaml")
    runner = _runner(provider)
    state, effect = _call(runner, "early")
    # Nothing is known of the model yet: its first call is an ordinary effect.
    assert not runner.runs_inline(effect)
    payload = await runner.run_llm_inline(0, state, effect, None, None)
    assert isinstance(payload, CompleteLlmCall) and payload.call_id == effect.effect_id
    assert provider.calls == 1
    assert runner.runs_inline(effect)  # it answered in well under half of 1 s
    runner.taken(state.session_id, effect, payload)
    # Decided again (its transaction failed): the same answer, no second call.
    again = await runner.run_llm_inline(0, state, effect, None, None)
    assert again == payload and provider.calls == 1
    # A later attempt of the call (another issue) is a call of its own.
    reissued = dataclasses.replace(effect, attempt=effect.attempt + 1)
    await runner.run_llm_inline(0, state, reissued, None, None)
    assert provider.calls == 2
    assert (runner.stats["inline_llm"], runner.stats["inline_llm_late"]) == (1, 0)
    # Once the decision that folded the answer committed, sync() forgets the calls its
    # state no longer holds pending (what sync does first, without starting the
    # calculator call that state asks for).
    outcome = Request(
        request_id=outcome_request_id(effect),
        session_id="early",
        occurred_at=datetime.now(UTC),
        payload=payload,
        causation_id=effect.effect_id,
    )
    _, after = decide_and_evolve(state, outcome, runner.registry)
    assert effect.effect_id not in {e.effect_id for e in pending_effects(after)}
    assert len(runner._early) == 2
    runner._drop_early("early", pending_effects(after))
    assert not runner._early
    await runner.stop()


async def test_a_slow_model_is_not_inline_and_a_late_call_goes_on(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def sleep(_seconds: float) -> None:
        await release.wait()

    # latency_ms 1: every answer goes through `sleep`
    slow = ScriptedProvider.from_file(scripted_script(tmp_path, latency_ms=1), sleep=sleep)
    runner = _runner(slow, inline_llm_ms=20)
    state, effect = _call(runner, "late")
    assert await runner.run_llm_inline(0, state, effect, None, None) is None
    assert runner.stats["inline_llm_late"] == 1
    # It goes on: released after 50 ms, it answers once, and the model is now known to
    # be slower than half of the 20 ms.
    await asyncio.sleep(0.05)
    release.set()
    (early,) = runner._early.values()
    payload, _ = await early.task
    assert isinstance(payload, CompleteLlmCall) and slow.calls == 1
    assert runner._llm_latency[effect.model] >= 0.05
    assert not runner.runs_inline(effect)
    # Turned off, nothing runs inline however fast the model.
    off = _runner(ScriptedProvider.from_file(DATA / "calc.script.yaml"), inline_llm_ms=0)
    off._observe(effect.model, 0.0)
    assert not off.runs_inline(effect)
    await runner.stop()
