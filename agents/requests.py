"""The requests of the contract: inputs on `turnlog.requests`, in the imperative
(`SendMessage`, `CompleteLlmCall`). One frozen, slotted dataclass per Avro record,
validated in its constructor. Nothing here does IO."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Union, get_args

from agents.records import (
    Attachment,
    ChildStatus,
    ThinkingBlock,
    ToolUse,
    Usage,
    _aware,
    _fail,
    _nonempty,
    _nonneg,
    _require,
)

__all__ = [
    "REQUEST_TYPES",
    "CancelTurn",
    "CloseSession",
    "CompleteAdmission",
    "CompleteChildSession",
    "CompleteCompaction",
    "CompleteLlmCall",
    "CompleteToolCall",
    "DecideApproval",
    "EnforceBudget",
    "FailLlmCall",
    "FailToolCall",
    "ForkSession",
    "ReissueEffect",
    "Request",
    "RequestPayload",
    "SendMessage",
    "SetModel",
    "Tick",
    "UpgradeAgent",
]


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
    serving this call. `effect_attempt`: the issue of the effect it answers (0: not
    stated, taken as the pending one); the answer of an issue a re-issue replaced is
    charged, never taken as the call's answer."""

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
    effect_attempt: int = 0
    # The answer came from the response cache (streams.response_cache): the id of the
    # call that paid for it. Its usage is zero: nothing was sent to the vendor.
    cached_from: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "CompleteLlmCall", "call_id")
        _nonneg(self.effect_attempt, "CompleteLlmCall", "effect_attempt")
        _nonempty(self.model, "CompleteLlmCall", "model")
        _nonneg(self.latency_ms, "CompleteLlmCall", "latency_ms")
        _require(self.attempts >= 1, "CompleteLlmCall", "attempts must be >= 1")
        ids = [t.call_id for t in self.tool_uses]
        _require(len(ids) == len(set(ids)), "CompleteLlmCall", "tool_uses have duplicate call ids")


@dataclass(frozen=True, slots=True)
class FailLlmCall:
    """`usage`: what the vendor reported before the call broke off (an aborted stream is
    billed for what it read); charged when a cancel had abandoned the call, or when a
    re-issue replaced the issue it reports (`effect_attempt`, as in CompleteLlmCall)."""

    call_id: str
    error_type: str
    message: str
    attempts: int = 1
    retryable: bool = False
    latency_ms: int = 0
    circuits_opened: tuple[str, ...] = ()
    usage: Usage = field(default_factory=Usage)
    effect_attempt: int = 0

    def __post_init__(self) -> None:
        _nonempty(self.call_id, "FailLlmCall", "call_id")
        _nonneg(self.effect_attempt, "FailLlmCall", "effect_attempt")
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
    """Outcome of a summarize compaction (an LLM effect); `effect_attempt` as in
    CompleteLlmCall."""

    compaction_id: str
    summary: str
    model: str
    usage: Usage = field(default_factory=Usage)
    latency_ms: int = 0
    effect_attempt: int = 0

    def __post_init__(self) -> None:
        _nonempty(self.compaction_id, "CompleteCompaction", "compaction_id")
        _nonneg(self.effect_attempt, "CompleteCompaction", "effect_attempt")
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


@dataclass(frozen=True, slots=True)
class EnforceBudget:
    """The budget watcher (streams.budgets) found the spend of every session of `scope`
    `key` (an agent, or a project: the agents whose file says `project = key`) in `period`
    (a UTC day, YYYY-MM-DD) at or over its `limit` (nano-dollars; `unit` usd): until
    `until` (the period's end) the session starts no new turn and its running turn makes
    no further LLM call. Rejected when `until` has passed or the same budget is already
    enforced on the session."""

    scope: str
    key: str
    period: str
    unit: str
    limit: int
    spent: int
    until: datetime

    def __post_init__(self) -> None:
        _nonempty(self.scope, "EnforceBudget", "scope")
        _nonempty(self.key, "EnforceBudget", "key")
        _aware(self.until, "EnforceBudget", "until")


@dataclass(frozen=True, slots=True)
class ReissueEffect:
    """A worker that took a session's partition over found LLM call (or summarize)
    `effect_id` pending at issue `attempt`: the core re-issues it as attempt + 1 with a
    fresh deadline, so that the previous owner's answer to `attempt`, should one still
    come, is charged as a replaced issue instead of being mistaken for a duplicate.
    Stale (the effect is no longer pending at that attempt): rejected, nothing changes."""

    effect_id: str
    attempt: int

    def __post_init__(self) -> None:
        _nonempty(self.effect_id, "ReissueEffect", "effect_id")
        _require(self.attempt >= 1, "ReissueEffect", "attempt must be >= 1")


@dataclass(frozen=True, slots=True)
class CompleteAdmission:
    """Outcome of an admission effect (a shared rate limit, agents.ratelimit): the
    message of request `admission_id` is admitted (its turn starts) or limited — `limit`
    names the limit, `reason` says why and when to retry (`retry_after_ms`). `waited_ms`:
    how long a queued admission waited for the window."""

    admission_id: str
    admitted: bool
    limit: str | None = None
    reason: str | None = None
    retry_after_ms: int = 0
    waited_ms: int = 0

    def __post_init__(self) -> None:
        _nonempty(self.admission_id, "CompleteAdmission", "admission_id")
        _nonneg(self.retry_after_ms, "CompleteAdmission", "retry_after_ms")
        _nonneg(self.waited_ms, "CompleteAdmission", "waited_ms")


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
    EnforceBudget,
    ReissueEffect,
    CompleteAdmission,
]

REQUEST_TYPES: tuple[type, ...] = get_args(RequestPayload)
# isinstance over a tuple of 20+ types tries them in order; a set finds the exact type
# at once (isinstance stays as the fallback, so the check means the same).
_REQUEST_TYPE_SET = frozenset(REQUEST_TYPES)


@dataclass(frozen=True, slots=True)
class Request:
    """Envelope of `turnlog.requests`. `request_id` is unique per request (clients make
    it; a duplicate is rejected). `agent` names the agent of a new session; `client`
    the requester's identity."""

    request_id: str
    session_id: str
    occurred_at: datetime
    payload: RequestPayload
    correlation_id: str | None = None
    causation_id: str | None = None
    agent: str | None = None
    # Who sent it (agents.limits.client_problem bounds it): keys per-client rate limits
    # and budgets. Self-declared on a raw Kafka producer (ACLs decide who may produce).
    client: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.request_id, "Request", "request_id")
        _nonempty(self.session_id, "Request", "session_id")
        _aware(self.occurred_at, "Request", "occurred_at")
        if type(self.payload) not in _REQUEST_TYPE_SET and not isinstance(
            self.payload, REQUEST_TYPES
        ):
            _fail("Request", f"payload must be a request record, got {type(self.payload).__name__}")
