"""OpenTelemetry spans of a turn, and the hooks that feed the workers' metrics.

Rule: with tracing off (the default) no function here touches the OpenTelemetry SDK —
the SDK is not even imported — and a hook costs a check of one module global.

A trace is a turn. Its spans follow causality across processes, linked through the
Kafka headers (streams.tracing), never through memory:

    process SendMessage            the session worker decides an input and commits it
    └─ chat <model>                the effect runner's LLM call (GenAI conventions)
       └─ process CompleteLlmCall  its outcome, decided
          ├─ execute_tool <tool>   a tool call
          │  └─ process CompleteToolCall ...
          └─ approval <tool>       a wait for a human, ended by the decision
             └─ process DecideApproval   (linked to the decider's own trace)

A compaction is `compaction <model>`, a child session `invoke_agent <agent>` whose
inputs are the child's spans. A Tick (time reaching the core) and a CancelTurn continue
the trace of their session's last input; an effect cancelled mid-run ends its span
with `turnlog.cancelled`. An input span covers the decision and its transaction: it
ends when the transaction commits (status OK), or with an error when the transaction
did not commit (the input is read again and gets a new span). The events of an input
carry that span's id in their `traceparent`, so whichever process starts the effects
they ask for (this one, or a new owner after a takeover) parents its spans correctly.

Configuration is OpenTelemetry's own: `configure_tracing(True, ...)` builds an SDK
TracerProvider whose OTLP/HTTP exporter, sampler and resource read the standard
OTEL_* variables (turnlog.settings decides whether tracing is on at all). The spans
themselves are built by streams._spans (the provider's sampler and ids, no SDK `Span`
object), are encoded by streams._otlp when they end and go into the batch processor's
queue as their OTLP bytes (no ReadableSpan), which the exporter joins a batch at a time:
the SDK's way costs several times more CPU per span, on the event loop and on the
exporter's thread (BENCHMARKS.md, "Tracing overhead"). A span that is not sampled builds no attribute.

The metrics hooks (`batch_begin`, `input_traceparent`, `batch_committed`,
`observe_restore`) hand each committed transaction's events to the metrics sink
registered for the worker (streams.metrics), so metrics count facts once, as committed.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import MutableMapping, Sequence
from typing import Any, Protocol

from agents.pricing import cost_nanos, find_model, usd_from_nanos
from streams.tracing import TraceParent, parse_traceparent

__all__ = [
    "MetricsSink",
    "add_trace_context",
    "batch_begin",
    "batch_committed",
    "configure_tracing",
    "effect_cancelled",
    "effect_ended",
    "effect_started",
    "input_traceparent",
    "observe_restore",
    "register_sink",
    "shutdown_tracing",
    "tracing_enabled",
    "unregister_sink",
]

# (consumed record, decoded request, the events its decision caused)
Entry = tuple[Any, Any, Sequence[Any]]


class MetricsSink(Protocol):
    def committed(self, entries: Sequence[Entry], seconds: float) -> None: ...

    def restored(self, seconds: float, partitions: int) -> None: ...


_tracer: Any = None
_provider: Any = None
# The OpenTelemetry API, imported by configure_tracing (never while tracing is off).
_ot: Any = None
_CONSUMER: Any = None  # _ot.SpanKind.CONSUMER
_NO_STATE: Any = None  # _ot.DEFAULT_TRACE_STATE
_sinks: dict[int, MetricsSink] = {}
# Open approval-wait spans: (session, call id) -> span. Bounded: a wait whose decision
# lands on another worker is dropped (unexported) once this many are open.
_approvals: dict[tuple[str, str], Any] = {}
_MAX_OPEN_APPROVALS = 10_000
# The span context of each session's last committed input: a Tick (the worker's own
# input, with no trace of its own) acts on the turn in progress, so its span continues
# that turn's trace. Bounded, least recently written dropped first.
_last_input: dict[str, Any] = {}
_MAX_SESSIONS = 100_000
_CONTINUE_TURN = frozenset({"Tick", "CancelTurn", "ReissueEffect"})
_PROCESS: dict[str, str] = {}  # input type -> its span's name
_PARTITIONS: dict[int, str] = {}  # partition -> its attribute value
# The batch span processor's export batch and queue (the SDK's: 512 and 2048).
_BATCH_SIZE = 2048
_QUEUE = 8192


class _Batch:
    __slots__ = ("entries", "sink", "spans", "started")

    def __init__(self, sink: MetricsSink | None) -> None:
        self.started = time.monotonic()
        self.sink = sink
        self.entries: list[Entry] = []
        self.spans: list[Any] = []


# The traceparent of the effect the current task runs (each effect is a task): what
# its log lines are correlated by, tracing on or off.
_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("turnlog_trace", default=None)

# The transaction being built by the current partition loop (each loop is a task).
_BATCH: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar(
    "turnlog_batch", default=None
)


# ------------------------------------------------------------------ configuration


def configure_tracing(enabled: bool, service_name: str) -> bool:
    """Turn tracing on (an SDK TracerProvider exporting OTLP/HTTP, configured by the
    OTEL_* variables) or leave it off. Returns whether it is on."""
    global _tracer, _provider, _ot, _CONSUMER, _NO_STATE
    if not enabled:
        return False
    if _tracer is not None:
        return True
    import opentelemetry.trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from streams._otlp import LeanOTLPSpanExporter, framed_span
    from streams._spans import SCOPE, Recorder, queue_emit

    _ot = opentelemetry.trace
    _CONSUMER = _ot.SpanKind.CONSUMER
    _NO_STATE = _ot.DEFAULT_TRACE_STATE

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    # The SDK's sampler, ids, batch processor and exporter; spans built by streams._spans
    # and encoded by streams._otlp, each a fraction of the SDK's cost per span.
    # Larger batches than the SDK's 512 unless the OTEL_BSP_* variables say: an OTLP
    # post costs the exporter's thread about as much as encoding 200 spans.
    sized = any(
        os.environ.get(v) for v in ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_MAX_QUEUE_SIZE")
    )
    exporter = LeanOTLPSpanExporter()
    processor = BatchSpanProcessor(
        exporter,
        max_queue_size=None if sized else _QUEUE,
        max_export_batch_size=None if sized else _BATCH_SIZE,
    )
    provider.add_span_processor(processor)
    # Ended spans go into the processor's queue as they are (what its on_end does with a
    # ReadableSpan, less building one), for the exporter to encode: where this SDK's
    # processor has no such queue, they go through on_end as ReadableSpans.
    # Where the exporter posts them itself, they go in as their OTLP bytes, encoded when
    # they end: their objects then die young rather than in the garbage collector's
    # older generations, where they would wait for a batch.
    queue = getattr(processor, "_batch_processor", None)
    emit = queue_emit(queue) or getattr(queue, "emit", None)
    encode = None
    if emit is not None and exporter.lean(provider.resource, SCOPE):
        encode = framed_span
    _provider = provider
    _tracer = Recorder(provider, processor, emit, encode)
    return True


def shutdown_tracing() -> None:
    """Export what is buffered and stop the exporter (a worker's clean stop)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def tracing_enabled() -> bool:
    return _tracer is not None


def register_sink(stats: dict[str, int], sink: MetricsSink) -> None:
    """Committed transactions of the worker whose counters are `stats` go to `sink`."""
    _sinks[id(stats)] = sink


def unregister_sink(stats: dict[str, int]) -> None:
    _sinks.pop(id(stats), None)


# ------------------------------------------------------------------ session worker hooks


def batch_begin(stats: dict[str, int]) -> None:
    """A partition starts a transaction. Input spans of an earlier one that never
    committed end here, as errors."""
    sink = _sinks.get(id(stats))
    if sink is None and _tracer is None:
        return
    old = _BATCH.get()
    if old is not None and old.spans:
        _end_uncommitted(old.spans)
    _BATCH.set(_Batch(sink))


def input_traceparent(
    rec: Any, req: Any, events: Sequence[Any], incoming: str | None
) -> str | None:
    """The traceparent the events of `req` carry: `incoming` (the request's, valid or
    None) with tracing off; with it on, that of a new span for this input."""
    batch = _BATCH.get()
    if batch is None:
        return incoming
    if _tracer is None or not events:
        # Untraced: an input that decided nothing (a Tick with nothing due) is no span.
        if batch.sink is not None:
            batch.entries.append((rec, req, events))
        return incoming
    batch.entries.append((rec, req, events))
    span = _input_span(rec, req, events, incoming)
    batch.spans.append(span)
    return _live(span)


def batch_committed() -> None:
    """The partition's transaction committed: its input spans end well, its events
    count in the metrics, approval waits it asked for open."""
    batch = _BATCH.get()
    if batch is None:
        return
    _BATCH.set(None)
    seconds = time.monotonic() - batch.started
    if batch.sink is not None and batch.entries:
        batch.sink.committed(batch.entries, seconds)
    if _tracer is not None:
        _committed_spans(batch)


def observe_restore(stats: dict[str, int], seconds: float, partitions: int) -> None:
    """A rebalance gave the worker `partitions` partitions, restored in `seconds`."""
    sink = _sinks.get(id(stats))
    if sink is not None and partitions:
        sink.restored(seconds, partitions)


# ------------------------------------------------------------------ effect runner hooks


def effect_started(effect: Any, traceparent: str | None) -> str | None:
    """The traceparent an effect runs and reports in: `traceparent` with tracing off;
    with it on, that of a new span for the effect (a child of `traceparent`)."""
    if _tracer is None:
        _CURRENT.set(traceparent)
        return traceparent
    SpanKind = _ot.SpanKind
    kind = effect.kind  # an EffectKind, equal to its value (a str), or a str
    model = None
    if kind == "llm_call" or kind == "compaction":
        model = effect.model
        name = f"{'chat' if kind == 'llm_call' else 'compaction'} {model}"
        span_kind = SpanKind.CLIENT
    elif kind == "tool_call":
        name, span_kind = f"execute_tool {effect.tool_name}", SpanKind.INTERNAL
    elif kind == "child_session":
        name, span_kind = f"invoke_agent {effect.agent}", SpanKind.PRODUCER
    else:
        name, span_kind = f"effect {getattr(kind, 'value', kind)}", SpanKind.INTERNAL
    span = _tracer.start(name, _parent_of(traceparent), span_kind)
    if span.recording:  # not sampled: no attribute is worth building
        # Few attributes: the GenAI ones an LLM dashboard keys on, and the ids that
        # lead back to the log.
        attrs = span.attributes
        attrs["gen_ai.conversation.id"] = effect.session_id
        attrs["turnlog.effect_id"] = effect.effect_id
        if effect.attempt > 1:
            attrs["turnlog.effect.attempt"] = effect.attempt
        if model is not None:
            attrs["gen_ai.operation.name"] = "chat"
            attrs["gen_ai.request.model"] = model
            attrs["gen_ai.system"] = _provider_of(model)
        elif kind == "tool_call":
            attrs["gen_ai.operation.name"] = "execute_tool"
            attrs["gen_ai.tool.name"] = effect.tool_name
            attrs["gen_ai.tool.call.id"] = effect.effect_id
        elif kind == "child_session":
            attrs["gen_ai.operation.name"] = "invoke_agent"
            attrs["gen_ai.agent.name"] = effect.agent
            attrs["turnlog.child_session_id"] = effect.child_session_id
    out = _live(span)
    out.span = span
    _CURRENT.set(out)
    return out


def current_traceparent() -> str | None:
    """The traceparent the current task's log lines are correlated by."""
    return _CURRENT.get()


def set_current_traceparent(traceparent: str | None) -> None:
    """Put back what current_traceparent() returned (an effect run inside another task:
    an inline tool call in its partition's loop)."""
    _CURRENT.set(traceparent)


def effect_cancelled(traceparent: str | None) -> None:
    """The effect's task was cancelled (its turn was, or its partition moved): its span
    ends, marked so, and nothing is reported."""
    if type(traceparent) is not TraceParent or traceparent.span is None:
        return  # (a plain traceparent: tracing was off when the effect started)
    span, traceparent.span = traceparent.span, None
    if span.is_recording():
        span.set_attribute("turnlog.cancelled", True)
    span.end()


def add_trace_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the log lines of an effect carry its trace and span ids."""
    tp = _CURRENT.get()
    if tp:
        event.setdefault("trace_id", tp[3:35])
        event.setdefault("span_id", tp[36:52])
    return event


def effect_ended(traceparent: str | None, effect: Any, payload: Any) -> None:
    """The effect's outcome (None: nothing to report, e.g. a child session started)."""
    if type(traceparent) is not TraceParent or traceparent.span is None:
        return  # (a plain traceparent: tracing was off when the effect started)
    span, traceparent.span = traceparent.span, None
    if not span.recording:
        return
    kind = type(payload)
    name = kind.__name__
    attrs: dict[str, Any] = span.attributes
    has = _OUTCOME_FIELDS.get(kind)
    if has is None:
        has = _outcome_fields(kind)
    if has is _ANY_FIELDS:
        usage = getattr(payload, "usage", None)
        model = getattr(payload, "model", None)
        stop = getattr(payload, "stop_reason", None)
    else:  # a dataclass: a field it lacks is not looked up (an exception each)
        usage = payload.usage if has[0] else None
        model = payload.model if has[1] else None
        stop = payload.stop_reason if has[2] else None
    requested = getattr(effect, "model", None) if model or usage is not None else None
    if model and model != requested:  # a fallback answered
        attrs["gen_ai.response.model"] = model
    if usage is not None:
        attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
        attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
        if usage.cache_read_tokens:
            attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
        if usage.cache_write_tokens:
            attrs["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
        cost = _cost_usd(str(model or requested or ""), usage)
        if cost is not None:
            attrs["turnlog.cost_usd"] = cost
    if stop:
        attrs["gen_ai.response.finish_reasons"] = (str(stop),)
    if name.startswith("Fail"):
        attrs["error.type"] = str(getattr(payload, "error_type", None) or name)
        message = getattr(payload, "message", None) or getattr(payload, "error", "")
        span.set_status(_ot.Status(_ot.StatusCode.ERROR, str(message)[:500]))
    span.end()


# ------------------------------------------------------------------ internals


# An outcome's type -> whether it has (usage, model, stop_reason): known for a dataclass
# from its fields, else _ANY_FIELDS (each instance asked). Bounded.
_OUTCOME_FIELDS: dict[type, tuple[bool, bool, bool]] = {}
_ANY_FIELDS = (True, True, True)


def _outcome_fields(kind: type) -> tuple[bool, bool, bool]:
    fields = getattr(kind, "__dataclass_fields__", None)
    has = (
        _ANY_FIELDS
        if fields is None
        else ("usage" in fields, "model" in fields, "stop_reason" in fields)
    )
    if len(_OUTCOME_FIELDS) < 256:
        _OUTCOME_FIELDS[kind] = has
    return has


_new_context = tuple.__new__
_TRACE_FLAGS: dict[str, Any] = {}  # a traceparent's flags -> TraceFlags

# "00-<trace id>-" of the traces in hand: a turn's spans share one (bounded).
_PREFIX: dict[int, str] = {}
_FLAGS = tuple(f"-{flags:02x}" for flags in range(256))


def _live(span: Any) -> TraceParent:
    if span.traceparent is not None:
        out: TraceParent = span.traceparent
        return out
    ctx = span.context  # a SpanContext, read as its tuple: (trace id, span id, ...)
    trace_id = ctx[0]
    prefix = _PREFIX.get(trace_id)
    if prefix is None:
        if len(_PREFIX) >= 4096:
            _PREFIX.clear()
        prefix = _PREFIX[trace_id] = f"00-{trace_id:032x}-"
    out = TraceParent(prefix + ctx[1].to_bytes(8, "big").hex() + _FLAGS[ctx[3]])
    out.live = True
    state = ctx[4]
    if state is not _NO_STATE and state:
        out.tracestate = state.to_header()
    out.context = ctx  # a child here need not parse it again
    span.traceparent = out
    return out


def _parent_of(traceparent: str | None) -> Any:
    """The (remote) span context `traceparent` names; None (a new trace) without a
    valid one."""
    if type(traceparent) is TraceParent:
        if traceparent.context is not None:
            return traceparent.context
        state = traceparent.tracestate
    else:
        state = None
    parsed = parse_traceparent(traceparent) if traceparent else None
    if parsed is None:
        return None
    flags = _TRACE_FLAGS.get(parsed[2])
    if flags is None:
        flags = _TRACE_FLAGS[parsed[2]] = _ot.TraceFlags(int(parsed[2], 16) & 0xFF)
    # SpanContext(...) without its checks: parse_traceparent refused zero ids.
    return _new_context(
        _ot.SpanContext,
        (
            int(parsed[0], 16),
            int(parsed[1], 16),
            True,
            flags,
            _ot.TraceState.from_header([state]) if state else _ot.DEFAULT_TRACE_STATE,
            True,
        ),
    )


def _input_span(rec: Any, req: Any, events: Sequence[Any], incoming: str | None) -> Any:
    payload = req.payload
    kind = type(payload).__name__
    parent = _parent_of(incoming)
    links: tuple[Any, ...] = ()
    if kind in _CONTINUE_TURN:
        # Time (a Tick) or a cancel acts on the turn in progress: its span continues the
        # turn's trace (the canceller's own trace, if any, is a link).
        last = _last_input.get(req.session_id)
        if last is not None:
            if parent is not None:
                links = (_ot.Link(parent),)
            parent = last
    elif kind == "DecideApproval":
        # A human's decision continues the turn that waited for it: a child of the wait
        # (the decider's own trace, if any, is a link).
        call_id = getattr(payload, "call_id", None)
        wait = _approvals.get((req.session_id, call_id)) if call_id is not None else None
        if wait is not None:
            if parent is not None:
                links = (_ot.Link(parent),)
            parent = wait.context
    return _traced_input(rec, req, events, kind, parent, links)


def _event_types(events: Sequence[Any]) -> str:
    return ",".join([type(e.payload).__name__ for e in events])


def _traced_input(
    rec: Any, req: Any, events: Sequence[Any], kind: str, parent: Any, links: tuple[Any, ...]
) -> Any:
    assert _tracer is not None
    name = _PROCESS.get(kind)
    if name is None:
        name = _PROCESS[kind] = f"process {kind}"
    span = _tracer.start(name, parent, _CONSUMER, links)
    if not span.recording:  # not sampled: no attribute is worth building
        return span
    # Few attributes, all scalars: each is encoded on the exporter's thread.
    first, last = events[0], events[-1]
    attrs = span.attributes
    attrs["messaging.system"] = "kafka"
    partition = _PARTITIONS.get(rec.partition)
    if partition is None:
        partition = _PARTITIONS[rec.partition] = str(rec.partition)
    attrs["messaging.destination.partition.id"] = partition
    attrs["messaging.kafka.offset"] = rec.offset
    attrs["turnlog.session_id"] = req.session_id
    attrs["turnlog.seq"] = f"{first.seq}-{last.seq}"
    attrs["turnlog.event_types"] = _event_types(events)
    if last.turn_id:
        attrs["turnlog.turn_id"] = last.turn_id
    return span


def _end_uncommitted(spans: Sequence[Any]) -> None:
    for span in spans:
        span.set_status(_ot.Status(_ot.StatusCode.ERROR, "the transaction did not commit"))
        span.end()


def _committed_spans(batch: _Batch) -> None:
    assert _tracer is not None
    spans = iter(batch.spans)  # one per entry that caused events, in order
    last = _last_input
    for _rec, req, events in batch.entries:
        if not events:
            continue
        span = next(spans)
        sid = req.session_id
        if last.pop(sid, None) is None and len(last) >= _MAX_SESSIONS:
            last.pop(next(iter(last)))
        last[sid] = span.context
        if not span.recording:
            continue
        attrs = span.attributes
        seqs = f"{events[0].seq}-{events[-1].seq}"
        if attrs.get("turnlog.seq") != seqs:  # an inline tool call's events joined after
            attrs["turnlog.seq"] = seqs
            attrs["turnlog.event_types"] = _event_types(events)
        types = attrs.get("turnlog.event_types", "")
        if "Approval" in types or "TurnFailed" in types:  # else nothing to look at
            _watched_events(span, events)
        span.set_ok()
        span.end()


def _watched_events(span: Any, events: Sequence[Any]) -> None:
    """Approval waits opened and closed by an input's events, and its turn's failure."""
    assert _tracer is not None
    for ev in events:
        payload = ev.payload
        name = type(payload).__name__
        if name == "ApprovalRequested":
            key = (ev.session_id, payload.call_id)
            if len(_approvals) >= _MAX_OPEN_APPROVALS:
                _approvals.pop(next(iter(_approvals)))
            wait = _tracer.start(f"approval {payload.tool_name}", span.context)
            wait.set_attributes(
                {
                    "turnlog.session_id": ev.session_id,
                    "gen_ai.conversation.id": ev.session_id,
                    "gen_ai.tool.name": payload.tool_name,
                    "gen_ai.tool.call.id": payload.call_id,
                    "turnlog.turn_id": ev.turn_id or "",
                }
            )
            _approvals[key] = wait
        elif name in ("ApprovalGranted", "ApprovalDenied"):
            waited = _approvals.pop((ev.session_id, payload.call_id), None)
            if waited is not None:
                outcome = (
                    "granted"
                    if name == "ApprovalGranted"
                    else ("expired" if payload.expired else "denied")
                )
                waited.set_attribute("turnlog.approval.outcome", outcome)
                waited.set_attribute("turnlog.approval.decided_by", payload.decided_by)
                waited.end()
        elif name == "TurnFailed":
            span.set_attribute("error.type", payload.error_type)


def _provider_of(model: str) -> str:
    info = find_model(model)
    return info.provider if info is not None else "unknown"


def _cost_usd(model: str, usage: Any) -> float | None:
    info = find_model(model) if model else None
    if info is None:
        return None
    return usd_from_nanos(cost_nanos(info, usage))
