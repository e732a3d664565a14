"""W3C trace context carried in Kafka headers, from request to events to effects.

A request may carry a `traceparent` header; the events it causes and the effect outcomes
reported for them carry the same trace id with a new span id (derived deterministically
from the event id, so a re-emitted event carries the same header).
"""

from __future__ import annotations

import hashlib
import os
import re

__all__ = ["TRACEPARENT", "child_traceparent", "get_traceparent", "headers_with", "new_traceparent"]

TRACEPARENT = "traceparent"
_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent() -> str:
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def child_traceparent(parent: str | None, span_seed: str) -> str:
    """A traceparent in the same trace as `parent` (or a new trace) for span `span_seed`."""
    span = hashlib.sha256(span_seed.encode()).hexdigest()[:16]
    m = _RE.match(parent or "")
    if m is None:
        trace = hashlib.sha256(("trace:" + span_seed).encode()).hexdigest()[:32]
        return f"00-{trace}-{span}-01"
    return f"00-{m.group(1)}-{span}-{m.group(3)}"


def get_traceparent(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | None) -> str | None:
    for key, value in headers or ():
        if key == TRACEPARENT and value:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if _RE.match(text) else None
    return None


def headers_with(traceparent: str | None, **extra: str) -> list[tuple[str, bytes]]:
    out = [(k, v.encode()) for k, v in extra.items()]
    if traceparent:
        out.append((TRACEPARENT, traceparent.encode("ascii")))
    return out
