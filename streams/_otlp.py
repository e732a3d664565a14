"""OTLP/HTTP span export whose protobuf body is written here, byte by byte.

Rule: the wire format is OTLP's (opentelemetry-proto's `ExportTraceServiceRequest`);
only the way to it differs. The SDK's exporter builds one protobuf message object per
span, attribute and value (about 40 µs a span, in Python, on the exporter's thread,
which takes the GIL from the worker's event loop); writing the bytes directly costs a
fraction of that. Everything else — endpoint, headers, TLS, compression, timeout,
retries, all read from the OTEL_* variables — is the SDK exporter's own.
`encode_spans` is the plain twin's equal: tests/unit/test_otlp_encoding.py decodes both
with opentelemetry-proto and compares them.

The exporter also takes the spans of streams._spans (the batch processor's queue holds
them, not ReadableSpans): as their bytes, each encoded when it ended (`framed_span`:
the span's objects then die young, not after a wait in the queue that takes them
through the garbage collector's generations), or as they are. A batch of them shares
one resource and scope, whose bytes are written once (`encode_lean`); a ReadableSpan
is built from a span only should the SDK's own export be needed (never for bytes: they
are handed over only where this exporter posts them itself).

Imported only when tracing is on (streams.telemetry.configure_tracing).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import DEFAULT_TRACE_STATE as _NO_STATE

__all__ = ["LeanOTLPSpanExporter", "encode_lean", "encode_spans", "framed_span"]

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


def _varint_any(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_varint_any(n) for n in range(16384)]


def _varint(n: int) -> bytes:
    if n < 16384:
        return _SMALL[n]
    if n < 0x200000:  # offsets, token counts: three bytes
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    if n < 0x10000000:
        return bytes(
            ((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80, n >> 21)
        )
    return _varint_any(n)


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
    if isinstance(value, (tuple, list, Sequence)):  # the ABC checked last: it is slow
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_field(b"\x0a", _kv(str(k), v)) for k, v in value.items()))
    raise TypeError(f"an attribute value of type {type(value).__name__} has no OTLP form")


# Encoded KeyValues of string attributes by their field's tag (names and most values
# repeat: the model, the system, a session's id over its turn's spans), and of the keys
# alone. Bounded.
_KV: dict[bytes, dict[tuple[str, str], bytes]] = {}
_KEYS: dict[str, bytes] = {}
_MAX_CACHED = 8192
_MASK64 = 0xFFFFFFFFFFFFFFFF


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
    out: list[bytes] = []
    append = out.append
    cache = _KV.get(tag)
    if cache is None:
        cache = _KV[tag] = {}
    keys = _KEYS
    for key, value in attributes.items():
        kind = type(value)
        if kind is str:
            field = cache.get((key, value))
            if field is None:
                kv = _kv(key, value)
                field = tag + _len(len(kv)) + kv
                if len(cache) >= _MAX_CACHED:
                    cache.clear()
                cache[key, value] = field
            append(field)
            continue
        if kind is int and 0 <= value <= _MASK64:  # token counts, offsets, attempts
            head = keys.get(key)
            if head is not None:
                number = _SMALL[value] if value < 16384 else _varint(value)
                kv = head + b"\x12" + _SMALL[len(number) + 1] + b"\x18" + number
                append(tag + _len(len(kv)) + kv)
                continue
        if kind is float:  # costs
            head = keys.get(key)
            if head is not None:
                append(tag + _len(len(head) + 11) + head + b"\x12\x09\x21" + _D(value))
                continue
        try:
            kv = _kv(key, value)
        except TypeError as exc:  # the SDK's encoder logs and skips such a value too
            _log.error("span attribute %s not encoded: %s", key, exc)
            continue
        append(tag + _len(len(kv)) + kv)
    return b"".join(out)


def _state(trace_state: Any) -> str:
    if not trace_state:
        return ""
    return ",".join(f"{k}={v}" for k, v in trace_state.items())


def _status(status: Any) -> bytes:
    code = status.status_code.value
    body = _str(b"\x12", status.description or "") + (b"\x18" + _varint(code) if code else b"")
    return b"\x7a" + _len(len(body)) + body


# Encoded statuses by the Status object (streams._spans shares one per OK and unset).
_STATUSES: dict[int, tuple[Any, bytes]] = {}


def _status_of(status: Any) -> bytes:
    known = _STATUSES.get(id(status))
    if known is not None and known[0] is status:
        return known[1]
    encoded = _status(status)
    if len(_STATUSES) < 64:
        _STATUSES[id(status)] = (status, encoded)  # the object kept: its id stays its own
    return encoded


# (name, kind) -> the span's name and kind fields; trace id -> its field. Bounded.
_NAMES: dict[str, tuple[Any, bytes]] = {}
_TRACES: dict[int, bytes] = {}
# span id, the parent's span id field's tag, the parent's span id (big-endian, as OTLP's
# bytes have them); the start and end time fields.
_IDS = struct.Struct(">QHQ").pack
_TIMES = struct.Struct("<BQBQ").pack

# The lean spans' attributes, written with as few Python operations as the format
# allows (they are most of a span's bytes). By key: the KeyValue's key field with its
# value's tag, and the whole fields of the string values seen, for the keys whose values
# repeat (the session, the model, the system, a turn's id over its spans); the keys of
# ids new on every span are not cached. Short strings and small numbers take their
# lengths from tables. Bounded.
_HEADS: dict[str, tuple[bytes, int, dict[str, bytes] | None]] = {}
_VARYING = frozenset(
    {"turnlog.effect_id", "gen_ai.tool.call.id", "turnlog.seq", "turnlog.child_session_id"}
)
_MAX_VALUES = 4096  # per key
_FIELDS: dict[tuple[str, Any], bytes] = {}  # (key, tuple of strings) -> its field
_ONE = [bytes((n,)) for n in range(128)]
# A string of n < 126 bytes as an AnyValue: its length, the string tag, n.
_SHORT_STR = [bytes((n + 2, 0x0A, n)) for n in range(126)]
# An integer's varint of n bytes as an AnyValue: its length, the int tag.
_INT_HEAD = [bytes((n + 1, 0x18)) for n in range(11)]
_LONG_HEAD = 116  # with a value of 11 bytes at most, a field's length fits one byte


def _head(key: str) -> tuple[bytes, int, dict[str, bytes] | None]:
    """(the key's field and the value's tag, its length, the key's cache of fields); a
    key too long for the fast paths' one-byte lengths gets a length that sends its
    attributes the general way."""
    head = _str(b"\x0a", key) + b"\x12"
    out: tuple[bytes, int, dict[str, bytes] | None] = (
        head,
        len(head) if len(head) < _LONG_HEAD else 1024,
        None if key in _VARYING else {},
    )
    if len(_HEADS) < _MAX_CACHED:
        _HEADS[key] = out
    return out


def _lean_attribute(parts: list[bytes], key: str, value: Any) -> None:
    """One attribute of a lean span that the fast paths of `_lean_span` do not take."""
    field = _FIELDS.get((key, value)) if type(value) is tuple else None
    if field is None:
        try:
            kv = _kv(key, value)
        except TypeError as exc:  # the SDK's encoder logs and skips such a value too
            _log.error("span attribute %s not encoded: %s", key, exc)
            return
        field = b"\x4a" + _len(len(kv)) + kv
        if type(value) is tuple and all(type(v) is str for v in value):  # finish reasons
            if len(_FIELDS) >= _MAX_CACHED:
                _FIELDS.clear()
            _FIELDS[key, value] = field
    parts.append(field)


def framed_span(src: Any, end_ns: int, framed: bool = True) -> bytes:
    """An ended span of streams._spans (at `end_ns`) as its field of a ScopeSpans (tag,
    length, Span; not `framed`: the Span alone): what `encode_lean` writes for it,
    written when it ends. Read from the span's own fields: no events, nothing dropped;
    its SpanContexts read as the tuples they are: (trace id, span id, is remote, flags,
    trace state, is valid)."""
    ctx = src.context
    parent = src.parent
    trace_id = ctx[0]
    head = _TRACES.get(trace_id)
    if head is None:
        if len(_TRACES) >= _MAX_CACHED:
            _TRACES.clear()
        head = _TRACES[trace_id] = b"\x0a\x10" + trace_id.to_bytes(16, "big") + b"\x12\x08"
    state = ctx[4]
    if state is _NO_STATE or not state:
        state = None
    if parent is not None and state is None:
        ids = _IDS(ctx[1], 0x2208, parent[1])
    else:
        ids = ctx[1].to_bytes(8, "big")
        if state is not None:
            ids += _str(b"\x1a", _state(state))
        if parent is not None:
            ids += b"\x22\x08" + parent[1].to_bytes(8, "big")
    kind = src.kind
    known_name = _NAMES.get(src.name)
    if known_name is not None and known_name[0] is kind:
        named = known_name[1]
    else:
        name = src.name.encode()
        named = b"\x2a" + _len(len(name)) + name + _KIND[kind.value]
        if len(_NAMES) >= _MAX_CACHED:
            _NAMES.clear()
        _NAMES[src.name] = (kind, named)
    parts = [head, ids, named, _TIMES(0x39, src.start_ns, 0x41, end_ns)]
    append, extend = parts.append, parts.extend
    heads, one = _HEADS, _ONE
    for key, value in src.attributes.items():
        head, size, cache = heads.get(key) or _head(key)
        of = type(value)
        if of is str:
            if cache is not None:
                field = cache.get(value)
                if field is not None:
                    append(field)
                    continue
            data = value.encode()
            size += len(data) + 3
            if size < 128:  # the string is shorter than 126 bytes
                if cache is None:
                    extend((b"\x4a", one[size], head, _SHORT_STR[len(data)], data))
                    continue
                field = b"\x4a" + one[size] + head + _SHORT_STR[len(data)] + data
                if len(cache) >= _MAX_VALUES:
                    cache.clear()
                cache[value] = field
                append(field)
                continue
        elif of is int and size < _LONG_HEAD and 0 <= value <= _MASK64:  # counts, offsets
            number = _SMALL[value] if value < 16384 else _varint(value)
            extend((b"\x4a", one[size + len(number) + 2], head, _INT_HEAD[len(number)], number))
            continue
        elif of is float and size < _LONG_HEAD:  # costs
            extend((b"\x4a", one[size + 10], head, b"\x09\x21", _D(value)))
            continue
        _lean_attribute(parts, key, value)
    if src.links:
        extend([_link(link) for link in src.links])
    status = src.status
    known = _STATUSES.get(id(status))
    append(known[1] if known is not None and known[0] is status else _status_of(status))
    append(_FLAGS_OF_REMOTE if parent is not None and parent[2] else _FLAGS_OF_LOCAL)
    body = b"".join(parts)
    if not framed:
        return body
    size = len(body)
    return b"\x12" + (_SMALL[size] if size < 16384 else _varint(size)) + body


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


class _Frame:
    """The bytes of a request around its spans, for one resource and scope."""

    def __init__(self, resource: Any, scope: Any) -> None:
        self.resource = resource
        self.scope = scope
        self.resource_head = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
        self.scope_head = _field(b"\x0a", _scope(scope)) if scope is not None else b""
        self.scope_tail = _str(b"\x1a", scope.schema_url) if scope is not None else b""
        self.resource_tail = _str(b"\x1a", resource.schema_url)


_FRAMES: dict[tuple[int, int], _Frame] = {}


def _lean_span(src: Any, end_ns: int) -> bytes:
    """The Span message of an ended span of streams._spans."""
    return framed_span(src, end_ns, False)


def encode_lean(spans: Sequence[Any], resource: Any, scope: Any) -> bytes:
    """The serialized ExportTraceServiceRequest of `spans` (ended spans of
    streams._spans, or their `framed_span` bytes), all of `resource` and
    instrumentation `scope`: the same as `encode_spans` of their ReadableSpans."""
    frame = _FRAMES.get((id(resource), id(scope)))
    if frame is None or frame.resource is not resource or frame.scope is not scope:
        frame = _FRAMES[id(resource), id(scope)] = _Frame(resource, scope)
        if len(_FRAMES) > 16:
            _FRAMES.pop(next(iter(_FRAMES)))
    out = [frame.scope_head]
    append = out.append
    for span in spans:  # framed when it ended, or now
        append(span if type(span) is bytes else framed_span(span, span.end_ns))
    append(frame.scope_tail)
    scope_spans = b"".join(out)
    body = (
        frame.resource_head
        + b"\x12"
        + _varint(len(scope_spans))
        + scope_spans
        + frame.resource_tail
    )
    return b"\x0a" + _varint(len(body)) + body


class LeanOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter (its configuration, transport and retries) with the
    body encoded by `encode_spans`. Should this SDK's exporter lack the seam used here
    (its HTTP client), every batch goes through the SDK's own export unchanged.

    Given `lean(resource, scope)`, it also takes the spans of streams._spans as they
    are, all of that resource and scope (a batch may mix them with ReadableSpans), and,
    when `lean` says so, their `framed_span` bytes."""

    _lean: tuple[Any, Any] | None = None

    def lean(self, resource: Any, scope: Any) -> bool:
        """Take spans of streams._spans of `resource` and `scope`; whether they may come
        as their `framed_span` bytes (only where this exporter posts them itself: the
        SDK's own export has no use for bytes)."""
        self._lean = (resource, scope)
        return getattr(self, "_client", None) is not None

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        lean = self._lean
        if lean is not None and spans and not isinstance(spans[0], ReadableSpan):
            # A batch that mixes both fails to encode here: the SDK's export takes it.
            return self._post(spans, lambda: encode_lean(spans, *lean))
        return self._post(spans, lambda: encode_spans(spans))

    def _post(self, spans: Sequence[Any], encode: Callable[[], bytes]) -> SpanExportResult:
        client = getattr(self, "_client", None)
        limit = getattr(self, "_max_request_size", 0) or 0
        if client is None or getattr(self, "_shutdown", True):
            return self._sdk_export(self._readable(spans))
        try:
            data = encode()
        except Exception:  # the SDK's encoder logs its own failure
            return self._sdk_export(self._readable(spans))
        if limit > 0 and len(data) > limit:
            if any(type(s) is bytes for s in spans):  # as the SDK's export drops a batch
                _log.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size "
                    "%d bytes.",
                    len(data),
                    limit,
                )
                return SpanExportResult.FAILURE
            return self._sdk_export(self._readable(spans))  # it drops the batch, and says so
        result = client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE

    def _sdk_export(self, spans: Sequence[Any]) -> SpanExportResult:
        return super().export(spans)

    def _readable(self, spans: Sequence[Any]) -> Sequence[Any]:
        """The batch as ReadableSpans, for the SDK's export. Spans handed over as bytes
        have none; they reach here only once the exporter is shut down (the SDK's export
        then ignores the batch) or should their framing have failed (never: it is a
        join)."""
        lean = self._lean
        if lean is None:
            return spans
        return [
            s if isinstance(s, ReadableSpan) else s.readable(*lean)
            for s in spans
            if type(s) is not bytes
        ]
