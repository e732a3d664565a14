"""OTLP/HTTP span export whose protobuf body is written here, byte by byte.

Rule: the wire format is OTLP's (opentelemetry-proto's `ExportTraceServiceRequest`);
only the way to it differs. The SDK's exporter builds one protobuf message object per
span, attribute and value (about 40 µs a span, in Python, on the exporter's thread,
which takes the GIL from the worker's event loop); writing the bytes directly costs a
fraction of that. Everything else — endpoint, headers, TLS, compression, timeout,
retries, all read from the OTEL_* variables — is the SDK exporter's own.
`encode_spans` is the plain twin's equal: tests/unit/test_otlp_encoding.py decodes both
with opentelemetry-proto and compares them.

Imported only when tracing is on (streams.telemetry.configure_tracing).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

__all__ = ["LeanOTLPSpanExporter", "encode_spans"]

_log = logging.getLogger(__name__)
_Q = struct.Struct("<Q").pack
_D = struct.Struct("<d").pack
_I = struct.Struct("<I").pack
# Span.flags: the SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE bit (0x100), and IS_REMOTE (0x200).
_FLAGS_LOCAL = b"\x35" + _I(0x100)  # Link.flags (field 6, fixed32)
_FLAGS_REMOTE = b"\x35" + _I(0x300)
_FLAGS_OF_LOCAL = b"\x85\x01" + _I(0x100)  # Span.flags (field 16, fixed32)
_FLAGS_OF_REMOTE = b"\x85\x01" + _I(0x300)
# The API's SpanKind (0 internal ... 4 consumer) as OTLP numbers it (1 ... 5): field 6.
_KIND = {0: b"\x30\x01", 1: b"\x30\x02", 2: b"\x30\x03", 3: b"\x30\x04", 4: b"\x30\x05"}


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_varint(n) for n in range(16384)]


def _len(n: int) -> bytes:
    return _SMALL[n] if n < 16384 else _varint(n)


def _field(tag: bytes, body: bytes) -> bytes:
    return tag + _len(len(body)) + body


def _str(tag: bytes, text: str) -> bytes:
    if not text:
        return b""
    data = text.encode()
    return tag + _len(len(data)) + data


def _any(value: Any) -> bytes:
    """An AnyValue's body."""
    if isinstance(value, str):
        data = value.encode()
        return b"\x0a" + _len(len(data)) + data
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _D(value)
    if isinstance(value, bytes):
        return b"\x3a" + _len(len(value)) + value
    if value is None:
        return b""
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_field(b"\x0a", _kv(str(k), v)) for k, v in value.items()))
    raise TypeError(f"an attribute value of type {type(value).__name__} has no OTLP form")


# Encoded KeyValues of string attributes (names and most values repeat: the model, the
# system, a session's id over its turn's spans), and of the keys alone. Bounded.
_KV: dict[tuple[str, str], bytes] = {}
_KEYS: dict[str, bytes] = {}
_MAX_CACHED = 8192


def _kv(key: str, value: Any) -> bytes:
    head = _KEYS.get(key)
    if head is None:
        head = _str(b"\x0a", key)
        if len(_KEYS) < _MAX_CACHED:
            _KEYS[key] = head
    val = _any(value)
    return head + b"\x12" + _len(len(val)) + val


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    out = []
    cache = _KV
    for key, value in attributes.items():
        if type(value) is str:
            field = cache.get((key, value))
            if field is None:
                kv = _kv(key, value)
                field = tag + _len(len(kv)) + kv
                if len(cache) >= _MAX_CACHED:
                    cache.clear()
                cache[key, value] = field
            out.append(field)
            continue
        try:
            kv = _kv(key, value)
        except TypeError as exc:  # the SDK's encoder logs and skips such a value too
            _log.error("span attribute %s not encoded: %s", key, exc)
            continue
        out.append(tag + _len(len(kv)) + kv)
    return b"".join(out)


def _state(trace_state: Any) -> str:
    if not trace_state:
        return ""
    return ",".join(f"{k}={v}" for k, v in trace_state.items())


def _status(status: Any) -> bytes:
    code = status.status_code.value
    body = _str(b"\x12", status.description or "") + (b"\x18" + _varint(code) if code else b"")
    return b"\x7a" + _len(len(body)) + body


def _lean_span(src: Any, end_ns: int) -> bytes:
    """A span of streams._spans, read from its own fields: no events, nothing dropped."""
    ctx = src.context
    parent = src.parent
    name = src.name.encode()
    parts = [
        b"\x0a\x10",
        ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        ctx.span_id.to_bytes(8, "big"),
    ]
    if ctx.trace_state:
        parts.append(_str(b"\x1a", _state(ctx.trace_state)))
    if parent is not None:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    parts += (
        b"\x2a",
        _len(len(name)),
        name,
        _KIND[src.kind.value],
        b"\x39",
        _Q(src.start_ns),
        b"\x41",
        _Q(end_ns),
        _attributes(b"\x4a", src.attributes),
    )
    for link in src.links:
        parts.append(_link(link))
    parts += (
        _status(src.status),
        _FLAGS_OF_REMOTE if parent is not None and parent.is_remote else _FLAGS_OF_LOCAL,
    )
    return b"".join(parts)


def _link(link: Any) -> bytes:
    lctx = link.context
    body = (
        b"\x0a\x10"
        + lctx.trace_id.to_bytes(16, "big")
        + b"\x12\x08"
        + lctx.span_id.to_bytes(8, "big")
        + _attributes(b"\x22", link.attributes)
        + (_FLAGS_REMOTE if lctx.is_remote else _FLAGS_LOCAL)
    )
    return _field(b"\x6a", body)


def _span(span: Any) -> bytes:
    lean = getattr(span, "lean", None)
    if lean is not None:
        return _lean_span(lean, span.end_time)
    ctx = span.context
    parent = span.parent
    parts = [
        b"\x0a\x10",
        ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        ctx.span_id.to_bytes(8, "big"),
        _str(b"\x1a", _state(ctx.trace_state)),
    ]
    if parent is not None:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
    parts += (
        _str(b"\x2a", span.name),
        _KIND[span.kind.value],
        b"\x39",
        _Q(span.start_time or 0),
        b"\x41",
        _Q(span.end_time or 0),
        _attributes(b"\x4a", span.attributes),
    )
    if span.dropped_attributes:
        parts += (b"\x50", _varint(span.dropped_attributes))
    for event in span.events:
        body = (
            b"\x09"
            + _Q(event.timestamp)
            + _str(b"\x12", event.name)
            + _attributes(b"\x1a", event.attributes)
        )
        parts.append(_field(b"\x5a", body))
    if span.dropped_events:
        parts += (b"\x60", _varint(span.dropped_events))
    for link in span.links:
        parts.append(_link(link))
    if span.dropped_links:
        parts += (b"\x70", _varint(span.dropped_links))
    if span.status is not None:
        parts.append(_status(span.status))
    parts.append(_FLAGS_OF_REMOTE if parent is not None and parent.is_remote else _FLAGS_OF_LOCAL)
    return b"".join(parts)


def _scope(scope: Any) -> bytes:
    if scope is None:
        return b""
    return (
        _str(b"\x0a", scope.name)
        + _str(b"\x12", scope.version or "")
        + _attributes(b"\x1a", scope.attributes)
    )


def encode_spans(spans: Sequence[Any]) -> bytes:
    """The serialized ExportTraceServiceRequest of `spans` (SDK ReadableSpans), grouped
    by resource and instrumentation scope as the SDK's encoder groups them."""
    # Grouped as the SDK's encoder groups them, by equal resource, without hashing a
    # Resource per span (its hash serializes its attributes to JSON): each distinct
    # resource object is compared once with the few groups there are.
    groups: list[tuple[Any, dict[Any, list[bytes]]]] = []
    by_id: dict[int, dict[Any, list[bytes]]] = {}
    for span in spans:
        encoded = _span(span)
        resource = span.resource
        scopes = by_id.get(id(resource))
        if scopes is None:
            for known, known_scopes in groups:
                if known == resource:
                    scopes = known_scopes
                    break
            else:
                scopes = {}
                groups.append((resource, scopes))
            by_id[id(resource)] = scopes
        scopes.setdefault(span.instrumentation_scope or None, []).append(
            b"\x12" + _len(len(encoded)) + encoded
        )
    out = []
    for resource, scopes in groups:
        body = [_field(b"\x0a", _attributes(b"\x0a", resource.attributes))]
        for scope, encoded_spans in scopes.items():
            scope_body = _field(b"\x0a", _scope(scope)) + b"".join(encoded_spans)
            if scope is not None and scope.schema_url:
                scope_body += _str(b"\x1a", scope.schema_url)
            body.append(_field(b"\x12", scope_body))
        body.append(_str(b"\x1a", resource.schema_url))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (its configuration, transport and retries) with the
    body encoded by `encode_spans`. Should this SDK's exporter lack the seam used here
    (its HTTP client), every batch goes through the SDK's own export unchanged."""

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        client = getattr(self, "_client", None)
        limit = getattr(self, "_max_request_size", 0) or 0
        if client is None or getattr(self, "_shutdown", True):
            return super().export(spans)
        try:
            data = encode_spans(spans)
        except Exception:  # the SDK's encoder logs its own failure
            return super().export(spans)
        if limit > 0 and len(data) > limit:
            return super().export(spans)  # it drops the batch, and says so
        result = client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE
