"""fold: a session's state from its whole log; fork_base: where a fork starts from.

Rule: the state of a session is exactly the fold of its log with `evolve` from
`initial_state` — there is no other source of truth. A forked session's log is its
ancestry (the source's events up to at_seq, recursively) followed by its own events,
the first of which is SessionForked at seq at_seq + 1. Nothing here does IO.
"""

from __future__ import annotations

from collections.abc import Iterable

from agents.errors import ContractError
from agents.events import Event, SessionForked
from agents.evolve import _HANDLERS, evolve
from agents.state import Lineage, Phase, SessionState, initial_state

__all__ = ["fold", "fork_base"]

_FORKING = Phase.FORKING


def fork_base(source: SessionState, new_session_id: str) -> SessionState:
    """The state a fork starts from: `source` (folded up to the fork's at_seq) renamed
    to the new session, in phase forking.

    Rule for forks taken mid-turn: the copied turn's pending work (LLM call, tool calls,
    approvals, children, reservation) is dropped; the history up to at_seq is kept, and
    a tool use that never got its result is answered to the model as not completed.
    The fork has its own spend (the ancestry's cost stays with the source) and its own
    request-id memory; messages the source had queued stay with the source. `decide(fork_base(...), ForkSession)` emits SessionForked at seq
    at_seq + 1; if it rejects instead, the rejection is numbered from the empty session
    (seq 1) and evolve folds it onto initial_state(new_session_id).
    """
    return source._replace(
        session_id=new_session_id,
        phase=Phase.FORKING,
        turn=None,
        spent_tokens=0,
        spent_nanos=0,
        recent_requests=(),
        lineage=Lineage(None, None, source.session_id, source.last_seq),
        last_turn=None,
        abandoned=(),
        queue=(),
    )


def fold(events: Iterable[Event], session_id: str) -> SessionState:
    """The state of `session_id` after its log. A forked session's log is given with its
    ancestry first: the source's events up to at_seq (recursively), then its own events
    starting with SessionForked."""
    state: SessionState | None = None
    handlers = _HANDLERS
    for ev in events:
        # The common case, as evolve would take it, without the call: the session's next
        # event, not onto a fork base. Anything else goes through evolve's checks below.
        if (
            state is not None
            and ev.seq == state.last_seq + 1
            and ev.session_id == state.session_id
            and state.phase is not _FORKING
        ):
            payload = ev.payload
            state = handlers[type(payload)](state, ev, payload)
            continue
        if state is None:
            if isinstance(ev.payload, SessionForked):
                raise ContractError(
                    f"fold: session {ev.session_id} starts with SessionForked at seq {ev.seq}; "
                    f"give its ancestry ({ev.payload.source_session_id} up to seq "
                    f"{ev.payload.at_seq}) first, or evolve onto fork_base(...)."
                )
            state = initial_state(ev.session_id)
        elif ev.session_id != state.session_id and isinstance(ev.payload, SessionForked):
            state = fork_base(state, ev.session_id)
        state = evolve(state, ev)
    if state is None:
        return initial_state(session_id)
    if state.session_id != session_id:
        raise ContractError(
            f"fold: the events end in session {state.session_id}, not {session_id}."
        )
    return state
