"""Bytes that are not a turnlog record raise DecodeError (with the fingerprint when there
is one) and nothing else; the fast reader never accepts what fastavro refuses."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.errors import DecodeError
from agents.events import Event, LlmCallCompleted, Request, SendMessage, Usage, event_id_for
from schemas import codec
from tests.strategies import events, requests

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
EVENT = Event(
    event_id_for("s1", 3),
    "s1",
    3,
    T0,
    "helper",
    LlmCallCompleted("c1", "m", "hello", ("t1",), "tool_use", Usage(1, 2, 3, 4), 5, 6, 1),
)
EVENT_BYTES = codec.encode_event(EVENT)
EVENT_FP = codec.current_fingerprint("Event")

DECODERS = {
    "Request": codec.decode_request,
    "Event": codec.decode_event,
    "TokenDelta": codec.decode_delta,
    "AuditCheckpoint": codec.decode_checkpoint,
}


def _raw(envelope: str, record: dict[str, Any]) -> bytes:
    """Bytes with a valid header around a body fastavro writes from `record` unchecked."""
    out = io.BytesIO()
    out.write(codec.MAGIC + bytes.fromhex(codec.current_fingerprint(envelope)))
    schemaless_writer(out, codec._PARSED[envelope], record)
    return out.getvalue()


def test_unknown_fingerprint_names_it_and_carries_it() -> None:
    data = codec.MAGIC + bytes.fromhex("0123456789abcdef") + EVENT_BYTES[10:]
    with pytest.raises(DecodeError, match="Unknown schema fingerprint 0123456789abcdef") as err:
        codec.decode_event(data)
    assert err.value.fingerprint == "0123456789abcdef"


@pytest.mark.parametrize("data", [b"", b"\xc3", b"\x00\x01" + EVENT_BYTES[2:], b'{"json": 1}'])
def test_bad_magic_or_short_header_has_no_fingerprint(data: bytes) -> None:
    with pytest.raises(DecodeError, match="not a Event message|C3 01") as err:
        codec.decode_event(data)
    assert err.value.fingerprint is None
    assert codec.peek_fingerprint(data) is None


@pytest.mark.parametrize("cut", [10, 11, 20, len(EVENT_BYTES) // 2, len(EVENT_BYTES) - 1])
def test_truncated_body_carries_the_fingerprint(cut: int) -> None:
    with pytest.raises(DecodeError, match="truncated or corrupt") as err:
        codec.decode_event(EVENT_BYTES[:cut])
    assert err.value.fingerprint == EVENT_FP


def test_trailing_bytes_are_corruption() -> None:
    with pytest.raises(DecodeError, match="1 bytes after its body") as err:
        codec.decode_event(EVENT_BYTES + b"\x00")
    assert err.value.fingerprint == EVENT_FP


def test_a_request_given_to_the_event_decoder_says_so() -> None:
    data = codec.encode_request(Request("r1", "s1", T0, SendMessage("hi")))
    with pytest.raises(DecodeError, match="is a Request schema .*turnlog.requests.*not a Event"):
        codec.decode_event(data)


def test_a_body_that_fails_dataclass_validation_names_session_and_seq() -> None:
    record = {
        "event_id": event_id_for("s9", 0),
        "session_id": "s9",
        "seq": 0,
        "occurred_at": T0,
        "agent": "a",
        "payload": ("turnlog.v1.TurnStarted", {"turn_no": 1}),
        "turn_id": None,
        "causation_id": None,
        "correlation_id": None,
    }
    with pytest.raises(DecodeError, match=r"session 's9' seq 0 .*seq must be >= 1") as err:
        codec.decode_event(_raw("Event", record))
    assert err.value.fingerprint == EVENT_FP
    assert err.value.__cause__ is not None


def test_a_payload_that_fails_validation_is_a_decode_error() -> None:
    record = {
        "request_id": "r1",
        "session_id": "s1",
        "occurred_at": T0,
        "payload": (
            "turnlog.v1.ForkSession",
            {"source_session_id": "", "at_seq": 1, "agent": None},
        ),
        "correlation_id": None,
        "causation_id": None,
        "agent": None,
    }
    with pytest.raises(DecodeError, match=r"Request 'r1' of session 's1'.*source_session_id"):
        codec.decode_request(_raw("Request", record))


def test_not_bytes_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="from bytes, got str"):
        codec.decode_event("c301...")  # type: ignore[arg-type]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.sampled_from(sorted(DECODERS)))
def test_random_bytes_raise_only_decode_error(data: bytes, envelope: str) -> None:
    with pytest.raises(DecodeError) as err:
        DECODERS[envelope](data)
    assert err.value.fingerprint is None or len(err.value.fingerprint) == 16


def _decode_or_error(envelope: str, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", DECODERS[envelope](data)
    except DecodeError as exc:
        return "error", exc


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120), st.sampled_from(sorted(DECODERS)))
def test_a_valid_header_with_a_random_body_decodes_or_raises_decode_error_with_fingerprint(
    body: bytes, envelope: str
) -> None:
    fp = codec.current_fingerprint(envelope)
    outcome, value = _decode_or_error(envelope, codec.MAGIC + bytes.fromhex(fp) + body)
    if outcome == "error":
        assert value.fingerprint == fp
    else:
        assert type(value).__name__ == envelope


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid message, then damaged: a byte changed, bytes cut, or bytes inserted."""
    if draw(st.booleans()):
        envelope, data = "Event", codec.encode_event(draw(events()))
    else:
        envelope, data = "Request", codec.encode_request(draw(requests()))
    pos = draw(st.integers(10, len(data) - 1))
    how = draw(st.sampled_from(["flip", "cut", "insert"]))
    if how == "flip":
        data = data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1 :]
    elif how == "cut":
        data = data[:pos]
    else:
        data = data[:pos] + draw(st.binary(min_size=1, max_size=4)) + data[pos:]
    return envelope, data


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_damaged_messages_decode_or_raise_decode_error(case: tuple[str, bytes]) -> None:
    envelope, data = case
    outcome, value = _decode_or_error(envelope, data)
    if outcome == "error":
        assert value.fingerprint == codec.current_fingerprint(envelope)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_the_fast_reader_never_accepts_what_the_reference_decoder_refuses(
    case: tuple[str, bytes],
) -> None:
    envelope, data = case
    writer = codec._writer_of(envelope, data)
    try:
        fast, end = codec._FAST[envelope](data, codec.HEADER_SIZE, len(data))
    except Exception:
        return
    if end != len(data):
        return  # the codec refuses trailing bytes before trusting the fast result
    assert codec._decode_with_fastavro(envelope, data, writer) == fast


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"\x06abc", b"\x08abc"),  # the last string claims one byte more than is left
        (b"\x06abc", b"\x07abc"),  # an odd length byte: a negative length
        (b"\x16zz-agent-zz", b"\x7ezz-agent-zz"),  # a string in the middle overruns
    ],
)
def test_a_short_string_whose_length_is_wrong_is_a_decode_error(old: bytes, new: bytes) -> None:
    from agents.events import TurnStarted

    ev = Event(
        event_id_for("s", 1), "s", 1, T0, "zz-agent-zz", TurnStarted(1), correlation_id="abc"
    )
    data = codec.encode_event(ev)
    assert data.count(old) == 1
    bad = data.replace(old, new)
    with pytest.raises(DecodeError) as info:
        codec.decode_event(bad)
    assert info.value.fingerprint == codec.current_fingerprint("Event")
