"""kill -9 during an orchestration: no member starts twice, the answers combine once.

A `python -m turnlog worker session` subprocess runs a delegate_many over six members
(each a child session that takes a while to answer) and is killed with SIGKILL twice: as
soon as the orchestration is in the log (its member starts may not have left yet), and
again once members have begun to report. A new worker finishes the work. On the events
topic read afresh (read_committed): every member was requested once and its child session
started once, each member's outcome was folded once, the orchestration completed once
with all six answers, the parent's turn completed, and every session's seqs are gap-free.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from agents.events import (
    ChildSessionCompleted,
    ChildSessionRequested,
    Event,
    OrchestrationCompleted,
    OrchestrationStarted,
    SessionStarted,
    TurnCompleted,
    TurnStarted,
)
from schemas.codec import decode_event
from streams.topics import TopicNames, ensure_topics
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    group_caught_up,
    read_records,
    scripted_script,
    seq_problems,
    user_message,
    wait_until,
    worker_env,
)

PARTITIONS = 4
DATA = Path(__file__).resolve().parents[1] / "data" / "orchestration"


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


async def _final_log(bootstrap: str, names: TopicNames) -> list[Event]:
    group = names.requests[: -len("turnlog.requests")] + "turnlog-session"
    await wait_until(
        lambda: group_caught_up(bootstrap, group, names.requests),
        60,
        "the session workers committed every input",
        interval_s=0.25,
    )
    return [decode_event(r.value) for r in await read_records(bootstrap, names.events)]


async def test_kill9_twice_during_a_fan_out_starts_each_member_once_and_combines_once(
    kafka_bootstrap: str, names: TopicNames, unique_prefix: str, tmp_path: Path
) -> None:
    # Every answer takes 1.5 s: the kills land while members are still running.
    script = scripted_script(tmp_path, latency_ms=1500, source=DATA / "script.yaml")
    env = worker_env(
        kafka_bootstrap, unique_prefix, agents=DATA / "agents.toml", script=script, sandbox=tmp_path
    )
    parent = "fanout-crash"
    async with (
        WorkerGroup(env, tmp_path) as group,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        first = group.start("w1")
        await first.wait_assigned(at_least=PARTITIONS)
        await send.requests([user_message(parent, "Please fan out wide.", agent="boss")])
        await log.wait_for(
            lambda: log.of(parent, OrchestrationStarted),
            30,
            "the orchestration in the parent's log",
            diagnose=group.tails,
        )
        first.kill()

        second = group.start("w2")
        await log.wait_for(
            lambda: log.of(parent, ChildSessionCompleted),
            60,
            "a member's answer folded after the first restart",
            diagnose=lambda: group.tails() + log.summary([parent]),
        )
        second.kill()

        group.start("w3")
        await log.wait_for(
            lambda: log.turns_ended(parent) == 1,
            90,
            "the parent's turn ended after the second restart",
            diagnose=lambda: group.tails() + log.summary([parent]),
        )
        events = await _final_log(kafka_bootstrap, names)

    assert seq_problems(events) == []
    mine = [e for e in events if e.session_id == parent]
    requested = Counter(
        e.payload.call_id for e in mine if isinstance(e.payload, ChildSessionRequested)
    )
    members = list(requested)
    assert len(members) == 6 and set(requested.values()) == {1}
    folded = Counter(
        e.payload.call_id for e in mine if isinstance(e.payload, ChildSessionCompleted)
    )
    assert folded == requested
    done = [e.payload for e in mine if isinstance(e.payload, OrchestrationCompleted)]
    assert len(done) == 1
    assert (done[0].status, done[0].completed) == ("completed", 6)
    assert done[0].result.count("quick: Mars has 2 moons.") == 6
    assert [type(e.payload) for e in mine].count(TurnCompleted) == 1
    # Each member's child session started once and ran one turn, whatever was re-sent.
    children = {f"{parent}/child/{m}" for m in members}
    for child in children:
        started = [e for e in events if e.session_id == child]
        kinds = Counter(type(e.payload) for e in started)
        assert (kinds[SessionStarted], kinds[TurnStarted], kinds[TurnCompleted]) == (1, 1, 1), child
