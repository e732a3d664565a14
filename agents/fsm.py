"""The turn FSM's public face: initial_state, decide, evolve, fold, fork_base.

Rule: `decide(state, request, registry) -> [Event]` is pure and deterministic — the
same state, request and registry give the same events, byte for byte — and total: an
input that is illegal in the current state (wrong phase, unknown session, unknown agent,
duplicate request id, approval for an unknown call, outcome for an effect that is not
pending) yields exactly one RequestRejected with a reason, and the state is otherwise
unchanged. It never raises for an input; it raises ContractError only when the caller
breaks the contract (a request for another session). Time and ids come from the request
envelope. Nothing here does IO.

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

from agents._decision import Decision, Rejected
from agents.errors import ContractError
from agents.events import Event, Request, RequestRejected, SessionForked
from agents.evolve import evolve
from agents.fold import fold, fork_base
from agents.llm import LlmRequest
from agents.registry import AgentRegistry
from agents.state import Phase, SessionState, initial_state
from agents.state_codec import state_from_dict, state_to_dict
from agents.transitions import TRANSITIONS, accepted_inputs

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
                f"Cannot fork into {sid}: the source session's state was not given (the shell "
                f"must fold the source up to at_seq and decide on fork_base(...))."
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


def _reject(
    state: SessionState, request: Request, reason: str
) -> tuple[list[Event], SessionState, dict[str, LlmRequest]]:
    # A rejected fork is the new session's first event (see fork_base).
    base = initial_state(state.session_id) if state.phase is Phase.FORKING else state
    d = Decision(base, request, _NO_REGISTRY)
    d.emit(
        RequestRejected(
            request_id=request.request_id,
            request_type=type(request.payload).__name__,
            reason=reason,
            phase=state.phase.value,
        )
    )
    return d.events, d.state, {}


def decide_built(
    state: SessionState, request: Request, registry: AgentRegistry
) -> tuple[list[Event], SessionState, dict[str, LlmRequest]]:
    """The events `request` causes, the state after them, and the LLM requests built for
    the calls those events request, by call id (empty for most inputs)."""
    if request.session_id != state.session_id:
        raise ContractError(
            f"Request {request.request_id} is for session {request.session_id}, but the "
            f"state given is session {state.session_id}."
        )
    kind = type(request.payload).__name__
    if request.request_id in state.recent_requests:
        return _reject(
            state,
            request,
            f"Session {state.session_id}: request {request.request_id} was already handled "
            f"(duplicate request id).",
        )
    transition = TRANSITIONS.get((state.phase, type(request.payload)))
    if transition is None:
        return _reject(state, request, _phase_reason(state, kind))
    d = Decision(state, request, registry)
    try:
        transition.handler(d, request.payload)
    except Rejected as exc:
        return _reject(state, request, exc.reason)
    except ContractError as exc:
        # A value the input carried broke a record's invariants (InvalidRecord) or the
        # catalog: still the input's fault, still a rejection, never a crash.
        return _reject(state, request, f"Session {state.session_id}: {kind} rejected: {exc}")
    except OverflowError:
        # occurred_at so close to datetime.max that a deadline cannot be computed.
        return _reject(
            state,
            request,
            f"Session {state.session_id}: {kind} rejected: occurred_at "
            f"{request.occurred_at.isoformat()} leaves no room for its deadlines.",
        )
    return d.events, d.state, d.built


def decide_and_evolve(
    state: SessionState, request: Request, registry: AgentRegistry
) -> tuple[list[Event], SessionState]:
    """The events `request` causes and the state after them."""
    events, after, _ = decide_built(state, request, registry)
    return events, after


def decide(state: SessionState, request: Request, registry: AgentRegistry) -> list[Event]:
    """The events `request` causes in `state` (see the module rule)."""
    return decide_and_evolve(state, request, registry)[0]


def fork_source(event: Event) -> tuple[str, int] | None:
    """(source session id, at_seq) when `event` starts a forked session, else None."""
    payload = event.payload
    if isinstance(payload, SessionForked):
        return payload.source_session_id, payload.at_seq
    return None


# Rejections need no agents; an empty registry makes that explicit.
_NO_REGISTRY = AgentRegistry(())
