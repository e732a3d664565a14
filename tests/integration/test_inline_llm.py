"""A fast model's calls run inside the decision that asked for them (TURNLOG_INLINE_LLM_MS,
streams._partition): the answer is decided in the same transaction, with no outcome
record on the requests topic; a call that overruns the budget goes on and is reported
like any effect, called once; a slow model's calls never run inline; and every turn's
log is the one the ordinary path writes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.events import (
    LlmCallCompleted,
    LlmCallRequested,
    Request,
    SessionStarted,
)
from agents.providers import ScriptedProvider
from streams.topics import TopicNames, ensure_topics
from tests.support.harness import (
    TURN_SHAPE,
    EventLog,
    InProcessWorker,
    RequestSender,
    lost_inputs,
    read_requests,
    scripted_script,
    seq_problems,
    user_message,
)


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    report = await ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)
    return report.names


class Switch:
    """The scripted model's sleep: none until `slow_s` is set."""

    def __init__(self) -> None:
        self.slow_s = 0.0

    async def __call__(self, _seconds: float) -> None:
        await asyncio.sleep(self.slow_s)


def _provider(switch: Switch, tmp: Path) -> ScriptedProvider:
    # latency_ms 1 so that every answer goes through the switch's sleep
    return ScriptedProvider.from_file(scripted_script(tmp, latency_ms=1), sleep=switch)


def _worker(
    bootstrap: str, names: TopicNames, tmp: Path, provider: ScriptedProvider, inline_llm_ms: float
) -> InProcessWorker:
    return InProcessWorker(
        bootstrap,
        names,
        partitions=2,
        sandbox=tmp,
        provider=provider,
        inline_llm_ms=inline_llm_ms,
    )


def _turns(session: str, n: int, log: EventLog) -> Callable[[], bool]:
    return lambda: log.turns_completed(session) == n


def _outcome_ids(requests: list[Request]) -> list[str]:
    return [r.request_id for r in requests if ":outcome:" in r.request_id]


async def test_a_fast_models_calls_are_decided_in_the_transaction_that_asked(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    switch = Switch()
    provider = _provider(switch, tmp_path)
    async with (
        # a budget no scheduling delay of a busy machine overruns: exact counts
        _worker(kafka_bootstrap, names, tmp_path, provider, inline_llm_ms=1000) as process,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await send.request(user_message("fast", "what is 6*7?", agent="calc"))
        await log.wait_for(lambda: log.turns_completed("fast") == 1, 30, "turn 1")
        # Turn 1's first call taught the runner the model's latency; the second ran inline.
        assert process.effects.stats["inline_llm"] == 1
        await send.request(user_message("fast", "and 6*7 again?", turn=2))
        await log.wait_for(lambda: log.turns_completed("fast") == 2, 30, "turn 2")
        # Turn 2: both calls ran inline, with the calculator, in the message's transaction.
        assert process.effects.stats["inline_llm"] == 3
        assert process.effects.stats["inline_llm_late"] == 0
        assert process.effects.in_flight == 0
    events = log.of("fast")
    assert seq_problems(events) == []
    assert [type(e.payload) for e in events] == [SessionStarted, *TURN_SHAPE, *TURN_SHAPE]
    assert [e.payload.text for e in events if isinstance(e.payload, LlmCallCompleted)] == [
        "Let me calculate that.",
        "The answer is 42.",
    ] * 2
    # Each call was made once: four answers, four provider calls.
    assert provider.calls == 4
    # Turn 2 is one transaction: its events follow the message's ingest time.
    turn2 = [e for e in events if e.turn_id == "fast:t2"]
    assert len({e.occurred_at for e in turn2}) == 1
    # Only turn 1's first answer is a record: the rest were decided where they came.
    requests = await read_requests(kafka_bootstrap, names)
    outcomes = _outcome_ids(requests)
    assert len(requests) == 3 and len(outcomes) == 1, [r.request_id for r in requests]
    first_call = next(e.payload for e in events if isinstance(e.payload, LlmCallRequested))
    assert outcomes == [f"{first_call.call_id}:outcome:1"]
    assert lost_inputs(requests, log.events) == []


async def test_a_call_over_the_budget_goes_on_and_is_reported_once(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    switch = Switch()
    provider = _provider(switch, tmp_path)
    async with (
        _worker(kafka_bootstrap, names, tmp_path, provider, inline_llm_ms=200) as process,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await send.request(user_message("late", "what is 6*7?", agent="calc"))
        await log.wait_for(lambda: log.turns_completed("late") == 1, 30, "turn 1")
        assert process.effects.stats["inline_llm"] == 1
        # The model turns slow: the next call, started inline, overruns the 200 ms.
        switch.slow_s = 1.5
        await send.request(user_message("late", "and 6*7 again?", turn=2))
        await log.wait_for(lambda: log.turns_completed("late") == 2, 30, "turn 2")
        stats = dict(process.effects.stats)
        assert stats["inline_llm_late"] == 1, stats
        # Its answer taught the runner: turn 2's second call was an ordinary effect.
        assert stats["inline_llm"] == 1, stats
        assert process.effects.in_flight == 0
    events = log.of("late")
    assert seq_problems(events) == []
    assert [type(e.payload) for e in events] == [SessionStarted, *TURN_SHAPE, *TURN_SHAPE]
    # Four answers, four provider calls: the late call was not made a second time.
    assert provider.calls == 4
    # The late answer and the one after it are records of their own, like turn 1's first.
    requests = await read_requests(kafka_bootstrap, names)
    assert len(_outcome_ids(requests)) == 3, [r.request_id for r in requests]
    turn2_calls = [
        e.payload.call_id
        for e in events
        if e.turn_id == "late:t2" and isinstance(e.payload, LlmCallRequested)
    ]
    assert {f"{c}:outcome:1" for c in turn2_calls} <= set(_outcome_ids(requests))
    assert lost_inputs(requests, log.events) == []


async def test_a_slow_models_calls_and_a_zero_budget_never_run_inline(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    slow, off = Switch(), Switch()
    slow.slow_s = 0.03  # over half of the 10 ms budget
    async with EventLog(kafka_bootstrap, names.events) as log:
        async with (
            _worker(
                kafka_bootstrap, names, tmp_path, _provider(slow, tmp_path), inline_llm_ms=10
            ) as process,
            RequestSender(kafka_bootstrap, names) as send,
        ):
            for turn in (1, 2):
                agent = "calc" if turn == 1 else None
                await send.request(user_message("slow", "what is 6*7?", agent=agent, turn=turn))
                await log.wait_for(_turns("slow", turn, log), 30, f"turn {turn}")
            assert process.effects.stats["inline_llm"] == 0
            assert process.effects.stats["inline_llm_late"] == 0
        async with (
            _worker(
                kafka_bootstrap, names, tmp_path, _provider(off, tmp_path), inline_llm_ms=0
            ) as process,
            RequestSender(kafka_bootstrap, names) as send,
        ):
            for turn in (3, 4):
                await send.request(user_message("slow", "what is 6*7?", turn=turn))
                await log.wait_for(_turns("slow", turn, log), 30, f"turn {turn}")
            assert process.effects.stats["inline_llm"] == 0
    requests = await read_requests(kafka_bootstrap, names)
    # Every answer is a record of its own: 2 per turn.
    assert len(_outcome_ids(requests)) == 8
    assert [type(e.payload) for e in log.of("slow")] == [SessionStarted, *TURN_SHAPE * 4]
