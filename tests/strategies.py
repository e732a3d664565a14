"""Hypothesis strategies for the event contract: valid values of every record.

Use `requests()` and `events()` for whole envelopes, `request_payloads()` and
`event_payloads()` for payloads, or `REQUEST_PAYLOADS[SendMessage]` (etc.) for one record
type. Every value satisfies its dataclass's constructor, fits Avro (64-bit ints, UTF-8
text, microsecond datetimes within the years 1..9999 in UTC) and has a JSON form (finite
floats). `avro_values(schema)` generates raw Avro values of ANY standalone schema, for the
evolution gate.

The record maps cover every type in `agents.events.REQUEST_TYPES`/`EVENT_TYPES`; a test
fails when a record is added without a strategy here.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from agents.events import (
    ATTACHMENT_TYPES,
    AdmissionDecided,
    AdmissionRequested,
    AgentHandedOff,
    AgentVersionChanged,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    Attachment,
    AuditCheckpoint,
    BudgetAlert,
    BudgetExceeded,
    BudgetLimitReached,
    BudgetScope,
    BudgetUnit,
    CancelTurn,
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    CloseSession,
    CompleteAdmission,
    CompleteChildSession,
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    ContextCompacted,
    ContextCompactionRequested,
    DecideApproval,
    EffectKind,
    EffectReissued,
    EnforceBudget,
    Event,
    FailLlmCall,
    FailToolCall,
    ForkSession,
    GuardrailTripped,
    LlmCallCompleted,
    LlmCallFailed,
    LlmCallRequested,
    MessageQueued,
    ModelChanged,
    OrchestrationCompleted,
    OrchestrationMemberCancelled,
    OrchestrationStarted,
    PolicyAction,
    ProviderCircuitOpened,
    QueuedMessageDropped,
    ReissueEffect,
    Request,
    RequestRejected,
    SendMessage,
    SessionClosed,
    SessionForked,
    SessionStarted,
    SetModel,
    StructuredOutputAccepted,
    StructuredOutputInvalid,
    ThinkingBlock,
    Tick,
    TokenDelta,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolUse,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UpgradeAgent,
    Usage,
    UserMessageReceived,
    event_id_for,
)

__all__ = [
    "EVENT_PAYLOADS",
    "INT64_MAX",
    "REQUEST_PAYLOADS",
    "audit_checkpoints",
    "avro_values",
    "aware_datetimes",
    "counts",
    "event_payloads",
    "events",
    "ids",
    "longs",
    "request_payloads",
    "requests",
    "texts",
    "token_deltas",
    "tool_uses",
    "usages",
    "utc_datetimes",
]

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

# Short ids most of the time (readable failures), any text sometimes (unicode, long).
ids = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/.", min_size=1, max_size=12),
    st.text(min_size=1, max_size=40),
)
texts = st.text(max_size=200)
optional_texts = st.none() | texts
longs = st.integers(INT64_MIN, INT64_MAX)
counts = st.integers(0, INT64_MAX)  # ints the dataclasses require to be >= 0
small_counts = st.integers(0, 1_000_000)
positive = st.integers(1, INT64_MAX)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
seq_lists = st.lists(st.integers(1, INT64_MAX), max_size=8).map(tuple)
name_lists = st.lists(ids, max_size=4).map(tuple)

_MIN = datetime(1, 1, 2)
_MAX = datetime(9999, 12, 30)
# Fixed offsets: the same instant written from another zone must read back equal; the
# margins above keep every instant representable in UTC.
_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
utc_datetimes = st.datetimes(min_value=_MIN, max_value=_MAX, timezones=st.just(UTC))
aware_datetimes = st.one_of(
    utc_datetimes,
    st.datetimes(min_value=_MIN, max_value=_MAX, timezones=_offsets),
)


@st.composite
def _usage(draw: st.DrawFn) -> Usage:
    out = draw(counts)
    return Usage(draw(counts), out, draw(counts), draw(counts), draw(st.integers(0, out)))


usages = _usage()
tool_uses = st.builds(ToolUse, ids, ids, texts)
thinking_blocks = st.lists(
    st.one_of(
        st.builds(ThinkingBlock, texts, ids),
        st.builds(ThinkingBlock, redacted_data=ids),
    ),
    max_size=3,
).map(tuple)
attachment_lists = st.lists(
    st.builds(
        Attachment,
        st.sampled_from(sorted(ATTACHMENT_TYPES)),
        st.binary(min_size=32, max_size=32).map(bytes.hex),
        st.none() | st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
        st.none() | ids,
    ),
    max_size=3,
).map(tuple)


def _unique_tool_uses() -> st.SearchStrategy[tuple[ToolUse, ...]]:
    return st.lists(tool_uses, max_size=4, unique_by=lambda t: t.call_id).map(tuple)


@st.composite
def _send_message(draw: st.DrawFn) -> SendMessage:
    parent = draw(st.none() | st.tuples(ids, ids))
    if parent is None:
        return SendMessage(draw(texts), attachments=draw(attachment_lists))
    return SendMessage(draw(texts), parent_session_id=parent[0], parent_call_id=parent[1])


REQUEST_PAYLOADS: dict[type, st.SearchStrategy[Any]] = {
    SendMessage: _send_message(),
    DecideApproval: st.builds(DecideApproval, ids, st.booleans(), ids, optional_texts),
    CancelTurn: st.builds(CancelTurn, optional_texts, st.none() | ids, st.booleans()),
    CloseSession: st.builds(CloseSession, optional_texts),
    ForkSession: st.builds(ForkSession, ids, positive, st.none() | ids),
    CompleteLlmCall: st.builds(
        CompleteLlmCall,
        call_id=ids,
        model=ids,
        text=texts,
        tool_uses=_unique_tool_uses(),
        stop_reason=ids,
        usage=usages,
        latency_ms=small_counts,
        attempts=st.integers(1, 10),
        fallback_used=st.booleans(),
        circuits_opened=name_lists,
        thinking=thinking_blocks,
        effect_attempt=small_counts,
    ),
    FailLlmCall: st.builds(
        FailLlmCall,
        ids,
        ids,
        texts,
        st.integers(1, 10),
        st.booleans(),
        small_counts,
        name_lists,
        usages,
        small_counts,
    ),
    CompleteToolCall: st.builds(CompleteToolCall, ids, texts, small_counts),
    FailToolCall: st.builds(FailToolCall, ids, texts, small_counts),
    CompleteCompaction: st.builds(
        CompleteCompaction, ids, texts, ids, usages, small_counts, small_counts
    ),
    CompleteChildSession: st.builds(
        CompleteChildSession, ids, ids, st.sampled_from(ChildStatus), texts, usages, counts
    ),
    Tick: st.just(Tick()),
    UpgradeAgent: st.builds(UpgradeAgent, st.none() | ids),
    SetModel: st.builds(SetModel, ids),
    ReissueEffect: st.builds(ReissueEffect, ids, positive),
    CompleteAdmission: st.builds(
        CompleteAdmission, ids, st.booleans(), st.none() | ids, optional_texts, small_counts
    ),
    EnforceBudget: st.builds(
        EnforceBudget, ids, ids, ids, st.just("usd"), small_counts, small_counts, utc_datetimes
    ),
}

EVENT_PAYLOADS: dict[type, st.SearchStrategy[Any]] = {
    SessionStarted: st.builds(
        SessionStarted,
        ids,
        ids,
        st.none() | ids,
        st.none() | ids,
        st.none() | ids,
        st.none() | ids,
    ),
    SessionForked: st.builds(SessionForked, ids, positive, ids, ids),
    SessionClosed: st.builds(SessionClosed, optional_texts),
    TurnStarted: st.builds(TurnStarted, positive, st.none() | positive),
    UserMessageReceived: st.builds(UserMessageReceived, texts, attachment_lists, st.none() | ids),
    LlmCallRequested: st.builds(
        LlmCallRequested,
        call_id=ids,
        model=ids,
        fallbacks=name_lists,
        max_tokens=st.integers(1, 1_000_000),
        temperature=finite_floats,
        context_ranges=seq_lists.map(
            lambda xs: tuple(x for v in sorted(xs) for x in (max(1, v), max(1, v)))
        ),
        context_entries=counts,
        system_prompt_hash=ids,
        toolset_hash=ids,
        request_digest=ids,
        iteration=st.integers(0, 100),
        deadline_at=aware_datetimes,
        reserved_tokens=counts,
        reserved_nanos=counts,
        purpose=st.sampled_from(["turn", "summarize"]),
    ),
    LlmCallCompleted: st.builds(
        LlmCallCompleted,
        call_id=ids,
        model=ids,
        text=texts,
        tool_call_ids=name_lists,
        stop_reason=ids,
        usage=usages,
        cost_nanos=counts,
        latency_ms=small_counts,
        attempts=st.integers(1, 10),
        fallback_used=st.booleans(),
        discarded=st.none() | st.sampled_from(["late", "truncated", "context_window"]),
        thinking=thinking_blocks,
    ),
    LlmCallFailed: st.builds(LlmCallFailed, ids, ids, texts, st.integers(1, 10), small_counts),
    ProviderCircuitOpened: st.builds(ProviderCircuitOpened, ids, ids),
    ToolCallRequested: st.builds(
        ToolCallRequested,
        ids,
        ids,
        ids,
        texts,
        st.sampled_from(PolicyAction),
        st.none() | ids,
        aware_datetimes,
    ),
    ApprovalRequested: st.builds(ApprovalRequested, ids, ids, aware_datetimes),
    ApprovalGranted: st.builds(ApprovalGranted, ids, ids, optional_texts),
    ApprovalDenied: st.builds(ApprovalDenied, ids, ids, optional_texts, st.booleans()),
    ToolCallCompleted: st.builds(ToolCallCompleted, ids, texts, small_counts),
    ToolCallFailed: st.builds(ToolCallFailed, ids, texts, small_counts),
    ContextCompactionRequested: st.builds(
        ContextCompactionRequested,
        ids,
        st.sampled_from(["sliding_window", "oldest_first", "summarize"]),
        seq_lists,
        counts,
        counts,
    ),
    ContextCompacted: st.builds(
        ContextCompacted,
        ids,
        st.sampled_from(["sliding_window", "oldest_first", "summarize"]),
        seq_lists,
        optional_texts,
        counts,
        usages,
        counts,
        st.none() | ids,
    ),
    ChildSessionRequested: st.builds(ChildSessionRequested, ids, ids, ids, texts),
    ChildSessionCompleted: st.builds(
        ChildSessionCompleted, ids, ids, st.sampled_from(ChildStatus), texts, usages, counts
    ),
    EffectReissued: st.builds(
        EffectReissued, ids, st.sampled_from(EffectKind), st.integers(2, 100), aware_datetimes
    ),
    BudgetExceeded: st.builds(
        BudgetExceeded,
        st.sampled_from(BudgetScope),
        st.sampled_from(BudgetUnit),
        counts,
        counts,
        counts,
    ),
    TurnCompleted: st.builds(TurnCompleted, positive, positive, usages, counts, small_counts),
    TurnFailed: st.builds(TurnFailed, positive, texts, ids),
    TurnCancelled: st.builds(
        TurnCancelled,
        positive,
        optional_texts,
        st.none() | ids,
        name_lists,
        name_lists,
        name_lists,
    ),
    RequestRejected: st.builds(RequestRejected, ids, ids, texts, ids),
    MessageQueued: st.builds(MessageQueued, texts, positive, attachment_lists),
    QueuedMessageDropped: st.builds(QueuedMessageDropped, positive, ids, optional_texts),
    AgentVersionChanged: st.builds(AgentVersionChanged, ids, ids, ids),
    ModelChanged: st.builds(ModelChanged, ids, ids),
    OrchestrationStarted: st.integers(1, 4).flatmap(
        lambda n: st.builds(
            OrchestrationStarted,
            ids,
            st.sampled_from(["all", "race", "quorum", "sequential"]),
            small_counts,
            st.sampled_from(["concatenate", "first", "last", "vote"]),
            st.lists(ids, min_size=n, max_size=n).map(tuple),
            st.lists(texts, min_size=n, max_size=n).map(tuple),
            small_counts,
        )
    ),
    AgentHandedOff: st.builds(AgentHandedOff, ids, ids, ids, ids, ids, texts),
    GuardrailTripped: st.builds(
        GuardrailTripped, ids, ids, ids, ids, texts, st.one_of(st.none(), ids)
    ),
    StructuredOutputInvalid: st.builds(StructuredOutputInvalid, ids, texts, small_counts),
    StructuredOutputAccepted: st.builds(StructuredOutputAccepted, ids, texts),
    BudgetAlert: st.builds(
        BudgetAlert,
        ids,
        ids,
        st.sampled_from(["tokens", "usd"]),
        small_counts,
        small_counts,
        st.none() | small_counts,
        st.none() | st.floats(0.01, 1.0),
        st.none() | ids,
    ),
    BudgetLimitReached: st.builds(
        BudgetLimitReached, ids, ids, ids, st.just("usd"), small_counts, small_counts, utc_datetimes
    ),
    AdmissionRequested: st.builds(
        AdmissionRequested,
        ids,
        ids,
        texts,
        positive,
        st.none() | positive,
        st.none() | positive,
        st.sampled_from(["reject", "queue"]),
        small_counts,
        attachment_lists,
        st.none() | ids,
    ),
    AdmissionDecided: st.builds(
        AdmissionDecided, ids, st.booleans(), st.none() | ids, optional_texts, small_counts
    ),
    OrchestrationMemberCancelled: st.builds(OrchestrationMemberCancelled, ids, ids, ids, texts),
    OrchestrationCompleted: st.builds(
        OrchestrationCompleted,
        ids,
        st.sampled_from(["completed", "failed"]),
        texts,
        st.none() | ids,
        small_counts,
        small_counts,
        small_counts,
    ),
}


def request_payloads() -> st.SearchStrategy[Any]:
    """Any request payload record."""
    return st.one_of(*REQUEST_PAYLOADS.values())


def event_payloads() -> st.SearchStrategy[Any]:
    """Any event payload record."""
    return st.one_of(*EVENT_PAYLOADS.values())


def requests(
    payloads: st.SearchStrategy[Any] | None = None,
    session_ids: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Request]:
    """`Request` envelopes; narrow them with `payloads` (e.g. `REQUEST_PAYLOADS[Tick]`)
    and `session_ids` (e.g. `st.just("s1")`)."""
    return st.builds(
        Request,
        request_id=ids,
        session_id=session_ids if session_ids is not None else ids,
        occurred_at=aware_datetimes,
        payload=payloads if payloads is not None else request_payloads(),
        correlation_id=st.none() | ids,
        causation_id=st.none() | ids,
        agent=st.none() | ids,
        client=st.none() | st.sampled_from(("alice", "team-a", "svc:billing")),
    )


@st.composite
def _event(
    draw: st.DrawFn,
    payloads: st.SearchStrategy[Any],
    session_ids: st.SearchStrategy[str],
    seqs: st.SearchStrategy[int],
) -> Event:
    session_id = draw(session_ids)
    seq = draw(seqs)
    return Event(
        event_id=event_id_for(session_id, seq),
        session_id=session_id,
        seq=seq,
        occurred_at=draw(aware_datetimes),
        agent=draw(ids),
        payload=draw(payloads),
        turn_id=draw(st.none() | ids),
        causation_id=draw(st.none() | ids),
        correlation_id=draw(st.none() | ids),
    )


def events(
    payloads: st.SearchStrategy[Any] | None = None,
    session_ids: st.SearchStrategy[str] | None = None,
    seqs: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[Event]:
    """`Event` envelopes with the deterministic event_id of their (session_id, seq)."""
    return _event(
        payloads if payloads is not None else event_payloads(),
        session_ids if session_ids is not None else ids,
        seqs if seqs is not None else positive,
    )


def token_deltas() -> st.SearchStrategy[TokenDelta]:
    return st.builds(TokenDelta, ids, ids, counts, texts, aware_datetimes, st.booleans())


def audit_checkpoints() -> st.SearchStrategy[AuditCheckpoint]:
    return st.builds(AuditCheckpoint, counts, ids, counts, aware_datetimes)


# --------------------------------------------------------------------------- raw Avro

_AVRO_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(1 << 31), (1 << 31) - 1),
    "long": longs,
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "bytes": st.binary(max_size=20),
    "string": st.text(max_size=20),
}
# timestamp-micros values whose datetime is within datetime's range.
_TIMESTAMP_MICROS = st.integers(-62_135_596_800_000_000 + 86_400_000_000, 253_402_214_400_000_000)


def avro_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of any standalone Avro schema, in fastavro's write shape (a union of records
    takes fastavro's `(full name, value)` notation); for schema-level properties."""
    named: dict[str, dict[str, Any]] = {}

    def full(s: dict[str, Any], ns: str) -> str:
        name: str = s["name"]
        if "." in name:
            return name
        space = s.get("namespace", ns)
        return f"{space}.{name}" if space else name

    def strategy(s: Any, ns: str) -> st.SearchStrategy[Any]:
        if isinstance(s, str):
            if s in _AVRO_PRIMITIVES:
                return _AVRO_PRIMITIVES[s]
            target = named[s] if s in named else named[f"{ns}.{s}"]
            return st.deferred(lambda: strategy(target, ns))
        if isinstance(s, list):
            options = []
            for branch in s:
                b = named.get(branch, branch) if isinstance(branch, str) else branch
                inner = strategy(branch, ns)
                if isinstance(b, dict) and b["type"] in ("record", "error"):
                    tag = full(b, ns)
                    inner = inner.map(lambda v, tag=tag: (tag, v))
                options.append(inner)
            return st.one_of(*options)
        kind = s["type"]
        if kind in ("record", "error", "enum", "fixed"):
            name = full(s, ns)
            named[name] = s
            ns = name.rpartition(".")[0]
        if kind in ("record", "error"):
            return st.fixed_dictionaries({f["name"]: strategy(f["type"], ns) for f in s["fields"]})
        if kind == "enum":
            return st.sampled_from(s["symbols"])
        if kind == "array":
            return st.lists(strategy(s["items"], ns), max_size=3)
        if kind == "map":
            return st.dictionaries(st.text(max_size=5), strategy(s["values"], ns), max_size=3)
        if kind == "fixed":
            return st.binary(min_size=s["size"], max_size=s["size"])
        if s.get("logicalType") == "timestamp-micros":
            return _TIMESTAMP_MICROS
        return strategy(kind, ns)

    return strategy(schema, "")
