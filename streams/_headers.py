"""Which Kafka headers a turnlog record carries, and how a reader gets back the rest.

Rule: a record carries a header only where a consumer needs it and cannot derive it.

`turnlog.events` (written by the session worker, one transaction per poll batch):

- `traceparent` (and `tracestate`, when the trace has one) on the FIRST event each input
  caused: that event's trace context, as W3C Trace Context has it. The other events of
  the same input carry none: their context follows from the first's (`EventTraces`).
  With tracing off each event's span id is derived from its event id
  (`streams.tracing.child_traceparent`), so the first event's traceparent is
  `00-<trace>-<sha256(event_id)[:16]>-<flags>` and the next ones are the same with their
  own event ids; with tracing on, every event of an input carries the id of the input's
  span, so the next ones are the first's. A reader tells the two apart by the first
  event's span id (the derived one, or not).
- `turnlog.input.next` on the transaction's last event: the requests offset consumed
  (streams.logread.INPUT_NEXT_HEADER; a worker that restores a partition reads it).

`turnlog.requests`: `traceparent` (and `tracestate`) on every request: the trace the
session worker continues (a request without one starts a trace of its own).

No longer written (logs written before carry them, and read the same): `event_type` on
every event (the event's type is its payload's union branch; no consumer read the
header), and `traceparent` on every event but an input's first.

Nothing here does IO.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

from streams.logread import INPUT_NEXT_HEADER
from streams.tracing import (
    TRACEPARENT,
    TRACESTATE,
    Headers,
    child_traceparent,
    get_traceparent,
    headers_with,
)

__all__ = [
    "EVENT_HEADERS",
    "REQUEST_HEADERS",
    "EventTraces",
    "event_headers",
]

# Every header name an event may carry, and a request (what the worker and the effect
# runner write; a client's request may carry others, and a re-routed one keeps them).
EVENT_HEADERS: Final = frozenset({TRACEPARENT, TRACESTATE, INPUT_NEXT_HEADER})
REQUEST_HEADERS: Final = frozenset({TRACEPARENT, TRACESTATE})


def event_headers(traceparent: str | None, *, first_of_input: bool) -> list[tuple[str, bytes]]:
    """The headers of one event the worker writes (a fresh list: the transaction's last
    event gets `turnlog.input.next` appended): its trace context when it is the first
    event its input caused, else none."""
    return headers_with(traceparent) if first_of_input else []


def _derived_span(event_id: str) -> str:
    # streams.tracing.child_traceparent's span id for a non-live parent.
    return hashlib.sha256(event_id.encode()).hexdigest()[:16]


class EventTraces:
    """Each event's traceparent, carried or derived, for events read in log order (one
    instance per partition read): `traces(event, headers)`.

    An event with a traceparent header gets it (every event of a log written before
    the headers were thinned carries one). One without gets the traceparent derived from
    the last one carried for its session, if that was its input's first event (same
    causation id); else None (its input's first event was not read: a read that starts
    inside an input's events)."""

    __slots__ = ("_first",)

    def __init__(self) -> None:
        # session -> (causation id, first event's traceparent, derived per event?)
        self._first: dict[str, tuple[str | None, str, bool]] = {}

    def __call__(self, event: Any, headers: Headers | Sequence[tuple[str, bytes]]) -> str | None:
        carried = get_traceparent(headers)
        if carried is not None:
            derived = carried.split("-")[2] == _derived_span(event.event_id)
            self._first[event.session_id] = (event.causation_id, carried, derived)
            return carried
        first = self._first.get(event.session_id)
        if first is None or first[0] != event.causation_id:
            return None
        _, traceparent, derived = first
        return child_traceparent(traceparent, event.event_id) if derived else traceparent
