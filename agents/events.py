"""The event contract as Python types: requests (inputs) and events (facts).

Nothing here does IO. One frozen, slotted dataclass per Avro record, with the same name as
the record in `schemas/`. Records validate in their constructor (InvalidRecord), so a value
that exists is a value that can be encoded and folded.

Naming: requests sent by clients and effect executors are commands, in the imperative
(`SendMessage`, `CompleteLlmCall`); events on the session log are facts, in the past tense
(`UserMessageReceived`, `LlmCallCompleted`).

Money is integer nano-dollars (USD * 1e9): exact sums, no float drift, and cache-read
prices (fractions of a micro-dollar per token) stay integral.

Storage stays linear in the length of a session: each piece of content (user text, LLM
text, tool arguments, tool result, summary) appears in exactly one event. Everything else
refers to it by seq or by call id.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import NoReturn, Union, get_args

from agents.errors import InvalidRecord

__all__ = [
    "ATTACHMENT_TYPES",
    "EVENT_ID_NAMESPACE",
    "EVENT_TYPES",
    "REFUSED",
    "REQUEST_TYPES",
    "SCHEDULE_TYPES",
    "AgentHandedOff",
    "AgentVersion",
    "AgentVersionChanged",
    "ApprovalDenied",
    "ApprovalGranted",
    "ApprovalRequested",
    "Attachment",
    "AuditCheckpoint",
    "BudgetExceeded",
    "BudgetScope",
    "BudgetUnit",
    "CancelTurn",
    "ChildSessionCompleted",
    "ChildSessionRequested",
    "ChildStatus",
    "CloseSession",
    "CompleteChildSession",
    "CompleteCompaction",
    "CompleteLlmCall",
    "CompleteToolCall",
    "ContextCompacted",
    "ContextCompactionRequested",
    "DecideApproval",
    "EffectKind",
    "EffectReissued",
    "Event",
    "EventPayload",
    "FailLlmCall",
    "FailToolCall",
    "ForkSession",
    "GuardrailTripped",
    "LlmCallCompleted",
    "LlmCallFailed",
    "LlmCallRequested",
    "MessageQueued",
    "ModelChanged",
    "OrchestrationCompleted",
    "OrchestrationMemberCancelled",
    "OrchestrationStarted",
    # enums
    "PolicyAction",
    "ProviderCircuitOpened",
    "QueuedMessageDropped",
    "Request",
    "RequestPayload",
    "RequestRejected",
    "RestorePoint",
    # turnlog.schedules
    "ScheduleDefined",
    "ScheduleFired",
    "SchedulePaused",
    "SchedulePayload",
    "ScheduleRecord",
    "ScheduleRemoved",
    "ScheduleResumed",
    # request payloads
    "SendMessage",
    "SessionClosed",
    "SessionForked",
    "SessionSnapshot",
    # event payloads
    "SessionStarted",
    "SetModel",
    "Snapshot",
    "StructuredOutputAccepted",
    "StructuredOutputInvalid",
    "ThinkingBlock",
    "Tick",
    # other topics
    "TokenDelta",
    "ToolCallCompleted",
    "ToolCallFailed",
    "ToolCallRequested",
    "ToolUse",
    "TurnCancelled",
    "TurnCompleted",
    "TurnFailed",
    "TurnStarted",
    "UpgradeAgent",
    # value records
    "Usage",
    "UserMessageReceived",
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


# --------------------------------------------------------------------------- requests
# Inputs on `turnlog.requests`. Clients send the first five; effect executors report
# outcomes with the Complete*/Fail* records, always naming the effect id they were given.


@dataclass(frozen=True, slots=True)
class SendMessage:
    """A user message: starts a turn (and the session, when it is new).

    `parent_session_id`/`parent_call_id` are set when a parent session delegates: the
    child's final answer completes that tool call in the parent.
    """

    text: str
    parent_session_id: str | None = None
    parent_call_id: str | None = None
    attachments: tuple[Attachment, ...] = ()

    def __post_init__(self) -> None:
        _require(isinstance(self.text, str), "SendMessage", "text must be a string")
        _require(
            (self.parent_session_id is None) == (self.parent_call_id is None),
            "SendMessage",
            "parent_session_id and parent_call_id are set together or not at all",
        )


@dataclass(frozen=True, slots=True)
class DecideApproval:
    """A human (or policy service) decision on a tool call awaiting approval."""

    call_id: str
    approved: bool
    decided_by: str
    reason: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "DecideApproval", "call_id")
        _nonempty(self.decided_by, "DecideApproval", "decided_by")


@dataclass(frozen=True, slots=True)
class CancelTurn:
    """Cancel the running turn (its effects are aborted). `queued_request_id`: drop only
    that queued message instead; `drop_queue`: cancel the turn and drop the queue too."""

    reason: str | None = None
    queued_request_id: str | None = None
    drop_queue: bool = False


@dataclass(frozen=True, slots=True)
class CloseSession:
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ForkSession:
    """Sent to the NEW session id: start it with the history of source up to `at_seq`."""

    source_session_id: str
    at_seq: int
    agent: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.source_session_id, "ForkSession", "source_session_id")
        if self.at_seq < 1:
            _fail("ForkSession", f"at_seq must be >= 1, got {self.at_seq}")


@dataclass(frozen=True, slots=True)
class CompleteLlmCall:
    """Outcome of an LLM call effect. `model` is the model that answered (a fallback when
    `fallback_used`). `circuits_opened` names provider/model circuits that opened while
    serving this call."""

    call_id: str
    model: str
    text: str
    tool_uses: tuple[ToolUse, ...] = ()
    stop_reason: str = "end_turn"
    usage: Usage = field(default_factory=Usage)
    latency_ms: int = 0
    attempts: int = 1
    fallback_used: bool = False
    circuits_opened: tuple[str, ...] = ()
    thinking: tuple[ThinkingBlock, ...] = ()

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "CompleteLlmCall", "call_id")
        _nonempty(self.model, "CompleteLlmCall", "model")
        _nonneg(self.latency_ms, "CompleteLlmCall", "latency_ms")
        _require(self.attempts >= 1, "CompleteLlmCall", "attempts must be >= 1")
        ids = [t.call_id for t in self.tool_uses]
        _require(len(ids) == len(set(ids)), "CompleteLlmCall", "tool_uses have duplicate call ids")


@dataclass(frozen=True, slots=True)
class FailLlmCall:
    """`usage`: what the vendor reported before the call broke off (an aborted stream is
    billed for what it read); charged when a cancel had abandoned the call."""

    call_id: str
    error_type: str
    message: str
    attempts: int = 1
    retryable: bool = False
    latency_ms: int = 0
    circuits_opened: tuple[str, ...] = ()
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "FailLlmCall", "call_id")
        _nonempty(self.error_type, "FailLlmCall", "error_type")
        _require(self.attempts >= 1, "FailLlmCall", "attempts must be >= 1")


@dataclass(frozen=True, slots=True)
class CompleteToolCall:
    call_id: str
    result: str
    latency_ms: int = 0

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "CompleteToolCall", "call_id")
        _nonneg(self.latency_ms, "CompleteToolCall", "latency_ms")


@dataclass(frozen=True, slots=True)
class FailToolCall:
    call_id: str
    error: str
    latency_ms: int = 0

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "FailToolCall", "call_id")
        _nonneg(self.latency_ms, "FailToolCall", "latency_ms")


@dataclass(frozen=True, slots=True)
class CompleteCompaction:
    """Outcome of a summarize compaction (an LLM effect)."""

    compaction_id: str
    summary: str
    model: str
    usage: Usage = field(default_factory=Usage)
    latency_ms: int = 0

    def __post_init__(self) -> None:
        _nonempty(self.compaction_id, "CompleteCompaction", "compaction_id")
        _nonempty(self.model, "CompleteCompaction", "model")


@dataclass(frozen=True, slots=True)
class CompleteChildSession:
    """Reported to the PARENT session when a delegated child session's turn ends."""

    call_id: str
    child_session_id: str
    status: ChildStatus
    answer: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_nanos: int = 0

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "CompleteChildSession", "call_id")
        _nonempty(self.child_session_id, "CompleteChildSession", "child_session_id")
        _nonneg(self.cost_nanos, "CompleteChildSession", "cost_nanos")


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes: lets the pure core expire approvals and re-issue overdue effects.
    The time is the envelope's `occurred_at`."""


@dataclass(frozen=True, slots=True)
class UpgradeAgent:
    """Move an idle session to agent version `to_hash` (None: the one served now)."""

    to_hash: str | None = None


@dataclass(frozen=True, slots=True)
class SetModel:
    """Switch the session's model: later LLM calls of its turns use `model` (a catalog
    name), with the agent's fallbacks after it."""

    model: str

    def __post_init__(self) -> None:
        _nonempty(self.model, "SetModel", "model")


RequestPayload = Union[  # noqa: UP007 (the schema loader reads its typing.Union args)
    SendMessage,
    DecideApproval,
    CancelTurn,
    CloseSession,
    ForkSession,
    CompleteLlmCall,
    FailLlmCall,
    CompleteToolCall,
    FailToolCall,
    CompleteCompaction,
    CompleteChildSession,
    Tick,
    UpgradeAgent,
    SetModel,
]

REQUEST_TYPES: tuple[type, ...] = get_args(RequestPayload)
# isinstance over a tuple of 20+ types tries them in order; a set finds the exact type
# at once (isinstance stays as the fallback, so the check means the same).
_REQUEST_TYPE_SET = frozenset(REQUEST_TYPES)


@dataclass(frozen=True, slots=True)
class Request:
    """Envelope of `turnlog.requests`. `request_id` is unique per request (clients make
    it; a duplicate is rejected). `agent` names the agent of a new session."""

    request_id: str
    session_id: str
    occurred_at: datetime
    payload: RequestPayload
    correlation_id: str | None = None
    causation_id: str | None = None
    agent: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.request_id, "Request", "request_id")
        _nonempty(self.session_id, "Request", "session_id")
        _aware(self.occurred_at, "Request", "occurred_at")
        if type(self.payload) not in _REQUEST_TYPE_SET and not isinstance(
            self.payload, REQUEST_TYPES
        ):
            _fail("Request", f"payload must be a request record, got {type(self.payload).__name__}")


# --------------------------------------------------------------------------- events
# Facts on `turnlog.events`, written only by the session worker.


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """First event of a session. `definition_hash` pins the agent definition in force."""

    agent: str
    definition_hash: str
    parent_session_id: str | None = None
    parent_call_id: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.agent, "SessionStarted", "agent")


@dataclass(frozen=True, slots=True)
class SessionForked:
    """First event of a forked session; its seq is `at_seq + 1`: seqs up to `at_seq` are
    the source's events (the shared ancestry), later seqs are this session's own."""

    source_session_id: str
    at_seq: int
    agent: str
    definition_hash: str

    def __post_init__(self) -> None:
        _nonempty(self.source_session_id, "SessionForked", "source_session_id")
        _require(self.at_seq >= 1, "SessionForked", "at_seq must be >= 1")


@dataclass(frozen=True, slots=True)
class SessionClosed:
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TurnStarted:
    """`queued_seq`: the seq of the MessageQueued whose message starts this turn."""

    turn_no: int
    queued_seq: int | None = None

    def __post_init__(self) -> None:
        _require(self.turn_no >= 1, "TurnStarted", "turn_no must be >= 1")


@dataclass(frozen=True, slots=True)
class UserMessageReceived:
    text: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class LlmCallRequested:
    """An LLM call effect. The context is recorded BY REFERENCE, in constant size:
    `context_ranges` is a flat tuple of inclusive seq pairs (lo1, hi1, lo2, hi2, ...); the
    context is, in pair order, the conversation entries whose seqs fall in each pair —
    a pair with lo == hi names exactly that entry (e.g. the active compaction summary),
    a wider pair names the non-summary entries in it. A context window is the summary
    plus a suffix of the conversation, so it takes one or two pairs however long the
    session grows (agents.state.context_ranges / expand_context convert).
    `context_entries` is the number of entries referenced. `system_prompt_hash` and
    `toolset_hash` pin the definition; `request_digest` is the sha256 of the exact
    provider request, so replay can rebuild the request and prove it identical.
    `reserved_*` is the budget held."""

    call_id: str
    model: str
    fallbacks: tuple[str, ...]
    max_tokens: int
    temperature: float
    context_ranges: tuple[int, ...]
    context_entries: int
    system_prompt_hash: str
    toolset_hash: str
    request_digest: str
    iteration: int
    deadline_at: datetime
    reserved_tokens: int = 0
    reserved_nanos: int = 0
    purpose: str = "turn"  # "turn" or "summarize"

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "LlmCallRequested", "call_id")
        _nonempty(self.model, "LlmCallRequested", "model")
        _require(self.max_tokens >= 1, "LlmCallRequested", "max_tokens must be >= 1")
        r = self.context_ranges
        if len(r) % 2 or not _ranges_ok(r):
            _fail(
                "LlmCallRequested",
                f"context_ranges must be (lo, hi) pairs with 1 <= lo <= hi, got {r!r}",
            )
        _nonneg(self.context_entries, "LlmCallRequested", "context_entries")
        _aware(self.deadline_at, "LlmCallRequested", "deadline_at")
        _nonneg(self.reserved_tokens, "LlmCallRequested", "reserved_tokens")
        _nonneg(self.reserved_nanos, "LlmCallRequested", "reserved_nanos")


@dataclass(frozen=True, slots=True)
class LlmCallCompleted:
    """The model's answer. Tool calls it asked for follow as ToolCallRequested events
    (which carry the arguments), listed here by id so the assistant message can be
    rebuilt in order."""

    call_id: str
    model: str
    text: str
    tool_call_ids: tuple[str, ...]
    stop_reason: str
    usage: Usage
    cost_nanos: int
    latency_ms: int
    attempts: int
    fallback_used: bool = False
    # None: the answer is part of the conversation. Else why it is recorded only for its
    # usage and cost: "late" (abandoned by a cancel), "truncated" (cut inside a tool
    # call), "context_window" (the model stopped on a full context window).
    discarded: str | None = None
    # The answer's thinking blocks, in order (sent back with the next request).
    thinking: tuple[ThinkingBlock, ...] = ()

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "LlmCallCompleted", "call_id")
        _nonneg(self.cost_nanos, "LlmCallCompleted", "cost_nanos")


@dataclass(frozen=True, slots=True)
class LlmCallFailed:
    call_id: str
    error_type: str
    message: str
    attempts: int
    latency_ms: int = 0

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "LlmCallFailed", "call_id")


@dataclass(frozen=True, slots=True)
class ProviderCircuitOpened:
    """A provider/model circuit breaker opened while serving `call_id`."""

    call_id: str
    target: str  # "provider/model"


@dataclass(frozen=True, slots=True)
class ToolCallRequested:
    """A tool call and the policy decision on it. `rule` names the matching policy rule
    (None when the default applied)."""

    call_id: str
    llm_call_id: str
    name: str
    arguments_json: str
    decision: PolicyAction
    rule: str | None
    deadline_at: datetime

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "ToolCallRequested", "call_id")
        _nonempty(self.name, "ToolCallRequested", "name")
        _aware(self.deadline_at, "ToolCallRequested", "deadline_at")


@dataclass(frozen=True, slots=True)
class ApprovalRequested:
    call_id: str
    tool_name: str
    expires_at: datetime
    # Why a human is asked, when it is not the policy (None): e.g. a call that is not
    # idempotent and whose first run has no known outcome.
    reason: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "ApprovalRequested", "call_id")
        _aware(self.expires_at, "ApprovalRequested", "expires_at")


@dataclass(frozen=True, slots=True)
class ApprovalGranted:
    call_id: str
    decided_by: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalDenied:
    """`expired` is True when nobody decided before the deadline."""

    call_id: str
    decided_by: str
    reason: str | None = None
    expired: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallCompleted:
    call_id: str
    result: str
    latency_ms: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallFailed:
    call_id: str
    error: str
    latency_ms: int = 0


@dataclass(frozen=True, slots=True)
class ContextCompactionRequested:
    """`entry_seqs` are the entries to compact. For sliding_window/oldest_first the core
    compacts at once (ContextCompacted follows in the same decision); for summarize this
    is an LLM effect."""

    compaction_id: str
    strategy: str
    entry_seqs: tuple[int, ...]
    tokens_before: int
    context_window: int

    def __post_init__(self) -> None:
        _nonempty(self.compaction_id, "ContextCompactionRequested", "compaction_id")
        if self.strategy not in ("sliding_window", "oldest_first", "summarize"):
            _fail("ContextCompactionRequested", f"unknown strategy {self.strategy!r}")


@dataclass(frozen=True, slots=True)
class ContextCompacted:
    """Entries in `removed_seqs` leave the context window; `summary` (summarize only)
    takes their place and is itself an entry at this event's seq."""

    compaction_id: str
    strategy: str
    removed_seqs: tuple[int, ...]
    summary: str | None
    tokens_after: int
    usage: Usage = field(default_factory=Usage)
    cost_nanos: int = 0
    model: str | None = None


@dataclass(frozen=True, slots=True)
class ChildSessionRequested:
    call_id: str
    child_session_id: str
    agent: str
    task: str

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "ChildSessionRequested", "call_id")
        _nonempty(self.child_session_id, "ChildSessionRequested", "child_session_id")
        _nonempty(self.agent, "ChildSessionRequested", "agent")


@dataclass(frozen=True, slots=True)
class ChildSessionCompleted:
    call_id: str
    child_session_id: str
    status: ChildStatus
    answer: str
    usage: Usage
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class EffectReissued:
    """A pending effect passed its deadline and is requested again with the SAME id; the
    first outcome to arrive folds, later duplicates are ignored."""

    effect_id: str
    kind: EffectKind
    attempt: int
    deadline_at: datetime

    def __post_init__(self) -> None:
        _nonempty(self.effect_id, "EffectReissued", "effect_id")
        _require(self.attempt >= 2, "EffectReissued", "attempt must be >= 2")
        _aware(self.deadline_at, "EffectReissued", "deadline_at")


@dataclass(frozen=True, slots=True)
class BudgetExceeded:
    scope: BudgetScope
    unit: BudgetUnit
    limit: int  # tokens, or nano-dollars
    used: int
    requested: int


@dataclass(frozen=True, slots=True)
class TurnCompleted:
    """`answer_seq` is the seq of the LlmCallCompleted holding the final answer."""

    turn_no: int
    answer_seq: int
    usage: Usage
    cost_nanos: int
    iterations: int


# TurnFailed.error_type of a turn the model refused (its own outcome in SQL and the CLI).
REFUSED = "Refused"


@dataclass(frozen=True, slots=True)
class TurnFailed:
    turn_no: int
    reason: str
    error_type: str


@dataclass(frozen=True, slots=True)
class TurnCancelled:
    """The work the cancel abandoned: the LLM call in flight, the step's unresolved tool
    calls, those of them that waited for approval, and the children they delegated to."""

    turn_no: int
    reason: str | None = None
    llm_call_id: str | None = None
    tool_call_ids: tuple[str, ...] = ()
    approval_call_ids: tuple[str, ...] = ()
    child_session_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageQueued:
    """A message that arrived during a turn; it starts the next one (position from 1)."""

    text: str
    position: int
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentVersionChanged:
    """The session moved to another version of its agent (definition hashes);
    `reason`: upgrade | follow | unavailable."""

    from_hash: str
    to_hash: str
    reason: str


@dataclass(frozen=True, slots=True)
class ModelChanged:
    """The session's model changed (a SetModel): its later LLM calls use `to_model`.
    `from_model` is the model it used before (the agent's, or an earlier switch's)."""

    from_model: str
    to_model: str


@dataclass(frozen=True, slots=True)
class AgentHandedOff:
    """The session continues under another agent (a `handoff` tool call): its later LLM
    calls use `to_agent`'s definition (version `to_hash`) and model, with the whole
    conversation carried over. `note` is what the handing agent said to the next one."""

    call_id: str
    from_agent: str
    to_agent: str
    from_hash: str
    to_hash: str
    note: str = ""

    def __post_init__(self) -> None:
        _nonempty(self.to_agent, "AgentHandedOff", "to_agent")
        _nonempty(self.to_hash, "AgentHandedOff", "to_hash")


@dataclass(frozen=True, slots=True)
class OrchestrationStarted:
    """A `delegate_many` call (or a team agent's turn) fans out to member child sessions.
    `mode` is all | race | quorum | sequential (`quorum` successes needed: quorum mode
    only, else 0); `combine` says how answers become the call's result (concatenate |
    first | vote). Member i runs `agents[i]` on `tasks[i]` as the call `<call_id>.m<i>`
    (each start is a ChildSessionRequested of that call id); `member_timeout_ms` is each
    member's allowance from its start. `fail_fast` (mode all): the first failure stops the
    members still running."""

    call_id: str
    mode: str
    quorum: int
    combine: str
    agents: tuple[str, ...]
    tasks: tuple[str, ...]
    member_timeout_ms: int
    fail_fast: bool = False

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "OrchestrationStarted", "call_id")
        _require(
            len(self.agents) == len(self.tasks) and len(self.agents) > 0,
            "OrchestrationStarted",
            "agents and tasks must be non-empty and of the same length",
        )


@dataclass(frozen=True, slots=True)
class OrchestrationMemberCancelled:
    """A running member the orchestration no longer needs (a race was won, a quorum was
    reached or can no longer be): its child session is sent a CancelTurn; its outcome,
    with the cost it ran up, still completes the member (ChildSessionCompleted)."""

    call_id: str
    member_call_id: str
    child_session_id: str
    reason: str

    def __post_init__(self) -> None:
        _nonempty(self.member_call_id, "OrchestrationMemberCancelled", "member_call_id")


@dataclass(frozen=True, slots=True)
class OrchestrationCompleted:
    """Every member is settled and the answers are combined: `result` answers the call
    (status completed | failed). `winner_call_id`: the member whose answer won (race,
    first, vote), None otherwise. Counts are of members by outcome; `cancelled` counts
    the members the orchestration stopped."""

    call_id: str
    status: str
    result: str
    winner_call_id: str | None
    completed: int
    failed: int
    cancelled: int

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "OrchestrationCompleted", "call_id")


@dataclass(frozen=True, slots=True)
class QueuedMessageDropped:
    queued_seq: int
    request_id: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """An input that was illegal in the current state; nothing else changed."""

    request_id: str
    request_type: str
    reason: str
    phase: str


@dataclass(frozen=True, slots=True)
class GuardrailTripped:
    """A guardrail of the agent (agents.guardrails) tripped on the user's input or the
    model's output (`on`); `action`: block | redact | warn. `detail` says what tripped
    without quoting the text; `call_id` is the LLM call of an output trip."""

    rule: str
    kind: str
    action: str
    on: str
    detail: str
    call_id: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.rule, "GuardrailTripped", "rule")


@dataclass(frozen=True, slots=True)
class StructuredOutputInvalid:
    """The answer of LLM call `call_id` does not match the agent's output_schema:
    `error` says where. It is a user-side entry of the conversation (the corrective
    attempt's request carries it, agents.structured.correction_text), or the turn's
    end when `attempt` is past the corrections allowed."""

    call_id: str
    error: str
    attempt: int


@dataclass(frozen=True, slots=True)
class StructuredOutputAccepted:
    """The answer of LLM call `call_id` matches the agent's output_schema; `result` is
    its canonical JSON (stored as jsonb by the projection, returned by the client)."""

    call_id: str
    result: str


EventPayload = Union[  # noqa: UP007 (the schema loader reads its typing.Union args)
    SessionStarted,
    SessionForked,
    SessionClosed,
    TurnStarted,
    UserMessageReceived,
    LlmCallRequested,
    LlmCallCompleted,
    LlmCallFailed,
    ProviderCircuitOpened,
    ToolCallRequested,
    ApprovalRequested,
    ApprovalGranted,
    ApprovalDenied,
    ToolCallCompleted,
    ToolCallFailed,
    ContextCompactionRequested,
    ContextCompacted,
    ChildSessionRequested,
    ChildSessionCompleted,
    EffectReissued,
    BudgetExceeded,
    TurnCompleted,
    TurnFailed,
    TurnCancelled,
    RequestRejected,
    MessageQueued,
    QueuedMessageDropped,
    AgentVersionChanged,
    ModelChanged,
    OrchestrationStarted,
    OrchestrationMemberCancelled,
    OrchestrationCompleted,
    AgentHandedOff,
    GuardrailTripped,
    StructuredOutputInvalid,
    StructuredOutputAccepted,
]

EVENT_TYPES: tuple[type, ...] = get_args(EventPayload)
_EVENT_TYPE_SET = frozenset(EVENT_TYPES)


@dataclass(frozen=True, slots=True)
class Event:
    """Envelope of `turnlog.events`. `event_id` is derived from (session_id, seq);
    `causation_id` is the request_id of the input that caused the event; `turn_id` is
    None outside a turn. `occurred_at` is when the session worker took that input (the
    log's time: every deadline is measured from it); `claimed_at` is the input's own
    `occurred_at`, the sender's claim, when it differs (None when it is the same or was
    not recorded, as in logs written before v1.1)."""

    event_id: str
    session_id: str
    seq: int
    occurred_at: datetime
    agent: str
    payload: EventPayload
    turn_id: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    claimed_at: datetime | None = None

    def __post_init__(self) -> None:
        _nonempty(self.session_id, "Event", "session_id")
        if self.seq < 1:
            _fail("Event", f"seq must be >= 1, got {self.seq}")
        expected = event_id_for(self.session_id, self.seq)
        if self.event_id != expected:
            _fail(
                "Event",
                f"event_id of session {self.session_id} seq {self.seq} must be "
                f"{expected}, got {self.event_id}",
            )
        _aware(self.occurred_at, "Event", "occurred_at")
        if self.claimed_at is not None:
            _aware(self.claimed_at, "Event", "claimed_at")
        if type(self.payload) not in _EVENT_TYPE_SET and not isinstance(self.payload, EVENT_TYPES):
            _fail("Event", f"payload must be an event record, got {type(self.payload).__name__}")


# --------------------------------------------------------------------------- other topics


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """Envelope of `turnlog.deltas`: streamed text of an LLM call, for live clients only
    (the durable log gets the final completion)."""

    session_id: str
    call_id: str
    index: int
    text: str
    occurred_at: datetime
    done: bool = False


@dataclass(frozen=True, slots=True)
class AuditCheckpoint:
    """Envelope of `turnlog.audit.checkpoints`: the audit chain head after row `audit_id`."""

    audit_id: int
    head_hash: str
    event_count: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A session's state after event `seq` (see turnlog.v1.SessionSnapshot.avsc)."""

    seq: int
    events_offset: int
    agent: str
    phase: str
    state_format: int
    state: bytes
    next_deadline: datetime | None = None


@dataclass(frozen=True, slots=True)
class RestorePoint:
    """Every event of a partition below `events_offset` is covered by a snapshot;
    `input_next`: the requests offset consumed up to when it was written."""

    events_offset: int
    input_next: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Envelope of `turnlog.snapshots`: a SessionSnapshot or the partition's
    RestorePoint."""

    session_id: str
    written_at: datetime
    payload: SessionSnapshot | RestorePoint


@dataclass(frozen=True, slots=True)
class AgentVersion:
    """Envelope of `turnlog.agents`: one agent definition version, by its hash."""

    definition_hash: str
    agent: str
    definition: str
    published_at: datetime


# --------------------------------------------------------------------------- schedules
# Records of `turnlog.schedules`: a keyed store of their own, never session events.

SCHEDULE_OVERLAP = ("skip", "queue", "cancel")
SCHEDULE_CATCH_UP = ("once", "all", "none")
FIRING_OVERLAP = ("none", "skipped", "queued", "cancelled")
FIRING_CATCH_UP = ("on_time", "once", "all", "none")


@dataclass(frozen=True, slots=True)
class ScheduleDefined:
    """A schedule created or replaced: one of `cron` (in `timezone`), `every_s` or `at`;
    `session_id` None: a new session per run. (turnlog.v1.ScheduleDefined.avsc)"""

    agent: str
    message: str
    cron: str | None = None
    timezone: str = "UTC"
    every_s: int | None = None
    start_at: datetime | None = None
    at: datetime | None = None
    session_id: str | None = None
    overlap: str = "skip"
    catch_up: str = "once"
    catch_up_limit: int = 10
    paused: bool = False
    source: str = "api"

    def __post_init__(self) -> None:
        _nonempty(self.agent, "ScheduleDefined", "agent")
        kinds = sum(x is not None for x in (self.cron, self.every_s, self.at))
        _require(kinds == 1, "ScheduleDefined", "exactly one of cron, every_s and at is set")
        _require(
            self.every_s is None or (isinstance(self.every_s, int) and self.every_s > 0),
            "ScheduleDefined",
            "every_s must be > 0",
        )
        _require(
            self.overlap in SCHEDULE_OVERLAP,
            "ScheduleDefined",
            f"overlap must be one of {', '.join(SCHEDULE_OVERLAP)}, got {self.overlap!r}",
        )
        _require(
            self.catch_up in SCHEDULE_CATCH_UP,
            "ScheduleDefined",
            f"catch_up must be one of {', '.join(SCHEDULE_CATCH_UP)}, got {self.catch_up!r}",
        )
        _require(
            isinstance(self.catch_up_limit, int) and 1 <= self.catch_up_limit <= 10_000,
            "ScheduleDefined",
            "catch_up_limit must be 1..10000",
        )
        for name in ("start_at", "at"):
            value = getattr(self, name)
            if value is not None:
                _aware(value, "ScheduleDefined", name)


@dataclass(frozen=True, slots=True)
class SchedulePaused:
    """The schedule stopped firing."""

    by: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleResumed:
    """The schedule fires again, from the first slot after the resume."""

    by: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRemoved:
    """The schedule was removed."""

    by: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleFired:
    """The scheduler handled `slot` (the firing's progress record)."""

    slot: datetime
    fired: bool
    request_id: str | None = None
    session_id: str | None = None
    overlap: str = "none"
    catch_up: str = "on_time"
    missed: int = 0
    previous_session_id: str | None = None

    def __post_init__(self) -> None:
        _aware(self.slot, "ScheduleFired", "slot")
        _require(
            self.overlap in FIRING_OVERLAP,
            "ScheduleFired",
            f"overlap must be one of {', '.join(FIRING_OVERLAP)}, got {self.overlap!r}",
        )
        _require(
            self.catch_up in FIRING_CATCH_UP,
            "ScheduleFired",
            f"catch_up must be one of {', '.join(FIRING_CATCH_UP)}, got {self.catch_up!r}",
        )
        _nonneg(self.missed, "ScheduleFired", "missed")


SchedulePayload = Union[  # noqa: UP007 (a runtime union, as the others)
    ScheduleDefined, SchedulePaused, ScheduleResumed, ScheduleRemoved, ScheduleFired
]
SCHEDULE_TYPES: tuple[type, ...] = get_args(SchedulePayload)


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """Envelope of `turnlog.schedules` (compacted, keyed per schedule and aspect)."""

    schedule_id: str
    occurred_at: datetime
    payload: SchedulePayload

    def __post_init__(self) -> None:
        _nonempty(self.schedule_id, "ScheduleRecord", "schedule_id")
        _aware(self.occurred_at, "ScheduleRecord", "occurred_at")
        _require(
            type(self.payload) in SCHEDULE_TYPES,
            "ScheduleRecord",
            f"payload must be a schedule record, got {type(self.payload).__name__}",
        )


def utc(ts: datetime) -> datetime:
    """Normalise a datetime to UTC (naive datetimes are taken as UTC)."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)
