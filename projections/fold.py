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

from datetime import datetime
from enum import Enum

from agents.events import (
    REFUSED,
    AgentVersionChanged,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    ContextCompacted,
    ContextCompactionRequested,
    EffectKind,
    EffectReissued,
    Event,
    LlmCallCompleted,
    LlmCallFailed,
    LlmCallRequested,
    MessageQueued,
    PolicyAction,
    ProviderCircuitOpened,
    QueuedMessageDropped,
    SessionClosed,
    SessionForked,
    SessionStarted,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UserMessageReceived,
)
from projections.rows import Changes, SessionRow

__all__ = ["NOT_STARTED", "Verdict", "classify", "fold", "is_started", "unstarted_session"]

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
    other rows it touches to `changes`."""
    s = session if session is not None else _new_session(event)
    p = event.payload
    sid, seq, at = event.session_id, event.seq, event.occurred_at
    s.last_seq = seq
    s.updated_at = at
    changes.events.append(
        (
            sid,
            seq,
            event.event_id,
            type(p).__name__,
            event.turn_id,
            at,
            event.causation_id,
            event.correlation_id,
            partition,
            offset,
            digest,
        )
    )

    if isinstance(p, SessionStarted):
        s.agent, s.definition_hash, s.phase = p.agent, p.definition_hash, "idle"
        s.parent_session_id, s.parent_call_id = p.parent_session_id, p.parent_call_id
        if p.parent_session_id is not None:
            changes.link(sid, p.parent_session_id, p.parent_call_id)
    elif isinstance(p, SessionForked):
        s.agent, s.definition_hash = p.agent, p.definition_hash
        if s.phase == NOT_STARTED:
            s.phase = "idle"
            s.forked_from_session_id, s.forked_at_seq = p.source_session_id, p.at_seq
    elif isinstance(p, SessionClosed):
        s.status, s.phase, s.closed_reason = "closed", "closed", p.reason
    elif isinstance(p, TurnStarted):
        s.turns += 1
        if p.queued_seq is not None and event.causation_id is not None:
            # A queued message's turn is caused by the request that sent it.
            changes.patch(
                "queued_messages",
                (sid, event.causation_id),
                status="started",
                started_turn_id=event.turn_id,
                ended_seq=seq,
                ended_at=at,
            )
            s.queued -= 1
    elif isinstance(p, AgentVersionChanged):
        s.definition_hash = p.to_hash
    elif isinstance(p, MessageQueued):
        changes.patch(
            "queued_messages",
            (sid, event.causation_id or ""),
            queued_seq=seq,
            position=p.position,
            content=p.text,
            status="queued",
            queued_at=at,
        )
        s.queued += 1
    elif isinstance(p, QueuedMessageDropped):
        changes.patch(
            "queued_messages",
            (sid, p.request_id),
            status="dropped",
            ended_seq=seq,
            ended_at=at,
            reason=p.reason,
        )
        s.queued -= 1
    elif isinstance(p, UserMessageReceived):
        _entry(s, event, changes, "user", "user", p.text)
    elif isinstance(p, LlmCallRequested):
        changes.patch(
            "llm_calls",
            (sid, p.call_id),
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
            requested_seq=seq,
            requested_at=at,
            deadline_at=p.deadline_at,
            turn_id=event.turn_id,
        )
        s.phase = "compacting" if p.purpose == "summarize" else "awaiting_llm"
    elif isinstance(p, LlmCallCompleted) and p.discarded is not None:
        # Recorded for its usage and cost only; a late one keeps its row cancelled.
        u = p.usage
        changes.patch(
            "llm_calls",
            (sid, p.call_id),
            status=None if p.discarded == "late" else "completed",
            model=p.model,
            fallback_used=p.fallback_used,
            attempts=p.attempts,
            stop_reason=p.stop_reason,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cost_nanos=p.cost_nanos,
            latency_ms=p.latency_ms,
            tool_calls=0,
            completed_seq=seq,
            completed_at=at,
            discarded=p.discarded,
        )
        s.llm_calls += 1
        _add_usage(
            s,
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            p.cost_nanos,
        )
    elif isinstance(p, LlmCallCompleted):
        u = p.usage
        changes.patch(
            "llm_calls",
            (sid, p.call_id),
            status="completed",
            model=p.model,
            fallback_used=p.fallback_used,
            attempts=p.attempts,
            stop_reason=p.stop_reason,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cost_nanos=p.cost_nanos,
            latency_ms=p.latency_ms,
            tool_calls=len(p.tool_call_ids),
            completed_seq=seq,
            completed_at=at,
        )
        s.llm_calls += 1
        _add_usage(
            s,
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            p.cost_nanos,
        )
        _entry(s, event, changes, "assistant", "assistant", p.text, call_id=p.call_id)
        if p.tool_call_ids:
            s.phase = "awaiting_tools"
    elif isinstance(p, LlmCallFailed):
        changes.patch(
            "llm_calls",
            (sid, p.call_id),
            status="failed",
            error_type=p.error_type,
            error_message=p.message,
            attempts=p.attempts,
            latency_ms=p.latency_ms,
            completed_seq=seq,
            completed_at=at,
        )
    elif isinstance(p, ProviderCircuitOpened):
        changes.append("llm_calls", (sid, p.call_id), "circuits_opened", p.target)
    elif isinstance(p, ToolCallRequested):
        status = {
            PolicyAction.ALLOW: "pending",
            PolicyAction.DENY: "denied",
            PolicyAction.REQUIRE_APPROVAL: "awaiting_approval",
        }[p.decision]
        changes.patch(
            "tool_calls",
            (sid, p.call_id),
            llm_call_id=p.llm_call_id,
            name=p.name,
            arguments_json=p.arguments_json,
            decision=p.decision.value,
            rule=p.rule,
            status=status,
            requested_seq=seq,
            requested_at=at,
            deadline_at=p.deadline_at,
            turn_id=event.turn_id,
        )
        _entry(
            s,
            event,
            changes,
            "tool_call",
            "assistant",
            p.arguments_json,
            call_id=p.call_id,
            tool_name=p.name,
        )
        s.phase = "awaiting_tools"
    elif isinstance(p, ApprovalRequested):
        changes.patch(
            "approvals",
            (sid, p.call_id),
            tool_name=p.tool_name,
            outcome="pending",
            requested_seq=seq,
            requested_at=at,
            expires_at=p.expires_at,
        )
        changes.patch("tool_calls", (sid, p.call_id), status="awaiting_approval")
        s.phase = "awaiting_approval"
    elif isinstance(p, ApprovalGranted):
        changes.patch(
            "approvals",
            (sid, p.call_id),
            outcome="granted",
            decided_by=p.decided_by,
            reason=p.reason,
            decided_seq=seq,
            decided_at=at,
        )
        changes.patch("tool_calls", (sid, p.call_id), status="approved")
        s.phase = "awaiting_tools"
    elif isinstance(p, ApprovalDenied):
        changes.patch(
            "approvals",
            (sid, p.call_id),
            outcome="expired" if p.expired else "denied",
            decided_by=p.decided_by,
            reason=p.reason,
            decided_seq=seq,
            decided_at=at,
        )
        # The tool result the model sees follows as ToolCallFailed (its entry).
        changes.patch("tool_calls", (sid, p.call_id), status="denied")
        s.phase = "awaiting_tools"
    elif isinstance(p, ToolCallCompleted):
        changes.patch(
            "tool_calls",
            (sid, p.call_id),
            status="completed",
            result_seq=seq,
            completed_at=at,
            latency_ms=p.latency_ms,
        )
        _entry(s, event, changes, "tool_result", "user", p.result, call_id=p.call_id)
    elif isinstance(p, ToolCallFailed):
        changes.patch(
            "tool_calls",
            (sid, p.call_id),
            status="failed",
            result_seq=seq,
            completed_at=at,
            latency_ms=p.latency_ms,
        )
        _entry(s, event, changes, "tool_result", "user", p.error, call_id=p.call_id, is_error=True)
    elif isinstance(p, ContextCompactionRequested):
        changes.patch(
            "compactions",
            (sid, p.compaction_id),
            strategy=p.strategy,
            entry_seqs=list(p.entry_seqs),
            tokens_before=p.tokens_before,
            context_window=p.context_window,
            requested_seq=seq,
            requested_at=at,
        )
        if p.strategy == "summarize":
            s.phase = "compacting"
    elif isinstance(p, ContextCompacted):
        u = p.usage
        changes.patch(
            "compactions",
            (sid, p.compaction_id),
            strategy=p.strategy,
            removed_seqs=list(p.removed_seqs),
            tokens_after=p.tokens_after,
            model=p.model,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            cost_nanos=p.cost_nanos,
            completed_seq=seq,
            completed_at=at,
        )
        if p.model is not None:
            # A summarize compaction is an LLM call (requested with the compaction id as
            # call id); this is its only completion record.
            changes.patch(
                "llm_calls",
                (sid, p.compaction_id),
                status="completed",
                purpose="summarize",
                model=p.model,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cache_read_tokens=u.cache_read_tokens,
                cache_write_tokens=u.cache_write_tokens,
                cost_nanos=p.cost_nanos,
                tool_calls=0,
                completed_seq=seq,
                completed_at=at,
            )
            s.llm_calls += 1
            _add_usage(
                s,
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                p.cost_nanos,
            )
        if p.summary is not None:
            _entry(s, event, changes, "summary", "user", p.summary)
    elif isinstance(p, ChildSessionRequested):
        changes.link(p.child_session_id, sid, p.call_id)
        changes.patch("tool_calls", (sid, p.call_id), child_session_id=p.child_session_id)
        s.phase = "awaiting_children"
    elif isinstance(p, ChildSessionCompleted):
        ok = p.status is ChildStatus.COMPLETED
        changes.patch(
            "tool_calls",
            (sid, p.call_id),
            child_session_id=p.child_session_id,
            status="completed" if ok else "failed",
            result_seq=seq,
            completed_at=at,
        )
        _entry(
            s, event, changes, "tool_result", "user", p.answer, call_id=p.call_id, is_error=not ok
        )
    elif isinstance(p, EffectReissued):
        if p.kind in (EffectKind.LLM_CALL, EffectKind.COMPACTION):
            changes.increment("llm_calls", (sid, p.effect_id), "reissues")
        else:  # a tool call, or a delegation (whose effect id is the tool call id)
            changes.increment("tool_calls", (sid, p.effect_id), "reissues")
    elif isinstance(p, TurnCompleted):
        s.turns_completed += 1
        s.phase = "idle"
    elif isinstance(p, TurnFailed):
        if p.error_type == REFUSED:
            s.turns_refused += 1
        else:
            s.turns_failed += 1
        s.phase = "idle"
    elif isinstance(p, TurnCancelled):
        s.turns_cancelled += 1
        s.phase = "idle"
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
        for call_id in p.approval_call_ids:
            changes.patch(
                "approvals",
                (sid, call_id),
                outcome="cancelled",
                decided_seq=seq,
                decided_at=at,
                reason=p.reason,
            )
    # BudgetExceeded, RequestRejected: the events row is all there is.
    return s


def _add_usage(s: SessionRow, inp: int, out: int, cr: int, cw: int, cost: int) -> None:
    s.input_tokens += inp
    s.output_tokens += out
    s.cache_read_tokens += cr
    s.cache_write_tokens += cw
    s.cost_nanos += cost
