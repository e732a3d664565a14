"""Spans handed to the exporter as they are (streams._spans with an `emit`), encoded by
streams._otlp.encode_lean: decoded, equal to what the SDK's encoder writes for the same
spans as ReadableSpans; and the trace headers encoded once per traceparent."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace as ot
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from streams._otlp import LeanOTLPSpanExporter, encode_lean, encode_spans, framed_span
from streams._spans import SCOPE, Recorder, Span, queue_emit
from streams.tracing import TraceParent, headers_with

REMOTE = ot.SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=ot.TraceFlags(1),
    trace_state=ot.TraceState([("congo", "t61rcWkgMzE")]),
)
PLAIN = ot.SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=ot.TraceFlags(1))


def _emitting(sampler: Any = None) -> tuple[Recorder, list[Span], Resource]:
    resource = Resource.create({"service.name": "lean", "k": 3}, schema_url="https://x/1")
    provider = TracerProvider(sampler=sampler or ParentBased(ALWAYS_ON), resource=resource)
    emitted: list[Span] = []
    return Recorder(provider, None, emitted.append), emitted, resource


def _turn(recorder: Recorder) -> None:
    """Spans like a turn's: remote parents with and without trace state, a root, links,
    each attribute type, the same string attribute on a span and on a link."""
    first = recorder.start("process SendMessage", REMOTE, ot.SpanKind.CONSUMER)
    first.attributes.update(
        {"turnlog.session_id": "s1", "messaging.kafka.offset": 9, "why": "cause"}
    )
    first.set_ok()
    call = recorder.start(
        "chat m", first.context, ot.SpanKind.CLIENT, (ot.Link(PLAIN, {"why": "cause"}),)
    )
    call.attributes.update(
        {
            "gen_ai.usage.input_tokens": 120,
            "big": 2**40,
            "neg": -3,
            "turnlog.cost_usd": 0.25,
            "gen_ai.response.finish_reasons": ("end_turn",),
            "ok": True,
        }
    )
    call.set_status(ot.Status(ot.StatusCode.ERROR, "overloaded"))
    plain = recorder.start("process CompleteLlmCall", PLAIN, ot.SpanKind.CONSUMER)
    root = recorder.start("process Tick", None)
    for span in (call, first, plain, root):
        span.end()


def _decoded(data: bytes) -> Any:
    return ExportTraceServiceRequest.FromString(data)


def test_emitted_spans_encode_as_the_sdk_encodes_their_readable_spans() -> None:
    recorder, emitted, resource = _emitting()
    _turn(recorder)
    _turn(recorder)  # the encoder's caches in use
    assert len(emitted) == 8 and all(type(s) is Span for s in emitted)
    readable = [s.readable(resource, SCOPE) for s in emitted]
    assert all(isinstance(s, ReadableSpan) for s in readable)
    expected = sdk_encode(readable)
    assert _decoded(encode_lean(emitted, resource, SCOPE)) == expected
    assert _decoded(encode_spans(readable)) == expected
    call = next(s for s in readable if s.name == "chat m")
    assert call.end_time is not None and call.start_time is not None
    assert call.start_time <= call.end_time


# Each way the lean encoder writes an attribute: strings around the one-byte length
# limits (and repeated: its per-key cache), keys whose values vary, a key too long for
# the fast paths, integers across varint sizes, floats, booleans, tuples.
LONG_KEY = "k" * 120
EDGE_ATTRIBUTES: list[dict[str, Any]] = [
    {"s": "", "t": "naïve ✓", "u": "x" * 100, "v": "y" * 125, "w": "z" * 126, "x": "é" * 70},
    {"turnlog.effect_id": "e1", "turnlog.seq": "1-3", "turnlog.session_id": "s" * 300},
    {LONG_KEY: "short", "a": 1, LONG_KEY + "i": 7, LONG_KEY + "f": 0.5},
    {"i0": 0, "i1": 127, "i2": 16383, "i3": 16384, "i4": 2**21 - 1, "i5": 2**21},
    {"i6": 2**28 - 1, "i7": 2**28, "i8": 2**62, "neg": -1, "nbig": -(2**40)},
    {"f": 0.0, "g": -1.5e-300, "b": True, "c": False, "one": 1},
    {"ts": ("end_turn",), "ti": (1,), "tb": (True,), "tm": ("a", 2), "e": ()},
]


def test_every_attribute_path_encodes_as_the_sdk_encodes_it() -> None:
    recorder, emitted, resource = _emitting()
    for _ in range(2):  # the second time from the encoder's caches
        for attributes in EDGE_ATTRIBUTES:
            span = recorder.start("edge", REMOTE, ot.SpanKind.CLIENT)
            span.attributes.update(attributes)
            span.end()
    readable = [s.readable(resource, SCOPE) for s in emitted]
    expected = sdk_encode(readable)
    assert _decoded(encode_lean(emitted, resource, SCOPE)) == expected
    assert _decoded(encode_lean(emitted, resource, SCOPE)) == expected  # caches warm
    assert _decoded(encode_spans(readable)) == expected


def test_only_sampled_spans_are_emitted() -> None:
    recorder, emitted, _ = _emitting(TraceIdRatioBased(0.5))
    kept = ot.SpanContext((5 << 64) | 7, 2, True, ot.TraceFlags(1))
    dropped = ot.SpanContext((5 << 64) | (1 << 63) | 7, 2, True, ot.TraceFlags(1))
    for parent in (kept, dropped):
        span = recorder.start("process SendMessage", parent)
        span.end()
    assert [s.context.trace_id for s in emitted] == [kept.trace_id]


class _Exporter(LeanOTLPSpanExporter):
    """The SDK exporter without its transport: what `export` would post, kept."""

    def __init__(self) -> None:
        super().__init__(endpoint="http://127.0.0.1:9/v1/traces")
        self.posted: list[bytes] = []
        self.by_sdk: list[list[Any]] = []
        outer = self

        class Client:
            def export(self, data: bytes) -> Any:
                outer.posted.append(data)
                return type("R", (), {"success": True})()

        self._client = Client()  # type: ignore[assignment]

    def _sdk_export(self, spans: Any) -> SpanExportResult:
        self.by_sdk.append(list(spans))
        return SpanExportResult.SUCCESS


def test_the_exporter_posts_emitted_spans_and_hands_the_sdk_readable_ones() -> None:
    recorder, emitted, resource = _emitting()
    _turn(recorder)
    exporter = _Exporter()
    exporter.lean(resource, SCOPE)
    assert exporter.export(emitted) is SpanExportResult.SUCCESS
    (posted,) = exporter.posted
    readable = [s.readable(resource, SCOPE) for s in emitted]
    assert _decoded(posted) == sdk_encode(readable)
    # A batch of ReadableSpans goes the ReadableSpan way.
    assert exporter.export(readable) is SpanExportResult.SUCCESS
    assert _decoded(exporter.posted[1]) == sdk_encode(readable)
    # Both mixed, or no HTTP client to post with: the SDK's export, with ReadableSpans.
    mixed = [readable[0], *emitted[1:]]
    assert exporter.export(mixed) is SpanExportResult.SUCCESS
    exporter._client = None  # type: ignore[assignment]
    assert exporter.export(emitted) is SpanExportResult.SUCCESS
    assert len(exporter.posted) == 2 and len(exporter.by_sdk) == 2
    for batch in exporter.by_sdk:
        assert all(isinstance(s, ReadableSpan) for s in batch)
        assert sdk_encode(batch) == sdk_encode(readable)


def test_spans_framed_when_they_end_are_posted_as_the_spans_would_be() -> None:
    resource = Resource.create({"service.name": "lean"})
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON), resource=resource)
    as_spans: list[Span] = []
    _turn(Recorder(provider, None, as_spans.append))
    framed: list[Any] = []
    _turn(Recorder(provider, None, framed.append, framed_span))
    assert all(type(f) is bytes for f in framed) and len(framed) == len(as_spans) == 4
    # The same spans but for their ids and times: each framed one is its span's bytes.
    assert [framed_span(s, s.end_ns) for s in as_spans] == [
        encode_lean([s], resource, SCOPE)[-len(framed_span(s, s.end_ns)) :] for s in as_spans
    ]
    exporter = _Exporter()
    assert exporter.lean(resource, SCOPE) is True  # it posts them itself
    assert exporter.export(framed) is SpanExportResult.SUCCESS
    (posted,) = exporter.posted
    decoded = _decoded(posted)
    names = [s.name for s in decoded.resource_spans[0].scope_spans[0].spans]
    assert names == [s.name for s in as_spans]
    again = [framed_span(s, s.end_ns) for s in as_spans]
    whole = encode_lean(as_spans, resource, SCOPE)
    assert encode_lean(again, resource, SCOPE) == whole
    assert encode_lean(again[:2] + as_spans[2:], resource, SCOPE) == whole
    # Over the request size limit: dropped, and said so, as the SDK's export drops it.
    exporter._max_request_size = 10
    assert exporter.export(framed) is SpanExportResult.FAILURE
    assert len(exporter.posted) == 1 and not exporter.by_sdk
    # Shut down: the SDK's export ignores the batch.
    exporter._shutdown = True
    assert exporter.export(framed) is SpanExportResult.SUCCESS
    assert exporter.by_sdk == [[]]


def test_the_queue_emit_feeds_the_batch_processor_as_its_own_emit_does() -> None:
    exported: list[Any] = []

    class Keep(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            exported.extend(spans)
            return SpanExportResult.SUCCESS

    # A batch never reached: the queue fills, and its oldest goes as the SDK's emit has it.
    processor = BatchSpanProcessor(Keep(), max_queue_size=4, max_export_batch_size=4)
    queue = processor._batch_processor  # type: ignore[attr-defined]
    queue._max_export_batch_size = 64  # (the SDK refuses it as an argument)
    emit = queue_emit(queue)
    assert emit is not None
    for item in (b"1", b"2", b"3", b"4", b"5"):
        emit(item)
    processor.force_flush()
    assert exported == [b"2", b"3", b"4", b"5"]
    processor.shutdown()
    emit(b"6")  # after shutdown: the processor's own emit drops it
    assert not queue._queue and exported == [b"2", b"3", b"4", b"5"]
    # A batch reached: the export thread is woken (its schedule delay is 5 s).
    exported.clear()
    processor = BatchSpanProcessor(Keep(), max_queue_size=8, max_export_batch_size=2)
    emit = queue_emit(processor._batch_processor)  # type: ignore[attr-defined]
    assert emit is not None
    emit(b"a")
    emit(b"b")
    deadline = time.monotonic() + 3
    while len(exported) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exported == [b"a", b"b"]
    processor.shutdown()
    assert queue_emit(object()) is None


def test_a_traceparents_headers_are_encoded_once_into_a_fresh_list() -> None:
    tp = TraceParent.of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=1")
    first = headers_with(tp, event_type="X")
    assert first == [
        ("event_type", b"X"),
        ("traceparent", tp.encode()),
        ("tracestate", b"a=1"),
    ]
    first.append(("turnlog.input.next", b"9"))
    assert headers_with(tp) == [("traceparent", tp.encode()), ("tracestate", b"a=1")]
    plain = str(tp)
    assert headers_with(plain) == [("traceparent", plain.encode())]
    assert headers_with(None, event_type="Y") == [("event_type", b"Y")]
