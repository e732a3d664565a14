"""Spans of the worker's hot loop: sampled by the SDK, exported by the SDK, built here.

Rule: a span is decided by the TracerProvider's own sampler (OTEL_TRACES_SAMPLER), gets
its ids from the provider's id generator, its resource from the provider, and is handed
ended, to the provider's span processor: as the SDK's `ReadableSpan` to any processor,
or as itself to the batch processor's queue when its exporter encodes these spans
directly (streams._otlp: the ReadableSpan is then built, if ever, only should the
SDK's own encoder be needed). What is left out is the SDK's mutable `Span`: its lock,
its per-attribute validation and limits and its start hooks cost tens of microseconds a
span on the event loop (bench/tracing.py), for attributes that turnlog builds itself
from a fixed, small set of names and scalar values. A span that is not sampled is a
context and nothing else: no attribute is built, nothing reaches the processor.

The SDK's own samplers (always on or off, the trace-id ratio, parent-based over these:
every OTEL_TRACES_SAMPLER value but a custom one) decide from the parent's flags and
the trace id alone; for them the decision is taken here the way they take it, without
building the OpenTelemetry context and sampling result they would need
(tests/unit/test_otlp_encoding.py compares both for each). Any other sampler is asked.

Imported only when tracing is on (streams.telemetry.configure_tracing).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from random import getrandbits
from typing import Any

from opentelemetry import trace as ot
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, StaticSampler, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

__all__ = ["SCOPE", "Decide", "Ended", "Recorder", "Span", "compile_sampler", "queue_emit"]

_OK = ot.Status(ot.StatusCode.OK)
_UNSET = ot.Status(ot.StatusCode.UNSET)
_RANDOM = int(getattr(ot.TraceFlags, "RANDOM_TRACE_ID", 0))
# Every TraceFlags a span of ours can have (sampled or not, random trace id or not).
_TRACE_FLAGS = {n: ot.TraceFlags(n) for n in {0, 1, _RANDOM, _RANDOM | 1}}
_NO_STATE = ot.DEFAULT_TRACE_STATE
_new_context = tuple.__new__
_time_ns = time.time_ns


_MAX_UNSAMPLED = 10_000
SCOPE = InstrumentationScope("turnlog")


def _random_span_id() -> int:
    """RandomIdGenerator.generate_span_id, one call shorter."""
    span_id = getrandbits(64)
    while not span_id:
        span_id = getrandbits(64)
    return span_id


class Span:
    """One span being recorded (or, when `recording` is false, only its context)."""

    __slots__ = (
        "_recorder",
        "attributes",
        "context",
        "end_ns",
        "kind",
        "links",
        "name",
        "parent",
        "recording",
        "start_ns",
        "status",
        "traceparent",
    )

    def __init__(
        self,
        recorder: Recorder | None,
        context: ot.SpanContext,
        parent: ot.SpanContext | None,
        name: str,
        kind: ot.SpanKind,
        links: Sequence[ot.Link],
    ) -> None:
        self._recorder = recorder
        self.context = context
        self.parent = parent
        self.name = name
        self.kind = kind
        self.links = links
        self.recording = recorder is not None
        self.attributes: dict[str, Any] = {}
        self.status = _UNSET
        self.start_ns = _time_ns()
        self.end_ns = 0
        self.traceparent: Any = None  # what streams.telemetry formats from `context`, once

    def get_span_context(self) -> ot.SpanContext:
        return self.context

    def is_recording(self) -> bool:
        return self.recording

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        if self.recording:
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        if self.recording:
            self.attributes[key] = value

    def set_status(self, status: ot.Status) -> None:
        if self.recording and self.status.status_code is not ot.StatusCode.OK:
            self.status = status

    def set_ok(self) -> None:
        if self.recording:
            self.status = _OK

    def end(self) -> None:
        """Hand the span, ended now, to the span processor (once)."""
        if not self.recording:
            return
        self.recording = False
        self.end_ns = _time_ns()
        recorder = self._recorder
        assert recorder is not None
        if recorder.emit is None:
            recorder.processor.on_end(Ended(self, recorder.resource, recorder.scope))
        elif self.context[3] & 1:  # sampled (a processor exports no other span)
            encode = recorder.encode
            recorder.emit(self if encode is None else encode(self, self.end_ns))

    def readable(self, resource: Any, scope: Any) -> ReadableSpan:
        """The ended span as the SDK's ReadableSpan."""
        return Ended(self, resource, scope)


def queue_emit(processor: Any) -> Callable[[Any], None] | None:
    """What the SDK's batch processor does with an ended span (its `emit`: into its
    queue, the export thread woken at a batch), less what a worker has no use for on
    every span: a check of the process id (a system call; a fork is handled by the
    SDK's at-fork hook, which clears this same queue). A full queue or a processor shut
    down goes to the processor's own `emit`, which drops the span and says so. None
    where this SDK's processor lacks what this relies on."""
    emit = getattr(processor, "emit", None)
    queue = getattr(processor, "_queue", None)
    batch = getattr(processor, "_max_export_batch_size", None)
    if emit is None or not isinstance(queue, deque) or queue.maxlen is None:
        return None
    if not isinstance(batch, int) or not hasattr(processor, "_worker_awaken"):
        return None
    full = queue.maxlen
    appendleft = queue.appendleft

    def queued(item: Any) -> None:
        if processor._shutdown or len(queue) >= full:
            emit(item)
            return
        appendleft(item)
        if len(queue) >= batch and not processor._worker_awaken.is_set():
            processor._worker_awaken.set()

    return queued


# (the valid parent or None, the trace id) -> sampled
Decide = Callable[[ot.SpanContext | None, int], bool]
_PARENT_BASED = (
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)


def _static(sampler: Any) -> bool | None:
    """The constant decision of the SDK's always-on or always-off sampler; else None."""
    if getattr(type(sampler), "should_sample", None) is not StaticSampler.should_sample:
        return None
    description: str = sampler.get_description()
    if description not in ("AlwaysOnSampler", "AlwaysOffSampler"):
        return None
    return description == "AlwaysOnSampler"


def compile_sampler(sampler: Any) -> Decide | None:
    """The decision of `sampler` as a plain function, for the SDK's samplers whose
    decision depends only on the parent's flags and the trace id; None for others."""
    should_sample = getattr(type(sampler), "should_sample", None)
    if should_sample is StaticSampler.should_sample:
        on = _static(sampler)
        if on is None:
            return None
        return lambda _parent, _trace_id: on
    if should_sample is TraceIdRatioBased.should_sample:
        bound, limit = sampler.bound, TraceIdRatioBased.TRACE_ID_LIMIT
        return lambda _parent, trace_id: trace_id & limit < bound
    if should_sample is ParentBased.should_sample:
        # ParentBased names its delegates only privately: without them, ask it.
        delegates = [getattr(sampler, name, None) for name in _PARENT_BASED]
        static = [_static(delegate) for delegate in delegates]
        if None not in static:  # the default, ParentBased(ALWAYS_ON): no call per part
            is_root, is_remote_on, is_remote_off, is_local_on, is_local_off = map(bool, static)

            def parent_based_static(parent: ot.SpanContext | None, _trace_id: int) -> bool:
                if parent is None:
                    return is_root
                if parent[2]:  # remote (a SpanContext's fields as the tuple it is)
                    return is_remote_on if parent[3] & 1 else is_remote_off
                return is_local_on if parent[3] & 1 else is_local_off

            return parent_based_static
        parts = [compile_sampler(delegate) for delegate in delegates]
        if any(part is None for part in parts):
            return None
        root, remote_on, remote_off, local_on, local_off = parts

        def parent_based(parent: ot.SpanContext | None, trace_id: int) -> bool:
            if parent is None:
                decide = root
            elif parent[2]:  # remote (a SpanContext's fields as the tuple it is)
                decide = remote_on if parent[3] & 1 else remote_off
            else:
                decide = local_on if parent[3] & 1 else local_off
            assert decide is not None
            return decide(parent, trace_id)

        return parent_based
    return None


class Ended(ReadableSpan):
    """An ended `Span` as every span processor and exporter takes it; `lean` is the
    span itself, which streams._otlp reads directly (no events, nothing dropped)."""

    def __init__(self, span: Span, resource: Any, scope: Any) -> None:
        super().__init__(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=resource,
            attributes=span.attributes,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=scope,
        )
        self.lean = span


class Recorder:
    """Starts `Span`s with `provider`'s sampler and ids; ended ones go to `processor`
    (a span processor also registered with the provider, which shuts it down), or,
    given `emit`, the sampled ones, as they are, to `emit` (the queue of a batch
    processor whose exporter takes these spans: streams._otlp.LeanOTLPSpanExporter),
    or, given `encode` too, as what `encode` makes of them (their OTLP bytes:
    streams._otlp.framed_span), so that a span's objects die when it ends instead of
    waiting in the queue, through the garbage collector's generations, for a batch."""

    def __init__(
        self,
        provider: Any,
        processor: Any,
        emit: Callable[[Any], None] | None = None,
        encode: Callable[[Span, int], bytes] | None = None,
    ) -> None:
        self.processor = processor
        self.emit = emit
        self.encode = encode
        self.resource = provider.resource
        self.scope = SCOPE
        self._sampler = provider.sampler
        self._ids = provider.id_generator
        self._random = _RANDOM if self._ids.is_trace_id_random() else 0
        # The SDK's default ids, drawn here without the calls of its generator.
        self._random_ids = type(self._ids) is RandomIdGenerator
        if self._random_ids:
            self._span_id: Callable[[], int] = _random_span_id
        else:
            self._span_id = self._ids.generate_span_id
        self._decide = compile_sampler(self._sampler)
        # trace id -> the non-recording span of that trace (oldest dropped first)
        self._unsampled: dict[int, Span] = {}

    def start(
        self,
        name: str,
        parent: ot.SpanContext | None,
        kind: ot.SpanKind = ot.SpanKind.INTERNAL,
        links: Sequence[ot.Link] = (),
    ) -> Span:
        """A new span, child of `parent` (None or invalid: the root of a new trace).

        A SpanContext is read as the tuple it is: (trace id, span id, is remote, flags,
        trace state, is valid); its properties cost a call each."""
        if parent is not None and parent[5]:
            trace_id = parent[0]
            random = parent[3] & _RANDOM
        else:
            parent = None
            trace_id = self._ids.generate_trace_id()
            random = self._random
        attributes: Any = None
        if self._decide is not None:
            sampled = recording = self._decide(parent, trace_id)
            if not sampled:
                # Nothing of it is recorded and its children learn the decision from its
                # flags alone: one non-recording span stands for all of a trace's here.
                known = self._unsampled.get(trace_id)
                if known is not None:
                    return known
            trace_state = parent[4] if parent is not None else None
        else:
            context = (
                None if parent is None else ot.set_span_in_context(ot.NonRecordingSpan(parent))
            )
            result = self._sampler.should_sample(context, trace_id, name, kind, None, links)
            sampled = result.decision.is_sampled()
            recording = result.decision.is_recording()
            trace_state, attributes = result.trace_state, result.attributes
        # SpanContext(trace_id, span_id, False, flags, state) without its checks: both
        # ids are valid (a valid parent's, or the id generator's, never zero).
        span_context = _new_context(
            ot.SpanContext,
            (
                trace_id,
                (getrandbits(64) if self._random_ids else 0) or self._span_id(),
                False,
                _TRACE_FLAGS[(1 if sampled else 0) | random],
                _NO_STATE if trace_state is None else trace_state,
                True,
            ),
        )
        span = Span(self if recording else None, span_context, parent, name, kind, links)
        if recording and attributes:
            span.attributes.update(attributes)
        elif not sampled and self._decide is not None:
            if len(self._unsampled) >= _MAX_UNSAMPLED:
                self._unsampled.pop(next(iter(self._unsampled)))
            self._unsampled[trace_id] = span
        return span
