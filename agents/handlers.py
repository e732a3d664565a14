"""Input handlers: one function per (phase, input type) cell of the transition table
(Tick's is in agents._tick).

Rule: a handler first validates the input against the state and raises `Rejected` with
a full-sentence reason naming the session and the offending id; only then does it emit.
Handlers are reached only through agents.transitions.TRANSITIONS, so the phase is
already known to be one where the input type can be legal.

Duplicate and late outcomes: an outcome (Complete*/Fail*) whose effect id is not pending
— unknown, already resolved by an earlier outcome of a re-issued effect, or abandoned by
a cancel/fork — is rejected with a RequestRejected that says so. It changes nothing, in
particular no cost is charged twice.
"""

from __future__ import annotations

import json
from typing import Any

from agents._admission import cancel_admission, refuse_while_busy, request_admission, shared_limit
from agents._decision import Decision, Rejected
from agents._orchestrate import advance, hand_off
from agents._step import dispatch_tool_uses, start_child, start_delegate_many
from agents._turn import (
    GUARDRAIL_BLOCKED,
    classify,
    drop_instead_of_summary,
    fail_turn,
    guard,
    guard_decided,
    model_chain,
    next_llm_call,
    start_turn,
    step_resolved,
    summarized,
)
from agents.budget import block_reason
from agents.events import (
    REFUSED,
    ApprovalDenied,
    ApprovalGranted,
    Attachment,
    BudgetLimitReached,
    CancelTurn,
    ChildSessionCompleted,
    CloseSession,
    CompleteChildSession,
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    DecideApproval,
    EnforceBudget,
    FailLlmCall,
    FailToolCall,
    ForkSession,
    LlmCallCompleted,
    LlmCallFailed,
    MessageQueued,
    ModelChanged,
    ProviderCircuitOpened,
    QueuedMessageDropped,
    SendMessage,
    SessionClosed,
    SessionForked,
    SessionStarted,
    SetModel,
    StructuredOutputAccepted,
    StructuredOutputInvalid,
    ToolCallCompleted,
    ToolCallFailed,
    TurnCancelled,
)
from agents.guardrails import Verdict, check, parse_verdict
from agents.limits import utf8_size
from agents.llm import StopReason
from agents.orchestration import DELEGATE_MANY, HANDOFF, orchestration_of
from agents.pricing import ModelNotFound, answer_cost_nanos, model_info
from agents.ratelimit import RateLimit, check_rate
from agents.state import (
    CallStatus,
    EntryKind,
    PendingCall,
    PendingLlm,
    SessionState,
)
from agents.structured import MAX_CORRECTIONS, validate_answer
from agents.toolspecs import DELEGATE, REMOTE_AGENT_PREFIX
from agents.variants import assign

__all__ = [
    "late_llm_call",
    "on_approval",
    "on_cancel",
    "on_child_completed",
    "on_close",
    "on_compaction_completed",
    "on_compaction_failed",
    "on_fork",
    "on_late_llm_completed",
    "on_llm_completed",
    "on_llm_failed",
    "on_queue_message",
    "on_send_message",
    "on_set_model",
    "on_start_session",
    "on_tool_completed",
    "on_tool_failed",
]


def _text(d: Decision, text: str, attachments: tuple[Attachment, ...] = ()) -> str:
    if not text.strip() and not attachments:
        raise Rejected(f"Session {d.state.session_id}: the message text is empty.")
    return text


def _check_attachments(d: Decision, p: SendMessage, model: str) -> None:
    """A message's attachments: the model that will read them must see (the catalog's
    vision capability), and inline ones fit the request limit together with the text."""
    if not p.attachments:
        return
    sid = d.state.session_id
    info = model_info(model)
    if not info.vision:
        kinds = ", ".join(sorted({a.media_type for a in p.attachments}))
        raise Rejected(
            f"Session {sid}: model {model!r} cannot read attachments ({kinds}): its catalog "
            f"entry ({info.source}) has vision = false. Switch the session to a model that "
            "has it (turnlog model SESSION MODEL) or send text only."
        )
    inline = utf8_size(p.text) + sum(len(a.data) for a in p.attachments if a.data is not None)
    limit = d.registry.limits.max_text_bytes
    if inline > limit:
        raise Rejected(
            f"Session {sid}: the message and its inline attachments take {inline} bytes, "
            f"over the request limit of {limit} (TURNLOG_MAX_TEXT_BYTES); put large files "
            "in the blob store and send them by reference (their sha256)."
        )


def _not_pending(d: Decision, what: str, effect_id: str) -> Rejected:
    return Rejected(
        f"Session {d.state.session_id}: {what} {effect_id} is not pending (unknown, already "
        f"resolved, or abandoned by a cancel); this outcome is ignored."
    )


def _pending_llm(d: Decision, call_id: str, purpose: str) -> PendingLlm:
    llm = d.turn.llm
    if llm is None or llm.request.call_id != call_id or llm.request.purpose != purpose:
        what = {"turn": "LLM call", "summarize": "compaction"}.get(purpose, f"{purpose} call")
        raise _not_pending(d, what, call_id)
    return llm


def _pending_call(d: Decision, call_id: str, status: str, what: str) -> PendingCall:
    for call in d.turn.calls:
        if call.call_id == call_id:
            if call.status != status:
                raise Rejected(
                    f"Session {d.state.session_id}: tool call {call_id} is waiting for "
                    f"{'approval' if call.status == CallStatus.APPROVAL else call.status}, "
                    f"not for {what}."
                )
            return call
    raise _not_pending(d, "tool call", call_id)


_priced = answer_cost_nanos


# --------------------------------------------------------------------------- session


def on_start_session(d: Decision, p: SendMessage) -> None:
    name = d.request.agent
    info = d.registry.find(name)
    if info is None:
        raise Rejected(
            f"Session {d.state.session_id} cannot start: {d.registry.unknown_agent_reason(name)}"
        )
    text = _text(d, p.text, p.attachments)
    _check_attachments(d, p, info.definition.model_chain[0])
    d.emit(
        SessionStarted(
            agent=info.definition.name,
            definition_hash=info.definition_hash,
            parent_session_id=p.parent_session_id,
            parent_call_id=p.parent_call_id,
            variant=assign(d.state.session_id, info.definition.variants),
            client=d.request.client,
        )
    )
    shared = shared_limit(info.definition.rate_limit)
    if shared is not None:  # counted across sessions: admitted first (agents._admission)
        request_admission(d, shared, text)
        return
    start_turn(d, text, attachments=p.attachments)


def _same_session(d: Decision, p: SendMessage) -> None:
    """A message to an existing session: not a delegation, and for its own agent."""
    s = d.state
    if p.parent_session_id is not None:
        raise Rejected(
            f"Session {s.session_id} already exists; a delegation must start a new session."
        )
    if d.request.agent is not None and d.request.agent != s.agent:
        raise Rejected(
            f"Session {s.session_id} belongs to agent {s.agent!r}, not {d.request.agent!r}."
        )


def _within_rate(d: Decision, limit: RateLimit | None) -> None:
    """A message over the agent's rate limit is rejected naming the limit (see
    agents.ratelimit); the window is the session's, stamped with the log's times."""
    verdict = check_rate(limit, d.state.rate, d.now)
    if verdict is not None:
        raise Rejected(f"Session {d.state.session_id}: {verdict.reason()}")


def on_send_message(d: Decision, p: SendMessage) -> None:
    _same_session(d, p)
    _within_budget(d)
    info = d.agent_info()
    _within_rate(d, info.definition.rate_limit)
    text = _text(d, p.text, p.attachments)
    _check_attachments(d, p, model_chain(d.state, info.definition)[0])
    shared = shared_limit(info.definition.rate_limit)
    if shared is not None:  # counted across sessions: admitted first (agents._admission)
        request_admission(d, shared, text)
        return
    start_turn(d, text, attachments=p.attachments)


def on_fork(d: Decision, p: ForkSession) -> None:
    s = d.state
    if not s.agent:
        raise Rejected(
            f"Cannot fork {p.source_session_id} into {s.session_id}: the source session has "
            f"no events up to seq {p.at_seq}."
        )
    if s.lineage.forked_from != p.source_session_id or s.last_seq != p.at_seq:
        raise Rejected(
            f"Cannot fork {p.source_session_id} at seq {p.at_seq} into {s.session_id}: the "
            f"state given is {s.lineage.forked_from} at seq {s.last_seq} (the source has "
            f"fewer events than at_seq, or the shell folded the wrong prefix)."
        )
    name = p.agent or s.agent
    info = d.registry.find(name)
    if info is None:
        raise Rejected(f"Cannot fork into {s.session_id}: {d.registry.unknown_agent_reason(name)}")
    d.emit(
        SessionForked(
            source_session_id=p.source_session_id,
            at_seq=p.at_seq,
            agent=info.definition.name,
            definition_hash=info.definition_hash,
        )
    )


def on_queue_message(d: Decision, p: SendMessage) -> None:
    """A message during a turn waits for it (up to the agent's max_queued)."""
    _same_session(d, p)
    _within_budget(d)
    s = d.state
    defn = d.agent_info().definition
    if shared_limit(defn.rate_limit) is not None:
        refuse_while_busy(d)
    _within_rate(d, defn.rate_limit)
    limit = defn.max_queued
    text = _text(d, p.text, p.attachments)
    _check_attachments(d, p, model_chain(s, defn)[0])
    if len(s.queue) >= limit:
        raise Rejected(
            f"Session {s.session_id} has a turn in progress ({s.phase.value}) and "
            f"{len(s.queue)} queued message(s), the agent's limit (max_queued = {limit}); "
            f"wait for the turn to end, or cancel it."
        )
    # Guarded now, not when its turn starts: the queued text is recorded here.
    verdict = check(defn.guardrails, "input", text)
    if verdict.blocked is not None:
        # It has no turn of its own to fail yet, and queuing it would record it.
        b = verdict.blocked
        raise Rejected(
            f"Session {s.session_id}: guardrail {b.rule!r} ({b.kind}) blocked the message: "
            f"{b.detail}."
        )
    text = guard(d, defn.guardrails, "input", text).text
    d.emit(MessageQueued(text=text, position=len(d.state.queue) + 1, attachments=p.attachments))


def _cancel_turn(d: Decision, reason: str | None) -> None:
    """End the turn, naming everything it abandons (workers abort what still runs)."""
    turn = d.turn
    calls = turn.calls
    d.emit(
        TurnCancelled(
            turn_no=turn.turn_no,
            reason=reason,
            llm_call_id=turn.llm.request.call_id if turn.llm is not None else None,
            # An orchestration's members are not tool calls of the model's (their child
            # sessions are cancelled below like a delegation's).
            tool_call_ids=tuple(
                c.call_id for c in calls if orchestration_of(calls, c.call_id) is None
            ),
            approval_call_ids=tuple(c.call_id for c in calls if c.status == CallStatus.APPROVAL),
            # A remote A2A delegate has no session here: the shell cancels its task.
            child_session_ids=tuple(
                c.child_session_id
                for c in calls
                if c.status == CallStatus.CHILD
                and c.child_session_id
                and not c.child_agent.startswith(REMOTE_AGENT_PREFIX)
            ),
        )
    )


def _drop_queue(d: Decision, reason: str) -> None:
    for q in d.state.queue:
        d.emit(QueuedMessageDropped(queued_seq=q.seq, request_id=q.request_id, reason=reason))


def on_enforce_budget(d: Decision, p: EnforceBudget) -> None:
    """A budget across sessions is spent (the budget watcher): record it, so that the
    session starts no new turn until `until` and its running turn asks no model again."""
    s = d.state
    if p.until <= d.now:
        raise Rejected(
            f"Session {s.session_id}: the {p.scope} budget of {p.key!r} for {p.period} "
            f"ended at {p.until.isoformat()}; nothing to enforce."
        )
    b = s.budget_block
    if b is not None and (b.scope, b.key, b.period, b.unit) == (p.scope, p.key, p.period, p.unit):
        raise Rejected(
            f"Session {s.session_id}: the {p.scope} budget of {p.key!r} for {p.period} is "
            f"already enforced."
        )
    d.emit(BudgetLimitReached(p.scope, p.key, p.period, p.unit, p.limit, p.spent, p.until))


def _within_budget(d: Decision) -> None:
    """A spent budget across sessions (BudgetLimitReached) refuses a new message."""
    reason = block_reason(d.state.budget_block, d.now)
    if reason is not None:
        raise Rejected(f"Session {d.state.session_id}: {reason}")


def on_set_model(d: Decision, p: SetModel) -> None:
    """Switch the session's model for its later LLM calls (the one in flight, if any,
    finishes on the model it was sent to)."""
    s = d.state
    defn = d.agent_info().definition
    try:
        info = model_info(p.model)
    except ModelNotFound as exc:
        raise Rejected(f"Session {s.session_id}: cannot switch model. {exc}") from None
    current = model_chain(s, defn)[0]
    problem = None
    if defn.tools and not info.tools:
        problem = f"cannot call tools (tools = false) and agent {s.agent!r} has tools"
    elif defn.max_tokens > info.max_output_tokens:
        problem = (
            f"gives at most {info.max_output_tokens} output tokens, fewer than the agent's "
            f"max_tokens {defn.max_tokens}"
        )
    elif not info.vision and _window_has_attachments(s):
        problem = "cannot read the images or documents in the conversation (vision = false)"
    if problem is not None:
        raise Rejected(
            f"Session {s.session_id}: cannot switch to model {p.model!r}: it {problem} "
            f"(catalog: {info.source})."
        )
    if info.name == current:
        raise Rejected(f"Session {s.session_id} already uses model {info.name!r}.")
    d.emit(ModelChanged(from_model=current, to_model=info.name))


def _window_has_attachments(s: SessionState) -> bool:
    h = s.history
    return any(e.blocks for e in h.entries.iter_from(h.window_start) if e.kind == EntryKind.USER)


def on_close(d: Decision, p: CloseSession) -> None:
    if d.state.turn is not None:
        _cancel_turn(d, "The session was closed.")
    cancel_admission(d, "The session was closed while the message waited for admission.")
    _drop_queue(d, "The session was closed.")
    d.emit(SessionClosed(reason=p.reason))


def on_cancel(d: Decision, p: CancelTurn) -> None:
    s = d.state
    if p.queued_request_id is not None:
        queued = next((q for q in s.queue if q.request_id == p.queued_request_id), None)
        if queued is None:
            waiting = ", ".join(q.request_id for q in s.queue) or "none"
            raise Rejected(
                f"Session {s.session_id}: no queued message was sent by request "
                f"{p.queued_request_id} (queued: {waiting})."
            )
        d.emit(
            QueuedMessageDropped(
                queued_seq=queued.seq, request_id=queued.request_id, reason=p.reason
            )
        )
        return
    _cancel_turn(d, p.reason)
    if p.drop_queue:
        _drop_queue(d, p.reason or "The queue was dropped with the turn.")
    # Otherwise the next queued message starts its turn (decide does that after every
    # input that ends a turn).


def late_llm_call(state: SessionState, call_id: str) -> tuple[str, str] | None:
    """(call id, requested model) when `call_id` is an LLM call a cancel abandoned."""
    return next((a for a in state.abandoned if a[0] == call_id), None)


def on_late_llm_completed(d: Decision, p: CompleteLlmCall | FailLlmCall) -> None:
    """The outcome of a call a cancel abandoned: its tokens were billed, so they are
    charged to the session (and its budget), without reopening anything. A failure
    (the worker aborting the stream) is charged what the vendor reported before."""
    abandoned = late_llm_call(d.state, p.call_id)
    assert abandoned is not None  # decide routes only those here
    if isinstance(p, FailLlmCall):
        if p.usage.total_tokens == 0:
            raise _not_pending(d, "LLM call", p.call_id)
        d.emit(
            LlmCallCompleted(
                call_id=p.call_id,
                model=abandoned[1],
                text="",
                tool_call_ids=(),
                stop_reason=p.error_type,
                usage=p.usage,
                cost_nanos=_priced(abandoned[1], abandoned[1], p.usage),
                latency_ms=p.latency_ms,
                attempts=p.attempts,
                discarded="late",
            )
        )
        return
    d.emit(
        LlmCallCompleted(
            call_id=p.call_id,
            model=p.model,
            text="",
            tool_call_ids=(),
            stop_reason=p.stop_reason,
            usage=p.usage,
            cost_nanos=_priced(p.model, abandoned[1], p.usage),
            latency_ms=p.latency_ms,
            attempts=p.attempts,
            fallback_used=p.fallback_used,
            discarded="late",
        )
    )


# --------------------------------------------------------------------------- LLM


def _discarded(d: Decision, p: CompleteLlmCall, llm: PendingLlm, why: str) -> None:
    # Recorded only for its cost, yet its text is output too: guarded before it is stored.
    verdict = guard(d, d.agent_info().definition.guardrails, "output", p.text, p.call_id)
    d.emit(
        LlmCallCompleted(
            call_id=p.call_id,
            model=p.model,
            text="" if verdict.blocked is not None else verdict.text,
            tool_call_ids=(),
            stop_reason=p.stop_reason,
            usage=p.usage,
            cost_nanos=_priced(p.model, llm.request.model, p.usage),
            latency_ms=p.latency_ms,
            attempts=p.attempts,
            fallback_used=p.fallback_used,
            discarded=why,
        )
    )


def _truncated_tool_call(d: Decision, p: CompleteLlmCall, llm: PendingLlm) -> None:
    """Cut off at max_tokens inside a tool call: the call is never run. Ask once more with
    twice the max_tokens (what the models of the chain can give), or end the turn."""
    defn = d.agent_info().definition
    _discarded(d, p, llm, "truncated")
    names = ", ".join(u.name for u in p.tool_uses)
    limit = min(model_info(m).max_output_tokens for m in model_chain(d.state, defn))
    asked = llm.request.max_tokens
    more = min(asked * 2, limit)
    if defn.on_truncated_tool_call == "retry" and asked == defn.max_tokens and more > asked:
        next_llm_call(d, max_tokens=more)
        return
    fail_turn(
        d,
        f"The model's answer was cut off at max_tokens ({asked}) inside a tool call "
        f"({names}); the call was not run.",
        "TruncatedToolCall",
    )


def _context_window_stop(d: Decision, p: CompleteLlmCall, llm: PendingLlm) -> None:
    """The model stopped on a full context window: compact and ask once more."""
    _discarded(d, p, llm, "context_window")
    turn = d.turn
    # The call that stopped already followed a compaction: one retry was had.
    if turn.compacted_iteration >= turn.iteration - 1 >= 0:
        fail_turn(
            d,
            "The model stopped because its context window was full, again after a compaction.",
            "ContextWindowExceeded",
        )
        return
    next_llm_call(d, force_compaction=True)


def _guard_pending(d: Decision, call_id: str) -> bool:
    llm = d.turn.llm
    return llm is not None and llm.request.purpose == "guard" and llm.request.call_id == call_id


def _guard_completed(d: Decision, p: CompleteLlmCall) -> None:
    """A classifier guardrail's answer: recorded for its cost (not part of the
    conversation: discarded "guard"), then its verdict decides (agents._turn)."""
    llm = _pending_llm(d, p.call_id, "guard")
    for target in p.circuits_opened:
        d.emit(ProviderCircuitOpened(call_id=p.call_id, target=target))
    d.emit(
        LlmCallCompleted(
            call_id=p.call_id,
            model=p.model,
            text=p.text,
            tool_call_ids=(),
            stop_reason=p.stop_reason,
            usage=p.usage,
            cost_nanos=0 if p.cached_from else _priced(p.model, llm.request.model, p.usage),
            latency_ms=p.latency_ms,
            attempts=p.attempts,
            fallback_used=p.fallback_used,
            discarded="guard",
            cached_from=p.cached_from,
        )
    )
    guard_decided(d, llm.request, parse_verdict(p.text))


def on_llm_completed(d: Decision, p: CompleteLlmCall) -> None:
    if _guard_pending(d, p.call_id):
        _guard_completed(d, p)
        return
    llm = _pending_llm(d, p.call_id, "turn")
    info = d.agent_info()
    for target in p.circuits_opened:
        d.emit(ProviderCircuitOpened(call_id=p.call_id, target=target))
    stop = p.stop_reason
    if stop == StopReason.MAX_TOKENS and p.tool_uses:
        _truncated_tool_call(d, p, llm)
        return
    if stop == StopReason.CONTEXT_WINDOW:
        _context_window_stop(d, p, llm)
        return
    defn = info.definition
    verdict = guard(d, defn.guardrails, "output", p.text, p.call_id)
    if verdict.blocked is not None:
        # The answer is withheld: recorded for its cost only, its text and tool calls
        # never stored nor run.
        _discarded_blocked(d, p, llm)
        b = verdict.blocked
        fail_turn(
            d,
            f"Guardrail {b.rule!r} ({b.kind}) blocked the model's answer: {b.detail}.",
            GUARDRAIL_BLOCKED,
        )
        return
    completed = d.emit(
        LlmCallCompleted(
            call_id=p.call_id,
            model=p.model,
            text=verdict.text,
            tool_call_ids=(
                () if stop == StopReason.REFUSAL else tuple(u.call_id for u in p.tool_uses)
            ),
            stop_reason=p.stop_reason,
            usage=p.usage,
            # A cached answer cost nothing now (what it cost once is on cached_from's row).
            cost_nanos=0 if p.cached_from else _priced(p.model, llm.request.model, p.usage),
            latency_ms=p.latency_ms,
            attempts=p.attempts,
            fallback_used=p.fallback_used,
            thinking=p.thinking,
            cached_from=p.cached_from,
        )
    )
    if stop == StopReason.REFUSAL:
        # Its own outcome: a TurnFailed of error type "Refused" (status refused in SQL,
        # its own exit code), whatever tool calls the answer may still carry.
        fail_turn(d, "The model declined to answer (stop reason refusal).", REFUSED)
        return
    if stop == StopReason.PAUSE_TURN and not p.tool_uses:
        # The vendor paused a long turn: send the answer so far back to continue it.
        next_llm_call(d)
        return
    if not p.tool_uses:
        if defn.output_schema is not None and not _structured(d, defn.output_schema, p, verdict):
            return
        # The output classifiers (if any) judge the recorded answer, then the turn completes.
        classify(d, "output", completed.seq)
        return
    dispatch_tool_uses(d, info, p.call_id, p.tool_uses)


def _discarded_blocked(d: Decision, p: CompleteLlmCall, llm: PendingLlm) -> None:
    d.emit(
        LlmCallCompleted(
            call_id=p.call_id,
            model=p.model,
            text="",
            tool_call_ids=(),
            stop_reason=p.stop_reason,
            usage=p.usage,
            cost_nanos=_priced(p.model, llm.request.model, p.usage),
            latency_ms=p.latency_ms,
            attempts=p.attempts,
            fallback_used=p.fallback_used,
            discarded="guardrail",
        )
    )


def _corrections(d: Decision) -> int:
    """Corrective attempts of this turn so far: its user-side entries after the first."""
    entries = d.state.history.entries
    turn = d.turn
    users = 0
    for i in range(entries.size() - 1, -1, -1):
        entry = entries.get(i)
        if entry.seq <= turn.started_seq:
            break
        users += entry.kind == EntryKind.USER
    return max(users - 1, 0)


def _structured(d: Decision, schema: dict[str, Any], p: CompleteLlmCall, v: Verdict) -> bool:
    """The final answer against the agent's output_schema: True when it is accepted;
    else one corrective attempt was requested, or the turn failed."""
    result, error = validate_answer(schema, v.text)
    if error is None:
        assert result is not None
        d.emit(StructuredOutputAccepted(call_id=p.call_id, result=result))
        return True
    if _corrections(d) >= MAX_CORRECTIONS:
        fail_turn(
            d,
            f"The answer does not match the agent's output_schema, after "
            f"{MAX_CORRECTIONS} corrective attempt(s): {error}",
            STRUCTURED_OUTPUT_INVALID,
        )
        return False
    d.emit(StructuredOutputInvalid(call_id=p.call_id, error=error, attempt=1 + _corrections(d)))
    next_llm_call(d)
    return False


STRUCTURED_OUTPUT_INVALID = "StructuredOutputInvalid"


def _record_llm_failure(d: Decision, p: FailLlmCall, purpose: str) -> None:
    """The facts of a failed LLM call (turn or summarize): circuits opened, then the failure."""
    _pending_llm(d, p.call_id, purpose)
    for target in p.circuits_opened:
        d.emit(ProviderCircuitOpened(call_id=p.call_id, target=target))
    d.emit(
        LlmCallFailed(
            call_id=p.call_id,
            error_type=p.error_type,
            message=p.message,
            attempts=p.attempts,
            latency_ms=p.latency_ms,
        )
    )


def on_llm_failed(d: Decision, p: FailLlmCall) -> None:
    if _guard_pending(d, p.call_id):
        llm = d.turn.llm
        assert llm is not None
        _record_llm_failure(d, p, "guard")
        guard_decided(d, llm.request, None, f"the classifier call failed ({p.error_type})")
        return
    _record_llm_failure(d, p, "turn")
    # The provider adapter owns retries and fallbacks; a reported failure is final.
    fail_turn(d, f"The LLM call failed: {p.error_type}: {p.message}", p.error_type)


def on_compaction_completed(d: Decision, p: CompleteCompaction) -> None:
    llm = _pending_llm(d, p.compaction_id, "summarize")
    if not p.summary.strip():
        # An empty summary cannot be sent as a message: treat it as a failed summary.
        d.emit(
            LlmCallFailed(
                call_id=p.compaction_id,
                error_type="EmptySummary",
                message="The summarize call returned no text.",
                attempts=1,
                latency_ms=p.latency_ms,
            )
        )
        drop_instead_of_summary(d)
        return
    summarized(d, p.summary, p.usage, _priced(p.model, llm.request.model, p.usage), p.model)


def on_compaction_failed(d: Decision, p: FailLlmCall) -> None:
    _record_llm_failure(d, p, "summarize")
    drop_instead_of_summary(d)


# --------------------------------------------------------------------------- tool calls


def on_approval(d: Decision, p: DecideApproval) -> None:
    call = _pending_call(d, p.call_id, CallStatus.APPROVAL, "an approval decision")
    if p.approved:
        d.emit(ApprovalGranted(call_id=p.call_id, decided_by=p.decided_by, reason=p.reason))
        if call.name == DELEGATE:
            start_child(d, call.call_id, json.loads(call.arguments_json or "{}"))
        elif call.name == DELEGATE_MANY:
            args = json.loads(call.arguments_json or "{}")
            start_delegate_many(d, d.agent_info(), call.call_id, args)
            step_resolved(d)
        elif call.name == HANDOFF:
            hand_off(d, d.agent_info(), call.call_id, json.loads(call.arguments_json or "{}"))
            step_resolved(d)
        return
    d.emit(ApprovalDenied(call_id=p.call_id, decided_by=p.decided_by, reason=p.reason))
    detail = f": {p.reason}" if p.reason else "."
    d.emit(ToolCallFailed(call_id=p.call_id, error=f"Denied by {p.decided_by}{detail}"))
    step_resolved(d)


def on_tool_completed(d: Decision, p: CompleteToolCall) -> None:
    _pending_call(d, p.call_id, CallStatus.TOOL, "a tool result")
    d.emit(ToolCallCompleted(call_id=p.call_id, result=p.result, latency_ms=p.latency_ms))
    step_resolved(d)


def on_tool_failed(d: Decision, p: FailToolCall) -> None:
    _pending_call(d, p.call_id, CallStatus.TOOL, "a tool result")
    d.emit(ToolCallFailed(call_id=p.call_id, error=p.error, latency_ms=p.latency_ms))
    step_resolved(d)


def on_child_completed(d: Decision, p: CompleteChildSession) -> None:
    call = _pending_call(d, p.call_id, CallStatus.CHILD, "a child session's outcome")
    if call.child_session_id != p.child_session_id:
        raise Rejected(
            f"Session {d.state.session_id}: tool call {p.call_id} delegated to child "
            f"session {call.child_session_id}, not {p.child_session_id}."
        )
    d.emit(
        ChildSessionCompleted(
            call_id=p.call_id,
            child_session_id=p.child_session_id,
            status=p.status,
            answer=p.answer,
            usage=p.usage,
            cost_nanos=p.cost_nanos,
        )
    )
    parent = orchestration_of(d.turn.calls, p.call_id)
    if parent is not None:
        advance(d, parent.call_id)
    step_resolved(d)
