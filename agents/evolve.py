"""evolve: apply one event (a fact) to a session state.

Rule: evolve is total over the facts `decide` emits and needs nothing but the state and
the event — no registry, no clock — so any process can rebuild any session from its log
alone. It trusts the facts (decide validated the inputs) and checks only the log's own
contract: the event belongs to this session and its seq is last_seq + 1; a violation is
a ContractError naming the session and both seqs. Nothing here does IO.

Each handler builds the new state with one `replaced` of the top-level tuple (plus the
sub-records it changes); history appends share all earlier entries. This is the hot path
of replay and recovery: keep it allocation-light.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn

from agents.compaction import apply_compaction, summary_entry
from agents.errors import ContractError
from agents.events import (
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
    UserMessageReceived,
)
from agents.orchestration import (
    TEAM,
    Spec,
    member_added,
    member_settled,
    member_stopping,
    orchestration_of,
    orchestration_removed,
    orchestration_started,
)
from agents.ratelimit import record_rate
from agents.state import (
    ABANDONED_KEPT,
    RECENT_REQUESTS,
    ZERO_USAGE,
    CallStatus,
    Entry,
    EntryKind,
    History,
    Lineage,
    PendingCall,
    PendingLlm,
    Phase,
    Queued,
    SessionState,
    TurnState,
    TurnSummary,
    add_usage,
    initial_state,
    replaced,
    step_phase,
    turn_id_for,
)
from agents.structured import correction_text
from agents.tokens import ENTRY_OVERHEAD, blocks_tokens, estimate_tokens

__all__ = ["child_result_text", "evolve"]

_US = timedelta(microseconds=1)


def _us(delta: timedelta) -> int:
    return max(delta // _US, 0)


_tuple_new = tuple.__new__
_STATE_INDEX = {name: i for i, name in enumerate(SessionState._fields)}
_LAST_SEQ, _RECENT = _STATE_INDEX["last_seq"], _STATE_INDEX["recent_requests"]
_PHASE, _TURN, _HISTORY = _STATE_INDEX["phase"], _STATE_INDEX["turn"], _STATE_INDEX["history"]
_SPENT_TOKENS, _SPENT_NANOS = _STATE_INDEX["spent_tokens"], _STATE_INDEX["spent_nanos"]
_TURNS, _LAST_TURN = _STATE_INDEX["turns"], _STATE_INDEX["last_turn"]
_QUEUE, _RATE = _STATE_INDEX["queue"], _STATE_INDEX["rate"]
_TURN_INDEX = {name: i for i, name in enumerate(TurnState._fields)}
_T_ITERATION, _T_LLM = _TURN_INDEX["iteration"], _TURN_INDEX["llm"]
_T_CALLS, _T_USAGE = _TURN_INDEX["calls"], _TURN_INDEX["usage"]
_T_COST, _T_ANSWER = _TURN_INDEX["cost_nanos"], _TURN_INDEX["answer_seq"]
# Enum members as module constants: `Phase.X` goes through EnumType.__getattr__'s slow
# attribute hook (CPython 3.11), a tenth of a microsecond per lookup on every event.
_IDLE, _AWAITING_LLM, _COMPACTING = Phase.IDLE, Phase.AWAITING_LLM, Phase.COMPACTING
_CLOSED, _FORKING = Phase.CLOSED, Phase.FORKING
_DENY, _ALLOW = PolicyAction.DENY, PolicyAction.ALLOW
_COMPLETED = ChildStatus.COMPLETED
# The records the handlers build positionally (tuple.__new__ checks no length): a field
# added to one of them must be added here too, and this says so at import.
_POSITIONAL: dict[Any, int] = {
    Entry: 8,
    PendingCall: 11,
    PendingLlm: 5,
    TurnState: 12,
    TurnSummary: 6,
}
for _record, _count in _POSITIONAL.items():
    if len(_record._fields) != _count:
        raise ImportError(
            f"agents.evolve builds {_record.__name__} from {_count} values, and it has "
            f"{len(_record._fields)} fields: update its handlers."
        )


def _advance(state: SessionState, ev: Event) -> list[Any]:
    """The state's fields after `ev`: seq advanced, the causing request remembered.

    The hot handlers set what else changes by index and build the state with
    `_tuple_new(SessionState, values)` (a keyword call and a lookup per changed field
    saved on every event); the others go through `_next`."""
    values: list[Any] = list(state)
    values[_LAST_SEQ] = ev.seq
    cid = ev.causation_id
    if cid is not None:
        recent = state.recent_requests
        if not recent or recent[-1] != cid:
            if len(recent) >= RECENT_REQUESTS:
                recent = recent[1 - RECENT_REQUESTS :]
            values[_RECENT] = (*recent, cid)
    return values


def _next(state: SessionState, ev: Event, **changes: Any) -> SessionState:
    """The state after `ev`: seq advanced, the causing request remembered, `changes` made."""
    values = _advance(state, ev)
    for name, value in changes.items():
        values[_STATE_INDEX[name]] = value
    result: SessionState = _tuple_new(SessionState, values)
    return result


def _turn(state: SessionState, ev: Event) -> TurnState:
    turn = state.turn
    if turn is None:
        _no_turn(state, ev)
    return turn


def _no_turn(state: SessionState, ev: Event) -> NoReturn:
    raise ContractError(
        f"Session {state.session_id}: {type(ev.payload).__name__} at seq {ev.seq} "
        f"needs an active turn, and none is."
    )


def _append(history: History, entry: Entry) -> History:
    # tuple.__new__ skips the NamedTuples' Python-level __new__ (here and in _entry):
    # two of every three events append an entry.
    entries, window_start, summary, window_tokens = history
    result: History = _tuple_new(
        History, (entries.append(entry), window_start, summary, window_tokens + entry.tokens)
    )
    return result


def _appended(
    history: History,
    seq: int,
    kind: str,
    text: str,
    call_id: str = "",
    name: str = "",
    err: bool = False,
    blocks: tuple[Any, ...] = (),
) -> History:
    """`_append(history, _entry(...))` in one call, for the hot handlers."""
    tokens = estimate_tokens(text) + ENTRY_OVERHEAD
    if blocks:
        tokens += blocks_tokens(blocks)
    entries, window_start, summary, window_tokens = history
    entry = _tuple_new(Entry, (seq, kind, text, call_id, name, err, tokens, blocks))
    result: History = _tuple_new(
        History, (entries.append(entry), window_start, summary, window_tokens + tokens)
    )
    return result


def _entry(
    seq: int,
    kind: str,
    text: str,
    call_id: str = "",
    name: str = "",
    err: bool = False,
    blocks: tuple[Any, ...] = (),
) -> Entry:
    tokens = estimate_tokens(text) + ENTRY_OVERHEAD
    if blocks:
        tokens += blocks_tokens(blocks)
    entry: Entry = _tuple_new(Entry, (seq, kind, text, call_id, name, err, tokens, blocks))
    return entry


def _without(calls: tuple[PendingCall, ...], call_id: str) -> tuple[PendingCall, ...]:
    return tuple([c for c in calls if c.call_id != call_id])


def _with(calls: tuple[PendingCall, ...], call_id: str, **changes: Any) -> tuple[PendingCall, ...]:
    return tuple(replaced(c, **changes) if c.call_id == call_id else c for c in calls)


def _find(calls: tuple[PendingCall, ...], call_id: str) -> PendingCall | None:
    for c in calls:
        if c.call_id == call_id:
            return c
    return None


def child_result_text(p: ChildSessionCompleted, agent: str) -> str:
    """What the parent's model is told about a delegation's outcome."""
    if p.status is _COMPLETED:
        return p.answer
    detail = f": {p.answer}" if p.answer else "."
    return f"The delegated agent {agent!r} ({p.child_session_id}) {p.status.value}{detail}"


# --------------------------------------------------------------------------- handlers
# Each takes (state, event, payload) and returns the new state.


def _session_started(s: SessionState, ev: Event, p: SessionStarted) -> SessionState:
    return _next(
        s,
        ev,
        phase=Phase.IDLE,
        agent=p.agent,
        definition_hash=p.definition_hash,
        lineage=Lineage(p.parent_session_id, p.parent_call_id, None, 0),
        variant=p.variant or "",
        client=p.client or "",
    )


def _session_forked(s: SessionState, ev: Event, p: SessionForked) -> SessionState:
    if s.phase is not Phase.FORKING:
        raise ContractError(
            f"Session {s.session_id}: SessionForked at seq {ev.seq} must be folded onto "
            f"fork_base(<state of {p.source_session_id} at seq {p.at_seq}>)."
        )
    return _next(
        s,
        ev,
        phase=Phase.IDLE,
        agent=p.agent,
        definition_hash=p.definition_hash,
        lineage=Lineage(None, None, p.source_session_id, p.at_seq),
        model="",  # a fork starts on its agent's own model (the source's switch stays there)
    )


def _session_closed(s: SessionState, ev: Event, p: SessionClosed) -> SessionState:
    return _next(s, ev, phase=Phase.CLOSED, turn=None)


def _turn_started(s: SessionState, ev: Event, p: TurnStarted) -> SessionState:
    queue = s.queue
    if p.queued_seq is not None:
        if not queue or queue[0].seq != p.queued_seq:
            raise ContractError(
                f"Session {s.session_id}: TurnStarted at seq {ev.seq} starts the message "
                f"queued at seq {p.queued_seq}, which is not at the head of the queue."
            )
        queue = queue[1:]
    # TurnState's fields in order: turn_no, turn_id, correlation_id, started_seq,
    # iteration, llm, compaction, calls, usage, cost_nanos, answer_seq, compacted_iteration.
    turn: TurnState = _tuple_new(
        TurnState,
        (
            p.turn_no,
            turn_id_for(s.session_id, p.turn_no),
            ev.correlation_id or ev.causation_id or "",
            ev.seq,
            0,
            None,
            None,
            (),
            ZERO_USAGE,
            0,
            0,
            -1,
        ),
    )
    v = _advance(s, ev)
    v[_PHASE] = _AWAITING_LLM
    v[_TURN] = turn
    v[_TURNS] = p.turn_no
    v[_QUEUE] = queue
    if p.queued_seq is None:  # a queued message was counted when it arrived (MessageQueued)
        v[_RATE] = record_rate(s.rate, ev.occurred_at, 1, 0)
    result: SessionState = _tuple_new(SessionState, v)
    return result


def _user_message(s: SessionState, ev: Event, p: UserMessageReceived) -> SessionState:
    v = _advance(s, ev)
    v[_HISTORY] = _appended(s.history, ev.seq, EntryKind.USER, p.text, blocks=p.attachments)
    result: SessionState = _tuple_new(SessionState, v)
    return result


def _llm_requested(s: SessionState, ev: Event, p: LlmCallRequested) -> SessionState:
    t = s.turn
    if t is None:
        _no_turn(s, ev)
    tv = list(t)
    tv[_T_LLM] = _tuple_new(
        PendingLlm, (p, ev.seq, 1, p.deadline_at, _us(p.deadline_at - ev.occurred_at))
    )
    v = _advance(s, ev)
    if p.purpose == "summarize":
        v[_PHASE] = _COMPACTING
    else:
        v[_PHASE] = _AWAITING_LLM
        tv[_T_ITERATION] = p.iteration
    v[_TURN] = _tuple_new(TurnState, tv)
    result: SessionState = _tuple_new(SessionState, v)
    return result


def _llm_completed(s: SessionState, ev: Event, p: LlmCallCompleted) -> SessionState:
    if p.discarded == "late":
        # Abandoned by a cancel, answered anyway: money spent, nothing else changes.
        return _next(
            s,
            ev,
            abandoned=tuple(a for a in s.abandoned if a[0] != p.call_id),
            spent_tokens=s.spent_tokens + p.usage.total_tokens,
            spent_nanos=s.spent_nanos + p.cost_nanos,
            rate=record_rate(s.rate, ev.occurred_at, 0, p.usage.total_tokens),
        )
    t = _turn(s, ev)
    if p.discarded is not None:
        # Cut off (or stopped by a full window): charged to the turn, not part of the
        # conversation; the core asks again or ends the turn in the same decision.
        return _next(
            s,
            ev,
            turn=replaced(
                t,
                llm=None,
                usage=add_usage(t.usage, p.usage),
                cost_nanos=t.cost_nanos + p.cost_nanos,
            ),
            spent_tokens=s.spent_tokens + p.usage.total_tokens,
            spent_nanos=s.spent_nanos + p.cost_nanos,
            rate=record_rate(s.rate, ev.occurred_at, 0, p.usage.total_tokens),
        )
    usage = p.usage
    tv = list(t)
    tv[_T_LLM] = None
    tv[_T_USAGE] = add_usage(t.usage, usage)
    tv[_T_COST] = t.cost_nanos + p.cost_nanos
    tv[_T_ANSWER] = ev.seq
    tokens = usage.total_tokens
    v = _advance(s, ev)
    v[_PHASE] = _AWAITING_LLM
    v[_TURN] = _tuple_new(TurnState, tv)
    v[_HISTORY] = _appended(
        s.history, ev.seq, EntryKind.ASSISTANT, p.text, name=p.model, blocks=p.thinking
    )
    v[_SPENT_TOKENS] = s.spent_tokens + tokens
    v[_SPENT_NANOS] = s.spent_nanos + p.cost_nanos
    v[_RATE] = record_rate(s.rate, ev.occurred_at, 0, tokens)
    result: SessionState = _tuple_new(SessionState, v)
    return result


def _llm_failed(s: SessionState, ev: Event, p: LlmCallFailed) -> SessionState:
    t = _turn(s, ev)
    return _next(s, ev, turn=replaced(t, llm=None))


def _unchanged(s: SessionState, ev: Event, p: Any) -> SessionState:
    return _next(s, ev)


def _tool_requested(s: SessionState, ev: Event, p: ToolCallRequested) -> SessionState:
    t = _turn(s, ev)
    v = _advance(s, ev)
    v[_HISTORY] = _appended(
        s.history, ev.seq, EntryKind.TOOL_USE, p.arguments_json, p.call_id, p.name
    )
    decision = p.decision
    if decision is _DENY:  # answered at once by a ToolCallFailed
        result: SessionState = _tuple_new(SessionState, v)
        return result
    timeout = _us(p.deadline_at - ev.occurred_at)
    # PendingCall's fields in order (the last three: no child session, no task).
    values: tuple[Any, ...]
    if decision is _ALLOW:
        values = (p.call_id, p.name, p.arguments_json, CallStatus.TOOL, ev.seq, p.deadline_at)
    else:
        values = (p.call_id, p.name, p.arguments_json, CallStatus.APPROVAL, ev.seq, None)
    call: PendingCall = _tuple_new(PendingCall, (*values, 1, timeout, "", "", ""))
    calls = (*t.calls, call)
    tv = list(t)
    tv[_T_CALLS] = calls
    v[_TURN] = _tuple_new(TurnState, tv)
    v[_PHASE] = step_phase(calls)
    result = _tuple_new(SessionState, v)
    return result


def _set_call(s: SessionState, ev: Event, call_id: str, **changes: Any) -> SessionState:
    t = _turn(s, ev)
    calls = _with(t.calls, call_id, **changes)
    return _step(s, ev, t, calls)


def _step(s: SessionState, ev: Event, t: TurnState, calls: tuple[PendingCall, ...]) -> SessionState:
    """The state after `ev` changed the step's calls to `calls` (and nothing else)."""
    tv = list(t)
    tv[_T_CALLS] = calls
    v = _advance(s, ev)
    v[_TURN] = _tuple_new(TurnState, tv)
    v[_PHASE] = step_phase(calls)
    result: SessionState = _tuple_new(SessionState, v)
    return result


def _approval_requested(s: SessionState, ev: Event, p: ApprovalRequested) -> SessionState:
    # Also for a call that was running: its outcome is unknown, so it waits for a human.
    return _set_call(s, ev, p.call_id, status=CallStatus.APPROVAL, deadline_at=p.expires_at)


def _approval_granted(s: SessionState, ev: Event, p: ApprovalGranted) -> SessionState:
    call = _find(_turn(s, ev).calls, p.call_id)
    timeout = call.timeout_us if call is not None else 0
    deadline = ev.occurred_at + timedelta(microseconds=timeout)
    return _set_call(s, ev, p.call_id, status=CallStatus.TOOL, deadline_at=deadline)


def _resolve(s: SessionState, ev: Event, call_id: str, result: Entry | None) -> SessionState:
    t = _turn(s, ev)
    calls = _without(t.calls, call_id)
    tv = list(t)
    tv[_T_CALLS] = calls
    v = _advance(s, ev)
    v[_TURN] = _tuple_new(TurnState, tv)
    v[_PHASE] = step_phase(calls)
    if result is not None:
        v[_HISTORY] = _append(s.history, result)
    state: SessionState = _tuple_new(SessionState, v)
    return state


def _approval_denied(s: SessionState, ev: Event, p: ApprovalDenied) -> SessionState:
    return _resolve(s, ev, p.call_id, None)  # the ToolCallFailed that follows answers it


def _tool_completed(s: SessionState, ev: Event, p: ToolCallCompleted) -> SessionState:
    return _resolve(s, ev, p.call_id, _entry(ev.seq, EntryKind.TOOL_RESULT, p.result, p.call_id))


def _tool_failed(s: SessionState, ev: Event, p: ToolCallFailed) -> SessionState:
    entry = _entry(ev.seq, EntryKind.TOOL_RESULT, p.error, p.call_id, err=True)
    return _resolve(s, ev, p.call_id, entry)


def _child_requested(s: SessionState, ev: Event, p: ChildSessionRequested) -> SessionState:
    t = _turn(s, ev)
    parent = orchestration_of(t.calls, p.call_id)
    if parent is not None:  # a member of a delegate_many call: a call of its own
        calls = member_added(t.calls, parent, p, ev.seq, ev.occurred_at)
        return _step(s, ev, t, calls)
    return _set_call(
        s,
        ev,
        p.call_id,
        status=CallStatus.CHILD,
        child_session_id=p.child_session_id,
        child_agent=p.agent,
        task=p.task,
    )


def _child_completed(s: SessionState, ev: Event, p: ChildSessionCompleted) -> SessionState:
    t = _turn(s, ev)
    if orchestration_of(t.calls, p.call_id) is not None:
        # A member: its answer waits for the orchestration's result; its cost counts now.
        calls = member_settled(t.calls, p, ev.seq)
        return _next(
            s,
            ev,
            turn=replaced(
                t,
                calls=calls,
                usage=add_usage(t.usage, p.usage),
                cost_nanos=t.cost_nanos + p.cost_nanos,
            ),
            phase=step_phase(calls),
            spent_tokens=s.spent_tokens + p.usage.total_tokens,
            spent_nanos=s.spent_nanos + p.cost_nanos,
        )
    call = _find(t.calls, p.call_id)
    text = child_result_text(p, call.child_agent if call is not None else "?")
    err = p.status is not _COMPLETED
    entry = _entry(ev.seq, EntryKind.TOOL_RESULT, text, p.call_id, err=err)
    calls = _without(t.calls, p.call_id)
    # The child's cost rolls up into the parent's turn and session spend.
    turn = replaced(
        t, calls=calls, usage=add_usage(t.usage, p.usage), cost_nanos=t.cost_nanos + p.cost_nanos
    )
    return _next(
        s,
        ev,
        turn=turn,
        phase=step_phase(calls),
        history=_append(s.history, entry),
        spent_tokens=s.spent_tokens + p.usage.total_tokens,
        spent_nanos=s.spent_nanos + p.cost_nanos,
    )


def _orchestration_started(s: SessionState, ev: Event, p: OrchestrationStarted) -> SessionState:
    t = _turn(s, ev)
    spec = Spec(
        p.mode, p.quorum, p.combine, p.agents, p.tasks, p.member_timeout_ms * 1000, p.fail_fast
    )
    calls = orchestration_started(t.calls, p.call_id, spec)
    return _step(s, ev, t, calls)


def _member_cancelled(s: SessionState, ev: Event, p: OrchestrationMemberCancelled) -> SessionState:
    t = _turn(s, ev)
    return _next(s, ev, turn=replaced(t, calls=member_stopping(t.calls, p.member_call_id)))


def _orchestration_completed(s: SessionState, ev: Event, p: OrchestrationCompleted) -> SessionState:
    t = _turn(s, ev)
    team = any(c.call_id == p.call_id and c.name == TEAM for c in t.calls)
    calls = orchestration_removed(t.calls, p.call_id)
    if team:  # a team agent's turn: the combined result is its answer
        t = replaced(t, answer_seq=ev.seq)
    entry = _entry(ev.seq, EntryKind.TOOL_RESULT, p.result, p.call_id, err=p.status != "completed")
    return _next(
        s,
        ev,
        turn=replaced(t, calls=calls),
        phase=step_phase(calls),
        history=_append(s.history, entry),
    )


def _effect_reissued(s: SessionState, ev: Event, p: EffectReissued) -> SessionState:
    t = _turn(s, ev)
    if p.kind in (EffectKind.LLM_CALL, EffectKind.COMPACTION):
        if t.llm is None or t.llm.request.call_id != p.effect_id:
            raise ContractError(
                f"Session {s.session_id}: EffectReissued at seq {ev.seq} names LLM call "
                f"{p.effect_id}, which is not pending."
            )
        llm = replaced(t.llm, attempt=p.attempt, deadline_at=p.deadline_at)
        return _next(s, ev, turn=replaced(t, llm=llm))
    return _set_call(s, ev, p.effect_id, attempt=p.attempt, deadline_at=p.deadline_at)


def _compaction_requested(
    s: SessionState, ev: Event, p: ContextCompactionRequested
) -> SessionState:
    return _next(s, ev, turn=replaced(_turn(s, ev), compaction=p))


def _compacted(s: SessionState, ev: Event, p: ContextCompacted) -> SessionState:
    t = _turn(s, ev)
    summary = summary_entry(ev.seq, p.summary) if p.summary is not None else None
    history = apply_compaction(s.history, p.removed_seqs, summary)
    llm = t.llm if t.llm is None or t.llm.request.call_id != p.compaction_id else None
    turn = replaced(
        t,
        llm=llm,
        compaction=None,
        compacted_iteration=t.iteration,
        usage=add_usage(t.usage, p.usage),
        cost_nanos=t.cost_nanos + p.cost_nanos,
    )
    return _next(
        s,
        ev,
        phase=Phase.AWAITING_LLM,
        turn=turn,
        history=history,
        spent_tokens=s.spent_tokens + p.usage.total_tokens,
        spent_nanos=s.spent_nanos + p.cost_nanos,
    )


def _turn_ended(s: SessionState, ev: Event, outcome: str, reason: str) -> SessionState:
    t = _turn(s, ev)
    v = _advance(s, ev)
    v[_PHASE] = _IDLE
    v[_TURN] = None
    v[_LAST_TURN] = _tuple_new(
        TurnSummary, (t.turn_no, outcome, t.answer_seq, t.usage, t.cost_nanos, reason)
    )
    result: SessionState = _tuple_new(SessionState, v)
    return result


def _turn_completed(s: SessionState, ev: Event, p: TurnCompleted) -> SessionState:
    return _turn_ended(s, ev, "completed", "")


def _turn_failed(s: SessionState, ev: Event, p: TurnFailed) -> SessionState:
    return _turn_ended(s, ev, "failed", p.reason)


def _turn_cancelled(s: SessionState, ev: Event, p: TurnCancelled) -> SessionState:
    after = _turn_ended(s, ev, "cancelled", p.reason or "cancelled")
    llm = s.turn.llm if s.turn is not None else None
    if llm is None:
        return after
    abandoned = (*s.abandoned, (llm.request.call_id, llm.request.model))[-ABANDONED_KEPT:]
    return replaced(after, abandoned=abandoned)


def _version_changed(s: SessionState, ev: Event, p: AgentVersionChanged) -> SessionState:
    return _next(s, ev, definition_hash=p.to_hash)


def _message_queued(s: SessionState, ev: Event, p: MessageQueued) -> SessionState:
    queued = Queued(ev.seq, ev.causation_id or "", p.text, p.attachments)
    rate = record_rate(s.rate, ev.occurred_at, 1, 0)
    return _next(s, ev, queue=(*s.queue, queued), rate=rate)


def _handed_off(s: SessionState, ev: Event, p: AgentHandedOff) -> SessionState:
    # The next agent runs on its own model: a SetModel switch was the last agent's.
    return _next(s, ev, agent=p.to_agent, definition_hash=p.to_hash, model="")


def _model_changed(s: SessionState, ev: Event, p: ModelChanged) -> SessionState:
    return _next(s, ev, model=p.to_model)


def _queued_dropped(s: SessionState, ev: Event, p: QueuedMessageDropped) -> SessionState:
    return _next(s, ev, queue=tuple(q for q in s.queue if q.seq != p.queued_seq))


def _structured_invalid(s: SessionState, ev: Event, p: StructuredOutputInvalid) -> SessionState:
    # The validation error is a user-side entry: the corrective attempt's context has it.
    entry = _entry(ev.seq, EntryKind.USER, correction_text(p.error))
    return _next(s, ev, history=_append(s.history, entry))


def _budget_limit(s: SessionState, ev: Event, p: BudgetLimitReached) -> SessionState:
    return _next(s, ev, budget_block=p)


def _admission_requested(s: SessionState, ev: Event, p: AdmissionRequested) -> SessionState:
    return _next(s, ev, phase=Phase.ADMITTING, admission=p)


def _admission_decided(s: SessionState, ev: Event, p: AdmissionDecided) -> SessionState:
    # Admitted: the turn's events follow (TurnStarted moves the phase on).
    return _next(s, ev, phase=Phase.IDLE, admission=None)


def _rejected(s: SessionState, ev: Event, p: RequestRejected) -> SessionState:
    # A rejected input changes nothing but the seq (not even the recent request ids).
    return replaced(s, last_seq=ev.seq)


def _superseded_after(before: SessionState, after: SessionState) -> SessionState:
    """`after` resolved the LLM call `before` had pending: when it had been issued more
    than once, each replaced issue may still answer (a previous owner of the partition,
    an aborted stream reporting what it was billed); remember them to charge, once."""
    t = before.turn
    llm = t.llm if t is not None else None
    if llm is None or llm.attempt <= 1:
        return after
    t2 = after.turn
    if t2 is not None and t2.llm is not None and t2.llm.request.call_id == llm.request.call_id:
        return after
    entry = (llm.request.call_id, llm.request.model, llm.attempt)
    kept = (*after.superseded, *([entry] * (llm.attempt - 1)))[-ABANDONED_KEPT:]
    return replaced(after, superseded=kept)


def _without_one(
    entries: tuple[tuple[str, str, int], ...], call_id: str
) -> tuple[tuple[str, str, int], ...]:
    for i, entry in enumerate(entries):
        if entry[0] == call_id:
            return entries[:i] + entries[i + 1 :]
    return entries


def _llm_answered(s: SessionState, ev: Event, p: LlmCallCompleted) -> SessionState:
    if p.discarded == SUPERSEDED:
        # The answer of a replaced issue: money spent, charged like a late answer.
        after = _llm_completed(s, ev, dataclasses.replace(p, discarded="late"))
        return replaced(after, superseded=_without_one(s.superseded, p.call_id))
    t = s.turn
    if t is None or t.llm is None or t.llm.attempt <= 1:  # issued once: nothing replaced
        return _llm_completed(s, ev, p)
    return _superseded_after(s, _llm_completed(s, ev, p))


def _llm_given_up(s: SessionState, ev: Event, p: LlmCallFailed) -> SessionState:
    return _superseded_after(s, _llm_failed(s, ev, p))


def _summary_answered(s: SessionState, ev: Event, p: ContextCompacted) -> SessionState:
    return _superseded_after(s, _compacted(s, ev, p))


_HANDLERS: dict[type, Callable[[SessionState, Event, Any], SessionState]] = {
    SessionStarted: _session_started,
    SessionForked: _session_forked,
    SessionClosed: _session_closed,
    TurnStarted: _turn_started,
    UserMessageReceived: _user_message,
    LlmCallRequested: _llm_requested,
    LlmCallCompleted: _llm_answered,
    LlmCallFailed: _llm_given_up,
    ProviderCircuitOpened: _unchanged,
    ToolCallRequested: _tool_requested,
    ApprovalRequested: _approval_requested,
    ApprovalGranted: _approval_granted,
    ApprovalDenied: _approval_denied,
    ToolCallCompleted: _tool_completed,
    ToolCallFailed: _tool_failed,
    ContextCompactionRequested: _compaction_requested,
    ContextCompacted: _summary_answered,
    ChildSessionRequested: _child_requested,
    ChildSessionCompleted: _child_completed,
    EffectReissued: _effect_reissued,
    BudgetExceeded: _unchanged,
    TurnCompleted: _turn_completed,
    TurnFailed: _turn_failed,
    TurnCancelled: _turn_cancelled,
    RequestRejected: _rejected,
    MessageQueued: _message_queued,
    QueuedMessageDropped: _queued_dropped,
    AgentVersionChanged: _version_changed,
    ModelChanged: _model_changed,
    OrchestrationStarted: _orchestration_started,
    OrchestrationMemberCancelled: _member_cancelled,
    OrchestrationCompleted: _orchestration_completed,
    AgentHandedOff: _handed_off,
    GuardrailTripped: _unchanged,
    StructuredOutputInvalid: _structured_invalid,
    StructuredOutputAccepted: _unchanged,
    BudgetAlert: _unchanged,
    BudgetLimitReached: _budget_limit,
    AdmissionRequested: _admission_requested,
    AdmissionDecided: _admission_decided,
}


def evolve(state: SessionState, event: Event) -> SessionState:
    """The state after `event`. ContractError if the event is not the session's next."""
    if event.session_id != state.session_id:
        raise ContractError(
            f"Event {event.event_id} (seq {event.seq}) belongs to session "
            f"{event.session_id}, not to session {state.session_id}."
        )
    payload = event.payload
    if state.phase is _FORKING and type(payload) is not SessionForked:
        # A fork that was rejected: the rejection is the new session's first event.
        state = initial_state(state.session_id)
    if event.seq != state.last_seq + 1:
        raise ContractError(
            f"Session {state.session_id}: expected seq {state.last_seq + 1}, got "
            f"{event.seq} ({type(payload).__name__}); the log has a gap or a duplicate."
        )
    return _HANDLERS[type(payload)](state, event, payload)
