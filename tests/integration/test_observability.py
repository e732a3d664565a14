"""Observability of a real session worker: its spans, its /metrics, its trace headers.

One `python -m turnlog worker session` subprocess serves the module, with tracing on (the real SDK and
OTLP/HTTP exporter, configured only by OTEL_* variables) exporting to an in-process
OTLP receiver (tests/integration/otlp_receiver.py), and its endpoint on a free port.
"""

from __future__ import annotations

import asyncio
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from agents.events import (
    ApprovalRequested,
    CancelTurn,
    ChildSessionRequested,
    DecideApproval,
    LlmCallCompleted,
    LlmCallRequested,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
)
from schemas.codec import encode_request
from streams.topics import TopicNames, ensure_topics
from streams.tracing import new_traceparent
from tests.integration.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.harness import (
    DATA,
    EventLog,
    WorkerProcess,
    read_records,
    read_requests,
    request_for,
    scripted_script,
    trace_id,
    user_message,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4
CONSUMER, CLIENT, PRODUCER = 5, 3, 4  # OTLP SpanKind


@dataclass
class Served:
    names: TopicNames
    worker: WorkerProcess
    receiver: OtlpReceiver
    port: int


def endpoint_port(worker: WorkerProcess) -> int | None:
    for rec in worker.log_records():
        if rec.get("event") == "endpoint.listening":
            return int(rec["port"])
    return None


def http_get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from the Prometheus text format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def serve(
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp: Path,
    inline_llm_ms: float | None = None,
    **env_args: object,
) -> Iterator[Served]:
    prefix = f"{topic_prefix}{secrets.token_hex(3)}."
    names = asyncio.run(ensure_topics(kafka_bootstrap, prefix, partitions=PARTITIONS)).names
    with OtlpReceiver() as receiver:
        env = worker_env(
            kafka_bootstrap,
            prefix,
            partitions=PARTITIONS,
            sandbox=tmp,
            **env_args,  # type: ignore[arg-type]
            extra={
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.traces_endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                **({} if inline_llm_ms is None else {"TURNLOG_INLINE_LLM_MS": str(inline_llm_ms)}),
            },
        )
        worker = WorkerProcess("traced", env, tmp / "traced.log").start()
        try:
            asyncio.run(worker.wait_assigned(at_least=PARTITIONS))
            port = endpoint_port(worker)
            assert port is not None, worker.tail()
            yield Served(names, worker, receiver, port)
        finally:
            worker.terminate()


@pytest.fixture(scope="module")
def served(
    kafka_bootstrap: str, topic_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A traced worker serving the calc agent (tests/data/agents.toml), its LLM calls
    effects of their own (never inline: test_inline_llm_calls_are_spans_of_their_input)."""
    tmp = tmp_path_factory.mktemp("observability")
    yield from serve(
        kafka_bootstrap,
        topic_prefix,
        tmp,
        inline_llm_ms=0,
        script=scripted_script(tmp, latency_ms=5),
    )


@pytest.fixture(scope="module")
def served_slow(
    kafka_bootstrap: str, topic_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A traced worker whose scripted model answers after 20 s (cancels catch it)."""
    tmp = tmp_path_factory.mktemp("observability-slow")
    yield from serve(
        kafka_bootstrap,
        topic_prefix,
        tmp,
        agents=DATA / "live" / "agents.toml",
        script=scripted_script(tmp, latency_ms=20_000, source=DATA / "live" / "script.yaml"),
    )


@pytest.fixture(scope="module")
def served_live(
    kafka_bootstrap: str, topic_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A traced worker serving the live agents (approvals, delegation)."""
    tmp = tmp_path_factory.mktemp("observability-live")
    yield from serve(
        kafka_bootstrap,
        topic_prefix,
        tmp,
        agents=DATA / "live" / "agents.toml",
        script=DATA / "live" / "script.yaml",
    )


async def produce(
    bootstrap: str, names: TopicNames, request: object, headers: list[tuple[str, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            names.requests,
            value=encode_request(request),  # type: ignore[arg-type]
            key=request.session_id.encode(),  # type: ignore[attr-defined]
            headers=headers,
        )
    finally:
        await producer.stop()


def chain(spans: list[ReceivedSpan], last: ReceivedSpan) -> list[ReceivedSpan]:
    """`last` and its ancestors among `spans`, root first."""
    by_id = {s.span_id: s for s in spans}
    out = [last]
    while out[-1].parent_span_id in by_id:
        out.append(by_id[out[-1].parent_span_id])
    return out[::-1]


async def test_one_turn_is_one_span_tree_across_worker_and_effects_and_metrics_count_it(
    kafka_bootstrap: str, served: Served
) -> None:
    names, receiver = served.names, served.receiver
    client_tp = new_traceparent()
    trace, client_span = client_tp.split("-")[1], client_tp.split("-")[2]
    sid = f"obs-{secrets.token_hex(3)}"
    async with EventLog(kafka_bootstrap, names.events) as log:
        await produce(
            kafka_bootstrap,
            names,
            user_message(sid, "what is 6*7?", agent="calc"),
            [("traceparent", client_tp.encode()), ("tracestate", b"vendor=abc,other=x1")],
        )
        await log.wait_for(lambda: log.turns_completed(sid) == 1, 60, "the turn")
    events = log.of(sid)

    def whole_tree() -> list[ReceivedSpan] | None:
        spans = receiver.spans(trace)
        names_seen = [s.name for s in spans]
        return (
            spans
            if (
                sum(n.startswith("process ") for n in names_seen) == 3
                and sum(n.startswith("chat ") for n in names_seen) == 2
                and sum(n.startswith("execute_tool ") for n in names_seen) == 1
            )
            else None
        )

    spans = await wait_until(
        whole_tree,
        30,
        "the turn's 6 spans at the OTLP receiver",
        diagnose=lambda: "\n".join(
            f"{s.name} {s.span_id} <- {s.parent_span_id}" for s in receiver.spans()
        ),
    )
    assert len(spans) == 6, [s.name for s in spans]
    # One tree: the first input's parent is the client's span; every other span's parent
    # is a span of the tree.
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_span_id not in ids]
    assert [(r.name, r.parent_span_id) for r in roots] == [("process SendMessage", client_span)]
    last = next(s for s in spans if "TurnCompleted" in s.attributes.get("turnlog.event_types", ()))
    assert [s.name for s in chain(spans, last)] == [
        "process SendMessage",
        f"chat {events_model(events)}",
        "process CompleteLlmCall",
        f"chat {events_model(events)}",
        "process CompleteLlmCall",
    ]
    # The calculator is an inline tool: it ran inside the decision of the first answer,
    # whose input span is its parent, and its outcome was decided there (no input span).
    by_id = {s.span_id: s for s in spans}
    tool_span = next(s for s in spans if s.name == "execute_tool calculator")
    parent = by_id[tool_span.parent_span_id]
    assert parent.name == "process CompleteLlmCall"
    assert "ToolCallCompleted" in parent.attributes["turnlog.event_types"]
    # The worker's inputs are consumer spans, the LLM calls client spans, from one service.
    assert {s.kind for s in spans if s.name.startswith("process ")} == {CONSUMER}
    assert {s.kind for s in spans if s.name.startswith("chat ")} == {CLIENT}
    assert {s.resource.get("service.name") for s in spans} == {"turnlog-session-worker"}
    assert all(s.status_code == 1 for s in spans if s.name.startswith("process "))
    # tracestate travels with the trace.
    assert {s.trace_state for s in spans} == {"vendor=abc,other=x1"}

    # GenAI semantic conventions on the LLM spans, equal to what the log recorded.
    completed = [e.payload for e in events if isinstance(e.payload, LlmCallCompleted)]
    requested = [e.payload for e in events if isinstance(e.payload, LlmCallRequested)]
    chats = sorted(
        (s for s in spans if s.name.startswith("chat ")),
        key=lambda s: s.attributes["turnlog.effect_id"],
    )
    for span in chats:
        call = next(c for c in completed if c.call_id == span.attributes["turnlog.effect_id"])
        req = next(r for r in requested if r.call_id == call.call_id)
        a = span.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.request.model"] == req.model
        assert a.get("gen_ai.response.model", req.model) == call.model
        assert a["gen_ai.system"] == "scripted"
        assert a["gen_ai.usage.input_tokens"] == call.usage.input_tokens
        assert a["gen_ai.usage.output_tokens"] == call.usage.output_tokens
        assert a.get("gen_ai.usage.cache_read.input_tokens", 0) == call.usage.cache_read_tokens
        assert a.get("gen_ai.usage.cache_creation.input_tokens", 0) == call.usage.cache_write_tokens
        assert a["gen_ai.response.finish_reasons"] == (call.stop_reason,)
        assert a["turnlog.cost_usd"] == pytest.approx(call.cost_nanos / 1e9)
        assert a["gen_ai.conversation.id"] == sid
    tool = next(s for s in spans if s.name.startswith("execute_tool "))
    tool_req = next(e.payload for e in events if isinstance(e.payload, ToolCallRequested))
    assert tool.attributes["gen_ai.tool.name"] == "calculator"
    assert tool.attributes["gen_ai.tool.call.id"] == tool_req.call_id

    # Each event carries the id of the span of the input that decided it (and tracestate).
    process_ids = {s.span_id for s in spans if s.name.startswith("process ")}
    header_spans = set()
    for ev, tp in log.traceparents(sid):
        assert tp is not None and trace_id(tp) == trace, f"seq {ev.seq}: {tp}"
        header_spans.add(tp.split("-")[2])
    assert header_spans == process_ids
    records = [
        r for r in await read_records(kafka_bootstrap, names.events) if r.key == sid.encode()
    ]
    # The trace context rides on each input's first event (streams._headers).
    carrying = [r for r in records if "traceparent" in dict(r.headers)]
    assert {dict(r.headers).get("tracestate") for r in carrying} == {b"vendor=abc,other=x1"}
    # The effects' log lines name their trace and span: logs and traces correlate.
    reported = [
        r
        for r in served.worker.log_records(this_start=False)
        if r.get("event") == "effect.reported" and r.get("session_id") == sid
    ]
    assert len(reported) == 3
    assert {(r["trace_id"], r["span_id"]) for r in reported} == {
        (trace, s.span_id) for s in spans if not s.name.startswith("process ")
    }

    # /metrics: the turn's facts, counted once.
    model = events_model(events)
    requests = [r for r in await read_requests(kafka_bootstrap, names) if r.session_id == sid]

    async def scraped() -> dict | None:  # type: ignore[type-arg]
        status, text = http_get(served.port, "/metrics")
        assert status == 200, text
        found = samples(text)
        lags = [v for (n, _), v in found.items() if n == "turnlog_input_lag"]
        return found if lags and not any(lags) else None

    m = await wait_until(scraped, 30, "/metrics with every input partition caught up")
    turn = next(e.payload for e in events if isinstance(e.payload, TurnCompleted))
    assert m[("turnlog_turns_total", (("agent", "calc"), ("outcome", "completed")))] >= 1
    assert m[("turnlog_llm_calls_total", (("model", model), ("outcome", "completed")))] >= 2
    assert m[("turnlog_tool_calls_total", (("outcome", "completed"), ("tool", "calculator")))] >= 1
    assert m[("turnlog_llm_call_duration_seconds_count", (("model", model),))] >= 2
    assert m[("turnlog_partitions_owned", ())] == PARTITIONS
    assert m[("turnlog_ready", ())] == 1
    assert m[("turnlog_effects_in_flight", ())] == 0
    # The message and two LLM outcomes; the calculator's outcome was decided inline.
    assert len(requests) == 3 and m[("turnlog_inputs_total", ())] >= 3
    assert m[("turnlog_effects_inline_total", ())] >= 1
    assert m[("turnlog_events_total", ())] >= len(events)
    assert m[("turnlog_restore_duration_seconds_count", ())] >= 1
    # Tokens and cost of this session alone: the session is the module's only calc turn
    # with this model when run first; compare increments around a second turn instead.
    before = m
    async with EventLog(kafka_bootstrap, names.events) as log2:
        await produce(kafka_bootstrap, names, user_message(sid, "again: 6*7?", turn=2), [])
        await log2.wait_for(lambda: log2.turns_completed(sid) == 2, 60, "turn 2")
    second = next(
        e.payload
        for e in log2.of(sid)
        if isinstance(e.payload, TurnCompleted) and e.payload.turn_no == 2
    )

    async def after_turn_2() -> dict | None:  # type: ignore[type-arg]
        found = samples(http_get(served.port, "/metrics")[1])
        key = ("turnlog_turns_total", (("agent", "calc"), ("outcome", "completed")))
        return found if found[key] == before[key] + 1 else None

    m2 = await wait_until(after_turn_2, 30, "turn 2 counted")

    def delta(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return m2.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    assert (
        delta("turnlog_llm_tokens_total", (("model", model), ("type", "input")))
        == second.usage.input_tokens
    )
    assert (
        delta("turnlog_llm_tokens_total", (("model", model), ("type", "output")))
        == second.usage.output_tokens
    )
    assert (
        delta("turnlog_llm_tokens_total", (("model", model), ("type", "cache_read")))
        == second.usage.cache_read_tokens
    )
    assert delta("turnlog_llm_cost_usd_total", (("model", model),)) == pytest.approx(
        second.cost_nanos / 1e9
    )
    assert delta("turnlog_llm_calls_total", (("model", model), ("outcome", "completed"))) == 2
    assert delta("turnlog_inputs_total", ()) == 3  # the calculator's outcome: inline
    assert delta("turnlog_effects_inline_total", ()) == 1
    assert turn.cost_nanos > 0


def events_model(events: list) -> str:  # type: ignore[type-arg]
    return next(e.payload.model for e in events if isinstance(e.payload, LlmCallRequested))


@pytest.fixture(scope="module")
def served_inline(
    kafka_bootstrap: str, topic_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A traced worker whose scripted model answers at once: its calls run inline
    (TURNLOG_INLINE_LLM_MS) once the first call has timed the model — with a budget no
    scheduling delay of a busy machine overruns, so that the counts are exact."""
    tmp = tmp_path_factory.mktemp("observability-inline")
    yield from serve(
        kafka_bootstrap,
        topic_prefix,
        tmp,
        inline_llm_ms=1000,
        script=scripted_script(tmp, latency_ms=0),
    )


async def test_inline_llm_calls_are_spans_of_their_input(
    kafka_bootstrap: str, served_inline: Served
) -> None:
    names, receiver = served_inline.names, served_inline.receiver
    sid = f"obs-inline-{secrets.token_hex(3)}"
    async with EventLog(kafka_bootstrap, names.events) as log:
        await produce(kafka_bootstrap, names, user_message(sid, "what is 6*7?", agent="calc"), [])
        await log.wait_for(lambda: log.turns_completed(sid) == 1, 60, "turn 1")
        client_tp = new_traceparent()
        trace, client_span = client_tp.split("-")[1], client_tp.split("-")[2]
        await produce(
            kafka_bootstrap,
            names,
            user_message(sid, "and 6*7 again?", turn=2),
            [("traceparent", client_tp.encode())],
        )
        await log.wait_for(lambda: log.turns_completed(sid) == 2, 60, "turn 2")
    spans = await wait_until(
        lambda: s if len(s := receiver.spans(trace)) >= 4 else None,
        30,
        "turn 2's spans at the OTLP receiver",
        diagnose=lambda: "\n".join(f"{s.name} <- {s.parent_span_id}" for s in receiver.spans()),
    )
    # Turn 2 is one input, one transaction: its span holds the two LLM calls and the
    # calculator that ran inside it.
    assert len(spans) == 4, [s.name for s in spans]
    root = next(s for s in spans if s.name == "process SendMessage")
    assert root.parent_span_id == client_span
    children = [s for s in spans if s is not root]
    model = events_model(log.of(sid))
    assert sorted(s.name for s in children) == sorted(
        [f"chat {model}", "execute_tool calculator", f"chat {model}"]
    )
    assert {s.parent_span_id for s in children} == {root.span_id}
    assert {"LlmCallCompleted", "ToolCallCompleted", "TurnCompleted"} <= set(
        root.attributes["turnlog.event_types"].split(",")
    )
    # Every event of turn 2 names that span.
    turn2 = [tp for ev, tp in log.traceparents(sid) if ev.turn_id == f"{sid}:t2"]
    assert turn2 and {tp.split("-")[2] for tp in turn2 if tp} == {root.span_id}
    # The calls' log lines say they ran inline, in the trace of the turn.
    reported = [
        r
        for r in served_inline.worker.log_records(this_start=False)
        if r.get("event") == "effect.reported" and r.get("session_id") == sid
    ]
    assert sum(bool(r.get("inline")) and r["kind"] == "llm_call" for r in reported) == 3
    # /metrics counts them.
    status, text = http_get(served_inline.port, "/metrics")
    assert status == 200
    m = samples(text)
    assert m[("turnlog_llm_calls_inline_total", ())] == 3
    assert m[("turnlog_llm_calls_inline_late_total", ())] == 0


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "all-zero trace id"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "all-zero parent id"),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff"),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", "upper case"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "v00 too long"),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "short trace id"),
    ],
)
async def test_an_invalid_traceparent_is_replaced_not_propagated(
    kafka_bootstrap: str, served: Served, header: str, why: str
) -> None:
    names = served.names
    sid = f"bad-{secrets.token_hex(3)}"
    async with EventLog(kafka_bootstrap, names.events) as log:
        await produce(
            kafka_bootstrap,
            names,
            user_message(sid, "what is 6*7?", agent="calc"),
            [("traceparent", header.encode()), ("tracestate", b"vendor=abc")],
        )
        await log.wait_for(lambda: log.turns_completed(sid) == 1, 60, f"the turn ({why})")
    bad_trace = header.split("-")[1].lower()
    traces = {trace_id(tp) for _, tp in log.traceparents(sid)}
    assert len(traces) == 1, traces
    (trace,) = traces
    assert trace is not None and trace not in (bad_trace, "0" * 32), why
    records = [
        r for r in await read_records(kafka_bootstrap, names.events) if r.key == sid.encode()
    ]
    assert all("tracestate" not in dict(r.headers) for r in records), "tracestate kept"
    # With tracing on, the worker started a trace of its own: its first span is a root.

    def first_span() -> ReceivedSpan | None:
        return next(
            (s for s in served.receiver.spans(trace) if s.name == "process SendMessage"), None
        )

    span = await wait_until(first_span, 30, "the input span of the replaced trace")
    assert span.parent_span_id == "" and span.trace_state == ""


async def test_an_invalid_tracestate_is_dropped_and_the_traceparent_kept(
    kafka_bootstrap: str, served: Served
) -> None:
    names = served.names
    sid = f"state-{secrets.token_hex(3)}"
    tp = new_traceparent()
    async with EventLog(kafka_bootstrap, names.events) as log:
        await produce(
            kafka_bootstrap,
            names,
            user_message(sid, "what is 6*7?", agent="calc"),
            [("traceparent", tp.encode()), ("tracestate", b"Bad Key=1,vendor=abc")],
        )
        await log.wait_for(lambda: log.turns_completed(sid) == 1, 60, "the turn")
    assert {trace_id(t) for _, t in log.traceparents(sid)} == {trace_id(tp)}
    records = [
        r for r in await read_records(kafka_bootstrap, names.events) if r.key == sid.encode()
    ]
    assert records and all("tracestate" not in dict(r.headers) for r in records)


async def test_an_unsampled_turn_exports_nothing_and_hands_its_decision_on(
    kafka_bootstrap: str, served: Served
) -> None:
    """The default sampler follows the parent's flags: a client's unsampled traceparent
    makes the whole turn unsampled — no span reaches the receiver, every event carries
    the trace with the flags 00 — while a sampled turn after it is exported whole."""
    names, receiver = served.names, served.receiver
    unsampled = new_traceparent()[:-2] + "00"
    sampled = new_traceparent()
    sids = {tp: f"unsampled-{secrets.token_hex(3)}" for tp in (unsampled, sampled)}
    async with EventLog(kafka_bootstrap, names.events) as log:
        for tp, sid in sids.items():
            await produce(
                kafka_bootstrap,
                names,
                user_message(sid, "what is 6*7?", agent="calc"),
                [("traceparent", tp.encode())],
            )
            await log.wait_for(lambda sid=sid: log.turns_completed(sid) == 1, 60, "the turn")
    carried = {tp for _, tp in log.traceparents(sids[unsampled])}
    assert {trace_id(tp) for tp in carried} == {trace_id(unsampled)}
    assert {tp[-2:] for tp in carried if tp} == {"00"}
    # The batch processor exports in order: once the later turn's 6 spans are in, any
    # span of the unsampled turn would be too.
    await wait_until(
        lambda: len(receiver.spans(trace_id(sampled))) == 6 or None,
        30,
        "the sampled turn's 6 spans",
    )
    assert receiver.spans(trace_id(unsampled)) == []


def test_health_and_readiness_of_the_running_worker(served: Served) -> None:
    assert http_get(served.port, "/healthz") == (200, "ok\n")
    status, body = http_get(served.port, "/readyz")
    assert status == 200 and "restored" in body
    assert http_get(served.port, "/nope")[0] == 404


async def test_an_approval_wait_is_a_span_and_the_decision_continues_the_turn_trace(
    kafka_bootstrap: str, served_live: Served
) -> None:
    names, receiver = served_live.names, served_live.receiver
    sid = f"approve-{secrets.token_hex(3)}"
    turn_tp, decider_tp = new_traceparent(), new_traceparent()
    trace = turn_tp.split("-")[1]
    async with EventLog(kafka_bootstrap, names.events) as log:
        await produce(
            kafka_bootstrap,
            names,
            user_message(sid, "approval-pair please", agent="approver"),
            [("traceparent", turn_tp.encode())],
        )
        await log.wait_for(lambda: log.of(sid, ApprovalRequested), 60, "the approval request")
        (asked,) = [e.payload for e in log.of(sid, ApprovalRequested)]
        await produce(
            kafka_bootstrap,
            names,
            request_for(
                sid,
                DecideApproval(call_id=asked.call_id, approved=True, decided_by="alice"),
                f"{sid}:decide",
            ),
            [("traceparent", decider_tp.encode())],
        )
        await log.wait_for(lambda: log.turns_completed(sid) == 1, 60, "the turn")

    def spans_in() -> list[ReceivedSpan] | None:
        spans = receiver.spans(trace)
        names_seen = {s.name for s in spans}
        wanted = {"approval shell", "process DecideApproval", "execute_tool shell"}
        return spans if wanted <= names_seen else None

    spans = await wait_until(
        spans_in,
        30,
        "the approval's spans",
        diagnose=lambda: str([s.name for s in receiver.spans(trace)]),
    )
    by_name = {s.name: s for s in spans}
    wait, decide = by_name["approval shell"], by_name["process DecideApproval"]
    asker = next(
        s for s in spans if "ApprovalRequested" in s.attributes.get("turnlog.event_types", "")
    )
    # The wait hangs under the input that asked; the decision under the wait, linked to
    # the decider's own trace; the tool call runs under the decision.
    assert wait.parent_span_id == asker.span_id
    assert decide.parent_span_id == wait.span_id
    assert decide.links == ((decider_tp.split("-")[1], decider_tp.split("-")[2]),)
    assert by_name["execute_tool shell"].parent_span_id == decide.span_id
    assert wait.attributes["turnlog.approval.outcome"] == "granted"
    assert wait.attributes["turnlog.approval.decided_by"] == "alice"
    # Nothing of the turn went to the decider's trace: one trace per turn.
    assert receiver.spans(decider_tp.split("-")[1]) == []
    ids = {s.span_id for s in spans}
    assert [s.name for s in spans if s.parent_span_id not in ids] == ["process SendMessage"]


async def test_a_delegation_is_an_invoke_agent_span_with_the_child_session_beneath(
    kafka_bootstrap: str, served_live: Served
) -> None:
    names, receiver = served_live.names, served_live.receiver
    sid = f"lead-{secrets.token_hex(3)}"
    tp = new_traceparent()
    trace = tp.split("-")[1]
    async with EventLog(kafka_bootstrap, names.events) as log:
        await produce(
            kafka_bootstrap,
            names,
            user_message(sid, "Please ask alpha and beta.", agent="lead"),
            [("traceparent", tp.encode())],
        )
        await log.wait_for(lambda: log.turns_completed(sid) == 1, 90, "the lead's turn")
        children = {
            e.payload.agent: e.payload.child_session_id for e in log.of(sid, ChildSessionRequested)
        }
    assert set(children) == {"alpha", "beta"}

    def spans_in() -> list[ReceivedSpan] | None:
        spans = receiver.spans(trace)
        child_inputs = [
            s for s in spans if s.attributes.get("turnlog.session_id") in children.values()
        ]
        done = sum("TurnCompleted" in s.attributes.get("turnlog.event_types", "") for s in spans)
        return spans if len(child_inputs) >= 4 and done == 3 else None

    spans = await wait_until(
        spans_in,
        30,
        "the delegation's spans",
        diagnose=lambda: str([s.name for s in receiver.spans(trace)]),
    )
    by_id = {s.span_id: s for s in spans}
    for agent, child in children.items():
        (invoke,) = [s for s in spans if s.name == f"invoke_agent {agent}"]
        assert invoke.kind == PRODUCER and invoke.attributes["gen_ai.agent.name"] == agent
        assert invoke.attributes["turnlog.child_session_id"] == child
        first = next(
            s
            for s in spans
            if s.name == "process SendMessage" and s.attributes["turnlog.session_id"] == child
        )
        assert first.parent_span_id == invoke.span_id
        # The child's spans are all in the parent's trace, beneath its invoke_agent span.
        for span in spans:
            if span.attributes.get("turnlog.session_id") == child:
                node = span
                while node.parent_span_id in by_id and node is not invoke:
                    node = by_id[node.parent_span_id]
                assert node is invoke, span.name
    ids = set(by_id)
    assert [s.name for s in spans if s.parent_span_id not in ids] == ["process SendMessage"]


async def test_an_expired_approval_ends_its_wait_and_the_tick_stays_in_the_turn_trace(
    kafka_bootstrap: str, served_live: Served
) -> None:
    names, receiver = served_live.names, served_live.receiver
    sid = f"expire-{secrets.token_hex(3)}"
    tp = new_traceparent()
    trace = tp.split("-")[1]
    async with EventLog(kafka_bootstrap, names.events) as log:
        await produce(
            kafka_bootstrap,
            names,
            user_message(sid, "approval-pair please", agent="hasty"),
            [("traceparent", tp.encode())],
        )
        # Nobody decides (approval_s = 1): the worker's ticker brings time to the core.
        await log.wait_for(lambda: log.turns_completed(sid) == 1, 60, "the turn")

    def spans_in() -> list[ReceivedSpan] | None:
        spans = receiver.spans(trace)
        done = any("TurnCompleted" in s.attributes.get("turnlog.event_types", "") for s in spans)
        return spans if done and any(s.name == "approval shell" for s in spans) else None

    spans = await wait_until(
        spans_in,
        30,
        "the expired approval's spans",
        diagnose=lambda: str([s.name for s in receiver.spans(trace)]),
    )
    (wait,) = [s for s in spans if s.name == "approval shell"]
    assert wait.attributes["turnlog.approval.outcome"] == "expired"
    expiring = next(
        s for s in spans if "ApprovalDenied" in s.attributes.get("turnlog.event_types", "")
    )
    assert expiring.name == "process Tick"
    ids = {s.span_id for s in spans}
    assert expiring.parent_span_id in ids
    assert [s.name for s in spans if s.parent_span_id not in ids] == ["process SendMessage"]


async def test_a_cancel_continues_the_turn_trace_and_ends_the_running_call_span(
    kafka_bootstrap: str, served_slow: Served
) -> None:
    names, receiver = served_slow.names, served_slow.receiver
    sid = f"cancel-{secrets.token_hex(3)}"
    turn_tp, canceller_tp = new_traceparent(), new_traceparent()
    trace = turn_tp.split("-")[1]
    async with EventLog(kafka_bootstrap, names.events) as log:
        await produce(
            kafka_bootstrap,
            names,
            user_message(sid, "please think slowly", agent="slowpoke"),
            [("traceparent", turn_tp.encode())],
        )
        await log.wait_for(lambda: log.of(sid, LlmCallRequested), 60, "the LLM call")
        await produce(
            kafka_bootstrap,
            names,
            request_for(sid, CancelTurn(reason="stop"), f"{sid}:cancel"),
            [("traceparent", canceller_tp.encode())],
        )
        await log.wait_for(lambda: log.of(sid, TurnCancelled), 60, "the cancel")

    def spans_in() -> list[ReceivedSpan] | None:
        spans = receiver.spans(trace)
        chat = [s for s in spans if s.name.startswith("chat ")]
        cancel = [s for s in spans if s.name == "process CancelTurn"]
        return spans if chat and cancel else None

    spans = await wait_until(
        spans_in,
        30,
        "the cancelled turn's spans",
        diagnose=lambda: str([s.name for s in receiver.spans(trace)]),
    )
    (chat,) = [s for s in spans if s.name.startswith("chat ")]
    assert chat.attributes["turnlog.cancelled"] is True  # aborted, not left open
    (cancel,) = [s for s in spans if s.name == "process CancelTurn"]
    first = next(s for s in spans if s.name == "process SendMessage")
    assert cancel.parent_span_id == first.span_id
    assert cancel.links == ((canceller_tp.split("-")[1], canceller_tp.split("-")[2]),)
    assert "TurnCancelled" in cancel.attributes["turnlog.event_types"]
    assert receiver.spans(canceller_tp.split("-")[1]) == []
