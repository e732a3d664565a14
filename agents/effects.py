"""Effects: what the shell must execute for a session, derived from its state.

Rule: effects are not stored anywhere but in the state; `pending_effects(state)` lists
every effect the session is waiting for, with everything needed to execute it — which is
how a worker that restarts (or takes over a partition) re-issues the effects found in
recovered state. An effect keeps its id across re-issues; `attempt` says which issue it
is, so an executor can run each (effect_id, attempt) once. Outcomes go back as requests
naming the effect id (`outcome_request_id` gives a deterministic request id). Nothing
here does IO.

Effect kinds: an LLM call (build its request with agents.context.build_llm_request and
check the digest), a summarize compaction (an LLM call with purpose "summarize",
answered by CompleteCompaction), a tool call, a child session (send the child its
SendMessage: `ChildSessionEffect.start_request`; the child reports back itself when its
turn ends: `child_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from agents.events import (
    AdmissionRequested,
    ApprovalGranted,
    CancelTurn,
    ChildSessionRequested,
    ChildStatus,
    CompleteAdmission,
    CompleteChildSession,
    CompleteLlmCall,
    ContextCompactionRequested,
    EffectKind,
    EffectReissued,
    Event,
    FailLlmCall,
    FailToolCall,
    LlmCallCompleted,
    LlmCallRequested,
    OrchestrationMemberCancelled,
    PolicyAction,
    ProviderCircuitOpened,
    Request,
    RequestPayload,
    SendMessage,
    ToolCallRequested,
    ToolUse,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
)
from agents.state import CallStatus, SessionState, find_entry, usage_of

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A turn's LLM call runs inside the decision that asked for it when its model answered
# in under half of this many ms (TURNLOG_INLINE_LLM_MS; streams.effects.runs_inline).
DEFAULT_INLINE_LLM_MS = 10.0

__all__ = [
    "DEFAULT_INLINE_LLM_MS",
    "AdmissionEffect",
    "ChildSessionEffect",
    "CompactionEffect",
    "Effect",
    "LlmCallEffect",
    "ToolCallEffect",
    "cancel_requests",
    "child_report",
    "failure_outcome",
    "llm_outcome_of",
    "next_deadline",
    "outcome_request_id",
    "pending_effects",
    "started_effects",
]


@dataclass(frozen=True, slots=True)
class _Base:
    session_id: str
    effect_id: str
    attempt: int
    deadline_at: datetime
    timeout_s: float
    turn_id: str
    correlation_id: str

    @property
    def report_to(self) -> str | None:
        """The session that receives the outcome (None: this effect's session)."""
        return None


@dataclass(frozen=True, slots=True)
class _LlmBacked(_Base):
    """An effect executed as one LLM call: `requested` says which and how."""

    requested: LlmCallRequested

    @property
    def model(self) -> str:
        return self.requested.model

    @property
    def fallbacks(self) -> tuple[str, ...]:
        return self.requested.fallbacks

    @property
    def request_digest(self) -> str:
        return self.requested.request_digest


@dataclass(frozen=True, slots=True)
class LlmCallEffect(_LlmBacked):
    kind = EffectKind.LLM_CALL


@dataclass(frozen=True, slots=True)
class CompactionEffect(_LlmBacked):
    """A summarize compaction; `effect_id` is the compaction id (= the LLM call id)."""

    compaction: ContextCompactionRequested

    kind = EffectKind.COMPACTION


@dataclass(frozen=True, slots=True)
class ToolCallEffect(_Base):
    tool_name: str
    arguments_json: str

    kind = EffectKind.TOOL_CALL


@dataclass(frozen=True, slots=True)
class ChildSessionEffect(_Base):
    child_session_id: str
    agent: str
    task: str

    kind = EffectKind.CHILD_SESSION

    def start_request(self, occurred_at: datetime) -> Request:
        """The child's first input. Its request id is fixed, so a re-issued start is a
        duplicate that the child rejects."""
        return Request(
            request_id=f"{self.child_session_id}:start",
            session_id=self.child_session_id,
            occurred_at=occurred_at,
            agent=self.agent,
            payload=SendMessage(
                text=self.task, parent_session_id=self.session_id, parent_call_id=self.effect_id
            ),
            causation_id=self.effect_id,
            correlation_id=self.correlation_id,
        )


@dataclass(frozen=True, slots=True)
class AdmissionEffect(_Base):
    """Ask the shared counters (streams.admission) whether message `effect_id` (its
    request id) may start its turn; answered by CompleteAdmission. Its deadline is the
    longest it may wait (`max_wait_ms`); the runner answers by then."""

    requested: AdmissionRequested

    kind = "admission"


Effect = LlmCallEffect | CompactionEffect | ToolCallEffect | ChildSessionEffect | AdmissionEffect


def pending_effects(state: SessionState) -> list[Effect]:
    """Every effect `state` is waiting for: the LLM (or summarize) call in flight, then
    the step's running tool calls and child sessions in request order. Calls waiting for
    approval are not effects (nothing runs until a human decides)."""
    turn = state.turn
    if turn is None:
        adm = state.admission
        if adm is None:
            return []
        # No deadline in the state: the runner bounds its wait by max_wait_ms itself.
        wait = adm.max_wait_ms / 1000
        return [AdmissionEffect(state.session_id, adm.admission_id, 1, _EPOCH, wait, "", "", adm)]
    sid, tid, corr = state.session_id, turn.turn_id, turn.correlation_id
    out: list[Effect] = []
    llm = turn.llm
    if llm is not None:
        timeout = llm.timeout_us / 1_000_000
        req = llm.request
        if req.purpose == "summarize" and turn.compaction is not None:
            out.append(
                CompactionEffect(
                    sid,
                    req.call_id,
                    llm.attempt,
                    llm.deadline_at,
                    timeout,
                    tid,
                    corr,
                    req,
                    turn.compaction,
                )
            )
        else:
            out.append(
                LlmCallEffect(
                    sid, req.call_id, llm.attempt, llm.deadline_at, timeout, tid, corr, req
                )
            )
    for call in turn.calls:
        if call.deadline_at is None or call.status == CallStatus.APPROVAL:
            continue
        timeout = call.timeout_us / 1_000_000
        if call.status == CallStatus.CHILD:
            out.append(
                ChildSessionEffect(
                    sid,
                    call.call_id,
                    call.attempt,
                    call.deadline_at,
                    timeout,
                    tid,
                    corr,
                    call.child_session_id,
                    call.child_agent,
                    call.task,
                )
            )
        elif not _is_delegation_pending_start(call.name, call.status):
            out.append(
                ToolCallEffect(
                    sid,
                    call.call_id,
                    call.attempt,
                    call.deadline_at,
                    timeout,
                    tid,
                    corr,
                    call.name,
                    call.arguments_json,
                )
            )
    return out


def _is_delegation_pending_start(name: str, status: str) -> bool:
    # Between ToolCallRequested(allow) and ChildSessionRequested a delegate call is
    # briefly "tool"; the same decision always completes the pair, so a committed state
    # never shows it. Guarded anyway: `delegate` is never executed as a tool.
    return name in ("delegate", "delegate_many", "handoff") and status == CallStatus.TOOL


def started_effects(events: list[Event], state: SessionState) -> list[Effect]:
    """The effects `events` started or re-issued, as found in `state` (the state after
    them): what a shell starts right after committing a decision."""
    ids: set[str] = set()
    for ev in events:
        p = ev.payload
        if (
            isinstance(p, LlmCallRequested)
            or (isinstance(p, ToolCallRequested) and p.decision is PolicyAction.ALLOW)
            or isinstance(p, (ApprovalGranted, ChildSessionRequested))
        ):
            ids.add(p.call_id)
        elif isinstance(p, EffectReissued):
            ids.add(p.effect_id)
        elif isinstance(p, AdmissionRequested):
            ids.add(p.admission_id)
    return [e for e in pending_effects(state) if e.effect_id in ids]


def next_deadline(state: SessionState) -> datetime | None:
    """The earliest approval expiry or effect deadline: when the shell should Tick."""
    turn = state.turn
    if turn is None:
        return None
    deadlines = [c.deadline_at for c in turn.calls if c.deadline_at is not None]
    if turn.llm is not None:
        deadlines.append(turn.llm.deadline_at)
    return min(deadlines) if deadlines else None


def outcome_request_id(effect: Effect) -> str:
    """A deterministic request id for the outcome of one issue of an effect."""
    return f"{effect.effect_id}:outcome:{effect.attempt}"


def llm_outcome_of(events: Sequence[Event], call_id: str, attempt: int) -> CompleteLlmCall | None:
    """The answer of LLM call `call_id` (issue `attempt`) as its decided `events` record
    it — the events one outcome caused, in order — or None when they do not hold all of
    it (an answer recorded for its cost only, a call that failed).

    A call run inline by the session worker (streams._partition) has no outcome record:
    the worker decides it there only when this rebuilds the very outcome it got, and
    `replay --verify` rebuilds it the same way."""
    circuits: list[str] = []
    completed: LlmCallCompleted | None = None
    uses: dict[str, ToolUse] = {}
    for ev in events:
        p = ev.payload
        if isinstance(p, ProviderCircuitOpened) and completed is None and p.call_id == call_id:
            circuits.append(p.target)
        elif isinstance(p, LlmCallCompleted) and completed is None and p.call_id == call_id:
            completed = p
        elif isinstance(p, ToolCallRequested) and p.llm_call_id == call_id:
            uses[p.call_id] = ToolUse(p.call_id, p.name, p.arguments_json)
    # "guard": a classifier's answer, kept whole; any other discard dropped something.
    if completed is None or completed.discarded not in (None, "guard"):
        return None
    if any(i not in uses for i in completed.tool_call_ids):
        return None
    return CompleteLlmCall(
        call_id=call_id,
        model=completed.model,
        text=completed.text,
        tool_uses=tuple(uses[i] for i in completed.tool_call_ids),
        stop_reason=completed.stop_reason,
        usage=completed.usage,
        latency_ms=completed.latency_ms,
        attempts=completed.attempts,
        fallback_used=completed.fallback_used,
        circuits_opened=tuple(circuits),
        thinking=completed.thinking,
        effect_attempt=attempt,
        cached_from=completed.cached_from,
    )


def failure_outcome(
    effect: Effect, message: str, error_type: str = "EffectFailed"
) -> RequestPayload:
    """The outcome that reports `effect` as failed (e.g. its executor crashed)."""
    if isinstance(effect, (LlmCallEffect, CompactionEffect)):
        return FailLlmCall(
            call_id=effect.effect_id,
            error_type=error_type,
            message=message,
            effect_attempt=effect.attempt,
        )
    if isinstance(effect, ToolCallEffect):
        return FailToolCall(call_id=effect.effect_id, error=message)
    if isinstance(effect, AdmissionEffect):
        # The counters could not be asked: the message is not admitted (fail closed).
        return CompleteAdmission(
            effect.effect_id, False, "rate_limit.admission", f"Admission failed: {message}"
        )
    return CompleteChildSession(
        call_id=effect.effect_id,
        child_session_id=effect.child_session_id,
        status=ChildStatus.FAILED,
        answer=message,
    )


_PARENT_CANCEL = "/cancel/"


def cancel_requests(event: Event) -> list[Request]:
    """When `event` cancels a turn that had delegated to child sessions, the CancelTurn
    each child is sent (which cancels its own children in turn). The request ids derive
    from the event's id: re-sending them is a duplicate the child rejects."""
    p = event.payload
    if isinstance(p, OrchestrationMemberCancelled):
        return [_member_cancel(event, p)]
    if not isinstance(p, TurnCancelled) or not p.child_session_ids:
        return []
    reason = f"The parent session {event.session_id} cancelled its turn {p.turn_no}."
    return [
        Request(
            request_id=f"{event.event_id}{_PARENT_CANCEL}{i}",
            session_id=child,
            occurred_at=event.occurred_at,
            payload=CancelTurn(reason=reason, drop_queue=True),
            causation_id=event.event_id,
            correlation_id=event.correlation_id,
        )
        for i, child in enumerate(p.child_session_ids)
    ]


def _member_cancel(event: Event, p: OrchestrationMemberCancelled) -> Request:
    # Not a parent's cancel (no _PARENT_CANCEL in its id): the member reports how it
    # ended, with its cost, and the orchestration waits for that report.
    return Request(
        request_id=f"{event.event_id}/stop-member",
        session_id=p.child_session_id,
        occurred_at=event.occurred_at,
        payload=CancelTurn(reason=p.reason, drop_queue=True),
        causation_id=event.event_id,
        correlation_id=event.correlation_id,
    )


def child_report(state: SessionState, event: Event) -> Request | None:
    """When `event` ends the first turn of a delegated (child) session, the request that
    reports the outcome to the parent; else None. `state` is the child's state after
    `event` (or after the rest of the same decision). The request id is the event's id:
    re-reporting the same event is a duplicate the parent rejects."""
    p = event.payload
    lineage = state.lineage
    last = state.last_turn
    if (
        not isinstance(p, (TurnCompleted, TurnFailed, TurnCancelled))
        or lineage.parent_session_id is None
        or lineage.parent_call_id is None
        or p.turn_no != 1
        or last is None
        or last.turn_no != 1
        # Cancelled by the parent's cancel: the parent's turn is over, nobody waits.
        or (isinstance(p, TurnCancelled) and _PARENT_CANCEL in (event.causation_id or ""))
    ):
        return None
    if isinstance(p, TurnCompleted):
        entry = find_entry(state.history, p.answer_seq)
        status, answer = ChildStatus.COMPLETED, entry.text if entry is not None else ""
    elif isinstance(p, TurnFailed):
        status, answer = ChildStatus.FAILED, p.reason
    else:
        status, answer = ChildStatus.CANCELLED, p.reason or ""
    return Request(
        request_id=event.event_id,
        session_id=lineage.parent_session_id,
        occurred_at=event.occurred_at,
        payload=CompleteChildSession(
            call_id=lineage.parent_call_id,
            child_session_id=state.session_id,
            status=status,
            answer=answer,
            usage=usage_of(last.usage),
            cost_nanos=last.cost_nanos,
        ),
        causation_id=event.event_id,
        correlation_id=event.correlation_id,
    )
