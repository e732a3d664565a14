"""The event header policy (streams._headers): the trace context rides on an input's
first event only, and a reader gets every event's traceparent back exactly as the worker
computed it (streams._partition: `child_traceparent(input's, event_id)`), for logs
written with tracing off, with it on, and before the headers were thinned."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agents.events import event_id_for
from streams._headers import EVENT_HEADERS, EventTraces, event_headers
from streams.tracing import TraceParent, child_traceparent, headers_with, new_traceparent


@dataclass(frozen=True)
class Ev:
    """The three envelope fields the reader looks at."""

    session_id: str
    seq: int
    causation_id: str | None

    @property
    def event_id(self) -> str:
        return event_id_for(self.session_id, self.seq)


def _write(
    inputs: list[tuple[str, str, int, str]], *, live: bool = False, tracestate: str | None = None
) -> list[tuple[Ev, list[tuple[str, bytes]], str]]:
    """What the worker writes for `inputs` = [(session, request id, first seq, n events)]:
    (event, its headers, the traceparent it computed for it)."""
    out = []
    for session, request_id, first_seq, n in inputs:
        parent: str = TraceParent.of(new_traceparent(), tracestate, live=live)
        events = [Ev(session, first_seq + i, request_id) for i in range(n)]
        for ev in events:
            tp = child_traceparent(parent, ev.event_id)
            out.append((ev, event_headers(tp, first_of_input=ev is events[0]), tp))
    return out


INPUTS = [
    ("s1", "s1:r1", 1, 3),
    ("s2", "s2:r1", 1, 2),
    ("s1", "s1:r2", 4, 1),
    ("s1", "s1:r3", 5, 4),
]


@pytest.mark.parametrize("live", [False, True], ids=["tracing off", "tracing on"])
@pytest.mark.parametrize("tracestate", [None, "vendor=abc,other=x1"])
def test_every_events_traceparent_is_read_back_as_written(
    live: bool, tracestate: str | None
) -> None:
    written = _write([(s, r, q, n) for s, r, q, n in INPUTS], live=live, tracestate=tracestate)
    traces = EventTraces()
    for ev, headers, tp in written:
        got = traces(ev, headers)
        assert got == tp, (ev, live)
        assert getattr(got, "tracestate", None) == tracestate
    # One header set per input, not per event.
    carrying = [h for _, h, _ in written if h]
    assert len(carrying) == len(INPUTS)
    assert all({name for name, _ in h} <= EVENT_HEADERS for h in carrying)


def test_with_tracing_off_each_event_is_its_own_span_in_its_inputs_trace() -> None:
    written = _write(INPUTS)
    traces = EventTraces()
    read = [traces(ev, h) for ev, h, _ in written]
    assert len({tp.split("-")[2] for tp in read if tp}) == len(written)
    assert len({tp.split("-")[1] for tp in read if tp}) == len(INPUTS)


def test_a_log_written_with_a_header_on_every_event_reads_the_same() -> None:
    """Logs written before the headers were thinned: every event carried its own
    traceparent (and an `event_type` header, ignored)."""
    parent = new_traceparent()
    traces = EventTraces()
    for seq in range(1, 6):
        ev = Ev("old", seq, f"old:r{(seq + 1) // 2}")
        tp = child_traceparent(parent, ev.event_id)
        assert traces(ev, headers_with(tp, event_type="TurnStarted")) == tp


def test_a_read_that_starts_inside_an_inputs_events_cannot_derive_them() -> None:
    written = _write(INPUTS)
    traces = EventTraces()
    # Start at s1's second event: the rest of its input is unknown, the next inputs not.
    got = [(ev, traces(ev, h), tp) for ev, h, tp in written[1:]]
    assert [g for ev, g, _ in got if ev.causation_id == "s1:r1"] == [None, None]
    assert all(g == tp for ev, g, tp in got if ev.causation_id != "s1:r1")


def test_only_an_inputs_first_event_carries_headers_and_each_list_is_fresh() -> None:
    tp = new_traceparent()
    first = event_headers(tp, first_of_input=True)
    assert first == [("traceparent", tp.encode())]
    later = event_headers(tp, first_of_input=False)
    assert later == []
    later.append(("turnlog.input.next", b"7"))  # the transaction's last event
    assert event_headers(tp, first_of_input=False) == []
