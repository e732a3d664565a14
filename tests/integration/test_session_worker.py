"""The session worker on the real broker: a turn with a tool call end to end, trace
context from request to events to effects, identical sessions side by side, bad bytes
to the DLQ.

The worker runs in-process here (`InProcessWorker`: the same SessionProcess that
`python -m turnlog worker session` runs); the crash tests (test_worker_crash.py) use subprocesses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from agents.events import (
    LlmCallCompleted,
    LlmCallRequested,
    SessionStarted,
    ToolCallCompleted,
    ToolCallRequested,
    TurnCompleted,
    Usage,
)
from agents.llm import LlmRequest, LlmResponse
from agents.providers import ScriptedProvider
from schemas.codec import encode_request
from streams.partitioning import partition_for
from streams.topics import TopicNames, ensure_topics
from streams.tracing import new_traceparent
from tests.support.harness import (
    DATA,
    TURN_SHAPE,
    EventLog,
    InProcessWorker,
    RequestSender,
    group_caught_up,
    lost_inputs,
    read_records,
    read_requests,
    seq_problems,
    trace_id,
    user_message,
    wait_until,
)

PARTITIONS = 4


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    report = await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)
    return report.names


def _sum_usage(usages: Iterable[Usage]) -> Usage:
    total = (0, 0, 0, 0)
    for u in usages:
        total = tuple(
            a + b
            for a, b in zip(
                total,
                (  # type: ignore[assignment]
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_read_tokens,
                    u.cache_write_tokens,
                ),
                strict=True,
            )
        )
    return Usage(*total)


async def _all_inputs_handled(bootstrap: str, names: TopicNames) -> None:
    group = names.requests[: -len("turnlog.requests")] + "turnlog-session"
    await wait_until(
        lambda: group_caught_up(bootstrap, group, names.requests),
        30,
        "the session worker committed every input",
        interval_s=0.2,
    )


async def test_a_turn_with_a_tool_call_completes_end_to_end(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    # A budget no scheduling delay of a busy machine overruns: the counts below are
    # those of a model that answers at once.
    async with (
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path, inline_llm_ms=1000) as process,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await send.request(user_message("solo", "what is 6*7?", agent="calc"))
        await log.wait_for(
            lambda: log.turns_completed("solo") == 1, 30, "the turn completed", diagnose=log.summary
        )
        await _all_inputs_handled(kafka_bootstrap, names)
        assert process.effects.in_flight == 0
        # The group saw the end by a plain offset commit of the idle partition.
        assert process.worker.stats["group_commits"] >= 1

    events = log.of("solo")
    assert [type(e.payload) for e in events] == [SessionStarted, *TURN_SHAPE]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.turn_id for e in events[1:]} == {"solo:t1"}
    tool_result = log.of("solo", ToolCallCompleted)[0].payload
    assert isinstance(tool_result, ToolCallCompleted) and tool_result.result == "42"
    calls = [e.payload for e in log.of("solo", LlmCallCompleted)]
    assert [c.text for c in calls if isinstance(c, LlmCallCompleted)] == [
        "Let me calculate that.",
        "The answer is 42.",
    ]
    done = events[-1].payload
    assert isinstance(done, TurnCompleted)
    assert done.answer_seq == events[-2].seq
    assert all(isinstance(c, LlmCallCompleted) for c in calls)
    assert done.usage == _sum_usage(c.usage for c in calls) == Usage(260, 20, 100, 0)
    assert done.cost_nanos == sum(c.cost_nanos for c in calls if isinstance(c, LlmCallCompleted))
    assert done.cost_nanos > 0
    # Every input (the user's, the first LLM outcome) caused an event; the calculator is
    # an inline tool, and the second LLM call ran inline too (the first had timed the
    # scripted model: TURNLOG_INLINE_LLM_MS): their outcomes were decided in the
    # transaction that asked for them.
    requests = await read_requests(kafka_bootstrap, names)
    assert len(requests) == 2
    assert process.effects.stats["inline"] == 1
    assert process.effects.stats["inline_llm"] == 1
    assert lost_inputs(requests, log.events) == []


async def test_traceparent_flows_from_request_to_events_to_effect_outcomes(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    traceparent = new_traceparent()
    async with (
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path, inline_llm_ms=1000),
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await send.request(
            user_message("traced", "what is 6*7?", agent="calc"), traceparent=traceparent
        )
        await log.wait_for(lambda: log.turns_completed("traced") == 1, 30, "turn 1")
        # A second turn without a traceparent: one trace of its own for the whole turn.
        await send.request(user_message("traced", "and 6*7 again?", turn=2))
        await log.wait_for(lambda: log.turns_completed("traced") == 2, 30, "turn 2")
    requests = await read_records(kafka_bootstrap, names.requests)

    by_turn: dict[str | None, set[str | None]] = {}
    spans: set[str] = set()
    for ev, tp in log.traceparents("traced"):
        assert tp is not None, f"event seq {ev.seq} has no traceparent header"
        by_turn.setdefault(ev.turn_id, set()).add(trace_id(tp))
        spans.add(tp.split("-")[2])
    assert by_turn["traced:t1"] == {trace_id(traceparent)}
    assert len(by_turn["traced:t2"]) == 1 and by_turn["traced:t2"] != {trace_id(traceparent)}
    # Each event is its own span.
    assert len(spans) == len(log.of("traced"))
    # The effect outcome of turn 1 that is a record (the first LLM call's: the
    # calculator and the second call ran inline, as did turn 2's calls) was reported in
    # the same trace.
    outcome_traces = [
        trace_id(dict(r.headers).get("traceparent", b"").decode())
        for r in requests
        if b":outcome:" in r.value
    ]
    assert outcome_traces == [trace_id(traceparent)]


async def test_sessions_with_identical_requests_run_side_by_side(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    """The scripted model derives tool-call ids from the request, so byte-identical
    sessions share call ids: effects must be told apart by session too."""
    sessions = [f"twin-{i}" for i in range(6)]
    async with (
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path),
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await send.requests(user_message(s, "what is 6*7?", agent="calc") for s in sessions)
        await log.wait_for(
            lambda: all(log.turns_completed(s) == 1 for s in sessions),
            30,
            "every twin completed its turn",
            diagnose=lambda: log.summary(sessions),
        )
    tool_ids = {
        e.payload.call_id
        for s in sessions
        for e in log.of(s, ToolCallRequested)
        if isinstance(e.payload, ToolCallRequested)
    }
    assert len(tool_ids) == 1  # the premise: the same call id in every session
    assert seq_problems(log.events) == []


async def test_undecodable_bytes_go_to_the_dlq_and_the_worker_goes_on(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    async with (
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path) as process,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await send.raw(b"after-garbage", b"\xc3\x01 this is not avro")
        await send.request(user_message("after-garbage", "what is 6*7?", agent="calc"))
        await log.wait_for(lambda: log.turns_completed("after-garbage") == 1, 30, "the turn")
        assert process.worker.stats["dlq"] == 1
    dlq = await read_records(kafka_bootstrap, names.dlq)
    assert len(dlq) == 1
    headers = dict(dlq[0].headers)
    assert dlq[0].value == b"\xc3\x01 this is not avro"
    assert headers["turnlog.error.type"] == b"DecodeError"
    assert headers["turnlog.source.topic"] == names.requests.encode()
    assert int(headers["turnlog.source.offset"]) == 0


async def test_a_request_on_the_wrong_partition_is_forwarded_to_its_sessions(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    """A client whose partitioner disagrees with Kafka's default: the worker that gets
    the request forwards it (in its transaction) rather than write a session it does
    not own."""
    session = "misrouted"
    home = partition_for(session, PARTITIONS)
    wrong = (home + 1) % PARTITIONS
    request = user_message(session, "what is 6*7?", agent="calc")
    async with (
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path) as process,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await send.raw(session.encode(), encode_request(request), partition=wrong)
        await log.wait_for(lambda: log.turns_completed(session) == 1, 30, "the turn")
        assert process.worker.stats["rerouted"] == 1
    records = await read_records(kafka_bootstrap, names.events)
    assert {r.partition for r in records} == {home}
    assert seq_problems(log.events) == []


async def test_a_restarted_worker_resumes_sessions_from_the_log(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    """State lives in the events topic: a new process continues a session's history
    (turn 2 sees turn 1) with the next seq."""
    async with (
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        async with InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path):
            await send.request(user_message("resumed", "what is 6*7?", agent="calc"))
            await log.wait_for(lambda: log.turns_completed("resumed") == 1, 30, "turn 1")
        async with InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path) as process:
            # Idle, it is in its snapshot, not in memory; the next input loads it.
            assert "resumed" not in process.worker.sessions()
            await send.request(user_message("resumed", "6*7 once more", turn=2))
            await log.wait_for(lambda: log.turns_completed("resumed") == 2, 30, "turn 2")
            assert process.worker.stats["sessions_loaded"] == 1
    events = log.of("resumed")
    assert [type(e.payload) for e in events] == [SessionStarted, *TURN_SHAPE, *TURN_SHAPE]
    assert seq_problems(events) == []
    second_call = [e.payload for e in events if isinstance(e.payload, LlmCallRequested)][2]
    assert isinstance(second_call, LlmCallRequested)
    # Turn 2's first call sees turn 1's entries (user, assistant+tool use, result, answer).
    assert second_call.context_entries > 1


async def test_a_busy_partition_keeps_flowing_and_the_group_offset_follows(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    """A flood of sessions on one partition keeps its queue busy across many
    group-commit intervals (the group offset rides along only now and then; 5 ms here,
    so intervals run out during transactions and while inputs arrive): nothing stalls,
    and once traffic stops the group's committed offset reaches the end of the input."""
    sessions = [s for s in (f"busy-{i}" for i in range(1200)) if partition_for(s, PARTITIONS) == 0][
        :240
    ]
    async with (
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path, group_commit_s=0.005),
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        for wave in range(0, len(sessions), 40):
            await send.requests(
                user_message(s, "what is 6*7?", agent="calc") for s in sessions[wave : wave + 40]
            )
            await log.poll(0)
        await log.wait_for(
            lambda: all(log.turns_completed(s) == 1 for s in sessions),
            90,
            f"{len(sessions)} sessions of one partition completed their turn",
            diagnose=lambda: f"{sum(log.turns_completed(s) for s in sessions)} completed",
        )
        await _all_inputs_handled(kafka_bootstrap, names)
    assert seq_problems(log.events) == []


class _RecordingProvider:
    """The scripted provider behind a seam that keeps every request it is handed; with
    `hold`, no call ever finishes (it is still in flight when its worker stops)."""

    def __init__(self, *, hold: bool = False) -> None:
        self.inner = ScriptedProvider.from_file(DATA / "calc.script.yaml")
        self.requests: list[LlmRequest] = []
        self.hold = hold

    async def complete(self, request: LlmRequest, **kw: Any) -> LlmResponse:
        self.requests.append(request)
        if self.hold:
            await asyncio.Event().wait()
        response: LlmResponse = await self.inner.complete(request, **kw)
        return response


async def test_an_llm_call_sends_the_request_its_decision_built_and_a_restart_rebuilds_it(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    """A call started right after its decision's commit is sent as the core built it
    (not rebuilt); a call re-issued by a restarted worker is rebuilt from the restored
    state. Either way the provider gets the request whose digest the log records."""
    held, recording = _RecordingProvider(hold=True), _RecordingProvider()
    async with (
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        async with InProcessWorker(
            kafka_bootstrap, names, sandbox=tmp_path, provider=held
        ) as process:
            await send.request(user_message("built", "what is 6*7?", agent="calc"))
            await wait_until(lambda: held.requests, 30, "the first LLM call was sent")
            assert process.effects.stats["llm_prebuilt"] == 1
            assert process.effects.stats["llm_rebuilt"] == 0
        # The call was in flight when that worker stopped: the next one re-issues it.
        async with InProcessWorker(
            kafka_bootstrap, names, sandbox=tmp_path, provider=recording
        ) as process:
            await log.wait_for(
                lambda: log.turns_completed("built") == 1, 30, "the turn", diagnose=log.summary
            )
            # the re-issued first call was rebuilt; the second was decided here
            assert process.effects.stats["llm_rebuilt"] == 1
            assert process.effects.stats["llm_prebuilt"] == 1
    recorded = [
        e.payload.request_digest
        for e in log.of("built", LlmCallRequested)
        if isinstance(e.payload, LlmCallRequested)
    ]
    assert len(recorded) == 2
    assert [r.digest() for r in held.requests] == recorded[:1]
    assert [r.digest() for r in recording.requests] == recorded
    assert recording.requests[0] == held.requests[0]


async def test_a_fork_of_an_unknown_source_costs_no_partition_read(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    """Anyone who can produce requests can name a source that does not exist. Two
    workers share the partitions, so a source can live on either side. Either way, a
    ghost source is rejected after a look at the owner's states or at the index of a
    foreign partition's keys; only a real fork reads the source's partition."""
    from agents.events import ForkSession, RequestRejected, SessionForked
    from tests.support.harness import request_for

    async with (
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path) as a,
        InProcessWorker(kafka_bootstrap, names, sandbox=tmp_path) as b,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        workers = (a.worker, b.worker)

        async def split() -> bool:
            owned = [w.owned_partitions() for w in workers]
            return all(owned) and sum(map(len, owned)) == PARTITIONS

        await wait_until(split, 60, "both workers own partitions")

        def owner(session_id: str) -> Any:
            p = partition_for(session_id, PARTITIONS)
            return next(w for w in workers if p in w.owned_partitions())

        def named(prefix: str, want: Any) -> str:
            return next(s for s in (f"{prefix}-{i}" for i in range(1000)) if owner(s) is want)

        # A real source on b's side, with a turn in the log.
        source = named("src", b.worker)
        await send.request(user_message(source, "what is 6*7?", agent="calc"))
        await log.wait_for(lambda: log.turns_completed(source) == 1, 30, "the source's turn")

        # Ghost sources: on the other worker's side (the key index) and on the forking
        # worker's own side (its states), forked to sessions on a's side.
        ghosts = [(named(f"fork{i}", a.worker), named(f"ghost{i}", b.worker)) for i in range(4)]
        ghosts += [
            (named(f"forkown{i}", a.worker), named(f"ghostown{i}", a.worker)) for i in range(2)
        ]
        for i, (new, ghost) in enumerate(ghosts):
            await send.request(request_for(new, ForkSession(ghost, 2), f"{new}:fork{i}"))
        for new, _ in ghosts:
            await log.wait_for(
                lambda s=new: bool(log.of(s, RequestRejected)), 30, f"{new}'s fork rejected"
            )
        assert a.worker.stats["fork_unknown_sources"] == len(ghosts)
        assert a.worker.stats["fork_source_reads"] == 0
        # The index of b's partition was read once, up to where it ended.
        indexed = a.worker._directory[partition_for(source, PARTITIONS)]
        assert source in indexed[0]

        # A real fork of the source still reads its partition and succeeds.
        fork = named("realfork", a.worker)
        await send.request(request_for(fork, ForkSession(source, 2), f"{fork}:fork"))
        await log.wait_for(lambda: bool(log.of(fork, SessionForked)), 30, "the real fork")
        assert a.worker.stats["fork_source_reads"] == 1
        assert seq_problems(log.events) == []
