"""Text Postgres cannot store: what the projector stores instead, and what it keeps."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime

import pytest

from agents.events import Event, UserMessageReceived, event_id_for
from projections._clean import (
    REPLACEMENT,
    clean_json_text,
    clean_row,
    clean_text,
    needs_cleaning,
)
from projections.projector import decode
from projections.store import Record, audit_rows
from schemas.codec import canonical_event_json, encode_event

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("a\x00b", f"a{REPLACEMENT}b"),
        ("\x00\x00", REPLACEMENT * 2),
        ("lone \ud800 surrogate", f"lone {REPLACEMENT} surrogate"),
        ("pair \U0001f600 kept", "pair \U0001f600 kept"),
        ("the escape \\u0000 typed", "the escape \\u0000 typed"),
    ],
)
def test_clean_text_replaces_only_what_postgres_cannot_store(text: str, stored: str) -> None:
    assert clean_text(text) == stored
    assert len(clean_text(text)) == len(text)
    assert clean_text(clean_text(text)) == clean_text(text)  # idempotent


def test_clean_row_cleans_text_and_text_arrays_only() -> None:
    row = ("s\x00", 3, None, ["a\x00", "b"], T0, True, b"\x00")
    assert clean_row(row) == (
        f"s{REPLACEMENT}",
        3,
        None,
        [f"a{REPLACEMENT}", "b"],
        T0,
        True,
        b"\x00",
    )


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ('{"a":"x\\u0000y"}', '{"a":"x\\ufffdy"}'),
        ('["\\u0000\\u0000"]', '["\\ufffd\\ufffd"]'),
        # an escaped backslash followed by the characters u0000: not an escape of NUL
        ('["\\\\u0000"]', '["\\\\u0000"]'),
        ('["\\\\\\u0000"]', '["\\\\\\ufffd"]'),
        ('{"raw":"a\x00b"}', '{"raw":"a\ufffdb"}'),
        ('{"a":"\\u00001"}', '{"a":"\\ufffd1"}'),
    ],
)
def test_clean_json_text_keeps_json_valid_and_decoding_as_clean_text(
    text: str, stored: str
) -> None:
    assert clean_json_text(text) == stored
    # Stored JSON decodes to what clean_text makes of each decoded string.
    decoded = json.loads(text.replace("\x00", "\\u0000"))
    assert json.loads(clean_json_text(text)) == _clean_strings(decoded)


def _clean_strings(value: object) -> object:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean_strings(v) for k, v in value.items()}
    return value


def test_clean_row_cleans_json_columns_as_json() -> None:
    row = ('{"a":"\\u0000"}', '{"a":"\\u0000"}')
    assert clean_row(row, frozenset({1})) == ('{"a":"\\u0000"}', '{"a":"\\ufffd"}')


def _event(text: str) -> Event:
    return Event(event_id_for("s", 2), "s", 2, T0, "support", UserMessageReceived(text))


def test_a_record_with_nul_is_marked_and_keeps_its_exact_digest() -> None:
    event = _event("what is 6*7?\x00")
    record = decode(0, 7, encode_event(event))
    assert record.dirty and record.event == event
    canonical = canonical_event_json(event)
    assert "\\u0000" in record.canonical and "\x00" not in record.canonical
    assert record.canonical == canonical
    assert record.digest == hashlib.sha256(canonical.encode()).hexdigest()
    assert record.raw == encode_event(event)


def test_a_clean_record_is_not_marked() -> None:
    assert not decode(0, 7, encode_event(_event("what is 6*7?"))).dirty
    assert needs_cleaning(canonical_event_json(_event("a\x00")))
    assert not needs_cleaning(canonical_event_json(_event("a")))


def test_audit_items_are_cleaned_before_they_are_hashed() -> None:
    """A lone surrogate cannot come from Kafka (the codec decodes strict UTF-8), but an
    event built in process can hold one; its audit row must be storable, and hashed as
    stored."""
    event = dataclasses.replace(_event("x"), payload=UserMessageReceived("bad \udc80"))
    canonical = canonical_event_json(event)
    with pytest.raises(UnicodeEncodeError):
        canonical.encode("utf-8")
    dirty = Record(0, 1, event, canonical, "d", dirty=True)
    ((sid, seq, eid, etype, at, content),) = audit_rows([dirty])
    assert content == canonical.replace("\udc80", REPLACEMENT)
    assert (sid, seq, eid, etype, at) == ("s", 2, event.event_id, "UserMessageReceived", T0)
    nul = decode(0, 2, encode_event(_event("a\x00")))
    assert audit_rows([nul])[0][5] == nul.canonical  # a NUL is its JSON escape already
