"""streams._otlp writes the OTLP body the SDK's encoder would: both decoded and compared.

The spans are real SDK spans (a TracerProvider whose processor keeps what ends), plus
ReadableSpans as streams._spans builds them; every field the encoder writes is covered:
parents local and remote, links, events, statuses, trace state, each attribute type,
dropped counts, several resources and scopes.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace as ot
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from streams._otlp import encode_spans
from streams._spans import Recorder, compile_sampler

REMOTE = ot.SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736,
    0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=ot.TraceFlags(1),
    trace_state=ot.TraceState([("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7")]),
)

ATTRIBUTES: list[dict[str, Any]] = [
    {},
    {"s": "text", "empty": "", "unicode": "naïve ✓"},
    {"t": True, "f": False},
    {"i": 42, "zero": 0, "neg": -7, "big": 2**62},
    {"x": 0.5, "nx": -1.25e-9, "zx": 0.0},
    {"ss": ("a", "b"), "is": (1, -2), "bs": (True,), "fs": (0.5,), "none": ()},
]


def _sdk_spans(limits: SpanLimits | None = None) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "enc", "k": 3}, schema_url="https://x/1"),
        span_limits=limits,
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("turnlog", "1.2", schema_url="https://s/2")
    other = provider.get_tracer("other")
    remote = ot.set_span_in_context(ot.NonRecordingSpan(REMOTE))
    for i, attrs in enumerate(ATTRIBUTES):
        kind = list(ot.SpanKind)[i % 5]
        root = tracer.start_span(f"root {i}", kind=kind, attributes=attrs)
        child = tracer.start_span(
            "child",
            context=ot.set_span_in_context(root),
            links=(ot.Link(REMOTE, {"why": "cause"}), ot.Link(root.get_span_context())),
        )
        child.add_event("happened", {"n": i})
        child.set_status(ot.Status(ot.StatusCode.ERROR, "it broke"))
        child.end()
        root.set_status(ot.Status(ot.StatusCode.OK))
        root.end()
        remote_child = other.start_span("from afar", context=remote)
        remote_child.end()
    return list(exporter.get_finished_spans())


def _decoded(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


def test_sdk_spans_encode_as_the_sdk_encodes_them() -> None:
    spans = _sdk_spans()
    assert len(spans) == 3 * len(ATTRIBUTES)
    assert _decoded(encode_spans(spans)) == sdk_encode(spans)


def test_dropped_attributes_events_and_links_are_counted_alike() -> None:
    spans = _sdk_spans(SpanLimits(max_span_attributes=1, max_events=0, max_links=1))
    assert any(s.dropped_attributes for s in spans)
    assert any(s.dropped_events for s in spans) and any(s.dropped_links for s in spans)
    assert _decoded(encode_spans(spans)) == sdk_encode(spans)


def test_spans_of_several_resources_and_no_scope_group_alike() -> None:
    spans = [
        ReadableSpan(
            name=f"s{i}",
            context=ot.SpanContext(i + 1, i + 1, is_remote=False, trace_flags=ot.TraceFlags(1)),
            parent=REMOTE if i % 2 else None,
            resource=Resource.create({"r": i % 3}),
            attributes={"a": i},
            instrumentation_scope=None if i % 4 == 0 else InstrumentationScope(f"sc{i % 2}"),
            start_time=1_700_000_000_000_000_000 + i,
            end_time=1_700_000_000_000_000_100 + i,
        )
        for i in range(12)
    ]
    assert _decoded(encode_spans(spans)) == sdk_encode(spans)


def test_an_attribute_of_no_otlp_type_is_skipped_as_the_sdk_skips_it() -> None:
    span = ReadableSpan(
        name="odd",
        context=ot.SpanContext(1, 2, is_remote=False, trace_flags=ot.TraceFlags(1)),
        resource=Resource.create({}),
        attributes={"ok": 1, "odd": object()},
        start_time=1,
        end_time=2,
    )
    mine = _decoded(encode_spans([span]))
    assert [kv.key for kv in mine.resource_spans[0].scope_spans[0].spans[0].attributes] == ["ok"]
    assert mine == sdk_encode([span])


def _recorder(sampler: Any) -> tuple[Recorder, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, resource=Resource.create({"service.name": "r"}))
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    return Recorder(provider, processor), exporter


def test_recorded_spans_reach_the_processor_ended_and_encode_alike() -> None:
    recorder, exporter = _recorder(ParentBased(ALWAYS_ON))
    root = recorder.start("process SendMessage", REMOTE, ot.SpanKind.CONSUMER)
    root.set_attributes({"turnlog.session_id": "s1", "messaging.kafka.offset": 9})
    root.set_ok()
    root.end()
    root.end()  # once
    call = recorder.start("chat m", root.context, ot.SpanKind.CLIENT, (ot.Link(REMOTE),))
    call.set_attribute("gen_ai.usage.input_tokens", 12)
    call.set_status(ot.Status(ot.StatusCode.ERROR, "overloaded"))
    call.end()
    (got_root, got_call) = exporter.get_finished_spans()
    assert got_root.parent == REMOTE and got_root.context.trace_id == REMOTE.trace_id
    assert got_root.context.trace_state == REMOTE.trace_state
    assert dict(got_root.attributes or {}) == {
        "turnlog.session_id": "s1",
        "messaging.kafka.offset": 9,
    }
    assert got_root.status.status_code is ot.StatusCode.OK
    assert got_call.parent == root.context and got_call.links[0].context == REMOTE
    assert got_call.status.description == "overloaded"
    assert got_call.start_time is not None and got_call.end_time is not None
    assert got_call.start_time <= got_call.end_time
    assert _decoded(encode_spans([got_root, got_call])) == sdk_encode([got_root, got_call])


@pytest.mark.parametrize(
    ("sampler", "parent", "sampled"),
    [
        (ALWAYS_ON, None, True),
        (ALWAYS_OFF, None, False),
        (ParentBased(ALWAYS_ON), REMOTE, True),
        (
            ParentBased(ALWAYS_ON),
            ot.SpanContext(1, 2, is_remote=True, trace_flags=ot.TraceFlags(0)),
            False,
        ),
    ],
)
def test_the_providers_sampler_decides_and_an_unsampled_span_records_nothing(
    sampler: Any, parent: ot.SpanContext | None, sampled: bool
) -> None:
    recorder, exporter = _recorder(sampler)
    span = recorder.start("process SendMessage", parent)
    span.set_attribute("a", 1)
    span.end()
    assert span.context.trace_flags.sampled is sampled
    assert span.is_recording() is False
    assert span.context.is_valid and (parent is None or span.context.trace_id == parent.trace_id)
    assert len(exporter.get_finished_spans()) == (1 if sampled else 0)
    if not sampled:
        assert span.attributes == {}


SAMPLERS = [
    ALWAYS_ON,
    ALWAYS_OFF,
    TraceIdRatioBased(0.3),
    ParentBased(ALWAYS_ON),
    ParentBased(ALWAYS_OFF),
    ParentBasedTraceIdRatio(0.1),
    ParentBased(
        TraceIdRatioBased(0.5),
        remote_parent_sampled=ALWAYS_OFF,
        remote_parent_not_sampled=ALWAYS_ON,
        local_parent_sampled=TraceIdRatioBased(0.2),
        local_parent_not_sampled=ALWAYS_ON,
    ),
]
PARENTS = [
    None,
    *(
        ot.SpanContext(7, 9, is_remote=remote, trace_flags=ot.TraceFlags(flags))
        for remote in (True, False)
        for flags in (0, 1)
    ),
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.get_description())
def test_the_compiled_decision_of_each_sdk_sampler_is_the_samplers_own(sampler: Any) -> None:
    decide = compile_sampler(sampler)
    assert decide is not None
    for parent in PARENTS:
        context = None if parent is None else ot.set_span_in_context(ot.NonRecordingSpan(parent))
        for i in range(200):
            trace_id = (i * 0x9E3779B97F4A7C15 << 17) % (1 << 128) or 1
            expected = sampler.should_sample(context, trace_id, "n").decision.is_sampled()
            assert decide(parent, trace_id) is expected, (parent, hex(trace_id))


class _Custom(Sampler):
    """Samples every span and marks it: a sampler the Recorder must ask."""

    def should_sample(self, parent_context: Any, trace_id: int, *args: Any, **kw: Any) -> Any:
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampled.by": "custom"})

    def get_description(self) -> str:
        return "custom"


def test_any_other_sampler_is_asked_and_its_attributes_kept() -> None:
    assert compile_sampler(_Custom()) is None
    assert compile_sampler(ParentBased(_Custom())) is None
    recorder, exporter = _recorder(ParentBased(_Custom()))
    recorder.start("root", None).end()
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {"sampled.by": "custom"}


def test_the_unsampled_spans_of_a_trace_are_one_context_and_reach_nothing() -> None:
    recorder, exporter = _recorder(TraceIdRatioBased(0.5))
    # trace ids whose low 64 bits fall above and below the ratio's bound
    dropped = ot.SpanContext((5 << 64) | (1 << 63) | 7, 2, True, ot.TraceFlags(1))
    kept = ot.SpanContext((5 << 64) | 7, 2, True, ot.TraceFlags(1))
    first = recorder.start("process SendMessage", dropped)
    again = recorder.start("chat m", first.context)
    assert again is first and not first.context.trace_flags.sampled
    assert first.context.trace_id == dropped.trace_id and first.context.span_id != 2
    a, b = recorder.start("process SendMessage", kept), recorder.start("chat m", kept)
    assert a.context.span_id != b.context.span_id and a.context.trace_flags.sampled
    for span in (first, again, a, b):
        span.end()
    assert len(exporter.get_finished_spans()) == 2
