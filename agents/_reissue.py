"""An LLM call issued more than once: the takeover re-issue, and the answers of the
issues a re-issue replaced.

Rule: only the pending issue's outcome answers an LLM call (or summarize). An outcome
that names an earlier issue (`effect_attempt`) — the answer a previous owner of the
partition still got, the billed part of a stream the worker aborted when it re-issued —
and the billed part of the pending issue's stream that a worker aborted (it lost the
partition: the new owner re-issues) are charged to the session once (LlmCallCompleted, discarded "superseded") and changes
nothing else, whatever the phase; after the call resolved, the state remembers each
replaced issue that may still answer (`SessionState.superseded`). An outcome that does
not say its issue (effect_attempt 0) is taken as the pending one's, as before.

A worker that takes a partition over does not start the LLM calls it finds pending
again under the same issue (a previous owner may still be running it, and two answers
to one issue cannot be told apart): it sends ReissueEffect, and starts the issue that
decision creates. Those calls' outcomes are paid for either way; this makes each paid
answer recorded, where waiting out the previous owner's deadline would stall every
turn a crash interrupted for the whole deadline.
"""

from __future__ import annotations

from datetime import timedelta

from agents._decision import Decision, Rejected
from agents._tick import llm_attempts_exhausted, max_attempts_of
from agents.events import (
    ABORTED,
    SUPERSEDED,
    CompleteCompaction,
    CompleteLlmCall,
    EffectKind,
    EffectReissued,
    FailLlmCall,
    LlmCallCompleted,
    ReissueEffect,
)
from agents.pricing import answer_cost_nanos
from agents.state import SessionState

__all__ = ["on_reissue_effect", "on_superseded_outcome", "replaced_issue"]

LlmOutcome = CompleteLlmCall | FailLlmCall | CompleteCompaction


def _call_id(p: LlmOutcome) -> str:
    return p.compaction_id if isinstance(p, CompleteCompaction) else p.call_id


def replaced_issue(state: SessionState, p: LlmOutcome) -> tuple[str, str] | None:
    """(call id, requested model) when `p` reports an issue of an LLM call that a
    re-issue replaced and that has not been charged yet; else None."""
    attempt = p.effect_attempt
    if attempt < 1:
        return None
    call_id = _call_id(p)
    turn = state.turn
    llm = turn.llm if turn is not None else None
    if llm is not None and llm.request.call_id == call_id:
        # The pending issue itself, aborted by a worker that lost the partition: its
        # billed part is charged and the issue stays pending for the new owner.
        aborted = isinstance(p, FailLlmCall) and p.error_type == ABORTED
        if attempt < llm.attempt or (aborted and attempt == llm.attempt):
            return (call_id, llm.request.model)
        return None
    # Resolved: an earlier issue than the one that answered (a copy of that answer, under
    # another request id, is a duplicate).
    return next(
        ((s[0], s[1]) for s in state.superseded if s[0] == call_id and attempt < s[2]), None
    )


def on_superseded_outcome(d: Decision, p: LlmOutcome) -> None:
    """Charge the answer of a replaced issue; nothing else changes."""
    entry = replaced_issue(d.state, p)
    assert entry is not None  # decide routes only those here
    call_id, requested = entry
    if isinstance(p, FailLlmCall):
        if p.usage.total_tokens == 0:
            raise Rejected(
                f"Session {d.state.session_id}: issue {p.effect_attempt} of LLM call "
                f"{call_id} was replaced by a re-issue; its failure (no usage billed) is "
                "ignored."
            )
        model, stop, usage, latency, attempts = (
            requested,
            p.error_type,
            p.usage,
            p.latency_ms,
            p.attempts,
        )
        fallback = False
    elif isinstance(p, CompleteLlmCall):
        model, stop, usage, latency, attempts = (
            p.model,
            p.stop_reason,
            p.usage,
            p.latency_ms,
            p.attempts,
        )
        fallback = p.fallback_used
    else:
        model, stop, usage, latency, attempts = p.model, "end_turn", p.usage, p.latency_ms, 1
        fallback = False
    d.emit(
        LlmCallCompleted(
            call_id=call_id,
            model=model,
            text="",
            tool_call_ids=(),
            stop_reason=stop,
            usage=usage,
            cost_nanos=answer_cost_nanos(model, requested, usage),
            latency_ms=latency,
            attempts=attempts,
            fallback_used=fallback,
            discarded=SUPERSEDED,
        )
    )


# Issues of one LLM call after which a takeover's ReissueEffect fails it (or the agent's
# deadlines.max_attempts, when larger).
MAX_ISSUES_ON_TAKEOVER = 10


def on_reissue_effect(d: Decision, p: ReissueEffect) -> None:
    """Re-issue the pending LLM call (or summarize) as attempt + 1 with a fresh deadline;
    a stale request (no longer pending at that attempt) is rejected."""
    turn = d.state.turn
    llm = turn.llm if turn is not None else None
    if llm is None or llm.request.call_id != p.effect_id or llm.attempt != p.attempt:
        raise Rejected(
            f"Session {d.state.session_id}: LLM call {p.effect_id} is not pending at issue "
            f"{p.attempt} (answered, re-issued already, or unknown); nothing to re-issue."
        )
    if llm.attempt >= max(max_attempts_of(d), MAX_ISSUES_ON_TAKEOVER):
        # A call whose workers keep dying under it (a crash loop, not a slow model) fails
        # like one that never answers, instead of being issued forever. The bound is
        # wider than deadlines.max_attempts: a few takeovers in a row are the workers'
        # trouble, not the call's.
        llm_attempts_exhausted(d)
        return
    kind = EffectKind.COMPACTION if llm.request.purpose == "summarize" else EffectKind.LLM_CALL
    d.emit(
        EffectReissued(
            effect_id=p.effect_id,
            kind=kind,
            attempt=p.attempt + 1,
            deadline_at=d.now + timedelta(microseconds=llm.timeout_us),
        )
    )
