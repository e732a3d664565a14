"""Compact events (schemas.codec): an Event message without its derivable `event_id`.

What the session worker writes reads back as the same Event, through the same readers as
a full one; its body is the Event schema without the field (what a reader in another
language uses); a compact record cut from the released Event schema reads too; damaged
compact bytes are a DecodeError carrying the fingerprint, never another exception."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.errors import DecodeError, InvalidRecord
from agents.events import Event, LlmCallCompleted, Usage, event_id_for
from schemas import codec
from schemas.loader import released_sets
from tests.strategies import events


def _event(session_id: str = "s1", seq: int = 7) -> Event:
    return Event(
        event_id=event_id_for(session_id, seq),
        session_id=session_id,
        seq=seq,
        occurred_at=datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
        agent="a",
        payload=LlmCallCompleted("c1", "m", "hi", (), "end_turn", Usage(1, 1), 0, 1, 1),
        turn_id=f"{session_id}:t1",
    )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_a_compact_event_reads_back_the_same_and_is_its_event_id_shorter(ev: Event) -> None:
    full, compact = codec.encode_event(ev), codec.encode_event_compact(ev)
    assert codec.decode_event(compact) == ev
    assert codec.decode_event(bytearray(compact)) == ev  # the reference path
    assert len(full) - len(compact) == 1 + len(ev.event_id)
    # The fast reader of compact events (the id derived once) itself, not its fallback.
    fast, end = codec._FAST_COMPACT(compact, codec.HEADER_SIZE, len(compact))
    assert (fast, end) == (ev, len(compact))


def test_the_compact_fast_reader_checks_what_the_constructor_checks() -> None:
    # seq 0 cannot be an event's: the fast reader refuses it as the constructor would,
    # and the decoder says so as a DecodeError.
    data = bytearray(codec.encode_event_compact(_event(seq=1)))
    at = codec.HEADER_SIZE + 1 + len(b"s1")  # after the session id's length and bytes
    assert data[at] == 2  # seq 1, zig-zag
    data[at] = 0
    with pytest.raises(InvalidRecord, match="seq must be >= 1"):
        codec._FAST_COMPACT(bytes(data), codec.HEADER_SIZE, len(data))
    with pytest.raises(DecodeError):
        codec.decode_event(bytes(data))


def test_the_body_is_the_event_schema_without_event_id() -> None:
    ev = _event()
    data = codec.encode_event_compact(ev)
    schema = codec.compact_event_schema()
    assert "event_id" not in [f["name"] for f in schema["fields"]]
    assert data[2 : codec.HEADER_SIZE].hex() == codec.schema_fingerprint(schema)
    assert codec.peek_fingerprint(data) == codec.schema_fingerprint(schema)
    assert codec.known_fingerprints()[codec.peek_fingerprint(data) or ""] == (
        "Event",
        "current, compact",
    )
    record = schemaless_reader(
        io.BytesIO(data[codec.HEADER_SIZE :]), parse_schema(schema), return_record_name=True
    )
    expected = codec._TO_AVRO["Event"](ev)
    del expected["event_id"]
    assert record["session_id"] == "s1" and record["seq"] == 7
    assert set(record) == set(expected)


def test_a_compact_event_of_the_released_schema_reads() -> None:
    """A compact record written with the released Event schema (minus event_id) reads
    through that schema's resolution, as its full twin does."""
    (release, *_) = released_sets()
    old = release.envelopes["Event"]
    compact = codec.compact_event_schema(old)
    ev = _event("old", 3)
    record = codec._TO_AVRO["Event"](ev)
    del record["claimed_at"]  # a field added since the release
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(compact), record)
    data = codec.MAGIC + bytes.fromhex(codec.schema_fingerprint(compact)) + body.getvalue()
    assert codec.known_fingerprints()[data[2:10].hex()] == ("Event", f"{release.version}, compact")
    assert codec.decode_event(data) == ev


@pytest.mark.parametrize("cut", [0, 1, 3, 12, 30])
def test_a_truncated_compact_event_is_a_decode_error_with_its_fingerprint(cut: int) -> None:
    data = codec.encode_event_compact(_event())
    fp = data[2:10].hex()
    with pytest.raises(DecodeError) as err:
        codec.decode_event(data[: codec.HEADER_SIZE + cut])
    assert err.value.fingerprint == fp


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=80))
def test_a_compact_header_with_any_body_decodes_or_raises_decode_error(body: bytes) -> None:
    header = codec.encode_event_compact(_event())[: codec.HEADER_SIZE]
    try:
        ev = codec.decode_event(header + body)
    except DecodeError as exc:
        assert exc.fingerprint == header[2:].hex()
    else:
        assert ev.event_id == event_id_for(ev.session_id, ev.seq)
