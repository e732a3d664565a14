"""The session worker and its effect runner ride through a broker restart.

A broker of this test's own (same jars and code as `turnlog dev`, its own state dir and
ports, so the shared broker of the other tests is not disturbed) is stopped while a
worker process (`python -m turnlog worker session`) has sessions in flight, and started again on the
same data a few seconds later. The worker does not exit; every session completes its
turns; seqs are gap-free, no input is lost, no LLM call is counted twice.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.events import TurnFailed
from schemas.codec import decode_event
from streams.topics import ensure_topics
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    free_port,
    group_caught_up,
    llm_completions,
    lost_inputs,
    read_records,
    read_requests,
    scripted_script,
    seq_problems,
    user_message,
    wait_until,
    worker_env,
)
from turnlog.dev import _kafka
from turnlog.dev._proc import pid_alive, terminate
from turnlog.settings import Settings, load_settings

SESSIONS = 30
TURNS = 3


@pytest.fixture
def own_broker(tmp_path: Path, kafka_bootstrap: str) -> Iterator[tuple[Settings, str, int]]:
    """A broker of the test's own: (settings, bootstrap, pid). The jars of the shared
    broker (`kafka_bootstrap` has it fetched and started) are linked in, so nothing is
    downloaded."""
    shared = _kafka.paths(load_settings())
    settings = load_settings(
        state_dir=tmp_path / "state",
        dev_kafka_port=free_port(),
        dev_kafka_controller_port=free_port(),
        dev_kafka_heap="384m",
    )
    own = _kafka.paths(settings)
    own.root.mkdir(parents=True)
    os.symlink(shared.libs, own.libs)
    bootstrap = f"127.0.0.1:{settings.dev_kafka_port}"
    pid = _kafka.start(settings)
    try:
        yield settings, bootstrap, pid
    finally:
        current = _kafka.managed_pid(settings)
        if current:
            terminate(current, timeout=20)


async def _answers(bootstrap: str) -> bool:
    return await asyncio.to_thread(lambda: _kafka.probe(bootstrap, timeout=2.0) is not None)


async def test_sessions_complete_across_a_broker_restart(
    own_broker: tuple[Settings, str, int], tmp_path: Path
) -> None:
    settings, bootstrap, pid = own_broker
    await wait_until(
        lambda: _answers(bootstrap),
        90,
        "the test's own broker answers",
        interval_s=0.5,
        diagnose=lambda: _kafka.log_tail(settings),
    )
    prefix = "restart."
    names = (await ensure_topics(bootstrap, prefix, partitions=4)).names
    script = scripted_script(tmp_path, latency_ms=30)
    env = worker_env(bootstrap, prefix, script=script, sandbox=tmp_path)
    sessions = [f"restart-{i:02d}" for i in range(SESSIONS)]

    async with WorkerGroup(env, tmp_path) as group:
        worker = group.start("w1")
        await worker.wait_assigned(at_least=4)
        async with RequestSender(bootstrap, names) as send:
            await send.requests(user_message(s, "what is 6*7?", agent="calc") for s in sessions)
        # Stop the broker while those turns are in flight, keep it down, start it again.
        terminate(pid, timeout=30)
        assert not pid_alive(pid)
        await asyncio.sleep(3)  # down for a while: not a synchronisation
        assert worker.alive, f"the worker exited while the broker was down:\n{worker.tail()}"
        _kafka.start(settings)
        await wait_until(
            lambda: _answers(bootstrap),
            90,
            "the broker is back",
            interval_s=0.5,
            diagnose=lambda: _kafka.log_tail(settings),
        )

        async with (
            RequestSender(bootstrap, names) as send,
            EventLog(bootstrap, names.events) as log,
        ):
            sent = dict.fromkeys(sessions, 1)

            async def finished() -> bool:
                await log.poll(50)
                ready = [s for s in sessions if sent[s] < TURNS and log.turns_ended(s) >= sent[s]]
                for s in ready:
                    sent[s] += 1
                await send.requests(user_message(s, "and 6*7 again?", turn=sent[s]) for s in ready)
                return all(log.turns_ended(s) >= TURNS for s in sessions)

            await wait_until(
                finished,
                180,
                "every session completed its turns",
                interval_s=0,
                diagnose=lambda: (
                    worker.tail()
                    + "\n"
                    + log.summary([s for s in sessions if log.turns_ended(s) < TURNS])
                ),
            )
        assert worker.alive
        group_id = prefix + "turnlog-session"
        await wait_until(
            lambda: group_caught_up(bootstrap, group_id, names.requests),
            60,
            "the worker committed every input",
            interval_s=0.25,
        )

    events = [decode_event(r.value) for r in await read_records(bootstrap, names.events)]
    assert seq_problems(events) == []
    assert lost_inputs(await read_requests(bootstrap, names), events) == []
    assert [e for e in events if isinstance(e.payload, TurnFailed)] == []
    doubled = {k: len(v) for k, v in llm_completions(events).items() if len(v) != 1}
    assert doubled == {}


async def test_a_worker_started_while_the_broker_is_down_waits_for_it(
    own_broker: tuple[Settings, str, int], tmp_path: Path
) -> None:
    settings, bootstrap, pid = own_broker
    await wait_until(
        lambda: _answers(bootstrap),
        90,
        "the test's own broker answers",
        interval_s=0.5,
        diagnose=lambda: _kafka.log_tail(settings),
    )
    prefix = "late."
    names = (await ensure_topics(bootstrap, prefix, partitions=4)).names
    terminate(pid, timeout=30)
    env = worker_env(bootstrap, prefix, script=scripted_script(tmp_path), sandbox=tmp_path)
    async with WorkerGroup(env, tmp_path) as group:
        worker = group.start("w1")
        await wait_until(
            lambda: '"kafka.unreachable"' in worker.log_text(),
            60,
            "the worker says the broker is unreachable",
            diagnose=worker.tail,
        )
        assert worker.alive, f"the worker exited instead of waiting:\n{worker.tail()}"
        _kafka.start(settings)
        await wait_until(
            lambda: _answers(bootstrap),
            90,
            "the broker is back",
            interval_s=0.5,
            diagnose=lambda: _kafka.log_tail(settings),
        )
        await worker.wait_assigned(at_least=4, timeout_s=90)
        async with (
            RequestSender(bootstrap, names) as send,
            EventLog(bootstrap, names.events) as log,
        ):
            await send.request(user_message("late-1", "what is 6*7?", agent="calc"))
            await log.wait_for(
                lambda: log.turns_completed("late-1") == 1, 60, "the turn", diagnose=worker.tail
            )
