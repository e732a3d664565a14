"""The event contract's own invariants (agents/events.py)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.errors import InvalidRecord
from agents.events import (
    EVENT_ID_NAMESPACE,
    Event,
    Request,
    SendMessage,
    TurnStarted,
    Usage,
    event_id_for,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@settings(max_examples=200)
@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=2**62))
def test_event_id_is_uuid5_of_session_and_seq(session_id: str, seq: int) -> None:
    expected = str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{session_id}/{seq}"))
    assert event_id_for(session_id, seq) == expected


def test_event_rejects_a_foreign_event_id_naming_session_and_seq() -> None:
    with pytest.raises(InvalidRecord, match="session s1 seq 2"):
        Event(event_id_for("s1", 3), "s1", 2, NOW, "a", TurnStarted(1))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Usage(input_tokens=-1), "input_tokens must be an int >= 0"),
        (lambda: SendMessage("x", parent_session_id="p"), "set together"),
        (lambda: Request("", "s", NOW, SendMessage("x")), "request_id must be a non-empty"),
        (lambda: Request("r", "s", datetime(2026, 1, 1), SendMessage("x")), "timezone-aware"),
        (lambda: Event(event_id_for("s", 0), "s", 0, NOW, "a", TurnStarted(1)), "seq must be >= 1"),
        (lambda: Request("r", "s", NOW, TurnStarted(1)), "payload must be a request record"),
    ],
)
def test_invalid_records_raise_with_the_field_named(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRecord, match=message):
        build()


def test_a_derived_event_equals_the_constructed_one_field_for_field() -> None:
    claimed = datetime(2025, 12, 31, tzinfo=UTC)
    made = Event.derived("s1", 7, NOW, "a", TurnStarted(1), "s1:t1", "r1", "c1", claimed)
    built = Event(event_id_for("s1", 7), "s1", 7, NOW, "a", TurnStarted(1), "s1:t1", "r1", "c1")
    built = dataclasses.replace(built, claimed_at=claimed)
    # Every field set (a field added to Event but not to `derived` fails here).
    for f in dataclasses.fields(Event):
        assert getattr(made, f.name) == getattr(built, f.name), f.name
    assert made == built and hash(made) == hash(built)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Event.derived("", 1, NOW, "a", TurnStarted(1)), "session_id"),
        (lambda: Event.derived("s", 0, NOW, "a", TurnStarted(1)), "seq must be >= 1"),
        (lambda: Event.derived("s", 1, datetime(2026, 1, 1), "a", TurnStarted(1)), "aware"),
        (lambda: Event.derived("s", 1, NOW, "a", SendMessage("x")), "payload must be an event"),
    ],
)
def test_a_derived_event_is_checked_like_a_constructed_one(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRecord, match=message):
        build()
