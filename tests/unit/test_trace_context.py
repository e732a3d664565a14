"""W3C Trace Context in Kafka headers (streams.tracing): what is kept, what is replaced."""

from __future__ import annotations

import pytest

from streams.tracing import (
    child_traceparent,
    get_traceparent,
    headers_with,
    parse_traceparent,
    parse_tracestate,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (VALID, (TRACE, SPAN, "01")),
        (f"00-{TRACE}-{SPAN}-00", (TRACE, SPAN, "00")),
        (f"  {VALID}\t", (TRACE, SPAN, "01")),  # optional whitespace around the value
        # A later version: its first four fields are read, what follows a '-' ignored.
        (f"cc-{TRACE}-{SPAN}-01", (TRACE, SPAN, "01")),
        (f"cc-{TRACE}-{SPAN}-01-what-the-future-holds", (TRACE, SPAN, "01")),
        (f"00-{'0' * 32}-{SPAN}-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent id
        (f"ff-{TRACE}-{SPAN}-01", None),  # version ff is forbidden
        (f"00-{TRACE.upper()}-{SPAN}-01", None),  # upper case
        (f"00-{TRACE}-{SPAN}-01-", None),  # version 00 has exactly four fields
        (f"cc-{TRACE}-{SPAN}-01x", None),  # a later version still needs the '-'
        (f"00-{TRACE[:-1]}-{SPAN}-01", None),
        (f"00-{TRACE}-{SPAN[:-1]}g-01", None),  # not hex
        (f"0-{TRACE}-{SPAN}-01", None),
        (f"00_{TRACE}_{SPAN}_01", None),
        ("", None),
    ],
)
def test_traceparent_validation(header: str, expected: tuple[str, str, str] | None) -> None:
    assert parse_traceparent(header) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["vendor=abc"], "vendor=abc"),
        (["vendor=abc, other=x1 "], "vendor=abc,other=x1"),
        (["a=1", "b=2"], "a=1,b=2"),  # several headers are one list
        (["a=1,,b=2"], "a=1,b=2"),  # empty members are allowed and dropped
        (["tenant@sys=v"], "tenant@sys=v"),
        (["Bad=1"], None),  # keys are lower case
        (["a=1,a=2"], None),  # a duplicate key invalidates the whole list
        (["a=x,y"], None),
        (["a=b=c"], None),  # '=' is not a value character
        (["a=trailing "], "a=trailing"),  # OWS after a member is not part of the value
        (["a="], None),  # a value has at least one character
        ([",".join(f"k{i}=v" for i in range(33))], None),  # at most 32 members
        ([""], None),
    ],
)
def test_tracestate_validation(values: list[str], expected: str | None) -> None:
    assert parse_tracestate(values) == expected


def test_a_long_tracestate_loses_large_members_first_then_from_the_end() -> None:
    large = "big=" + "x" * 200
    members = [f"k{i}=" + "v" * 40 for i in range(12)]
    out = parse_tracestate([",".join([members[0], large, *members[1:]])])
    assert out is not None and len(out) <= 512 and "big=" not in out
    assert out.startswith("k0=") and out.split(",") == members[: len(out.split(","))]


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", f"00-{'0' * 32}-{SPAN}-01".encode()), ("tracestate", b"vendor=abc")],
        [("traceparent", VALID.encode()), ("traceparent", VALID.encode())],  # two: neither
        [("traceparent", b"\xff\xfe")],
        [("traceparent", b"")],
        [("tracestate", b"vendor=abc")],  # a tracestate without a traceparent
    ],
)
def test_an_invalid_traceparent_is_not_propagated_nor_its_tracestate(
    headers: list[tuple[str, bytes]],
) -> None:
    assert get_traceparent(headers) is None
    # The worker then starts a trace of its own: the invalid ids are nowhere in it.
    replaced = child_traceparent(get_traceparent(headers), "request-1")
    assert parse_traceparent(replaced) is not None
    assert "0" * 32 not in replaced and TRACE not in replaced
    assert [k for k, _ in headers_with(replaced)] == ["traceparent"]


def test_tracestate_travels_with_the_traceparent_to_children() -> None:
    tp = get_traceparent([("traceparent", VALID.encode()), ("tracestate", b"vendor=abc")])
    assert tp == VALID
    child = child_traceparent(tp, "event-1")
    assert parse_traceparent(child) is not None and child.split("-")[1] == TRACE
    assert child.split("-")[2] != SPAN
    assert dict(headers_with(child, event_type="X")) == {
        "event_type": b"X",
        "traceparent": child.encode(),
        "tracestate": b"vendor=abc",
    }


def test_an_invalid_tracestate_is_dropped_and_the_traceparent_kept() -> None:
    tp = get_traceparent([("traceparent", VALID.encode()), ("tracestate", b"Bad Key=1")])
    assert tp == VALID
    assert [k for k, _ in headers_with(child_traceparent(tp, "e"))] == ["traceparent"]


def test_a_later_version_is_handed_on_as_version_00() -> None:
    tp = get_traceparent([("traceparent", f"cc-{TRACE}-{SPAN}-01-more".encode())])
    assert tp == VALID


def test_child_ids_are_deterministic_with_tracing_off() -> None:
    assert child_traceparent(VALID, "event-1") == child_traceparent(VALID, "event-1")
    assert child_traceparent(None, "req-1") == child_traceparent(None, "req-1")
    assert child_traceparent(VALID, "event-1") != child_traceparent(VALID, "event-2")
