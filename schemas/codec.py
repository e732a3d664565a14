"""The wire codec of turnlog: Avro single-object encoding, and a canonical JSON form.

The rule: every message on a turnlog topic is `C3 01` + the 8-byte CRC-64-AVRO fingerprint
of its writer schema's parsing canonical form (little-endian, as the Avro spec and the Java
implementation write it) + the Avro binary body. Messages are self-describing, so no
schema registry is needed.

Writing always uses the current schema set (`schemas/avro/`). Reading looks the writer
schema up by fingerprint among ALL shipped sets (current and every `schemas/released/*`)
and resolves it into the current reader schema, so an old producer keeps working. A
message written with the current schema takes a generated fast reader (`_fastread`); one
from an older schema, or one the fast reader refuses, takes fastavro, the reference. Bytes
that are not a turnlog record of the expected envelope (bad magic, unknown fingerprint,
truncated, corrupt or trailing bytes, a value the dataclass rejects) raise
`agents.errors.DecodeError` carrying the fingerprint, never a bare fastavro, struct or
InvalidRecord exception. A dataclass that cannot be written (an int beyond 64 bits, a
field of the wrong type) raises `agents.errors.InvalidRecord`.

The JSON form (`event_to_dict`, `canonical_event_json`) is for the audit log's canonical
content, `replay --export` and bug reports: a payload is tagged by record name
(`{"type": "LlmCallCompleted", ...}`), datetimes are ISO-8601 UTC with microseconds.

Everything (schemas, fingerprints, converters) is prepared once, at import.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate

from agents.errors import DecodeError, InvalidRecord
from agents.events import AuditCheckpoint, Event, Request, Snapshot, TokenDelta
from schemas._convert import Converters, build_converters
from schemas._fastread import Reader, build_readers
from schemas.loader import ENVELOPES, SchemaSet, all_sets

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "canonical_event_json",
    "canonical_request_json",
    "current_fingerprint",
    "current_schema",
    "decode_checkpoint",
    "decode_snapshot",
    "decode_delta",
    "decode_event",
    "decode_request",
    "encode_checkpoint",
    "encode_snapshot",
    "encode_delta",
    "encode_event",
    "encode_request",
    "event_from_dict",
    "event_to_dict",
    "known_fingerprints",
    "peek_fingerprint",
    "request_from_dict",
    "request_to_dict",
    "schema_fingerprint",
]

MAGIC: Final = b"\xc3\x01"
HEADER_SIZE: Final = 10  # magic (2) + fingerprint (8)


def _parse(schema: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_schema(schema)
    assert isinstance(parsed, dict)  # an envelope is a record
    return parsed


def schema_fingerprint(schema: dict[str, Any]) -> str:
    """CRC-64-AVRO fingerprint (hex of the 8 little-endian bytes) of a standalone schema."""
    return _fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")


@dataclass(frozen=True, slots=True)
class _Writer:
    """A shipped writer schema, found by its fingerprint."""

    envelope: str
    version: str
    fingerprint: str
    schema: dict[str, Any]  # parsed writer schema
    reader: dict[str, Any] | None  # parsed current schema; None when it IS the current one


def _register(
    schema_set: SchemaSet,
    writers: dict[bytes, _Writer],
    current: dict[str, dict[str, Any]],
    is_current: bool = False,
) -> list[bytes]:
    """Make `schema_set`'s envelopes readable by fingerprint; returns the new keys. First
    come wins: two sets with one fingerprint differ at most in docs and defaults, which
    only a READER uses, and the reader is always the current set."""
    added = []
    for name, schema in schema_set.envelopes.items():
        key = bytes.fromhex(schema_fingerprint(schema))
        if key in writers:
            continue
        writers[key] = _Writer(
            envelope=name,
            version=schema_set.version,
            fingerprint=key.hex(),
            schema=current[name] if is_current else _parse(schema),
            reader=None if is_current else current[name],
        )
        added.append(key)
    return added


def _prepare() -> tuple[
    SchemaSet, dict[str, dict[str, Any]], dict[str, bytes], dict[bytes, _Writer]
]:
    current, *released = all_sets()
    parsed = {name: _parse(schema) for name, schema in current.envelopes.items()}
    headers = {
        name: MAGIC + bytes.fromhex(schema_fingerprint(schema))
        for name, schema in current.envelopes.items()
    }
    writers: dict[bytes, _Writer] = {}
    _register(current, writers, parsed, is_current=True)
    for schema_set in released:
        _register(schema_set, writers, parsed)
    return current, parsed, headers, writers


_CURRENT_SET, _PARSED, _HEADERS, _WRITERS = _prepare()
_CONV: Converters = build_converters(_CURRENT_SET.envelopes)

_TO_AVRO = _CONV.to_avro
_FROM_AVRO = _CONV.from_avro
_FAST: dict[str, Reader] = build_readers(_CURRENT_SET.envelopes)


def current_schema(envelope: str) -> dict[str, Any]:
    """The current standalone JSON schema of an envelope ("Request", "Event", ...)."""
    return _CURRENT_SET.envelopes[envelope]


def current_fingerprint(envelope: str) -> str:
    """Hex fingerprint of the schema this process writes for `envelope`."""
    return _HEADERS[envelope][2:].hex()


def known_fingerprints() -> dict[str, tuple[str, str]]:
    """Every fingerprint this process can read: hex -> (envelope, schema set version)."""
    return {w.fingerprint: (w.envelope, w.version) for w in _WRITERS.values()}


def peek_fingerprint(data: bytes) -> str | None:
    """The hex fingerprint in a message's header, or None when there is no valid header
    (for DLQ error headers: it says which producer schema an undecodable message used)."""
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        return None
    return bytes(data[2:HEADER_SIZE]).hex()


# --------------------------------------------------------------------------- describe


def _describe(envelope: str, value: Any) -> str:
    """Name the message for an error: works on a dataclass or a decoded dict, best effort."""

    def get(name: str) -> Any:
        if isinstance(value, dict):
            return value.get(name)
        return getattr(value, name, None)

    if envelope == "Event":
        return f"Event of session {get('session_id')!r} seq {get('seq')!r}"
    if envelope == "Request":
        return f"Request {get('request_id')!r} of session {get('session_id')!r}"
    if envelope == "TokenDelta":
        return (
            f"TokenDelta of session {get('session_id')!r} call {get('call_id')!r} "
            f"index {get('index')!r}"
        )
    if envelope == "Snapshot":
        return f"Snapshot of session {get('session_id')!r}"
    return f"AuditCheckpoint after audit row {get('audit_id')!r}"


# --------------------------------------------------------------------------- binary


def _encode(envelope: str, cls: type, value: Any) -> bytes:
    if type(value) is not cls:
        raise InvalidRecord(
            f"The {envelope} encoder takes {cls.__name__} records, got "
            f"{type(value).__name__}; each topic's envelope has its own encoder."
        )
    try:
        record = _TO_AVRO[envelope](value)
        out = io.BytesIO()
        out.write(_HEADERS[envelope])
        schemaless_writer(out, _PARSED[envelope], record)
    except Exception as exc:  # fastavro raises ValueError/TypeError/OverflowError/...
        raise InvalidRecord(
            f"The {_describe(envelope, value)} cannot be encoded with the {envelope} schema: "
            f"{type(exc).__name__}: {exc}."
        ) from exc
    return out.getvalue()


def _writer_of(envelope: str, data: bytes) -> _Writer:
    """Check the header; return the shipped writer schema its fingerprint names."""
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        raise DecodeError(
            f"These {len(data)} bytes are not a {envelope} message: an Avro single-object "
            f"message starts with C3 01 and an 8-byte schema fingerprint, these start with "
            f"{bytes(data[:HEADER_SIZE]).hex() or 'nothing'}."
        )
    key = data[2:HEADER_SIZE]
    writer = _WRITERS.get(key)
    if writer is None:
        fp = key.hex()
        raise DecodeError(
            f"Unknown schema fingerprint {fp}: no shipped {envelope} schema (current "
            f"{current_fingerprint(envelope)} or a released one) has it, so this message "
            f"comes from a producer whose schema this reader does not ship.",
            fingerprint=fp,
        )
    if writer.envelope != envelope:
        raise DecodeError(
            f"Schema fingerprint {writer.fingerprint} is a {writer.envelope} schema "
            f"(topic {ENVELOPES[writer.envelope]}), not a {envelope}: the message is on the "
            f"wrong topic or given to the wrong decoder.",
            fingerprint=writer.fingerprint,
        )
    return writer


def _decode_with_fastavro(envelope: str, data: bytes, writer: _Writer) -> Any:
    """The reference decoder: fastavro reads (resolving an old writer schema into the
    current one), then the generated converter builds the dataclasses. It is the only
    path for old writers, and it words every error."""
    stream = io.BytesIO(data)
    stream.seek(HEADER_SIZE)
    try:
        record = schemaless_reader(stream, writer.schema, writer.reader, return_record_name=True)
    except Exception as exc:  # any failure reading untrusted bytes is a DecodeError
        raise DecodeError(
            f"The {envelope} body ({len(data) - HEADER_SIZE} bytes, schema {writer.fingerprint}"
            f" of set {writer.version}) is truncated or corrupt: {type(exc).__name__}: {exc}.",
            fingerprint=writer.fingerprint,
        ) from exc
    if stream.tell() != len(data):
        raise DecodeError(
            f"The {envelope} message (schema {writer.fingerprint}) has "
            f"{len(data) - stream.tell()} bytes after its body; it is corrupt.",
            fingerprint=writer.fingerprint,
        )
    try:
        return _FROM_AVRO[envelope](record)
    except Exception as exc:  # InvalidRecord, or a TypeError/ValueError from a converter
        raise DecodeError(
            f"The {_describe(envelope, record)} (schema {writer.fingerprint}) decodes but "
            f"is not a valid record: {exc}",
            fingerprint=writer.fingerprint,
        ) from exc


def _decode(envelope: str, data: bytes) -> Any:
    if not isinstance(data, bytes):
        if not isinstance(data, (bytearray, memoryview)):
            raise DecodeError(
                f"A {envelope} must be decoded from bytes, got {type(data).__name__}."
            )
        data = bytes(data)
    writer = _writer_of(envelope, data)
    if writer.reader is None:
        # Fast path (current writer schema). On any failure fall through to the reference
        # decoder: it decides whether the bytes are bad, and says why.
        try:
            value, end = _FAST[envelope](data, HEADER_SIZE, len(data))
            if end == len(data):
                return value
        except Exception:  # noqa: BLE001, S110 - the reference path below reports it
            pass
    return _decode_with_fastavro(envelope, data, writer)


_R = TypeVar("_R")
_SNAKE = {"Request": "request", "Event": "event"}


def _decoder(envelope: str, cls: type[_R], doc: str) -> Callable[[bytes], _R]:
    """`_decode(envelope, ·)` with its hot case first: bytes (as Kafka gives them) of
    the current writer schema, recognised by one comparison of the header."""
    header, fast = _HEADERS[envelope], _FAST[envelope]

    def decode(data: bytes) -> _R:
        if type(data) is bytes and data[:HEADER_SIZE] == header:
            try:
                value, end = fast(data, HEADER_SIZE, len(data))
                if end == len(data):
                    result: _R = value
                    return result
            except Exception:  # noqa: BLE001, S110 - _decode words what is wrong
                pass
        result = _decode(envelope, data)
        return result

    decode.__name__ = decode.__qualname__ = f"decode_{_SNAKE[envelope]}"
    decode.__doc__ = doc
    return decode


def encode_request(req: Request) -> bytes:
    """Single-object encoding of a `turnlog.requests` message."""
    return _encode("Request", Request, req)


decode_request = _decoder(
    "Request",
    Request,
    "Decode a `turnlog.requests` message written with any shipped schema version.",
)


def encode_event(ev: Event) -> bytes:
    """Single-object encoding of a `turnlog.events` message."""
    return _encode("Event", Event, ev)


decode_event = _decoder(
    "Event", Event, "Decode a `turnlog.events` message written with any shipped schema version."
)


def encode_delta(d: TokenDelta) -> bytes:
    """Single-object encoding of a `turnlog.deltas` message."""
    return _encode("TokenDelta", TokenDelta, d)


def decode_delta(data: bytes) -> TokenDelta:
    """Decode a `turnlog.deltas` message written with any shipped schema version."""
    result: TokenDelta = _decode("TokenDelta", data)
    return result


def encode_checkpoint(c: AuditCheckpoint) -> bytes:
    """Single-object encoding of a `turnlog.audit.checkpoints` message."""
    return _encode("AuditCheckpoint", AuditCheckpoint, c)


def decode_checkpoint(data: bytes) -> AuditCheckpoint:
    """Decode a `turnlog.audit.checkpoints` message written with any shipped version."""
    result: AuditCheckpoint = _decode("AuditCheckpoint", data)
    return result


def encode_snapshot(s: Snapshot) -> bytes:
    """Single-object encoding of a `turnlog.snapshots` message."""
    return _encode("Snapshot", Snapshot, s)


def decode_snapshot(data: bytes) -> Snapshot:
    """Decode a `turnlog.snapshots` message written with any shipped schema version."""
    result: Snapshot = _decode("Snapshot", data)
    return result


# --------------------------------------------------------------------------- JSON form


def _to_dict(envelope: str, cls: type, value: Any) -> dict[str, Any]:
    if type(value) is not cls:
        raise InvalidRecord(f"Expected {cls.__name__} records, got {type(value).__name__}.")
    try:
        result: dict[str, Any] = _CONV.to_json[envelope](value)
    except Exception as exc:
        raise InvalidRecord(
            f"The {_describe(envelope, value)} has no JSON form: {type(exc).__name__}: {exc}."
        ) from exc
    return result


def _from_dict(envelope: str, d: Any) -> Any:
    # json shape -> avro shape -> fastavro validation (types, ranges, enum symbols, with the
    # field named) -> the same converter the binary decoder uses.
    try:
        record = _CONV.json_to_avro[envelope](d)
        validate(record, _PARSED[envelope], raise_errors=True)
        return _FROM_AVRO[envelope](record)
    except Exception as exc:
        name = _describe(envelope, d) if isinstance(d, dict) else envelope
        raise DecodeError(f"The {name} is not a valid {envelope} dict: {exc}") from exc


def event_to_dict(ev: Event) -> dict[str, Any]:
    """JSON-safe dict of an event; the payload is tagged `{"type": <record name>, ...}`."""
    return _to_dict("Event", Event, ev)


def event_from_dict(d: dict[str, Any]) -> Event:
    """Inverse of `event_to_dict`. Absent fields that have a default take it; unknown
    fields, wrong types and invalid values raise DecodeError."""
    result: Event = _from_dict("Event", d)
    return result


def request_to_dict(req: Request) -> dict[str, Any]:
    """JSON-safe dict of a request; the payload is tagged `{"type": <record name>, ...}`."""
    return _to_dict("Request", Request, req)


def request_from_dict(d: dict[str, Any]) -> Request:
    """Inverse of `request_to_dict`, with the rules of `event_from_dict`."""
    result: Request = _from_dict("Request", d)
    return result


def _canonical(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:  # NaN/inf: JSON has no spelling for them
        raise InvalidRecord(f"The {what} has no canonical JSON: {exc}.") from exc


def canonical_event_json(ev: Event) -> str:
    """The event's canonical JSON text (sorted keys, no whitespace, UTF-8 kept): equal
    events give equal text, so the audit chain hashes it."""
    return _canonical(event_to_dict(ev), _describe("Event", ev))


def canonical_request_json(req: Request) -> str:
    """The request's canonical JSON text, as `canonical_event_json`."""
    return _canonical(request_to_dict(req), _describe("Request", req))
