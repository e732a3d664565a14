"""The turn FSM's public face: initial_state, decide, evolve, fold, fork_base.

Rule: `decide(state, request, registry) -> [Event]` is pure and deterministic — the
same state, request and registry give the same events, byte for byte — and total: an
input that is illegal in the current state (wrong phase, unknown session, unknown agent,
duplicate request id, approval for an unknown call, outcome for an effect that is not
pending) yields exactly one RequestRejected with a reason, and the state is otherwise
unchanged. It never raises for an input; it raises ContractError only when the caller
breaks the contract (a request for another session, or for a session id no event can
carry: U+0000 or over MAX_ID_BYTES — the shell dead-letters those). Ids come from the request
envelope; time is the ingest time the shell hands over (`ingested_at`: when the worker
took the request), or the envelope's occurred_at when it hands none. Nothing here does IO.

Inputs are checked against agents.limits before anything else: what a person or client
wrote that cannot be stored (U+0000, lone surrogates), is over the text or id limit, or
claims an absurd time is rejected; text an effect reports from the outside world is
cleaned instead (see agents.limits for why).

Duplicates: a session remembers the ids of the last RECENT_REQUESTS (128) requests it
accepted and rejects them when they come again. A rejected request changed nothing — not
even that memory — so sending it again decides it afresh (it may be legal by then).

Typical shell loop:

    state = table.get(session_id) or initial_state(session_id)   # or fork_base(...)
    events, state = decide_and_evolve(state, request, registry)
    append(events); table[session_id] = state
    start(started_effects(events, state))                        # agents.effects

`decide_built` is decide_and_evolve that also hands back the LlmRequests the decision
built for the LLM calls it requested (by call id; their digests are the ones the
LlmCallRequested facts record), so a shell that runs those calls once the events are
committed need not rebuild them from the state.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from agents._decision import Decision, Rejected
from agents._reissue import on_reissue_effect, on_superseded_outcome, replaced_issue
from agents._turn import alert_budget, start_queued
from agents.context import ContextMemo
from agents.errors import ContractError
from agents.events import (
    CompleteCompaction,
    CompleteLlmCall,
    Event,
    FailLlmCall,
    ReissueEffect,
    Request,
    RequestRejected,
    SessionForked,
)
from agents.evolve import evolve
from agents.fold import fold, fork_base
from agents.handlers import late_llm_call, on_late_llm_completed
from agents.limits import (
    MAX_ID_BYTES,
    claim_problem,
    clean_outcome,
    clean_text,
    input_problem,
    is_outcome,
    session_id_problem,
    storable,
    truncate_utf8,
    utf8_size,
)
from agents.llm import LlmRequest
from agents.registry import AgentRegistry
from agents.state import Phase, SessionState, initial_state
from agents.state_codec import state_from_dict, state_to_dict
from agents.transitions import TRANSITIONS, accepted_inputs
from agents.versions import settle_unavailable

__all__ = [
    "decide",
    "decide_and_evolve",
    "decide_built",
    "evolve",
    "fold",
    "fork_base",
    "fork_source",
    "initial_state",
    "state_from_dict",
    "state_to_dict",
]


def _phase_reason(state: SessionState, kind: str) -> str:
    sid = state.session_id
    if state.phase is Phase.NEW:
        if kind == "ForkSession":
            return (
                f"Cannot fork into {sid}: the source session does not exist (the events "
                f"topic holds no event of it)."
            )
        return f"Session {sid} does not exist; only SendMessage with an agent starts a session."
    if state.phase is Phase.CLOSED:
        return f"Session {sid} is closed and accepts no more input ({kind})."
    if state.phase is Phase.FORKING:
        return f"Session {sid} is being forked; only ForkSession is accepted ({kind} is not)."
    if kind == "ForkSession":
        return f"Session {sid} already exists; a fork must be sent to a new session id."
    if kind == "SendMessage":
        return f"Session {sid} has a turn in progress ({state.phase.value}); cancel it first."
    accepted = ", ".join(accepted_inputs(state.phase))
    late = (
        " A late or duplicate effect outcome is ignored."
        if kind.startswith(("Complete", "Fail"))
        else ""
    )
    return (
        f"Session {sid} is {state.phase.value}: {kind} is not accepted there "
        f"(accepted: {accepted}).{late}"
    )


def _storable_envelope(request: Request) -> Request:
    """`request` with the envelope values a rejection copies into its event (request,
    correlation and causation ids, agent) made storable: a rejection must not carry
    the very bytes it rejects."""
    fields = {
        "request_id": request.request_id,
        "correlation_id": request.correlation_id,
        "causation_id": request.causation_id,
        "agent": request.agent,
    }
    changes: dict[str, Any] = {
        name: truncate_utf8(clean_text(value), MAX_ID_BYTES, name)
        for name, value in fields.items()
        if value is not None and (not storable(value) or utf8_size(value) > MAX_ID_BYTES)
    }
    return replace(request, **changes) if changes else request


def _reject(
    state: SessionState, request: Request, reason: str, ingested_at: datetime | None = None
) -> tuple[list[Event], SessionState, dict[str, LlmRequest]]:
    # A rejected fork is the new session's first event (see fork_base).
    base = initial_state(state.session_id) if state.phase is Phase.FORKING else state
    safe = _storable_envelope(request)
    d = Decision(base, safe, _NO_REGISTRY, ingested_at)
    d.emit(
        RequestRejected(
            request_id=safe.request_id,
            request_type=type(request.payload).__name__,
            reason=truncate_utf8(clean_text(reason), _MAX_REASON_BYTES, "reason"),
            phase=state.phase.value,
        )
    )
    return d.events, d.state, {}


def decide_built(
    state: SessionState,
    request: Request,
    registry: AgentRegistry,
    *,
    ingested_at: datetime | None = None,
    memo: ContextMemo | None = None,
) -> tuple[list[Event], SessionState, dict[str, LlmRequest]]:
    """The events `request` causes, the state after them, and the LLM requests built for
    the calls those events request, by call id (empty for most inputs).

    `ingested_at` is when the shell took the request (the log's time): the decision's
    time, from which every deadline is measured; the request's occurred_at is then only
    its sender's claim, kept on the events. None: the request's occurred_at is both.
    `memo`: the shell's memo of built messages (agents.context.ContextMemo), so a long
    session's next call builds only what is new; the requests are equal without it."""
    if request.session_id != state.session_id:
        raise ContractError(
            f"Request {request.request_id} is for session {request.session_id}, but the "
            f"state given is session {state.session_id}."
        )
    problem = session_id_problem(request.session_id)
    if problem is not None:
        # Every event of the session would carry the id: no log can reject it.
        raise ContractError(
            f"A request whose session id cannot be stored reached decide ({problem}); "
            f"the shell must dead-letter it."
        )
    kind = type(request.payload).__name__
    if request.request_id in state.recent_requests:
        return _reject(
            state,
            request,
            f"Session {state.session_id}: request {request.request_id} was already handled "
            f"(duplicate request id).",
            ingested_at,
        )
    problem = input_problem(request, registry.limits)
    if problem is None and not is_outcome(request.payload):
        # An effect's clock never costs its result; a person's absurd date is refused.
        claim = claim_problem(request.occurred_at, ingested_at)
        if claim is not None:
            problem = f"{kind} rejected: {claim}."
    if problem is not None:
        return _reject(state, request, f"Session {state.session_id}: {problem}", ingested_at)
    handler: Any
    outcome = request.payload
    if isinstance(outcome, _REPLACEABLE) and replaced_issue(state, outcome):
        # Whatever the phase: the answer of an issue a re-issue replaced is charged.
        handler = on_superseded_outcome
    elif isinstance(outcome, _OUTCOMES_OF_LLM) and late_llm_call(state, outcome.call_id):
        # Whatever the phase: the late answer of a call a cancel abandoned is charged.
        handler = on_late_llm_completed
    elif isinstance(outcome, ReissueEffect):
        # Whatever the phase: a stale one (the call answered or moved on) is rejected.
        handler = on_reissue_effect
    else:
        transition = TRANSITIONS.get((state.phase, type(request.payload)))
        if transition is None:
            return _reject(state, request, _phase_reason(state, kind), ingested_at)
        handler = transition.handler
    payload = clean_outcome(request.payload, registry.limits)
    if payload is not request.payload:
        request = replace(request, payload=payload)
    d = Decision(state, request, registry, ingested_at, memo)
    try:
        settle_unavailable(d)
        handler(d, request.payload)
        if d.state.queue and d.state.turn is None:
            start_queued(d)  # the input ended a turn: the next queued message starts
        if d.state.spent_nanos != state.spent_nanos or d.state.spent_tokens != state.spent_tokens:
            alert_budget(d, state)  # the decision charged spend: soft thresholds crossed?
    except Rejected as exc:
        return _reject(state, request, exc.reason, ingested_at)
    except ContractError as exc:
        # A value the input carried broke a record's invariants (InvalidRecord) or the
        # catalog: still the input's fault, still a rejection, never a crash.
        return _reject(
            state, request, f"Session {state.session_id}: {kind} rejected: {exc}", ingested_at
        )
    except OverflowError:
        # A time so close to datetime.max that a deadline cannot be computed.
        return _reject(
            state,
            request,
            f"Session {state.session_id}: {kind} rejected: occurred_at "
            f"{d.now.isoformat()} leaves no room for its deadlines.",
            ingested_at,
        )
    return d.events, d.state, d.built


def decide_and_evolve(
    state: SessionState,
    request: Request,
    registry: AgentRegistry,
    *,
    ingested_at: datetime | None = None,
    memo: ContextMemo | None = None,
) -> tuple[list[Event], SessionState]:
    """The events `request` causes and the state after them."""
    events, after, _ = decide_built(state, request, registry, ingested_at=ingested_at, memo=memo)
    return events, after


def decide(
    state: SessionState,
    request: Request,
    registry: AgentRegistry,
    *,
    ingested_at: datetime | None = None,
) -> list[Event]:
    """The events `request` causes in `state` (see the module rule)."""
    return decide_and_evolve(state, request, registry, ingested_at=ingested_at)[0]


def fork_source(event: Event) -> tuple[str, int] | None:
    """(source session id, at_seq) when `event` starts a forked session, else None."""
    payload = event.payload
    if isinstance(payload, SessionForked):
        return payload.source_session_id, payload.at_seq
    return None


_OUTCOMES_OF_LLM = (CompleteLlmCall, FailLlmCall)
_REPLACEABLE = (CompleteLlmCall, FailLlmCall, CompleteCompaction)
# Rejections need no agents; an empty registry makes that explicit.
_NO_REGISTRY = AgentRegistry(())
# A reason names ids and limits, never a whole text; this bounds it anyway.
_MAX_REASON_BYTES = 4 * MAX_ID_BYTES
