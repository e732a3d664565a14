"""What an input may hold: storable text, sizes, and believable times. Nothing here does IO.

Rule: the core decides every input, so it also decides what an input may carry. Each
value arrives from one of two sides, and the side decides what happens to a bad one:

* **From a person or a client** (a SendMessage's text, approval/cancel/close reasons,
  who decided, ids, agent names, the envelope's `occurred_at`): a value that cannot be
  stored or is over a limit makes the request illegal, so it is answered with
  RequestRejected naming the problem (which field, which limit, what size). The sender
  is there to read the reason and send something else; nothing is lost.
* **From the outside world, reported by an effect** (an LLM's answer, a tool's result,
  a summary, an error message in Complete*/Fail*): rejecting would lose a result that
  cost money or had side effects, and the effect would only be re-issued at its
  deadline and come back with the same bytes. So such text is *cleaned* while deciding
  — U+0000 and lone surrogates become U+FFFD, text over the limit is cut at a character
  boundary with a note saying how much was cut — and the event records the cleaned
  text. Cleaning is a pure function of the input, so replay re-derives the same event.

Why U+0000 at all: PostgreSQL `text` cannot hold it (`invalid byte sequence for
encoding "UTF8": 0x00`), so one NUL in the log would stop every projection of its
partition for good. Lone surrogates (U+D800..U+DFFF) cannot travel in UTF-8 at all: the
codec refuses to write them and a record holding their 3-byte CESU forms does not
decode (it is dead-lettered); they can still reach the core from inside a process.

Sizes are UTF-8 bytes, because bytes are what Kafka's limits count. `Limits.max_text_bytes`
bounds every free-text field of an input (TURNLOG_MAX_TEXT_BYTES); ids and names are
bounded by MAX_ID_BYTES. Every event holds at most one content field plus a few ids, so
an event stays under max_text_bytes + EVENT_OVERHEAD_BYTES (the events topic must
accept that much).

Time: a request's `occurred_at` is the sender's claim. The core measures deadlines from
the ingest time the shell hands it (when the worker took the record) and keeps the
claim on the events; a claim before EARLIEST_CLAIM or more than MAX_CLAIM_AHEAD after
the ingest time is absurd, and a client request carrying one is rejected.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.errors import ContractError
from agents.events import (
    CancelTurn,
    CloseSession,
    CompleteChildSession,
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    DecideApproval,
    FailLlmCall,
    FailToolCall,
    ForkSession,
    Request,
    RequestPayload,
    SendMessage,
    SetModel,
    ToolUse,
)

__all__ = [
    "DEFAULT_MAX_TEXT_BYTES",
    "EARLIEST_CLAIM",
    "EVENT_OVERHEAD_BYTES",
    "MAX_CLAIM_AHEAD",
    "MAX_CLIENT_BYTES",
    "MAX_ID_BYTES",
    "Limits",
    "attachment_problem",
    "claim_problem",
    "clean_outcome",
    "clean_text",
    "client_problem",
    "input_problem",
    "is_outcome",
    "session_id_problem",
    "storable",
    "truncate_utf8",
    "utf8_size",
]

DEFAULT_MAX_TEXT_BYTES = 1024 * 1024
# Ids and names (request, session, call ids; agent names; who decided): generous for
# nested child-session ids, small enough that a handful fit in any event's margin.
MAX_ID_BYTES = 4096
# A requester identity (Request.client): a name, printable, keyed into rate-limit counters
# and budget rows, so short.
MAX_CLIENT_BYTES = 128
# What an event holds besides its one content field: envelope, ids, a reason's words.
EVENT_OVERHEAD_BYTES = 64 * 1024
EARLIEST_CLAIM = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLAIM_AHEAD = timedelta(days=1)

# NUL, and any UTF-16 surrogate code point (only lone ones can exist in a str).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits the core applies to inputs (the registry carries them: they are
    configuration, like the agent definitions)."""

    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES

    def __post_init__(self) -> None:
        if not isinstance(self.max_text_bytes, int) or self.max_text_bytes < 1:
            raise ContractError(
                f"Limits: max_text_bytes must be an int >= 1, got {self.max_text_bytes!r}."
            )


def _first_unstorable(text: str) -> int:
    """Index of the first U+0000 or lone surrogate in `text`, or -1. Every input's text
    passes here, so it runs in C: a search for NUL, and (only for non-ASCII text) the
    UTF-8 encoder, which stops at the first surrogate (a regex is ~100x slower)."""
    nul = text.find("\x00")
    if text.isascii():
        return nul
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start if nul < 0 else min(nul, exc.start)
    return nul


def storable(text: str) -> bool:
    """Whether `text` holds no U+0000 and no lone surrogate."""
    return _first_unstorable(text) < 0


def clean_text(text: str) -> str:
    """`text` with every U+0000 and lone surrogate replaced by U+FFFD (same length)."""
    return text if _first_unstorable(text) < 0 else _UNSTORABLE.sub(_REPLACEMENT, text)


def utf8_size(text: str) -> int:
    """Bytes of `text` in UTF-8 (a lone surrogate counts its 3 bytes)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def truncate_utf8(text: str, max_bytes: int, what: str = "text") -> str:
    """`text` unchanged when it fits in `max_bytes` UTF-8 bytes; else cut at a character
    boundary, with a note saying how many bytes were cut, the whole within `max_bytes`."""
    size = utf8_size(text)
    if size <= max_bytes:
        return text
    raw = text.encode("utf-8", "surrogatepass")
    note = f"\n[{what} truncated: {size} bytes, over the limit of {max_bytes} bytes]"
    room = max_bytes - len(note.encode())
    if room <= 0:  # no room for the note: cut plainly
        return raw[:max_bytes].decode("utf-8", "ignore")
    return raw[:room].decode("utf-8", "ignore") + note


# --------------------------------------------------------------------------- client inputs


def _describe_bad(text: str) -> str:
    at = _first_unstorable(text)
    char = text[at]
    name = "U+0000 (NUL)" if char == "\x00" else f"a lone surrogate U+{ord(char):04X}"
    return f"contains {name} at character {at}"


def _field_problem(name: str, value: str | None, max_bytes: int, limit_name: str) -> str | None:
    if value is None:
        return None
    if not storable(value):
        return (
            f"{name} {_describe_bad(value)}, which the session log cannot store "
            f"(PostgreSQL text holds no NUL; UTF-8 holds no lone surrogates)"
        )
    size = utf8_size(value)
    if size > max_bytes:
        return f"{name} is {size} bytes, over {limit_name} of {max_bytes} bytes"
    return None


_ID = "the id limit (MAX_ID_BYTES)"
_TEXT = "the text limit (TURNLOG_MAX_TEXT_BYTES)"


def session_id_problem(session_id: str) -> str | None:
    """Why no event can be written for `session_id` (it would carry it), or None. The
    shell dead-letters such a request: there is no session log to reject it on."""
    return _field_problem("session_id", session_id, MAX_ID_BYTES, _ID)


def client_problem(client: str | None) -> str | None:
    """Why `client` cannot name a requester (Request.client), or None: it must be 1 to
    MAX_CLIENT_BYTES bytes of printable characters, without space at either end."""
    if client is None:
        return None
    if not client or not storable(client) or not client.isprintable() or client != client.strip():
        return (
            f"client {client[:MAX_CLIENT_BYTES]!r} is not a printable name (1 to "
            f"{MAX_CLIENT_BYTES} bytes, no control characters, no space at either end)"
        )
    size = utf8_size(client)
    if size > MAX_CLIENT_BYTES:
        return (
            f"client is {size} bytes, over the client identity limit (MAX_CLIENT_BYTES) "
            f"of {MAX_CLIENT_BYTES} bytes"
        )
    return None


def _client_fields(p: RequestPayload) -> tuple[tuple[str, str | None, bool], ...]:
    """(field, value, is free text) of what a person or client wrote in `p`."""
    if isinstance(p, SendMessage):
        return (
            ("text", p.text, True),
            ("parent_session_id", p.parent_session_id, False),
            ("parent_call_id", p.parent_call_id, False),
            *((f"attachment {i} name", a.name, False) for i, a in enumerate(p.attachments)),
        )
    if isinstance(p, DecideApproval):
        return (
            ("call_id", p.call_id, False),
            ("decided_by", p.decided_by, False),
            ("reason", p.reason, True),
        )
    if isinstance(p, (CancelTurn, CloseSession)):
        return (("reason", p.reason, True),)
    if isinstance(p, ForkSession):
        return (("source_session_id", p.source_session_id, False), ("agent", p.agent, False))
    if isinstance(p, SetModel):
        return (("model", p.model, False),)
    return ()


def is_outcome(p: RequestPayload) -> bool:
    """An effect's report (its text came from the outside world), or a Tick."""
    return not isinstance(
        p, (SendMessage, DecideApproval, CancelTurn, CloseSession, ForkSession, SetModel)
    )


def input_problem(request: Request, limits: Limits) -> str | None:
    """Why `request` cannot be accepted as written (the RequestRejected reason, without
    the session prefix), or None. Checks the envelope's ids (every request) and what a
    person or client wrote (client requests only: outcomes are cleaned instead)."""
    kind = type(request.payload).__name__
    for name, value in (
        ("request_id", request.request_id),
        ("correlation_id", request.correlation_id),
        ("causation_id", request.causation_id),
        ("agent", request.agent),
    ):
        problem = _field_problem(name, value, MAX_ID_BYTES, _ID)
        if problem is not None:
            return f"{kind} rejected: {problem}."
    problem = client_problem(request.client)
    if problem is not None:
        return f"{kind} rejected: {problem}."
    for name, value, free_text in _client_fields(request.payload):
        if free_text:
            problem = _field_problem(name, value, limits.max_text_bytes, _TEXT)
        else:
            problem = _field_problem(name, value, MAX_ID_BYTES, _ID)
        if problem is not None:
            return f"{kind} rejected: {problem}."
    if isinstance(request.payload, SendMessage):
        for i, a in enumerate(request.payload.attachments):
            problem = attachment_problem(a)
            if problem is not None:
                return f"{kind} rejected: attachment {i} {problem}."
    return None


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def attachment_problem(a: Any) -> str | None:
    """Why an inline attachment's bytes are not what it claims (base64 of the bytes whose
    sha256 it names), or None. A reference (no data) names a blob the worker resolves."""
    if a.data is None:
        return None
    if len(a.data) % 4 or not _BASE64.fullmatch(a.data):
        return "has data that is not base64"
    digest = hashlib.sha256(base64.b64decode(a.data)).hexdigest()
    if digest != a.sha256:
        return f"has sha256 {a.sha256[:12]}, but its bytes hash to {digest[:12]}"
    return None


# --------------------------------------------------------------------------- outcomes


def _clean(value: str, max_bytes: int, what: str) -> str:
    return truncate_utf8(clean_text(value), max_bytes, what)


def _clean_fields(p: Any, names: tuple[str, ...], max_bytes: int) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in names:
        value = getattr(p, name)
        if value is None:
            continue
        cleaned = _clean(value, max_bytes, name)
        if cleaned is not value and cleaned != value:
            changes[name] = cleaned
    return changes


def _clean_use(use: ToolUse, limits: Limits) -> ToolUse:
    changes = _clean_fields(use, ("call_id", "name"), MAX_ID_BYTES)
    changes.update(_clean_fields(use, ("arguments_json",), limits.max_text_bytes))
    return replace(use, **changes) if changes else use


def _outcome_strings(p: RequestPayload) -> tuple[list[str], list[str]] | None:
    """(ids and names, free texts) of an outcome, or None for a payload that is not one."""
    if isinstance(p, CompleteLlmCall):
        ids = [p.call_id, p.model, p.stop_reason, *p.circuits_opened]
        texts = [p.text]
        for u in p.tool_uses:
            ids += (u.call_id, u.name)
            texts.append(u.arguments_json)
        return ids, texts
    if isinstance(p, FailLlmCall):
        return [p.call_id, p.error_type, *p.circuits_opened], [p.message]
    if isinstance(p, CompleteToolCall):
        return [p.call_id], [p.result]
    if isinstance(p, FailToolCall):
        return [p.call_id], [p.error]
    if isinstance(p, CompleteCompaction):
        return [p.compaction_id, p.model], [p.summary]
    if isinstance(p, CompleteChildSession):
        return [p.call_id, p.child_session_id], [p.answer]
    return None


def _plainly_fine(p: RequestPayload, max_text_bytes: int) -> bool:
    """The common case, cheaply: every string storable (one check over them joined) and
    short enough that even at 4 bytes a character it is within its limit."""
    found = _outcome_strings(p)
    if found is None:
        return True
    ids, texts = found
    id_bound, text_bound = MAX_ID_BYTES // 4, max_text_bytes // 4
    return (
        all(len(t) <= id_bound for t in ids)
        and all(len(t) <= text_bound for t in texts)
        and _first_unstorable("".join(ids) + "".join(texts)) < 0
    )


def clean_outcome(p: RequestPayload, limits: Limits) -> RequestPayload:
    """An effect outcome as the core records it: every string storable (U+0000 and lone
    surrogates -> U+FFFD) and every free text within `limits.max_text_bytes` (cut with a
    note). The same object when nothing needed cleaning (the common case, cheaply)."""
    text = limits.max_text_bytes
    if _plainly_fine(p, text):
        return p
    changes: dict[str, Any]
    if isinstance(p, CompleteLlmCall):
        changes = _clean_fields(p, ("call_id", "model", "stop_reason"), MAX_ID_BYTES)
        changes.update(_clean_fields(p, ("text",), text))
        uses = tuple(_clean_use(u, limits) for u in p.tool_uses)
        if any(a is not b for a, b in zip(uses, p.tool_uses, strict=True)):
            ids = [u.call_id for u in uses]
            if len(ids) == len(set(ids)):  # cleaning two ids into one would be ambiguous
                changes["tool_uses"] = uses
        circuits = tuple(_clean(c, MAX_ID_BYTES, "circuit") for c in p.circuits_opened)
        if circuits != p.circuits_opened:
            changes["circuits_opened"] = circuits
    elif isinstance(p, FailLlmCall):
        changes = _clean_fields(p, ("call_id", "error_type"), MAX_ID_BYTES)
        changes.update(_clean_fields(p, ("message",), text))
        circuits = tuple(_clean(c, MAX_ID_BYTES, "circuit") for c in p.circuits_opened)
        if circuits != p.circuits_opened:
            changes["circuits_opened"] = circuits
    elif isinstance(p, CompleteToolCall):
        changes = _clean_fields(p, ("call_id",), MAX_ID_BYTES)
        changes.update(_clean_fields(p, ("result",), text))
    elif isinstance(p, FailToolCall):
        changes = _clean_fields(p, ("call_id",), MAX_ID_BYTES)
        changes.update(_clean_fields(p, ("error",), text))
    elif isinstance(p, CompleteCompaction):
        changes = _clean_fields(p, ("compaction_id", "model"), MAX_ID_BYTES)
        changes.update(_clean_fields(p, ("summary",), text))
    elif isinstance(p, CompleteChildSession):
        changes = _clean_fields(p, ("call_id", "child_session_id"), MAX_ID_BYTES)
        changes.update(_clean_fields(p, ("answer",), text))
    else:  # Tick, or a client request (checked by input_problem instead)
        return p
    return replace(p, **changes) if changes else p


# --------------------------------------------------------------------------- time


def claim_problem(claimed: datetime, ingested: datetime | None) -> str | None:
    """Why the sender's `occurred_at` is not believable (RequestRejected reason), or None.
    Without an ingest time only the lower bound can be checked."""
    if claimed < EARLIEST_CLAIM:
        return (
            f"occurred_at {claimed.isoformat()} is before {EARLIEST_CLAIM.date().isoformat()}, "
            f"the earliest time a request may claim (EARLIEST_CLAIM)"
        )
    if ingested is not None and claimed - ingested > MAX_CLAIM_AHEAD:
        return (
            f"occurred_at {claimed.isoformat()} is more than {MAX_CLAIM_AHEAD} ahead of "
            f"{ingested.isoformat()}, when the worker took the request (MAX_CLAIM_AHEAD)"
        )
    return None
