"""How the console shows each event type: one row of a table keyed by event type.

Rule: pure data and pure functions (no IO). Every event type of agents.events has a row
(tests/unit/test_event_handlers.py fails when one is missing): its kind (the colour of
its timeline row and the filter it falls under) and whether it changes what the
session page shows from the projections (the page then refreshes that part).
"""

from __future__ import annotations

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
    ProviderCircuitOpened,
    QueuedMessageDropped,
    RequestRejected,
    SessionClosed,
    SessionForked,
    SessionStarted,
    StructuredOutputAccepted,
    StructuredOutputInvalid,
    TokenDelta,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UserMessageReceived,
)
from schemas.codec import event_to_dict
from turnlog._render import Describer

__all__ = ["EVENT_VIEWS", "VIEWS_BY_NAME", "EventView", "delta_json", "event_json"]


class EventView(NamedTuple):
    kind: str  # session | turn | user | llm | tool | approval | compaction | child | error
    refresh: bool  # the conversation/approvals/costs shown from Postgres change


EVENT_VIEWS: dict[type, EventView] = {
    SessionStarted: EventView("session", True),
    SessionForked: EventView("session", True),
    SessionClosed: EventView("session", True),
    AgentVersionChanged: EventView("session", True),
    ModelChanged: EventView("session", True),
    TurnStarted: EventView("turn", True),
    TurnCompleted: EventView("turn", True),
    TurnFailed: EventView("error", True),
    TurnCancelled: EventView("turn", True),
    UserMessageReceived: EventView("user", True),
    MessageQueued: EventView("user", True),
    QueuedMessageDropped: EventView("user", True),
    RequestRejected: EventView("error", False),
    LlmCallRequested: EventView("llm", False),
    LlmCallCompleted: EventView("llm", True),
    LlmCallFailed: EventView("error", True),
    ProviderCircuitOpened: EventView("error", False),
    EffectReissued: EventView("llm", False),
    BudgetExceeded: EventView("error", True),
    ToolCallRequested: EventView("tool", True),
    ToolCallCompleted: EventView("tool", True),
    ToolCallFailed: EventView("error", True),
    ApprovalRequested: EventView("approval", True),
    ApprovalGranted: EventView("approval", True),
    ApprovalDenied: EventView("approval", True),
    ContextCompactionRequested: EventView("compaction", False),
    ContextCompacted: EventView("compaction", True),
    ChildSessionRequested: EventView("child", True),
    ChildSessionCompleted: EventView("child", True),
    OrchestrationStarted: EventView("child", False),
    OrchestrationMemberCancelled: EventView("child", False),
    OrchestrationCompleted: EventView("child", True),
    AgentHandedOff: EventView("session", True),
    GuardrailTripped: EventView("error", True),
    StructuredOutputInvalid: EventView("error", True),
    StructuredOutputAccepted: EventView("turn", True),
    BudgetAlert: EventView("error", True),
    BudgetLimitReached: EventView("error", True),
    AdmissionRequested: EventView("session", True),
    AdmissionDecided: EventView("session", True),
}
# The same rows by type name: the pages show rows of the projections' events table.
VIEWS_BY_NAME: dict[str, EventView] = {t.__name__: v for t, v in EVENT_VIEWS.items()}

_UNKNOWN = EventView("session", True)


def event_json(ev: Event, describer: Describer) -> dict[str, Any]:
    """An event as the API and the SSE stream send it: its place in the log, its type,
    the line `turnlog replay` prints for it, and its payload (secret-free by contract:
    agent definitions and requests hold no credentials)."""
    name = type(ev.payload).__name__
    view = EVENT_VIEWS.get(type(ev.payload), _UNKNOWN)
    full = event_to_dict(ev)
    return {
        "session_id": ev.session_id,
        "seq": ev.seq,
        "type": name,
        "kind": view.kind,
        "refresh": view.refresh,
        "turn_id": ev.turn_id,
        "occurred_at": ev.occurred_at.isoformat(),
        "text": describer.describe(ev),
        "payload": full.get("payload"),
    }


def delta_json(delta: TokenDelta) -> dict[str, Any]:
    return {
        "session_id": delta.session_id,
        "call_id": delta.call_id,
        "index": delta.index,
        "text": delta.text,
        "done": delta.done,
    }
