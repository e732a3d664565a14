"""The vocabulary every record of the contract is built from: enums, values (Usage,
ToolUse, ThinkingBlock, Attachment), event ids, and the checks records validate with.

Nothing here does IO. The records themselves are in agents.requests (inputs) and
agents.events (facts, and the other topics' records); agents.events also re-exports
everything, as the one import of the whole contract."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import NoReturn

from agents.errors import InvalidRecord

__all__ = [
    "ATTACHMENT_TYPES",
    "EVENT_ID_NAMESPACE",
    "Attachment",
    "BudgetScope",
    "BudgetUnit",
    "ChildStatus",
    "EffectKind",
    "PolicyAction",
    "ThinkingBlock",
    "ToolUse",
    "Usage",
    "event_id_for",
]

# Fixed namespace: event ids must be the same in every process and every release.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d3a8e-2b4c-5d6e-8f70-91a2b3c4d5e6")


_NS_BYTES = EVENT_ID_NAMESPACE.bytes
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def event_id_for(session_id: str, seq: int) -> str:
    """Deterministic event id: a re-emitted event (same session, same seq) has the same id.

    Equal to `str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{session_id}/{seq}"))`, computed without
    building UUID objects because every decoded event checks it."""
    x = hashlib.sha1(b"%b%b/%d" % (_NS_BYTES, session_id.encode(), seq)).hexdigest()
    # Version 5 in the 13th hex digit, the RFC 4122 variant in the top bits of the 17th.
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


# The checks below run on every record built (every decoded event), so a message is
# formatted only when a check fails.


def _fail(record: str, message: str) -> NoReturn:
    raise InvalidRecord(f"{record}: {message}")


def _require(cond: bool, record: str, message: str) -> None:
    if not cond:
        _fail(record, message)


def _nonempty(value: str, record: str, name: str) -> None:
    if not isinstance(value, str) or not value:
        _fail(record, f"{name} must be a non-empty string")


def _nonneg(value: int, record: str, name: str) -> None:
    if not isinstance(value, int) or value < 0:
        _fail(record, f"{name} must be an int >= 0, got {value!r}")


def _ranges_ok(flat: tuple[int, ...]) -> bool:
    """Every (lo, hi) pair of an even-length flat tuple has 1 <= lo <= hi."""
    # A loop, not any(genexpr): this runs for every decoded LlmCallRequested.
    return all(1 <= flat[i] <= flat[i + 1] for i in range(0, len(flat), 2))


def _aware(value: datetime, record: str, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        _fail(record, f"{name} must be a timezone-aware datetime, got {value!r}")


# --------------------------------------------------------------------------- enums


class PolicyAction(str, Enum):
    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"


class ChildStatus(str, Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BudgetScope(str, Enum):
    TURN = "turn"
    SESSION = "session"


class BudgetUnit(str, Enum):
    TOKENS = "tokens"
    USD = "usd"


class EffectKind(str, Enum):
    LLM_CALL = "llm_call"
    TOOL_CALL = "tool_call"
    COMPACTION = "compaction"
    CHILD_SESSION = "child_session"


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one LLM call, as reported by the provider. `reasoning_tokens` are
    the part of `output_tokens` the model spent thinking (OpenAI's reasoning tokens,
    Gemini's thoughts), priced at the catalog's reasoning price; Anthropic reports its
    thinking inside output tokens only, so there they stay 0 and thinking is output."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        _nonneg(self.input_tokens, "Usage", "input_tokens")
        _nonneg(self.output_tokens, "Usage", "output_tokens")
        _nonneg(self.cache_read_tokens, "Usage", "cache_read_tokens")
        _nonneg(self.cache_write_tokens, "Usage", "cache_write_tokens")
        _nonneg(self.reasoning_tokens, "Usage", "reasoning_tokens")
        if self.reasoning_tokens > self.output_tokens:
            _fail("Usage", "reasoning_tokens are part of output_tokens and cannot exceed them")

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


@dataclass(frozen=True, slots=True)
class ToolUse:
    """One tool call the model asked for. `arguments_json` is a JSON object, as text."""

    call_id: str
    name: str
    arguments_json: str = "{}"

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "ToolUse", "call_id")
        _nonempty(self.name, "ToolUse", "name")


@dataclass(frozen=True, slots=True)
class ThinkingBlock:
    """One thinking block of an answer, kept verbatim: the vendor wants it back with the
    tool results that follow. `provider` "anthropic": an extended-thinking block (a
    redacted one has only its opaque `redacted_data`, and empty `thinking` and
    `signature`); "gemini": the thought signature of the answer's first function call
    (base64 in `signature`)."""

    thinking: str = ""
    signature: str = ""
    redacted_data: str | None = None
    provider: str = "anthropic"

    def __post_init__(self) -> None:
        if self.redacted_data is None:
            _nonempty(self.signature, "ThinkingBlock", "signature")
        else:
            _require(
                not self.thinking and not self.signature,
                "ThinkingBlock",
                "a redacted block carries only redacted_data",
            )


ATTACHMENT_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf"}
)


@dataclass(frozen=True, slots=True)
class Attachment:
    """An image or document of a user message: inline (`data`, base64 of the bytes) or by
    reference (`data` None: the bytes are in the blob store under `sha256`). Either way
    `sha256` (hex of the raw bytes) names the content, and an LLM request refers to it by
    that digest, so replay rebuilds the exact request."""

    media_type: str
    sha256: str
    data: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.media_type not in ATTACHMENT_TYPES:
            _fail(
                "Attachment",
                f"media_type {self.media_type!r} is not one of "
                f"{', '.join(sorted(ATTACHMENT_TYPES))}",
            )
        if len(self.sha256) != 64 or self.sha256.strip("0123456789abcdef"):
            _fail("Attachment", "sha256 must be 64 lower-case hex digits")

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")
