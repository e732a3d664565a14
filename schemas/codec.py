"""The wire codec of turnlog: Avro single-object encoding, and a canonical JSON form.

The rule: every message on a turnlog topic is `C3 01` + the 8-byte CRC-64-AVRO fingerprint
of its writer schema's parsing canonical form (little-endian, as the Avro spec and the Java
implementation write it) + the Avro binary body. Messages are self-describing, so no
schema registry is needed.

A shop that runs a schema registry may have records framed its way instead:
`use_registry(seam, write=True)` makes the encoders write `00` + the 4-byte big-endian
schema id the registry gave the writer schema + the same body (schemas.registry is the
seam over a real registry). Readers tell the framings apart by the first byte (C3 or 00)
and accept both whatever this process writes, so a topic can be migrated: every reader
first gets the registry (`write=False`), then the producers switch. A registry-framed
message needs a registry to be read (`RegistryError`, not DecodeError, when it cannot be
asked); an id whose schema is not a shipped one is resolved into the current schema like
an old release.

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

from agents.errors import DecodeError, ExternalError, InvalidRecord
from agents.events import (
    AgentVersion,
    AuditCheckpoint,
    Event,
    Request,
    ScheduleRecord,
    Snapshot,
    TokenDelta,
    event_id_for,
)
from schemas._convert import Converters, build_converters
from schemas._fastread import build_readers
from schemas.loader import ENVELOPES, SchemaSet, all_sets
from schemas.registry import RegistrySeam

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "REGISTRY_HEADER_SIZE",
    "REGISTRY_MAGIC",
    "canonical_event_json",
    "canonical_request_json",
    "compact_event_schema",
    "current_fingerprint",
    "current_schema",
    "decode_agent_version",
    "decode_checkpoint",
    "decode_delta",
    "decode_event",
    "decode_request",
    "decode_schedule_record",
    "decode_snapshot",
    "encode_agent_version",
    "encode_checkpoint",
    "encode_delta",
    "encode_event",
    "encode_event_compact",
    "encode_request",
    "encode_schedule_record",
    "encode_snapshot",
    "event_from_dict",
    "event_to_dict",
    "known_fingerprints",
    "peek_fingerprint",
    "registry_id",
    "request_from_dict",
    "request_to_dict",
    "schema_fingerprint",
    "use_registry",
    "use_single_object",
    "wire_format",
]

MAGIC: Final = b"\xc3\x01"
HEADER_SIZE: Final = 10  # magic (2) + fingerprint (8)
REGISTRY_MAGIC: Final = b"\x00"
REGISTRY_HEADER_SIZE: Final = 5  # magic (1) + schema id (4, big-endian)


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


def current_schema(envelope: str) -> dict[str, Any]:
    """The current standalone JSON schema of an envelope ("Request", "Event", ...)."""
    return _CURRENT_SET.envelopes[envelope]


def current_fingerprint(envelope: str) -> str:
    """Hex fingerprint of the schema this process writes for `envelope`."""
    return _HEADERS[envelope][2:].hex()


def known_fingerprints() -> dict[str, tuple[str, str]]:
    """Every fingerprint this process can read: hex -> (envelope, schema set version)."""
    known = {w.fingerprint: (w.envelope, w.version) for w in _WRITERS.values()}
    for header, (_, version) in _COMPACT.items():
        known.setdefault(header[2:].hex(), ("Event", f"{version}, compact"))
    return known


def peek_fingerprint(data: bytes) -> str | None:
    """The hex fingerprint in a message's header, or None when there is no valid header
    (for DLQ error headers: it says which producer schema an undecodable message used)."""
    if len(data) >= REGISTRY_HEADER_SIZE and data[:1] == REGISTRY_MAGIC:
        writer = _REGISTRY_WRITERS.get(int.from_bytes(data[1:REGISTRY_HEADER_SIZE], "big"))
        return writer.fingerprint if writer is not None else None
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        return None
    return bytes(data[2:HEADER_SIZE]).hex()


# --------------------------------------------------------------------------- registry

# The framing this process writes: None = single-object; else the registry seam. Readers
# look registry ids up through _REGISTRY whatever this process writes.
_REGISTRY: RegistrySeam | None = None
_REGISTRY_WRITES = False
_REGISTRY_HEADERS: dict[str, bytes] = {}  # envelope -> 00 + id of its current schema
_REGISTRY_WRITERS: dict[int, _Writer] = {}  # registry id -> writer schema


def use_registry(seam: RegistrySeam, *, write: bool = True) -> None:
    """Read registry-framed records through `seam`; with `write`, also write them so.
    Nothing is asked of the registry until the first record needs it."""
    global _REGISTRY, _REGISTRY_WRITES
    _REGISTRY, _REGISTRY_WRITES = seam, write
    _REGISTRY_HEADERS.clear()
    _REGISTRY_WRITERS.clear()


def use_single_object() -> None:
    """Back to the default: write single-object records; registry framing unreadable."""
    global _REGISTRY, _REGISTRY_WRITES
    _REGISTRY, _REGISTRY_WRITES = None, False
    _REGISTRY_HEADERS.clear()
    _REGISTRY_WRITERS.clear()


def wire_format() -> str:
    """ "registry" or "single-object": the framing the encoders write now."""
    return "registry" if _REGISTRY_WRITES else "single-object"


def registry_id(envelope: str) -> int:
    """The registry id of the current schema of `envelope` (registered on first use)."""
    return int.from_bytes(_registry_header(envelope)[1:], "big")


def _registry_header(envelope: str) -> bytes:
    header = _REGISTRY_HEADERS.get(envelope)
    if header is not None:
        return header
    if _REGISTRY is None:
        raise InvalidRecord("No schema registry is configured (codec.use_registry).")
    schema_id = _REGISTRY.id_for(envelope)
    if not 0 <= schema_id < 1 << 32:
        raise InvalidRecord(
            f"The registry gave the {envelope} schema id {schema_id}, which "
            f"does not fit the framing's 4 bytes."
        )
    header = REGISTRY_MAGIC + schema_id.to_bytes(4, "big")
    current = bytes.fromhex(current_fingerprint(envelope))
    _REGISTRY_WRITERS[schema_id] = _WRITERS[current]
    _REGISTRY_HEADERS[envelope] = header
    return header


def _registry_writer(envelope: str, schema_id: int) -> _Writer:
    """The writer schema of a registry id: a shipped one when the registry's schema has a
    shipped fingerprint, else the registry's own, resolved into the current schema."""
    writer = _REGISTRY_WRITERS.get(schema_id)
    if writer is not None:
        return writer
    if _REGISTRY is None:
        raise DecodeError(
            f"This {envelope} message is framed for a schema registry (00 + schema id "
            f"{schema_id}), not as an Avro single-object message (C3 01 + fingerprint), and "
            f"no registry is configured to look the id up; set TURNLOG_SCHEMA_REGISTRY_URL."
        )
    schema = _REGISTRY.schema_of(schema_id)  # RegistryError propagates: not the message's fault
    try:
        fingerprint = schema_fingerprint(schema)
    except Exception as exc:
        raise DecodeError(
            f"Schema id {schema_id} of the registry is not a valid Avro schema: {exc}."
        ) from exc
    shipped = _WRITERS.get(bytes.fromhex(fingerprint))
    if shipped is not None:
        writer = shipped
    else:
        name = str(schema.get("name", "")).rpartition(".")[2]
        if name not in _PARSED:
            raise DecodeError(
                f"Schema id {schema_id} of the registry is record {schema.get('name')!r}, "
                f"not a turnlog envelope ({', '.join(sorted(_PARSED))}).",
                fingerprint=fingerprint,
            )
        try:
            parsed = _parse(schema)
        except Exception as exc:
            raise DecodeError(
                f"Schema id {schema_id} of the registry does not parse: {exc}.",
                fingerprint=fingerprint,
            ) from exc
        writer = _Writer(
            envelope=name,
            version=f"registry id {schema_id}",
            fingerprint=fingerprint,
            schema=parsed,
            reader=_PARSED[name],
        )
    _REGISTRY_WRITERS[schema_id] = writer
    return writer


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
    if envelope == "ScheduleRecord":
        return f"ScheduleRecord of schedule {get('schedule_id')!r}"
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
        out.write(_registry_header(envelope) if _REGISTRY_WRITES else _HEADERS[envelope])
        schemaless_writer(out, _PARSED[envelope], record)
    except ExternalError:  # the registry could not be asked: not the record's fault
        raise
    except Exception as exc:  # fastavro raises ValueError/TypeError/OverflowError/...
        raise InvalidRecord(
            f"The {_describe(envelope, value)} cannot be encoded with the {envelope} schema: "
            f"{type(exc).__name__}: {exc}."
        ) from exc
    return out.getvalue()


def _writer_of(envelope: str, data: bytes) -> _Writer:
    """Check the header (either framing); return the writer schema it names."""
    return _framed_writer(envelope, data)[0]


def _framed_writer(envelope: str, data: bytes) -> tuple[_Writer, int]:
    """Check the header (either framing); return the writer schema it names and where the
    body starts."""
    if len(data) >= REGISTRY_HEADER_SIZE and data[:1] == REGISTRY_MAGIC:
        schema_id = int.from_bytes(data[1:REGISTRY_HEADER_SIZE], "big")
        writer = _registry_writer(envelope, schema_id)
        _check_envelope(envelope, writer)
        return writer, REGISTRY_HEADER_SIZE
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        raise DecodeError(
            f"These {len(data)} bytes are not a {envelope} message: an Avro single-object "
            f"message starts with C3 01 and an 8-byte schema fingerprint (a registry-framed "
            f"one with 00 and a 4-byte schema id), these start with "
            f"{bytes(data[:HEADER_SIZE]).hex() or 'nothing'}."
        )
    key = data[2:HEADER_SIZE]
    found = _WRITERS.get(key)
    if found is None:
        fp = key.hex()
        raise DecodeError(
            f"Unknown schema fingerprint {fp}: no shipped {envelope} schema (current "
            f"{current_fingerprint(envelope)} or a released one) has it, so this message "
            f"comes from a producer whose schema this reader does not ship.",
            fingerprint=fp,
        )
    _check_envelope(envelope, found)
    return found, HEADER_SIZE


def _check_envelope(envelope: str, writer: _Writer) -> None:
    if writer.envelope != envelope:
        raise DecodeError(
            f"Schema fingerprint {writer.fingerprint} is a {writer.envelope} schema "
            f"(topic {ENVELOPES[writer.envelope]}), not a {envelope}: the message is on the "
            f"wrong topic or given to the wrong decoder.",
            fingerprint=writer.fingerprint,
        )


def _decode_with_fastavro(
    envelope: str, data: bytes, writer: _Writer, start: int = HEADER_SIZE
) -> Any:
    """The reference decoder: fastavro reads (resolving an old writer schema into the
    current one), then the generated converter builds the dataclasses. It is the only
    path for old writers, and it words every error."""
    stream = io.BytesIO(data)
    stream.seek(start)
    try:
        record = schemaless_reader(stream, writer.schema, writer.reader, return_record_name=True)
    except Exception as exc:  # any failure reading untrusted bytes is a DecodeError
        raise DecodeError(
            f"The {envelope} body ({len(data) - start} bytes, schema {writer.fingerprint}"
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


def _decode_compact(envelope: str, data: bytes, full: bytes) -> Any:
    """The reference path of a compact event: its expanded Event message decoded; an
    error names the compact schema, the one on the wire."""
    try:
        return _decode(envelope, full)
    except DecodeError as exc:
        fp = bytes(data[2:HEADER_SIZE]).hex()
        raise DecodeError(f"{exc} (a compact Event, schema {fp})", fingerprint=fp) from exc


def _decode(envelope: str, data: bytes) -> Any:
    if not isinstance(data, bytes):
        if not isinstance(data, (bytearray, memoryview)):
            raise DecodeError(
                f"A {envelope} must be decoded from bytes, got {type(data).__name__}."
            )
        data = bytes(data)
    if envelope == "Event" and data[:HEADER_SIZE] in _COMPACT:
        return _decode_compact(envelope, data, _expand_compact(data))
    writer, start = _framed_writer(envelope, data)
    if writer.reader is None:
        # Fast path (current writer schema). On any failure fall through to the reference
        # decoder: it decides whether the bytes are bad, and says why.
        try:
            value, end = _FAST[envelope](data, start, len(data))
            if end == len(data):
                return value
        except Exception:
            pass
    return _decode_with_fastavro(envelope, data, writer, start)


# --------------------------------------------------------------------------- compact events

# A compact event is an Event without its `event_id`, which is a pure function of
# `session_id` and `seq` (agents.records.event_id_for): its writer schema is the Event
# envelope of a shipped set minus that field, and its message is that schema's header and
# the Event body with the event_id string cut out. Readers put the derived id back and
# read the Event body as usual (the fast path included); nothing else changes. The session
# worker writes events so; a reader of a release before this one cannot read them
# (upgrade readers first, README "Upgrading").


def compact_event_schema(event_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The writer schema of a compact event: `event_schema` (the current Event
    envelope's by default) without its `event_id` field."""
    schema = dict(event_schema if event_schema is not None else current_schema("Event"))
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "event_id"]
    return schema


def _compact_headers() -> dict[bytes, tuple[bytes, str]]:
    """Compact header -> (the header of the Event schema it cuts, its set's version), for
    every shipped set (the current one first)."""
    out: dict[bytes, tuple[bytes, str]] = {}
    for schema_set in all_sets():
        schema = schema_set.envelopes.get("Event")
        if schema is not None:
            compact = MAGIC + bytes.fromhex(schema_fingerprint(compact_event_schema(schema)))
            full = MAGIC + bytes.fromhex(schema_fingerprint(schema))
            out.setdefault(compact, (full, schema_set.version))
    return out


_COMPACT = _compact_headers()
# The current set's readers, and its compact events' one: straight to an Event, the id
# derived once (used by the decoders below, never at import before this line).
_FAST, _FAST_COMPACT = build_readers(
    _CURRENT_SET.envelopes, compact_event_schema(_CURRENT_SET.envelopes["Event"])
)
_ID_LENGTH: Final = bytes([36 << 1])  # an event id's length, as Avro writes it
_COMPACT_HEADER: Final = MAGIC + bytes.fromhex(schema_fingerprint(compact_event_schema()))


def _zigzag(n: int) -> bytes:
    z, out = (n << 1) ^ (n >> 63), bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    shift = z = 0
    while True:
        b = data[pos]  # IndexError when truncated
        pos += 1
        z |= (b & 0x7F) << shift
        if not b & 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")


def encode_event_compact(ev: Event) -> bytes:
    """A `turnlog.events` message without the derivable `event_id` (see above). With a
    schema registry writing (codec.use_registry), the full Event as `encode_event`."""
    data = encode_event(ev)
    if _REGISTRY_WRITES:
        return data
    n = len(ev.event_id.encode())
    return _COMPACT_HEADER + data[HEADER_SIZE + len(_zigzag(n)) + n :]


def _expand_compact(data: bytes) -> bytes:
    """The Event message a compact one cuts (its event_id derived again)."""
    full, _ = _COMPACT[data[:HEADER_SIZE]]
    try:
        n, pos = _read_long(data, HEADER_SIZE)  # session_id, the body's first field
        if n < 0 or pos + n > len(data):
            raise ValueError(f"a session id of {n} bytes")
        session_id = data[pos : pos + n].decode()
        seq, _ = _read_long(data, pos + n)
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        fp = bytes(data[2:HEADER_SIZE]).hex()
        raise DecodeError(
            f"The compact Event body ({len(data) - HEADER_SIZE} bytes, schema {fp}) is "
            f"truncated or corrupt: {type(exc).__name__}: {exc}.",
            fingerprint=fp,
        ) from exc
    event_id = event_id_for(session_id, seq).encode()  # a UUID: 36 bytes
    return full + _ID_LENGTH + event_id + data[HEADER_SIZE:]


_R = TypeVar("_R")
_SNAKE = {"Request": "request", "Event": "event"}


def _decoder(envelope: str, cls: type[_R], doc: str) -> Callable[[bytes], _R]:
    """`_decode(envelope, ·)` with its hot case first: bytes (as Kafka gives them) of
    the current writer schema, recognised by one comparison of the header."""
    header, fast = _HEADERS[envelope], _FAST[envelope]
    compact = _COMPACT_HEADER if envelope == "Event" else None

    def decode(data: bytes) -> _R:
        if type(data) is bytes and data[:HEADER_SIZE] == compact:
            try:
                value, end = _FAST_COMPACT(data, HEADER_SIZE, len(data))
                if end == len(data):
                    read: _R = value
                    return read
            except Exception:
                pass
            # The reference path says what is wrong (or reads what the fast one refused).
            compacted: _R = _decode_compact(envelope, data, _expand_compact(data))
            return compacted
        if type(data) is bytes and data[:HEADER_SIZE] == header:
            try:
                value, end = fast(data, HEADER_SIZE, len(data))
                if end == len(data):
                    result: _R = value
                    return result
            except Exception:
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


def encode_agent_version(v: AgentVersion) -> bytes:
    """Single-object encoding of a `turnlog.agents` message."""
    return _encode("AgentVersion", AgentVersion, v)


def decode_agent_version(data: bytes) -> AgentVersion:
    """Decode a `turnlog.agents` message written with any shipped schema version."""
    result: AgentVersion = _decode("AgentVersion", data)
    return result


def encode_schedule_record(r: ScheduleRecord) -> bytes:
    """Single-object encoding of a `turnlog.schedules` message."""
    return _encode("ScheduleRecord", ScheduleRecord, r)


def decode_schedule_record(data: bytes) -> ScheduleRecord:
    """Decode a `turnlog.schedules` message written with any shipped schema version."""
    result: ScheduleRecord = _decode("ScheduleRecord", data)
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
