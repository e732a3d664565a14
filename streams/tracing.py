"""W3C trace context carried in Kafka headers, from request to events to effects.

A request may carry `traceparent` and `tracestate` headers; the events it causes and the
effect outcomes reported for them carry the same trace id. With tracing off (the
default) each record gets a span id of its own derived deterministically from its id
(event id, request id), so a re-emitted event carries the same header and nothing here
touches the OpenTelemetry SDK. With tracing on (streams.telemetry), a record carries the
id of the real span that produced it: a `TraceParent` marked `live`, which
`child_traceparent` hands on unchanged.

Incoming headers are validated as W3C Trace Context requires, and an invalid one is
replaced, never propagated: a version of `ff`, an all-zero trace id or parent id,
upper-case or non-hex digits, a wrong length, or two `traceparent` headers make the
traceparent invalid (the worker then starts a trace of its own), and an invalid
traceparent takes its `tracestate` with it. A `tracestate` that does not parse (a bad
key or value, a duplicate key, more than 32 members) is dropped whole; one longer than
512 characters loses its members over 128 characters, then members from the end.
A traceparent of a later version is read by its first four fields and handed on as
version 00, the only one this code writes.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "TraceParent",
    "child_traceparent",
    "get_traceparent",
    "headers_with",
    "new_traceparent",
    "parse_traceparent",
    "parse_tracestate",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_KEY = re.compile(
    r"^(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})$"
)
_VALUE = re.compile(r"^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$")
_MAX_MEMBERS = 32
_MAX_TRACESTATE = 512
_LARGE_MEMBER = 128
_sha256 = hashlib.sha256

Headers = Sequence[tuple[str, bytes | None]] | None


class TraceParent(str):
    """A valid traceparent, with the `tracestate` that travels with it and whether it
    names a live span (one this process exports) rather than a derived id."""

    tracestate: str | None = None
    live: bool = False
    # Its headers, encoded once (the events of an input share a live traceparent).
    encoded: tuple[tuple[str, bytes], ...] | None = None
    # A live one's span context, and the span of the effect it was made for
    # (streams.telemetry): defaults here, so that reading them costs no exception.
    context: Any = None
    span: Any = None

    @classmethod
    def of(cls, value: str, tracestate: str | None, *, live: bool = False) -> TraceParent:
        out = cls(value)
        out.tracestate = tracestate or None
        out.live = live
        return out


def new_traceparent() -> str:
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


@functools.lru_cache(maxsize=8192)
def parse_traceparent(text: str) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a valid W3C traceparent, else None. Cached: a
    turn's records carry the same few values, each parsed several times per input."""
    text = text.strip(" \t")
    if len(text) < 55:
        return None
    version = text[:2]
    if version == "00":
        if len(text) != 55:
            return None
    elif version == "ff" or (len(text) > 55 and text[55] != "-"):
        return None
    m = _RE.match(text[:55])
    if m is None or m.group(2) == _ZERO_TRACE or m.group(3) == _ZERO_SPAN:
        return None
    return m.group(2), m.group(3), m.group(4)


def parse_tracestate(values: Sequence[str]) -> str | None:
    """The tracestate of (possibly several) header values, normalised, or None when
    absent or invalid."""
    members: list[str] = []
    keys: set[str] = set()
    for value in values:
        for raw in value.split(","):
            member = raw.strip(" \t")
            if not member:
                continue
            key, eq, val = member.partition("=")
            if not eq or not _KEY.match(key) or not _VALUE.match(val) or key in keys:
                return None
            keys.add(key)
            members.append(member)
    if not members or len(members) > _MAX_MEMBERS:
        return None
    if len(",".join(members)) > _MAX_TRACESTATE:
        members = [m for m in members if len(m) <= _LARGE_MEMBER]
        while members and len(",".join(members)) > _MAX_TRACESTATE:
            members.pop()
    return ",".join(members) or None


def child_traceparent(parent: str | None, span_seed: str) -> str:
    """A traceparent in the same trace as `parent` (or a new trace) for span `span_seed`.

    A live parent (a span this process exports) is the span that produced the record:
    it is returned as it is."""
    state = None
    if type(parent) is TraceParent:
        if parent.live:
            return parent
        state = parent.tracestate
    span = _sha256(span_seed.encode()).hexdigest()[:16]
    parsed = parse_traceparent(parent) if parent else None
    if parsed is None:
        trace = _sha256(("trace:" + span_seed).encode()).hexdigest()[:32]
        return f"00-{trace}-{span}-01"
    child = f"00-{parsed[0]}-{span}-{parsed[2]}"
    return TraceParent.of(child, state) if state else child


def get_traceparent(headers: Headers) -> str | None:
    """The valid traceparent of a record's headers (a `TraceParent` carrying the
    record's tracestate when it has one), or None: absent or invalid."""
    found: str | None = None
    states: list[str] = []
    for key, value in headers or ():
        if key == TRACEPARENT:
            if found is not None or not value:
                return None  # two traceparents (or an empty one): which? neither
            try:
                found = value.decode("ascii")
            except UnicodeDecodeError:
                return None
        elif key == TRACESTATE and value:
            try:
                states.append(value.decode("ascii"))
            except UnicodeDecodeError:
                states = ["\x00"]  # invalid: dropped below
    if found is None:
        return None
    parsed = parse_traceparent(found)
    if parsed is None:
        return None
    text = f"00-{parsed[0]}-{parsed[1]}-{parsed[2]}" if found[:2] != "00" else found.strip(" \t")
    state = parse_tracestate(states) if states else None
    return TraceParent.of(text, state) if state else text


def headers_with(traceparent: str | None, **extra: str) -> list[tuple[str, bytes]]:
    """A record's headers (a new list): `extra`, then `traceparent` and its tracestate."""
    out = [(k, v.encode()) for k, v in extra.items()] if extra else []
    if not traceparent:
        return out
    if type(traceparent) is not TraceParent:
        out.append((TRACEPARENT, traceparent.encode("ascii")))
        return out
    encoded = traceparent.encoded
    if encoded is None:
        encoded = ((TRACEPARENT, traceparent.encode("ascii")),)
        if traceparent.tracestate:
            encoded += ((TRACESTATE, traceparent.tracestate.encode("ascii")),)
        traceparent.encoded = encoded
    out.extend(encoded)
    return out
