"""How events change the projection rows. Pure: no IO, no clock, no database.

Rule: the rows are a function of the events alone. `classify` decides whether an event
is the next one of its session (new), one already projected (duplicate) or one that
skips a seq (gap); `fold` applies a new event to the session's working row and records
every other row it touches in a `Changes` accumulator, which the store writes in one
transaction. Nothing here looks at Kafka offsets or wall-clock time, so a replay from
offset 0 produces the same rows as the incremental run.

Changes to keyed rows (llm_calls, tool_calls, approvals, compactions) are *patches*:
the columns an event sets, None meaning "leave as is". Several events of one batch
touching the same row merge into one patch (later events win), so one upsert per row
per batch suffices and the order of statements inside a batch never matters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any

from agents.events import (
    REFUSED,
    SUPERSEDED,
    AdmissionDecided,
    AdmissionRequested,
    AgentHandedOff,
    AgentVersionChanged,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    BudgetAlert,
    BudgetExceeded,
    BudgetLimitReached,
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    ContextCompacted,
    ContextCompactionRequested,
    EffectKind,
    EffectReissued,
    Event,
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
    RequestRejected,
    SessionClosed,
    SessionForked,
    SessionStarted,
    StructuredOutputAccepted,
    StructuredOutputInvalid,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
    UserMessageReceived,
)
from agents.orchestration import TEAM
from agents.phases import MOVES, PhaseTrack, decode_calls, encode_calls, track
from agents.state import CallStatus, Phase
from agents.structured import correction_text
from projections.rows import Changes, SessionRow

__all__ = [
    "EVENTS_ROW_ONLY",
    "NOT_STARTED",
    "PROJECTS",
    "Verdict",
    "classify",
    "fold",
    "is_started",
    "projects",
    "unstarted_session",
]

# The phase of a session whose log holds only rejected inputs (a first message naming an
# unknown agent, an approval sent to a mistyped id, a failed fork): the projector keeps
# such a row in memory to know the log's last seq, but never writes it to `sessions`, so
# no session that never started shows up in `turnlog sessions` or the cost views. Its
# RequestRejected events are in `events` (and the audit log) like any other.
NOT_STARTED = "not_started"


class Verdict(str, Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    GAP = "gap"


def classify(session: SessionRow | None, event: Event) -> tuple[Verdict, str]:
    """Is `event` the next event of `session` (its projected row, None if unseen)?

    Returns the verdict and, for a gap, a sentence saying what was expected.
    """
    sid, seq = event.session_id, event.seq
    if session is None:
        payload = event.payload
        if seq == 1:
            return Verdict.NEW, ""
        if isinstance(payload, SessionForked) and seq == payload.at_seq + 1:
            return Verdict.NEW, ""
        return Verdict.GAP, (
            f"Session {sid} has no projected event, so its first event must be seq 1 or a "
            f"SessionForked at at_seq + 1; got seq {seq} ({type(payload).__name__})."
        )
    if seq <= session.last_seq:
        return Verdict.DUPLICATE, ""
    if seq == session.last_seq + 1:
        return Verdict.NEW, ""
    return Verdict.GAP, (
        f"Session {sid} has events up to seq {session.last_seq}; the next must be seq "
        f"{session.last_seq + 1}, got seq {seq} ({type(event.payload).__name__})."
    )


def is_started(row: SessionRow) -> bool:
    """Whether `row` belongs in `sessions`: its log holds a SessionStarted or a
    SessionForked (see NOT_STARTED)."""
    return row.phase != NOT_STARTED


def unstarted_session(
    session_id: str, first_seq: int, last_seq: int, first_at: datetime, last_at: datetime
) -> SessionRow:
    """The in-memory row of a session whose projected events (seqs first_seq..last_seq,
    all rejections) made no `sessions` row: what `fold` would have built from them, for
    the batch that brings the session's start (the store reads these from `events`)."""
    row = _blank(session_id, "", first_seq, first_at)
    row.phase = NOT_STARTED
    row.last_seq = last_seq
    row.updated_at = last_at
    return row


def _blank(session_id: str, agent: str, first_seq: int, at: datetime) -> SessionRow:
    return SessionRow(
        session_id=session_id,
        agent=agent,
        definition_hash=None,
        status="active",
        phase="idle",
        parent_session_id=None,
        parent_call_id=None,
        forked_from_session_id=None,
        forked_at_seq=None,
        created_at=at,
        updated_at=at,
        turns=0,
        turns_completed=0,
        turns_failed=0,
        turns_cancelled=0,
        first_seq=first_seq,
        last_seq=first_seq - 1,
        last_entry_seq=None,
        llm_calls=0,
        input_tokens=0,
        output_tokens=0,
        cache_read_tokens=0,
        cache_write_tokens=0,
        cost_nanos=0,
        closed_reason=None,
    )


def _new_session(event: Event) -> SessionRow:
    p = event.payload
    if isinstance(p, SessionStarted | SessionForked):
        row = _blank(event.session_id, event.agent, event.seq, event.occurred_at)
        if isinstance(p, SessionForked):
            row.forked_from_session_id = p.source_session_id
            row.forked_at_seq = p.at_seq
        return row
    # E.g. a RequestRejected for a first message naming an unknown agent: the log
    # exists, the session has not started (a later SessionStarted starts it). The agent
    # a rejected input named is not kept: it may be the very name that was unknown.
    row = _blank(event.session_id, "", event.seq, event.occurred_at)
    row.phase = NOT_STARTED
    return row


def _entry(
    s: SessionRow,
    event: Event,
    changes: Changes,
    kind: str,
    role: str,
    content: str,
    *,
    call_id: str | None = None,
    tool_name: str | None = None,
    is_error: bool = False,
) -> None:
    # The previous entry of the branch: exact inside a session; for a fork's first own
    # entry, the branch point (read as "last source entry at or before at_seq").
    if s.last_entry_seq is not None:
        parent: tuple[str | None, int | None] = (s.session_id, s.last_entry_seq)
    elif s.forked_from_session_id is not None:
        parent = (s.forked_from_session_id, s.forked_at_seq)
    else:
        parent = (None, None)
    changes.entries.append(
        (
            s.session_id,
            event.seq,
            kind,
            role,
            call_id,
            tool_name,
            content,
            is_error,
            parent[0],
            parent[1],
            event.turn_id,
            event.occurred_at,
        )
    )
    s.last_entry_seq = event.seq


def fold(
    session: SessionRow | None,
    event: Event,
    changes: Changes,
    *,
    partition: int,
    offset: int,
    digest: str,
) -> SessionRow:
    """Apply a NEW event (see `classify`): returns the session's updated row and adds the
    other rows it touches to `changes`. The row's phase is the core's (agents.phases)."""
    s = session if session is not None else _new_session(event)
    p = event.payload
    s.last_seq = event.seq
    s.updated_at = event.occurred_at
    changes.events.append(
        (
            event.session_id,
            event.seq,
            event.event_id,
            type(p).__name__,
            event.turn_id,
            event.occurred_at,
            event.causation_id,
            event.correlation_id,
            partition,
            offset,
            digest,
        )
    )
    project = PROJECTS.get(type(p))
    if project is not None:
        project(s, event, p, changes)
    if type(p) in MOVES:
        before = PhaseTrack(_PHASES[s.phase], decode_calls(s.pending_calls))
        after = track(before, p)
        s.phase = NOT_STARTED if after.phase is Phase.NEW else after.phase.value
        s.pending_calls = encode_calls(after.calls)
    return s


# --------------------------------------------------------------------------- handlers
# One per event type that writes more than its `events` row: (row, event, payload,
# changes). `EVENTS_ROW_ONLY` names the types whose `events` row is all there is; a unit
# test checks that the two cover the event union.

Handler = Callable[[SessionRow, Event, Any, Changes], None]
PROJECTS: dict[type, Handler] = {}


def projects(*types: type) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for t in types:
            PROJECTS[t] = handler
        return handler

    return register


# Admissions (shared rate limits): their counters are table rate_admissions, written by
# the effect runner (streams.admission); the events row records each one.
EVENTS_ROW_ONLY: frozenset[type] = frozenset(
    {BudgetExceeded, RequestRejected, AdmissionRequested, AdmissionDecided}
)

_PHASES: dict[str, Phase] = {p.value: p for p in Phase} | {NOT_STARTED: Phase.NEW}


@projects(SessionStarted)
def _session_started(s: SessionRow, ev: Event, p: SessionStarted, changes: Changes) -> None:
    s.agent, s.definition_hash = p.agent, p.definition_hash
    s.parent_session_id, s.parent_call_id = p.parent_session_id, p.parent_call_id
    s.variant = p.variant
    s.client = p.client
    if p.parent_session_id is not None:
        changes.link(ev.session_id, p.parent_session_id, p.parent_call_id)


@projects(SessionForked)
def _session_forked(s: SessionRow, ev: Event, p: SessionForked, changes: Changes) -> None:
    s.agent, s.definition_hash = p.agent, p.definition_hash
    if s.phase == NOT_STARTED:
        s.forked_from_session_id, s.forked_at_seq = p.source_session_id, p.at_seq


@projects(SessionClosed)
def _session_closed(s: SessionRow, ev: Event, p: SessionClosed, changes: Changes) -> None:
    s.status, s.closed_reason = "closed", p.reason


@projects(TurnStarted)
def _turn_started(s: SessionRow, ev: Event, p: TurnStarted, changes: Changes) -> None:
    s.turns += 1
    if p.queued_seq is not None and ev.causation_id is not None:
        # A queued message's turn is caused by the request that sent it.
        changes.patch(
            "queued_messages",
            (ev.session_id, ev.causation_id),
            status="started",
            started_turn_id=ev.turn_id,
            ended_seq=ev.seq,
            ended_at=ev.occurred_at,
        )
        s.queued -= 1


@projects(AgentVersionChanged)
def _version_changed(s: SessionRow, ev: Event, p: AgentVersionChanged, changes: Changes) -> None:
    s.definition_hash = p.to_hash


@projects(AgentHandedOff)
def _handed_off(s: SessionRow, ev: Event, p: AgentHandedOff, changes: Changes) -> None:
    s.agent = p.to_agent
    s.definition_hash = p.to_hash
    s.model = None  # the next agent runs on its own model


@projects(ModelChanged)
def _model_changed(s: SessionRow, ev: Event, p: ModelChanged, changes: Changes) -> None:
    s.model = p.to_model


@projects(MessageQueued)
def _message_queued(s: SessionRow, ev: Event, p: MessageQueued, changes: Changes) -> None:
    changes.patch(
        "queued_messages",
        (ev.session_id, ev.causation_id or ""),
        queued_seq=ev.seq,
        position=p.position,
        content=p.text,
        status="queued",
        queued_at=ev.occurred_at,
    )
    s.queued += 1


@projects(QueuedMessageDropped)
def _queued_dropped(s: SessionRow, ev: Event, p: QueuedMessageDropped, changes: Changes) -> None:
    changes.patch(
        "queued_messages",
        (ev.session_id, p.request_id),
        status="dropped",
        ended_seq=ev.seq,
        ended_at=ev.occurred_at,
        reason=p.reason,
    )
    s.queued -= 1


@projects(UserMessageReceived)
def _user_message(s: SessionRow, ev: Event, p: UserMessageReceived, changes: Changes) -> None:
    _entry(s, ev, changes, "user", "user", p.text)


@projects(LlmCallRequested)
def _llm_requested(s: SessionRow, ev: Event, p: LlmCallRequested, changes: Changes) -> None:
    changes.patch(
        "llm_calls",
        (ev.session_id, p.call_id),
        status="requested",
        purpose=p.purpose,
        iteration=p.iteration,
        model_requested=p.model,
        fallbacks=list(p.fallbacks),
        max_tokens=p.max_tokens,
        temperature=p.temperature,
        context_entries=p.context_entries,
        request_digest=p.request_digest,
        reserved_tokens=p.reserved_tokens,
        reserved_nanos=p.reserved_nanos,
        requested_seq=ev.seq,
        requested_at=ev.occurred_at,
        deadline_at=p.deadline_at,
        turn_id=ev.turn_id,
    )


@projects(LlmCallCompleted)
def _llm_completed(s: SessionRow, ev: Event, p: LlmCallCompleted, changes: Changes) -> None:
    u = p.usage
    if p.discarded == SUPERSEDED:
        # The answer of an issue a re-issue replaced: added beside the call's own.
        key = (ev.session_id, p.call_id)
        changes.patch("llm_calls", key, superseded_seq=ev.seq, superseded_at=ev.occurred_at)
        for column, value in (
            ("superseded_answers", 1),
            ("superseded_input_tokens", u.input_tokens),
            ("superseded_output_tokens", u.output_tokens),
            ("superseded_cache_read_tokens", u.cache_read_tokens),
            ("superseded_cache_write_tokens", u.cache_write_tokens),
            ("superseded_cost_nanos", p.cost_nanos),
        ):
            changes.increment("llm_calls", key, column, value)
        s.llm_calls += 1
        _add_usage(s, u, p.cost_nanos)
        return
    if p.discarded is not None:
        # Recorded for its usage and cost only; a late one keeps its row cancelled.
        status, tool_calls = (None if p.discarded == "late" else "completed"), 0
    else:
        status, tool_calls = "completed", len(p.tool_call_ids)
    changes.patch(
        "llm_calls",
        (ev.session_id, p.call_id),
        status=status,
        model=p.model,
        fallback_used=p.fallback_used,
        attempts=p.attempts,
        stop_reason=p.stop_reason,
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        reasoning_tokens=u.reasoning_tokens,
        cost_nanos=p.cost_nanos,
        latency_ms=p.latency_ms,
        tool_calls=tool_calls,
        completed_seq=ev.seq,
        completed_at=ev.occurred_at,
        discarded=p.discarded,
        cached_from=p.cached_from,
    )
    s.llm_calls += 1
    _add_usage(s, u, p.cost_nanos)
    if p.discarded is None:
        _entry(s, ev, changes, "assistant", "assistant", p.text, call_id=p.call_id)


@projects(LlmCallFailed)
def _llm_failed(s: SessionRow, ev: Event, p: LlmCallFailed, changes: Changes) -> None:
    changes.patch(
        "llm_calls",
        (ev.session_id, p.call_id),
        status="failed",
        error_type=p.error_type,
        error_message=p.message,
        attempts=p.attempts,
        latency_ms=p.latency_ms,
        completed_seq=ev.seq,
        completed_at=ev.occurred_at,
    )


@projects(ProviderCircuitOpened)
def _circuit_opened(s: SessionRow, ev: Event, p: ProviderCircuitOpened, changes: Changes) -> None:
    changes.append("llm_calls", (ev.session_id, p.call_id), "circuits_opened", p.target)


_TOOL_STATUS = {
    PolicyAction.ALLOW: "pending",
    PolicyAction.DENY: "denied",
    PolicyAction.REQUIRE_APPROVAL: "awaiting_approval",
}


@projects(ToolCallRequested)
def _tool_requested(s: SessionRow, ev: Event, p: ToolCallRequested, changes: Changes) -> None:
    changes.patch(
        "tool_calls",
        (ev.session_id, p.call_id),
        llm_call_id=p.llm_call_id,
        name=p.name,
        arguments_json=p.arguments_json,
        decision=p.decision.value,
        rule=p.rule,
        status=_TOOL_STATUS[p.decision],
        requested_seq=ev.seq,
        requested_at=ev.occurred_at,
        deadline_at=p.deadline_at,
        turn_id=ev.turn_id,
    )
    _entry(
        s,
        ev,
        changes,
        "tool_call",
        "assistant",
        p.arguments_json,
        call_id=p.call_id,
        tool_name=p.name,
    )


@projects(ApprovalRequested)
def _approval_requested(s: SessionRow, ev: Event, p: ApprovalRequested, changes: Changes) -> None:
    changes.patch(
        "approvals",
        (ev.session_id, p.call_id),
        tool_name=p.tool_name,
        outcome="pending",
        requested_seq=ev.seq,
        requested_at=ev.occurred_at,
        expires_at=p.expires_at,
    )
    changes.patch("tool_calls", (ev.session_id, p.call_id), status="awaiting_approval")


def _decided(
    ev: Event, p: ApprovalGranted | ApprovalDenied, outcome: str, changes: Changes
) -> None:
    changes.patch(
        "approvals",
        (ev.session_id, p.call_id),
        outcome=outcome,
        decided_by=p.decided_by,
        reason=p.reason,
        decided_seq=ev.seq,
        decided_at=ev.occurred_at,
    )


@projects(ApprovalGranted)
def _approval_granted(s: SessionRow, ev: Event, p: ApprovalGranted, changes: Changes) -> None:
    _decided(ev, p, "granted", changes)
    changes.patch("tool_calls", (ev.session_id, p.call_id), status="approved")


@projects(ApprovalDenied)
def _approval_denied(s: SessionRow, ev: Event, p: ApprovalDenied, changes: Changes) -> None:
    _decided(ev, p, "expired" if p.expired else "denied", changes)
    # The tool result the model sees follows as ToolCallFailed (its entry).
    changes.patch("tool_calls", (ev.session_id, p.call_id), status="denied")


def _tool_result(
    s: SessionRow, ev: Event, call_id: str, ok: bool, text: str, latency: int, changes: Changes
) -> None:
    changes.patch(
        "tool_calls",
        (ev.session_id, call_id),
        status="completed" if ok else "failed",
        result_seq=ev.seq,
        completed_at=ev.occurred_at,
        latency_ms=latency,
    )
    _entry(s, ev, changes, "tool_result", "user", text, call_id=call_id, is_error=not ok)


@projects(ToolCallCompleted)
def _tool_completed(s: SessionRow, ev: Event, p: ToolCallCompleted, changes: Changes) -> None:
    _tool_result(s, ev, p.call_id, True, p.result, p.latency_ms, changes)


@projects(ToolCallFailed)
def _tool_failed(s: SessionRow, ev: Event, p: ToolCallFailed, changes: Changes) -> None:
    _tool_result(s, ev, p.call_id, False, p.error, p.latency_ms, changes)


@projects(ContextCompactionRequested)
def _compaction_requested(
    s: SessionRow, ev: Event, p: ContextCompactionRequested, changes: Changes
) -> None:
    changes.patch(
        "compactions",
        (ev.session_id, p.compaction_id),
        strategy=p.strategy,
        entry_seqs=list(p.entry_seqs),
        tokens_before=p.tokens_before,
        context_window=p.context_window,
        requested_seq=ev.seq,
        requested_at=ev.occurred_at,
    )


@projects(ContextCompacted)
def _compacted(s: SessionRow, ev: Event, p: ContextCompacted, changes: Changes) -> None:
    u = p.usage
    changes.patch(
        "compactions",
        (ev.session_id, p.compaction_id),
        strategy=p.strategy,
        removed_seqs=list(p.removed_seqs),
        tokens_after=p.tokens_after,
        model=p.model,
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        cost_nanos=p.cost_nanos,
        completed_seq=ev.seq,
        completed_at=ev.occurred_at,
    )
    if p.model is not None:
        # A summarize compaction is an LLM call (requested with the compaction id as
        # call id); this is its only completion record.
        changes.patch(
            "llm_calls",
            (ev.session_id, p.compaction_id),
            status="completed",
            purpose="summarize",
            model=p.model,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cost_nanos=p.cost_nanos,
            tool_calls=0,
            completed_seq=ev.seq,
            completed_at=ev.occurred_at,
        )
        s.llm_calls += 1
        _add_usage(s, u, p.cost_nanos)
    if p.summary is not None:
        _entry(s, ev, changes, "summary", "user", p.summary)


def _orchestration_of(s: SessionRow, call_id: str) -> str | None:
    """The orchestration a call is a member of (`<call id>.m<i>`, its call pending), or None."""
    head, sep, index = call_id.rpartition(".m")
    if not sep or not index.isdigit():
        return None
    calls = decode_calls(s.pending_calls)
    return head if (head, CallStatus.ORCHESTRATION) in calls else None


@projects(ChildSessionRequested)
def _child_requested(s: SessionRow, ev: Event, p: ChildSessionRequested, changes: Changes) -> None:
    changes.link(p.child_session_id, ev.session_id, p.call_id)
    parent = _orchestration_of(s, p.call_id)
    if parent is not None:
        changes.patch(
            "orchestration_members",
            (ev.session_id, p.call_id),
            call_id=parent,
            position=int(p.call_id.rpartition(".m")[2]),
            agent=p.agent,
            task=p.task,
            child_session_id=p.child_session_id,
            status="running",
            started_seq=ev.seq,
            started_at=ev.occurred_at,
            stopped=False,
            winner=False,
        )
        return
    changes.patch("tool_calls", (ev.session_id, p.call_id), child_session_id=p.child_session_id)


@projects(ChildSessionCompleted)
def _child_completed(s: SessionRow, ev: Event, p: ChildSessionCompleted, changes: Changes) -> None:
    if _orchestration_of(s, p.call_id) is not None:
        u = p.usage
        changes.patch(
            "orchestration_members",
            (ev.session_id, p.call_id),
            status=p.status.value,
            answer=p.answer,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cost_nanos=p.cost_nanos,
            completed_seq=ev.seq,
            completed_at=ev.occurred_at,
        )
        return
    ok = p.status is ChildStatus.COMPLETED
    changes.patch(
        "tool_calls",
        (ev.session_id, p.call_id),
        child_session_id=p.child_session_id,
        status="completed" if ok else "failed",
        result_seq=ev.seq,
        completed_at=ev.occurred_at,
    )
    _entry(s, ev, changes, "tool_result", "user", p.answer, call_id=p.call_id, is_error=not ok)


@projects(OrchestrationStarted)
def _orchestration_started(
    s: SessionRow, ev: Event, p: OrchestrationStarted, changes: Changes
) -> None:
    changes.patch(
        "orchestrations",
        (ev.session_id, p.call_id),
        turn_id=ev.turn_id,
        mode=p.mode,
        quorum=p.quorum,
        combine=p.combine,
        members=len(p.agents),
        member_timeout_ms=p.member_timeout_ms,
        status="running",
        started_seq=ev.seq,
        started_at=ev.occurred_at,
    )


@projects(OrchestrationMemberCancelled)
def _member_cancelled(
    s: SessionRow, ev: Event, p: OrchestrationMemberCancelled, changes: Changes
) -> None:
    changes.patch(
        "orchestration_members",
        (ev.session_id, p.member_call_id),
        stopped=True,
        stop_seq=ev.seq,
        stop_reason=p.reason,
    )


@projects(OrchestrationCompleted)
def _orchestration_completed(
    s: SessionRow, ev: Event, p: OrchestrationCompleted, changes: Changes
) -> None:
    ok = p.status == "completed"
    changes.patch(
        "orchestrations",
        (ev.session_id, p.call_id),
        status=p.status,
        winner_call_id=p.winner_call_id,
        completed_members=p.completed,
        failed_members=p.failed,
        cancelled_members=p.cancelled,
        result=p.result,
        completed_seq=ev.seq,
        completed_at=ev.occurred_at,
    )
    if p.winner_call_id is not None:
        changes.patch("orchestration_members", (ev.session_id, p.winner_call_id), winner=True)
    if p.call_id.startswith(TEAM):  # a team agent's turn: no tool call of the model's
        _entry(s, ev, changes, "assistant", "assistant", p.result, is_error=not ok)
        return
    changes.patch(
        "tool_calls",
        (ev.session_id, p.call_id),
        status="completed" if ok else "failed",
        result_seq=ev.seq,
        completed_at=ev.occurred_at,
    )
    _entry(s, ev, changes, "tool_result", "user", p.result, call_id=p.call_id, is_error=not ok)


@projects(EffectReissued)
def _effect_reissued(s: SessionRow, ev: Event, p: EffectReissued, changes: Changes) -> None:
    if p.kind in (EffectKind.LLM_CALL, EffectKind.COMPACTION):
        changes.increment("llm_calls", (ev.session_id, p.effect_id), "reissues")
    elif _orchestration_of(s, p.effect_id) is None:
        # A tool call, or a delegation (whose effect id is the tool call id); an
        # orchestration's member has no tool_calls row of its own.
        changes.increment("tool_calls", (ev.session_id, p.effect_id), "reissues")


@projects(GuardrailTripped)
def _guardrail_tripped(s: SessionRow, ev: Event, p: GuardrailTripped, changes: Changes) -> None:
    changes.patch(
        "guardrail_trips",
        (ev.session_id, ev.event_id),
        seq=ev.seq,
        turn_id=ev.turn_id,
        agent=ev.agent,
        rule=p.rule,
        kind=p.kind,
        action=p.action,
        stage=p.on,
        detail=p.detail,
        call_id=p.call_id,
        tripped_at=ev.occurred_at,
    )


@projects(StructuredOutputInvalid)
def _structured_invalid(
    s: SessionRow, ev: Event, p: StructuredOutputInvalid, changes: Changes
) -> None:
    changes.patch(
        "structured_outputs",
        (ev.session_id, p.call_id),
        turn_id=ev.turn_id,
        agent=ev.agent,
        valid=False,
        attempt=p.attempt,
        error=p.error,
        seq=ev.seq,
        recorded_at=ev.occurred_at,
    )
    # The corrective attempt's user-side entry, as the core's history has it.
    _entry(s, ev, changes, "user", "user", correction_text(p.error))


@projects(StructuredOutputAccepted)
def _structured_accepted(
    s: SessionRow, ev: Event, p: StructuredOutputAccepted, changes: Changes
) -> None:
    changes.patch(
        "structured_outputs",
        (ev.session_id, p.call_id),
        turn_id=ev.turn_id,
        agent=ev.agent,
        valid=True,
        result=json.loads(p.result),  # a jsonb column dumps the value it is given
        seq=ev.seq,
        recorded_at=ev.occurred_at,
    )


@projects(BudgetAlert)
def _budget_alert(s: SessionRow, ev: Event, p: BudgetAlert, changes: Changes) -> None:
    changes.patch(
        "budget_alerts",
        (p.scope, p.key, p.period or "", p.unit, p.threshold),
        fraction=p.fraction,
        spent=p.spent,
        budget_limit=p.limit,
        session_id=ev.session_id,
        event_id=ev.event_id,
        seq=ev.seq,
        agent=ev.agent,
        alerted_at=ev.occurred_at,
    )


@projects(BudgetLimitReached)
def _budget_limit(s: SessionRow, ev: Event, p: BudgetLimitReached, changes: Changes) -> None:
    changes.patch(
        "budget_limits",
        (ev.session_id, p.scope, p.key, p.period),
        unit=p.unit,
        budget_limit=p.limit,
        spent=p.spent,
        until=p.until,
        seq=ev.seq,
        agent=ev.agent,
        reached_at=ev.occurred_at,
    )


@projects(TurnCompleted)
def _turn_completed(s: SessionRow, ev: Event, p: TurnCompleted, changes: Changes) -> None:
    s.turns_completed += 1


@projects(TurnFailed)
def _turn_failed(s: SessionRow, ev: Event, p: TurnFailed, changes: Changes) -> None:
    if p.error_type == REFUSED:
        s.turns_refused += 1
    else:
        s.turns_failed += 1


@projects(TurnCancelled)
def _turn_cancelled(s: SessionRow, ev: Event, p: TurnCancelled, changes: Changes) -> None:
    s.turns_cancelled += 1
    sid, seq, at = ev.session_id, ev.seq, ev.occurred_at
    # Every row of the abandoned work ends in a terminal status.
    if p.llm_call_id is not None:
        changes.patch(
            "llm_calls",
            (sid, p.llm_call_id),
            status="cancelled",
            completed_seq=seq,
            completed_at=at,
        )
    for call_id in p.tool_call_ids:
        changes.patch(
            "tool_calls", (sid, call_id), status="cancelled", result_seq=seq, completed_at=at
        )
    # Orchestrations cut short: they end as failed, their running members as cancelled.
    for call_id, status in decode_calls(s.pending_calls):
        if status != CallStatus.ORCHESTRATION:
            continue
        why = f"Cancelled with its turn{': ' + p.reason if p.reason else '.'}"
        changes.patch(
            "orchestrations",
            (sid, call_id),
            status="failed",
            result=why,
            completed_seq=seq,
            completed_at=at,
        )
        prefix = f"{sid}/child/{call_id}.m"
        for child in p.child_session_ids:
            if child.startswith(prefix):
                member = child[len(f"{sid}/child/") :]
                changes.patch(
                    "orchestration_members",
                    (sid, member),
                    status="cancelled",
                    answer=why,
                    completed_seq=seq,
                    completed_at=at,
                )
    for call_id in p.approval_call_ids:
        changes.patch(
            "approvals",
            (sid, call_id),
            outcome="cancelled",
            decided_seq=seq,
            decided_at=at,
            reason=p.reason,
        )


def _add_usage(s: SessionRow, u: Usage, cost: int) -> None:
    s.input_tokens += u.input_tokens
    s.output_tokens += u.output_tokens
    s.cache_read_tokens += u.cache_read_tokens
    s.cache_write_tokens += u.cache_write_tokens
    s.cost_nanos += cost
