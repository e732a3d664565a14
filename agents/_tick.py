"""Time passing: a Tick expires approvals and re-issues (or fails) overdue effects.

Rule: time reaches the pure core only as Tick requests (their occurred_at is "now"), so
replay sees exactly the ticks the live run saw. A pending effect past its deadline is
re-issued with the same effect id, attempt + 1 and a fresh deadline — except a call of
a tool that is not idempotent: its outcome is unknown, so it waits for a human's
approval or fails (`deadlines.on_unknown_outcome`) — until
`deadlines.max_attempts` issues have passed; then the core fails it — an LLM call fails
the turn, a summarize call falls back to dropping the entries, a tool call fails, a
child session completes as failed. An approval past its expiry is denied as expired.
Nothing due: no events at all.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agents._decision import Decision
from agents._orchestrate import advance_all
from agents._turn import drop_instead_of_summary, fail_turn, guard_decided, step_resolved
from agents.events import (
    ApprovalDenied,
    ApprovalRequested,
    ChildSessionCompleted,
    ChildStatus,
    EffectKind,
    EffectReissued,
    LlmCallFailed,
    Tick,
    ToolCallFailed,
    Usage,
)
from agents.state import CallStatus

__all__ = ["on_tick"]


def _reissue(d: Decision, effect_id: str, kind: EffectKind, attempt: int, timeout_us: int) -> None:
    d.emit(
        EffectReissued(
            effect_id=effect_id,
            kind=kind,
            attempt=attempt + 1,
            deadline_at=d.now + timedelta(microseconds=timeout_us),
        )
    )


def _outcome_unknown(d: Decision, call_id: str, tool: str, attempt: int) -> bool:
    """A call of a tool that is not idempotent passed its deadline with no outcome: it
    may have run (its worker died or lost the partition mid-call), so it is not re-run
    blindly. Per the agent's `deadlines.on_unknown_outcome`: ask a human (a grant runs it
    again), or fail the call. True when the call is resolved (failed)."""
    info = d.registry.pinned(d.state.agent, d.state.definition_hash)
    deadlines = info.definition.deadlines if info is not None else None
    why = (
        f"The outcome of {tool!r} call {call_id} (attempt {attempt}) is unknown: it passed "
        f"its deadline without a result, and {tool!r} is not idempotent, so it is not "
        "run again without a decision."
    )
    if deadlines is not None and deadlines.on_unknown_outcome == "ask":
        d.emit(
            ApprovalRequested(
                call_id=call_id,
                tool_name=tool,
                expires_at=d.now + timedelta(seconds=deadlines.approval_s),
                reason=why,
            )
        )
        return False
    d.emit(ToolCallFailed(call_id=call_id, error=why + " The agent's setting is to fail it."))
    return True


def _due(deadline: datetime | None, now: datetime) -> bool:
    return deadline is not None and now >= deadline


def max_attempts_of(d: Decision) -> int:
    """The session's agent's `deadlines.max_attempts` (3 when its version is unknown)."""
    info = d.registry.pinned(d.state.agent, d.state.definition_hash)
    return info.definition.deadlines.max_attempts if info is not None else 3


def llm_attempts_exhausted(d: Decision) -> None:
    """The pending LLM call (or summary, or guard) had its last issue without an
    outcome: it fails, and what waited on it goes on without it."""
    llm = d.turn.llm
    assert llm is not None
    d.emit(
        LlmCallFailed(
            call_id=llm.request.call_id,
            error_type="DeadlineExceeded",
            message=f"No outcome after {llm.attempt} attempts.",
            attempts=llm.attempt,
        )
    )
    if llm.request.purpose == "summarize":
        drop_instead_of_summary(d)
    elif llm.request.purpose == "guard":
        # A classifier that never answered: its rule's on_error decides, as for a
        # failed guard call.
        guard_decided(d, llm.request, None, f"no answer after {llm.attempt} attempts")
    else:
        fail_turn(
            d, f"The LLM call had no outcome after {llm.attempt} attempts.", "DeadlineExceeded"
        )


def on_tick(d: Decision, p: Tick) -> None:
    """Expire approvals and re-issue (or, after max_attempts, fail) overdue effects, in
    a fixed order: the LLM call, then the step's calls in request order. Nothing due:
    no events."""
    if d.state.turn is None:
        return
    now = d.now
    max_attempts = max_attempts_of(d)
    llm = d.turn.llm
    if llm is not None and _due(llm.deadline_at, now):
        summarize = llm.request.purpose == "summarize"
        kind = EffectKind.COMPACTION if summarize else EffectKind.LLM_CALL
        if llm.attempt < max_attempts:
            _reissue(d, llm.request.call_id, kind, llm.attempt, llm.timeout_us)
            return
        llm_attempts_exhausted(d)
        return
    resolved = False
    for call in d.turn.calls:
        if not _due(call.deadline_at, now):
            continue
        if call.status == CallStatus.APPROVAL:
            d.emit(
                ApprovalDenied(
                    call_id=call.call_id,
                    decided_by="deadline",
                    reason="Nobody decided before the approval expired.",
                    expired=True,
                )
            )
            d.emit(
                ToolCallFailed(
                    call_id=call.call_id,
                    error="Denied: the approval expired before anyone decided.",
                )
            )
            resolved = True
        elif call.status == CallStatus.TOOL and not d.registry.is_idempotent(call.name):
            resolved |= _outcome_unknown(d, call.call_id, call.name, call.attempt)
        elif call.attempt < max_attempts:
            kind = (
                EffectKind.CHILD_SESSION
                if call.status == CallStatus.CHILD
                else EffectKind.TOOL_CALL
            )
            _reissue(d, call.call_id, kind, call.attempt, call.timeout_us)
        elif call.status == CallStatus.CHILD:
            d.emit(
                ChildSessionCompleted(
                    call_id=call.call_id,
                    child_session_id=call.child_session_id,
                    status=ChildStatus.FAILED,
                    answer=f"no answer after {call.attempt} attempts (deadline exceeded)",
                    usage=Usage(),
                    cost_nanos=0,
                )
            )
            resolved = True
        else:
            d.emit(
                ToolCallFailed(
                    call_id=call.call_id,
                    error=f"The tool call timed out ({call.attempt} attempts).",
                )
            )
            resolved = True
    # A member that timed out may be what an orchestration of the step waited for.
    resolved |= advance_all(d)
    if resolved:
        step_resolved(d)
