"""The working context of one decision: emit facts, evolving the state as they go.

Rule: a handler emits facts one by one through `Decision.emit`, which numbers each
(seq = last_seq + 1), wraps it in the envelope taken from the request and the ingest time the shell
handed over (time, claimed time, causation, correlation — never a clock or a random id) and immediately evolves the working state
with it, so every later step of the same decision sees exactly the state that replay
will see. A handler that finds the input illegal raises `Rejected` *before* emitting;
decide then answers with one RequestRejected against the untouched state.

An LLM call is requested through `Decision.request_llm`, which also keeps the
`LlmRequest` whose digest the fact records, by call id (`built`): a shell that executes
the call right after committing the decision can send that very object instead of
rebuilding it from the state.
"""

from __future__ import annotations

from datetime import datetime

from agents.context import ContextMemo
from agents.events import (
    Event,
    EventPayload,
    LlmCallRequested,
    MessageQueued,
    QueuedMessageDropped,
    Request,
    SessionForked,
    SessionStarted,
    TurnStarted,
)
from agents.evolve import evolve
from agents.llm import LlmRequest
from agents.registry import AgentInfo, AgentRegistry
from agents.state import SessionState, TurnState, turn_id_for

__all__ = ["Decision", "Rejected"]


_OUTSIDE_TURNS = (MessageQueued, QueuedMessageDropped)


class Rejected(Exception):
    """Raised by a handler: the input is illegal here. Never escapes decide."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Decision:
    """`now` is the decision's time: when the shell took the input (`ingested_at`), or
    the request's own occurred_at when the shell gave none. Every event of the decision
    carries it as occurred_at, and the request's occurred_at as claimed_at when the two
    differ: deadlines come from the log's time, the sender's claim is kept beside it."""

    __slots__ = (
        "behalf",
        "built",
        "claimed_at",
        "events",
        "memo",
        "now",
        "registry",
        "request",
        "state",
    )

    def __init__(
        self,
        state: SessionState,
        request: Request,
        registry: AgentRegistry,
        ingested_at: datetime | None = None,
        memo: ContextMemo | None = None,
    ) -> None:
        self.state = state
        # The shell's memo of built messages (agents.context.ContextMemo), if it keeps one.
        self.memo = memo
        self.request = request
        self.registry = registry
        self.now: datetime = request.occurred_at if ingested_at is None else ingested_at
        self.claimed_at: datetime | None = (
            None if request.occurred_at == self.now else request.occurred_at
        )
        self.events: list[Event] = []
        # call id -> the LlmRequest whose digest its LlmCallRequested records.
        self.built: dict[str, LlmRequest] = {}
        # Set while a queued message starts its turn: the events of that turn are caused
        # by (and correlated with) the request that sent the message, not this one.
        self.behalf: str | None = None

    @property
    def next_seq(self) -> int:
        return self.state.last_seq + 1

    @property
    def turn(self) -> TurnState:
        turn = self.state.turn
        if turn is None:  # the transition table routes only turn phases here
            raise Rejected(f"Session {self.state.session_id} has no turn in progress.")
        return turn

    def agent_info(self) -> AgentInfo:
        """The agent version the session is pinned to (see agents.versions)."""
        s = self.state
        info = self.registry.pinned(s.agent, s.definition_hash)
        if info is None:
            if self.registry.find(s.agent) is None:
                raise Rejected(
                    f"Session {s.session_id}: its agent {s.agent!r} is no longer defined. "
                    f"{self.registry.unknown_agent_reason(s.agent)}"
                )
            raise Rejected(
                f"Session {s.session_id}: its agent {s.agent!r} version "
                f"{s.definition_hash[:12]} is known to no worker (turnlog.agents)."
            )
        return info

    def emit(self, payload: EventPayload) -> Event:
        state = self.state
        req = self.request
        seq = state.last_seq + 1
        turn = state.turn
        if type(payload) is TurnStarted:
            turn_id: str | None = turn_id_for(state.session_id, payload.turn_no)
        elif type(payload) in _OUTSIDE_TURNS:
            turn_id = None  # a queued message belongs to no turn yet
        else:
            turn_id = turn.turn_id if turn is not None else None
        if isinstance(payload, (SessionStarted, SessionForked)):
            agent = payload.agent
        else:
            agent = state.agent or req.agent or ""
        causation = req.request_id
        if self.behalf is not None:
            causation = self.behalf
            correlation = turn.correlation_id if turn is not None else self.behalf
        else:
            correlation = (
                req.correlation_id
                or (turn.correlation_id if turn is not None else None)
                or req.request_id
            )
        event = Event.derived(
            session_id=state.session_id,
            seq=seq,
            occurred_at=self.now,
            agent=agent,
            payload=payload,
            turn_id=turn_id,
            causation_id=causation,
            correlation_id=correlation,
            claimed_at=self.claimed_at,
        )
        self.state = evolve(state, event)
        self.events.append(event)
        return event

    def request_llm(self, payload: LlmCallRequested, request: LlmRequest) -> Event:
        """Emit `payload`, the fact of an LLM call whose exact request is `request` (the
        effect runner compares the two digests before it sends a handed-over request)."""
        event = self.emit(payload)
        self.built[payload.call_id] = request
        return event
