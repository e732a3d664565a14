"""The real anthropic SDK end to end: worker subprocess → SDK → HTTP → the fake Messages
API server (SSE streaming, tool_use blocks, 429s, 529s) → events on the real broker.

One worker process (`python -m turnlog worker session`, TURNLOG_PROVIDER=anthropic, ANTHROPIC_BASE_URL
pointing at the fake server, ANTHROPIC_API_KEY a recognisable fake key) serves every
test of this module; each test uses sessions of its own and programs the server before
it sends anything. The last check scans every record of every topic of the run, and
the worker's log, for the key.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from agents.events import (
    CancelTurn,
    LlmCallCompleted,
    ProviderCircuitOpened,
    ToolCallCompleted,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
)
from schemas.codec import decode_delta
from streams.topics import TopicNames, ensure_topics
from tests.fakes.anthropic_server import (
    FAKE_API_KEY,
    FakeAnthropicServer,
    FakeError,
    FakeMessage,
    FakeToolUse,
    FakeUsage,
    RecordedRequest,
    Reply,
)
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    WorkerProcess,
    read_records,
    request_for,
    seq_problems,
    user_message,
    wait_until,
    worker_env,
)

# The module's worker, producer and log live on the session loop (where fixtures run).
pytestmark = pytest.mark.asyncio(loop_scope="session")

PARTITIONS = 4
PRIMARY, FALLBACK = "claude-sonnet-4-5", "claude-haiku-4-5"
ANSWER = "6 times 7 is 42."


def calculator_then_answer(request: RecordedRequest) -> Reply:
    """A model that calls the calculator for a user message and answers its result."""
    last = request.body["messages"][-1]
    content = last["content"] if isinstance(last["content"], list) else []
    if any(block.get("type") == "tool_result" for block in content):
        return FakeMessage(
            text=ANSWER,
            usage=FakeUsage(input_tokens=180, output_tokens=9, cache_read_input_tokens=150),
        )
    return FakeMessage(
        text="Let me use the calculator.",
        tool_uses=[FakeToolUse("calculator", {"expression": "6*7"})],
        usage=FakeUsage(input_tokens=160, output_tokens=20, cache_creation_input_tokens=150),
        text_chunk_chars=5,
    )


@dataclass
class Run:
    server: FakeAnthropicServer
    names: TopicNames
    worker: WorkerProcess
    send: RequestSender
    log: EventLog
    bootstrap: str


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key=FAKE_API_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
async def run(
    kafka_bootstrap: str,
    topic_prefix: str,
    server: FakeAnthropicServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Run]:
    prefix = f"{topic_prefix}anth{secrets.token_hex(3)}."
    names = (await ensure_topics(kafka_bootstrap, prefix, partitions=PARTITIONS)).names
    tmp = tmp_path_factory.mktemp("anthropic-e2e")
    env = worker_env(
        kafka_bootstrap,
        prefix,
        provider="anthropic",
        sandbox=tmp,
        extra={**server.env(), "TURNLOG_METRICS_INTERVAL_S": "1"},
    )
    assert env["ANTHROPIC_API_KEY"] == FAKE_API_KEY
    async with (
        WorkerGroup(env, tmp) as group,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        worker = group.start("anthropic")
        await worker.wait_assigned(at_least=PARTITIONS)
        yield Run(server, names, worker, send, log, kafka_bootstrap)


@pytest.fixture
def fresh(run: Run) -> Run:
    """The module's run with the fake server's programming and history cleared."""
    run.server.reset()
    run.server.respond_with(calculator_then_answer)
    return run


async def _turn(run: Run, session: str, timeout_s: float = 30) -> list[Any]:
    await run.send.request(user_message(session, "what is 6*7?", agent="claude"))
    await run.log.wait_for(
        lambda: run.log.turns_ended(session) == 1,
        timeout_s,
        f"{session}'s turn ended",
        diagnose=lambda: run.worker.tail() + "\n" + run.log.summary([session]),
    )
    return run.log.of(session)


def _calls(events: list[Any]) -> list[LlmCallCompleted]:
    return [e.payload for e in events if isinstance(e.payload, LlmCallCompleted)]


async def test_a_turn_with_tool_use_completes_through_the_sdk_and_streams_deltas(
    fresh: Run,
) -> None:
    events = await _turn(fresh, "anth-ok")
    assert isinstance(events[-1].payload, TurnCompleted)
    calls = _calls(events)
    assert [c.model for c in calls] == [PRIMARY, PRIMARY]
    assert [c.attempts for c in calls] == [1, 1]
    assert [c.stop_reason for c in calls] == ["tool_use", "end_turn"]
    assert calls[1].text == ANSWER
    assert calls[0].usage.cache_write_tokens == 150 and calls[1].usage.cache_read_tokens == 150
    tool = [e.payload for e in events if isinstance(e.payload, ToolCallCompleted)]
    assert [t.result for t in tool] == ["42"]
    # What went over HTTP: streamed, authenticated, tools and cached system prompt sent.
    sent = fresh.server.requests
    assert len(sent) == 2 and all(r.stream and r.api_key_valid for r in sent)
    assert sent[0].body["tools"][0]["name"] == "calculator"
    # Deltas: the streamed text of each call, in order, then a `done` marker.
    deltas = [
        decode_delta(r.value) for r in await read_records(fresh.bootstrap, fresh.names.deltas)
    ]
    for call in calls:
        mine = sorted(
            (d for d in deltas if d.call_id == call.call_id and d.session_id == "anth-ok"),
            key=lambda d: (d.done, d.index),
        )
        assert mine and mine[-1].done
        assert "".join(d.text for d in mine if not d.done) == call.text
    assert len([d for d in deltas if d.call_id == calls[0].call_id and not d.done]) > 1


async def test_a_stream_cut_mid_answer_is_retried_and_its_deltas_restart(fresh: Run) -> None:
    cut = "This attempt breaks off half way through."
    fresh.server.enqueue(FakeMessage(cut, text_chunk_chars=4, break_after_events=6))
    events = await _turn(fresh, "anth-cut")
    assert isinstance(events[-1].payload, TurnCompleted)
    first = _calls(events)[0]
    assert first.attempts == 2
    records = sorted(
        await read_records(fresh.bootstrap, fresh.names.deltas),
        key=lambda r: (r.partition, r.offset),
    )
    mine = [
        d
        for d in map(decode_delta, (r.value for r in records))
        if d.session_id == "anth-cut" and d.call_id == first.call_id and not d.done
    ]
    # Numbered from 1, and from 1 again when the retry starts: what a live client drops.
    indexes = [d.index for d in mine]
    restart = indexes.index(1, 1)
    assert indexes == [*range(1, restart + 1), *range(1, len(mine) - restart + 1)]
    assert cut.startswith("".join(d.text for d in mine[:restart]))
    assert "".join(d.text for d in mine[restart:]) == first.text


async def test_a_429_is_retried_and_its_attempts_are_recorded(fresh: Run) -> None:
    fresh.server.enqueue(FakeError(429, headers={"retry-after": "0"}))
    events = await _turn(fresh, "anth-429")
    assert isinstance(events[-1].payload, TurnCompleted)
    calls = _calls(events)
    assert [(c.attempts, c.model, c.fallback_used) for c in calls] == [
        (2, PRIMARY, False),
        (1, PRIMARY, False),
    ]
    assert [r.status for r in fresh.server.requests] == [429, 200, 200]


async def test_an_overloaded_primary_falls_back_to_the_next_model(fresh: Run) -> None:
    fresh.server.always(FakeError(529), model=PRIMARY)
    events = await _turn(fresh, "anth-529")
    assert isinstance(events[-1].payload, TurnCompleted)
    first = _calls(events)[0]
    assert first.fallback_used and first.model == FALLBACK
    # The first call's requests: 529s from the primary (retried), then the fallback's 200.
    sent = fresh.server.requests
    upto = next(i for i, r in enumerate(sent) if r.status == 200) + 1
    assert [(r.model, r.status) for r in sent[:upto]] == (
        [(PRIMARY, 529)] * (upto - 1) + [(FALLBACK, 200)]
    )
    assert upto - 1 >= 2  # the primary was retried before the fallback
    assert first.attempts == upto
    assert all(c.model == FALLBACK and c.fallback_used for c in _calls(events))
    # The primary's breaker may open on the way; if it did, the log says so.
    opened = [e.payload for e in events if isinstance(e.payload, ProviderCircuitOpened)]
    assert all(o.target.endswith(PRIMARY) for o in opened)


# --------------------------------------------------------------------------- stop reasons
# How the core acts on the Messages API's stop reasons (agents.llm.StopReason), each one
# sent by the fake server through the real SDK.


def _payloads(events: list[Any], kind: type) -> list[Any]:
    return [e.payload for e in events if isinstance(e.payload, kind)]


async def test_a_refusal_ends_the_turn_as_refused(fresh: Run) -> None:
    fresh.server.enqueue(FakeMessage("I can't help with that.", stop_reason="refusal"))
    events = await _turn(fresh, "anth-refusal")
    (failed,) = _payloads(events, TurnFailed)
    assert failed.error_type == "Refused"
    assert [c.stop_reason for c in _calls(events)] == ["refusal"]
    assert not _payloads(events, ToolCallRequested)


async def test_pause_turn_continues_the_call_with_the_answer_so_far(fresh: Run) -> None:
    fresh.server.enqueue(FakeMessage("Part one, ", stop_reason="pause_turn"))
    events = await _turn(fresh, "anth-pause")
    assert isinstance(events[-1].payload, TurnCompleted)
    assert _calls(events)[0].stop_reason == "pause_turn"
    # The next request sent the paused answer back as the last assistant message.
    second = fresh.server.requests[1].body["messages"]
    assistant = [m for m in second if m["role"] == "assistant"]
    assert assistant and "Part one," in str(assistant[-1]["content"])


async def test_a_tool_call_cut_at_max_tokens_is_not_run_and_is_asked_again(fresh: Run) -> None:
    fresh.server.enqueue(
        FakeMessage(
            "",
            tool_uses=[FakeToolUse("calculator", {"expression": "6*"})],
            stop_reason="max_tokens",
        )
    )
    events = await _turn(fresh, "anth-truncated")
    assert isinstance(events[-1].payload, TurnCompleted)
    calls = _calls(events)
    assert calls[0].discarded == "truncated" and calls[0].tool_call_ids == ()
    # Only the complete call ran; the retry asked for twice the tokens.
    ran = [t.arguments_json for t in _payloads(events, ToolCallRequested)]
    assert ran == ['{"expression": "6*7"}'] or ran == ['{"expression":"6*7"}']
    sent = fresh.server.requests
    assert sent[1].body["max_tokens"] == 2 * sent[0].body["max_tokens"]


async def test_a_context_window_stop_compacts_or_fails_it_never_loops(fresh: Run) -> None:
    fresh.server.enqueue(FakeMessage("", stop_reason="model_context_window_exceeded"))
    events = await _turn(fresh, "anth-window")
    (failed,) = _payloads(events, TurnFailed)
    assert failed.error_type == "ContextWindowExceeded"
    assert [c.discarded for c in _calls(events)] == ["context_window"]
    assert len(fresh.server.requests) == 1


async def test_a_cancel_aborts_the_stream_and_charges_what_the_vendor_billed(
    fresh: Run,
) -> None:
    release = threading.Event()
    fresh.server.enqueue(
        FakeMessage(
            "A long answer that never finishes.",
            hold_after_events=3,
            release=release,
            usage=FakeUsage(input_tokens=1234, output_tokens=1),
        )
    )
    session = "anth-abort"
    try:
        await fresh.send.request(user_message(session, "what is 6*7?", agent="claude"))
        await fresh.log.wait_for(lambda: len(fresh.server.requests) >= 1, 30, "the stream started")
        await fresh.send.request(request_for(session, CancelTurn("stop"), f"{session}:x"))
        await fresh.log.wait_for(
            lambda: any(isinstance(e.payload, LlmCallCompleted) for e in fresh.log.of(session)),
            30,
            "the aborted call charged",
            diagnose=lambda: fresh.worker.tail() + "\n" + fresh.log.summary([session]),
        )
    finally:
        release.set()
    events = fresh.log.of(session)
    (cancelled,) = _payloads(events, TurnCancelled)
    (charged,) = _calls(events)
    assert charged.call_id == cancelled.llm_call_id and charged.discarded == "late"
    assert charged.usage.input_tokens == 1234 and charged.cost_nanos > 0
    assert charged.stop_reason == "aborted"


async def test_the_api_key_is_in_no_topic_record_and_no_log_line(run: Run) -> None:
    run.server.reset()
    run.server.respond_with(calculator_then_answer)
    # This test's own traffic, so the key was certainly used and the error paths (whose
    # messages could echo it) ran: a 401 ends a turn with the SDK's message in it...
    run.server.enqueue(FakeError(401))
    failed = await _turn(run, "anth-secret-401")
    assert isinstance(failed[-1].payload, TurnFailed)
    assert "401" in failed[-1].payload.reason
    # ... and a 429 is retried to success.
    run.server.enqueue(FakeError(429, headers={"retry-after": "0"}))
    events = await _turn(run, "anth-secret-429")
    assert isinstance(events[-1].payload, TurnCompleted)
    assert all(r.api_key_valid for r in run.server.requests)

    key = FAKE_API_KEY.encode()
    needles = [key, key[len("sk-ant-") :], b"THIS-KEY-MUST-NEVER-LEAK"]
    scanned = 0
    for topic in run.names.all():
        for rec in await read_records(run.bootstrap, topic, isolation_level="read_uncommitted"):
            parts = [rec.key or b"", rec.value or b""]
            parts += [k.encode() + b"=" + (v or b"") for k, v in rec.headers or ()]
            for part in parts:
                assert not any(n in part for n in needles), (
                    f"the API key leaked into {topic} partition {rec.partition} offset {rec.offset}"
                )
            scanned += 1
    assert scanned > len(run.log.events) > 0  # events, plus requests and deltas

    def metrics() -> list[dict[str, Any]]:
        return [
            r
            for r in run.worker.log_records()
            if r.get("event") == "worker.metrics" and r["completed"] > 0
        ]

    # The log is not empty: calls, effects, and a metrics line about them.
    measured = await wait_until(metrics, 10, "a worker.metrics line counting effects")
    assert measured[0]["effect_latency_ms_p50"] is not None
    log = run.worker.log_text().encode()
    assert b"llm.call" in log and b"effect.reported" in log
    assert not any(n in log for n in needles), "the API key leaked into the worker's log"
    assert seq_problems(run.log.events) == []
