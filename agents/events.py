"""The event contract as Python types: the events (facts) and the other topics' records,
and, re-exported, the requests (agents.requests) and the values (agents.records) —
the one import of the whole contract.

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

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Union, get_args

from agents.records import (
    ATTACHMENT_TYPES,
    EVENT_ID_NAMESPACE,
    Attachment,
    BudgetScope,
    BudgetUnit,
    ChildStatus,
    EffectKind,
    PolicyAction,
    ThinkingBlock,
    ToolUse,
    Usage,
    _aware,
    _fail,
    _nonempty,
    _nonneg,
    _ranges_ok,
    _require,
    event_id_for,
)
from agents.requests import (
    REQUEST_TYPES,
    CancelTurn,
    CloseSession,
    CompleteAdmission,
    CompleteChildSession,
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    DecideApproval,
    EnforceBudget,
    FailLlmCall,
    FailToolCall,
    ForkSession,
    ReissueEffect,
    Request,
    RequestPayload,
    SendMessage,
    SetModel,
    Tick,
    UpgradeAgent,
)

__all__ = [
    "ABORTED",
    "ATTACHMENT_TYPES",
    "EVENT_ID_NAMESPACE",
    "EVENT_TYPES",
    "REFUSED",
    "REQUEST_TYPES",
    "SCHEDULE_TYPES",
    "SUPERSEDED",
    "AdmissionDecided",
    "AdmissionRequested",
    "AgentHandedOff",
    "AgentVersion",
    "AgentVersionChanged",
    "ApprovalDenied",
    "ApprovalGranted",
    "ApprovalRequested",
    "Attachment",
    "AuditCheckpoint",
    "BudgetAlert",
    "BudgetExceeded",
    "BudgetLimitReached",
    "BudgetScope",
    "BudgetUnit",
    "CancelTurn",
    "ChildSessionCompleted",
    "ChildSessionRequested",
    "ChildStatus",
    "CloseSession",
    "CompleteAdmission",
    "CompleteChildSession",
    "CompleteCompaction",
    "CompleteLlmCall",
    "CompleteToolCall",
    "ContextCompacted",
    "ContextCompactionRequested",
    "DecideApproval",
    "EffectKind",
    "EffectReissued",
    "EnforceBudget",
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
    "PolicyAction",
    "ProviderCircuitOpened",
    "QueuedMessageDropped",
    "ReissueEffect",
    "Request",
    "RequestPayload",
    "RequestRejected",
    "RestorePoint",
    "ScheduleDefined",
    "ScheduleFired",
    "SchedulePaused",
    "SchedulePayload",
    "ScheduleRecord",
    "ScheduleRemoved",
    "ScheduleResumed",
    "SendMessage",
    "SessionClosed",
    "SessionForked",
    "SessionSnapshot",
    "SessionStarted",
    "SetModel",
    "Snapshot",
    "StructuredOutputAccepted",
    "StructuredOutputInvalid",
    "ThinkingBlock",
    "Tick",
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
    "Usage",
    "UserMessageReceived",
    "event_id_for",
]


# --------------------------------------------------------------------------- events
# Facts on `turnlog.events`, written only by the session worker.


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """First event of a session. `definition_hash` pins the agent definition in force."""

    agent: str
    definition_hash: str
    parent_session_id: str | None = None
    parent_call_id: str | None = None
    # The prompt variant the session was assigned (agents.variants); None: the agent's own.
    variant: str | None = None
    # The requester identity of the message that started it (Request.client).
    client: str | None = None

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
    # The requester identity of the SendMessage that carried it (Request.client).
    client: str | None = None


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
    purpose: str = "turn"  # "turn", "summarize" or "guard" (a classifier guardrail's call)

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
    # usage and cost: "late" (abandoned by a cancel), "superseded" (the answer of an
    # issue a re-issue replaced: SUPERSEDED), "truncated" (cut inside a tool call),
    # "context_window" (the model stopped on a full context window).
    discarded: str | None = None
    # The answer's thinking blocks, in order (sent back with the next request).
    thinking: tuple[ThinkingBlock, ...] = ()
    # Answered from the response cache: the id of the call that paid for the answer
    # (llm_calls.call_id); such a call costs nothing (usage and cost_nanos 0).
    cached_from: str | None = None

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
# LlmCallCompleted.discarded of the answer of an issue that a re-issue replaced.
SUPERSEDED = "superseded"
# FailLlmCall.error_type of an issue the worker aborted mid-stream (a cancel, a re-issue,
# the partition moving away): it reports what the vendor billed, never the call's end.
ABORTED = "aborted"


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
class AdmissionRequested:
    """A message of an agent with a shared rate limit (agents.ratelimit) waits for its
    admission: the shell asks the counters of limit `key` (Postgres) and reports back
    (CompleteAdmission). `admission_id` is the request id of the SendMessage; the text is
    the guarded one (as a queued message's). The limits are copied from the definition
    so the effect needs nothing else."""

    admission_id: str
    key: str
    text: str
    window_ms: int
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    on_limit: str = "reject"
    max_wait_ms: int = 0
    attachments: tuple[Attachment, ...] = ()
    client: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.admission_id, "AdmissionRequested", "admission_id")
        _nonempty(self.key, "AdmissionRequested", "key")
        _require(self.window_ms >= 1, "AdmissionRequested", "window_ms must be >= 1")


@dataclass(frozen=True, slots=True)
class AdmissionDecided:
    """The admission of message `admission_id` was decided: admitted (its turn starts in
    the same decision) or not — limited (`limit` names it, `reason` says when to retry,
    `retry_after_ms`) or ended by a cancel or close (`limit` None)."""

    admission_id: str
    admitted: bool
    limit: str | None = None
    reason: str | None = None
    retry_after_ms: int = 0
    waited_ms: int = 0


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


@dataclass(frozen=True, slots=True)
class BudgetAlert:
    """Spend crossed a soft threshold of a budget (agents.budget: `alert_at` fractions of
    a limit, `alert_at_usd` amounts), once per threshold per scope. `scope`: session
    (this session's spend, decided by the core) or agent / project (the spend of every
    session of `key` in `period`, a UTC day, seen by the budget watcher); `key`: the
    session id, agent or project name; `unit`: tokens | usd; `threshold`, `spent`,
    `limit`: tokens or nano-dollars (`limit` None: an amount with no limit behind it);
    `fraction`: the alert_at fraction it came from, if any."""

    scope: str
    key: str
    unit: str
    threshold: int
    spent: int
    limit: int | None = None
    fraction: float | None = None
    period: str | None = None

    def __post_init__(self) -> None:
        _nonempty(self.scope, "BudgetAlert", "scope")


@dataclass(frozen=True, slots=True)
class BudgetLimitReached:
    """A budget across sessions (agent or project, per UTC day) is spent (an EnforceBudget
    of the budget watcher): until `until` this session starts no new turn — a message is
    rejected naming the limit — and a running turn fails before its next LLM call.
    `limit` and `spent` in nano-dollars (`unit` usd), `period` the UTC day."""

    scope: str
    key: str
    period: str
    unit: str
    limit: int
    spent: int
    until: datetime

    def __post_init__(self) -> None:
        _nonempty(self.scope, "BudgetLimitReached", "scope")
        _aware(self.until, "BudgetLimitReached", "until")


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
    BudgetAlert,
    BudgetLimitReached,
    AdmissionRequested,
    AdmissionDecided,
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
        self._check_key()
        expected = event_id_for(self.session_id, self.seq)
        if self.event_id != expected:
            _fail(
                "Event",
                f"event_id of session {self.session_id} seq {self.seq} must be "
                f"{expected}, got {self.event_id}",
            )
        self._check_rest()

    def _check_key(self) -> None:
        _nonempty(self.session_id, "Event", "session_id")
        if self.seq < 1:
            _fail("Event", f"seq must be >= 1, got {self.seq}")

    def _check_rest(self) -> None:
        _aware(self.occurred_at, "Event", "occurred_at")
        if self.claimed_at is not None:
            _aware(self.claimed_at, "Event", "claimed_at")
        if type(self.payload) not in _EVENT_TYPE_SET and not isinstance(self.payload, EVENT_TYPES):
            _fail("Event", f"payload must be an event record, got {type(self.payload).__name__}")

    def _derive_id(self) -> None:
        """Set the id of an event built without one (a compact event read from its
        bytes: schemas._fastread, or one made by `derived`), then check the rest as the
        constructor does."""
        self._check_key()
        object.__setattr__(self, "event_id", event_id_for(self.session_id, self.seq))
        self._check_rest()

    @classmethod
    def derived(
        cls,
        session_id: str,
        seq: int,
        occurred_at: datetime,
        agent: str,
        payload: EventPayload,
        turn_id: str | None = None,
        causation_id: str | None = None,
        correlation_id: str | None = None,
        claimed_at: datetime | None = None,
    ) -> Event:
        """The event of `session_id` at `seq` with its id derived here, once: the
        constructor derives it again to check a given id (a sha1 and the UUID's text,
        about 12,000 instructions), which an id made here cannot fail. Every other check
        runs as in the constructor."""
        ev = object.__new__(cls)
        put = object.__setattr__  # a frozen dataclass's own __init__ sets fields so
        put(ev, "session_id", session_id)
        put(ev, "seq", seq)
        put(ev, "occurred_at", occurred_at)
        put(ev, "agent", agent)
        put(ev, "payload", payload)
        put(ev, "turn_id", turn_id)
        put(ev, "causation_id", causation_id)
        put(ev, "correlation_id", correlation_id)
        put(ev, "claimed_at", claimed_at)
        ev._derive_id()
        return ev


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
