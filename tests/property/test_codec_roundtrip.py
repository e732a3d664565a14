"""Every record type round-trips through the codec: binary (fast reader and fastavro
reference alike) and the JSON dict form, on hypothesis-generated values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.events import EVENT_TYPES, REQUEST_TYPES, Event, Request
from schemas import codec
from tests.strategies import (
    EVENT_PAYLOADS,
    REQUEST_PAYLOADS,
    audit_checkpoints,
    events,
    requests,
    token_deltas,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_there_is_a_strategy_for_every_record_type() -> None:
    assert set(REQUEST_PAYLOADS) == set(REQUEST_TYPES)
    assert set(EVENT_PAYLOADS) == set(EVENT_TYPES)


def _binary_roundtrip(envelope: str, value: Any, encode: Any, decode: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    # Both readers of the current schema agree with each other, not only with the input.
    fast, end = codec._FAST[envelope](data, codec.HEADER_SIZE, len(data))
    assert end == len(data)
    reference = codec._decode_with_fastavro(envelope, data, codec._writer_of(envelope, data))
    assert fast == reference == value
    assert type(fast.payload if hasattr(fast, "payload") else fast) is type(
        value.payload if hasattr(value, "payload") else value
    )
    # Encoding is a function of the value: equal values, equal bytes.
    assert encode(decode(data)) == data


@pytest.mark.parametrize("record", REQUEST_TYPES, ids=lambda t: t.__name__)
@FAST
@given(data=st.data())
def test_every_request_record_round_trips(record: type, data: st.DataObject) -> None:
    req: Request = data.draw(requests(payloads=REQUEST_PAYLOADS[record]))
    _binary_roundtrip("Request", req, codec.encode_request, codec.decode_request)
    as_dict = codec.request_to_dict(req)
    assert as_dict["payload"]["type"] == record.__name__
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert codec.request_from_dict(json.loads(codec.canonical_request_json(req))) == req


@pytest.mark.parametrize("record", EVENT_TYPES, ids=lambda t: t.__name__)
@FAST
@given(data=st.data())
def test_every_event_record_round_trips(record: type, data: st.DataObject) -> None:
    ev: Event = data.draw(events(payloads=EVENT_PAYLOADS[record]))
    _binary_roundtrip("Event", ev, codec.encode_event, codec.decode_event)
    as_dict = codec.event_to_dict(ev)
    assert as_dict["payload"]["type"] == record.__name__
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert codec.event_from_dict(json.loads(codec.canonical_event_json(ev))) == ev


@FAST
@given(token_deltas())
def test_token_deltas_round_trip(delta: Any) -> None:
    _binary_roundtrip("TokenDelta", delta, codec.encode_delta, codec.decode_delta)


@FAST
@given(audit_checkpoints())
def test_audit_checkpoints_round_trip(checkpoint: Any) -> None:
    _binary_roundtrip(
        "AuditCheckpoint", checkpoint, codec.encode_checkpoint, codec.decode_checkpoint
    )


@settings(max_examples=100, deadline=None)
@given(events(), events())
def test_canonical_json_is_equal_exactly_when_events_are_equal(a: Event, b: Event) -> None:
    assert (codec.canonical_event_json(a) == codec.canonical_event_json(b)) == (a == b)
    assert codec.canonical_event_json(a) == codec.canonical_event_json(
        codec.decode_event(codec.encode_event(a))
    )
