"""A session's phase from its events alone, for readers that do not hold its state.

Rule: `evolve` owns a session's phase; this module states the same rule over the least
state that decides it — the phase and the unresolved tool calls of the current step with
their status — so a reader that keeps only that (the Postgres projection keeps it in
`sessions.phase` and `sessions.pending_calls`) shows the phase the core has, not a
second guess. `tests/property/test_fsm_machine.py` checks after every input of its
random sessions that `track` over the log equals `evolve`'s phase.

Pure: no IO. One handler per event type that moves the phase; every other event leaves
the track as it is (`MOVES` lists the types handled, `STILL` the ones that never move it,
and a unit test checks that the two cover the event union).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from agents.events import (
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
    ContextCompacted,
    ContextCompactionRequested,
    EffectKind,
    EffectReissued,
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
from agents.state import CallStatus, Phase

__all__ = ["MOVES", "NEW", "STILL", "PhaseTrack", "decode_calls", "encode_calls", "track"]

Calls = tuple[tuple[str, str], ...]  # (call_id, CallStatus value), in request order


class PhaseTrack(NamedTuple):
    phase: Phase
    calls: Calls


NEW = PhaseTrack(Phase.NEW, ())


def _step(calls: Calls) -> PhaseTrack:
    # The precedence of agents.state.step_phase, over (call_id, status) pairs.
    statuses = {status for _, status in calls}
    if CallStatus.APPROVAL in statuses:
        return PhaseTrack(Phase.AWAITING_APPROVAL, calls)
    if CallStatus.TOOL in statuses:
        return PhaseTrack(Phase.AWAITING_TOOLS, calls)
    if CallStatus.CHILD in statuses or CallStatus.ORCHESTRATION in statuses:
        return PhaseTrack(Phase.AWAITING_CHILDREN, calls)
    return PhaseTrack(Phase.AWAITING_LLM, calls)


def _set(t: PhaseTrack, call_id: str, status: str | None) -> PhaseTrack:
    # evolve's _set_call: a call it does not hold is left out, the phase still re-derived.
    calls = tuple((cid, status or s) if cid == call_id else (cid, s) for cid, s in t.calls)
    return _step(calls)


def _without(t: PhaseTrack, call_id: str) -> PhaseTrack:
    return _step(tuple(c for c in t.calls if c[0] != call_id))


def _idle(t: PhaseTrack, p: Any) -> PhaseTrack:
    return PhaseTrack(Phase.IDLE, ())


def _awaiting_llm(t: PhaseTrack, p: Any) -> PhaseTrack:
    return PhaseTrack(Phase.AWAITING_LLM, t.calls)


def _admitting(t: PhaseTrack, p: Any) -> PhaseTrack:
    return PhaseTrack(Phase.ADMITTING, ())


def _closed(t: PhaseTrack, p: SessionClosed) -> PhaseTrack:
    return PhaseTrack(Phase.CLOSED, ())


def _turn_started(t: PhaseTrack, p: TurnStarted) -> PhaseTrack:
    return PhaseTrack(Phase.AWAITING_LLM, ())


def _llm_requested(t: PhaseTrack, p: LlmCallRequested) -> PhaseTrack:
    phase = Phase.COMPACTING if p.purpose == "summarize" else Phase.AWAITING_LLM
    return PhaseTrack(phase, t.calls)


def _llm_completed(t: PhaseTrack, p: LlmCallCompleted) -> PhaseTrack:
    # A discarded answer (late, cut off, window full) is charged, not a step.
    return t if p.discarded is not None else PhaseTrack(Phase.AWAITING_LLM, t.calls)


def _tool_requested(t: PhaseTrack, p: ToolCallRequested) -> PhaseTrack:
    if p.decision is PolicyAction.DENY:  # answered at once by a ToolCallFailed
        return t
    status = CallStatus.TOOL if p.decision is PolicyAction.ALLOW else CallStatus.APPROVAL
    return _step((*t.calls, (p.call_id, status)))


def _approval_requested(t: PhaseTrack, p: ApprovalRequested) -> PhaseTrack:
    return _set(t, p.call_id, CallStatus.APPROVAL)


def _approval_granted(t: PhaseTrack, p: ApprovalGranted) -> PhaseTrack:
    return _set(t, p.call_id, CallStatus.TOOL)


def _resolved(t: PhaseTrack, p: ApprovalDenied | ToolCallCompleted | ToolCallFailed) -> PhaseTrack:
    return _without(t, p.call_id)


def _child_requested(t: PhaseTrack, p: ChildSessionRequested) -> PhaseTrack:
    return _set(t, p.call_id, CallStatus.CHILD)


def _child_completed(t: PhaseTrack, p: ChildSessionCompleted) -> PhaseTrack:
    return _without(t, p.call_id)


def _orchestration_started(t: PhaseTrack, p: OrchestrationStarted) -> PhaseTrack:
    # Its members are calls of evolve's step too, but the call waits for them all: the
    # track keeps the one call (the phase is awaiting_children, as for a child).
    if any(cid == p.call_id for cid, _ in t.calls):
        return _set(t, p.call_id, CallStatus.ORCHESTRATION)
    return _step((*t.calls, (p.call_id, CallStatus.ORCHESTRATION)))  # a team agent's turn


def _orchestration_completed(t: PhaseTrack, p: OrchestrationCompleted) -> PhaseTrack:
    return _without(t, p.call_id)


def _reissued(t: PhaseTrack, p: EffectReissued) -> PhaseTrack:
    if p.kind in (EffectKind.LLM_CALL, EffectKind.COMPACTION):
        return t
    return _set(t, p.effect_id, None)


MOVES: dict[type, Callable[[PhaseTrack, Any], PhaseTrack]] = {
    SessionStarted: _idle,
    SessionForked: _idle,  # a fork drops the copied turn's pending work (agents.fold)
    SessionClosed: _closed,
    TurnStarted: _turn_started,
    AdmissionRequested: _admitting,  # a message waits for a shared rate limit
    AdmissionDecided: _idle,  # admitted: the TurnStarted that follows moves it on
    LlmCallRequested: _llm_requested,
    LlmCallCompleted: _llm_completed,
    ToolCallRequested: _tool_requested,
    ApprovalRequested: _approval_requested,
    ApprovalGranted: _approval_granted,
    ApprovalDenied: _resolved,
    ToolCallCompleted: _resolved,
    ToolCallFailed: _resolved,
    ChildSessionRequested: _child_requested,
    ChildSessionCompleted: _child_completed,
    OrchestrationStarted: _orchestration_started,
    OrchestrationCompleted: _orchestration_completed,
    EffectReissued: _reissued,
    ContextCompacted: _awaiting_llm,
    TurnCompleted: _idle,
    TurnFailed: _idle,
    TurnCancelled: _idle,
}

# Events that never move the phase.
STILL: frozenset[type] = frozenset(
    {
        UserMessageReceived,
        LlmCallFailed,
        ProviderCircuitOpened,
        ContextCompactionRequested,
        BudgetExceeded,
        RequestRejected,
        MessageQueued,
        QueuedMessageDropped,
        AgentVersionChanged,
        ModelChanged,
        OrchestrationMemberCancelled,
        AgentHandedOff,
        GuardrailTripped,
        StructuredOutputInvalid,
        StructuredOutputAccepted,
        BudgetAlert,
        BudgetLimitReached,
    }
)


def track(t: PhaseTrack, payload: Any) -> PhaseTrack:
    """The track after an event with this payload."""
    move = MOVES.get(type(payload))
    return t if move is None else move(t, payload)


def encode_calls(calls: Calls) -> list[str]:
    """As stored in `sessions.pending_calls`: 'status:call_id' per call."""
    return [f"{status}:{cid}" for cid, status in calls]


def decode_calls(stored: list[str] | None) -> Calls:
    out = []
    for item in stored or ():
        status, _, cid = item.partition(":")
        out.append((cid, status))
    return tuple(out)
