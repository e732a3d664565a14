"""The transition table of the turn FSM, as data.

Rule: `TRANSITIONS` maps (phase, input type) to the handler that decides the input and
the phases the session can be in afterwards. An input whose (phase, type) is not in the
table is illegal in that phase and is answered with exactly one RequestRejected; one
that is in the table may still be rejected by its handler (an unknown call id, say),
with the state likewise unchanged. The state diagram (agents.diagram) is rendered from
this table, and the property tests check every decision against its `targets`.

Phases of a step (a model answer with tool calls) are ordered awaiting_approval >
awaiting_tools > awaiting_children (see agents.state): e.g. a tool result can arrive
while the step is awaiting approval for another call, but an approval decision can only
be pending in awaiting_approval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from agents import handlers as h
from agents._admission import on_admission, on_cancel_admission
from agents._decision import Decision
from agents._tick import on_tick
from agents.events import (
    REQUEST_TYPES,
    CancelTurn,
    CloseSession,
    CompleteAdmission,
    CompleteChildSession,
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    DecideApproval,
    EnforceBudget,
    FailLlmCall,
    FailToolCall,
    ForkSession,
    SendMessage,
    SetModel,
    Tick,
    UpgradeAgent,
)
from agents.state import TURN_PHASES, Phase
from agents.versions import on_upgrade

__all__ = ["PHASE_ORDER", "TRANSITIONS", "Transition", "accepted_inputs"]

Handler = Callable[[Decision, Any], None]

PHASE_ORDER: tuple[Phase, ...] = (
    Phase.NEW,
    Phase.FORKING,
    Phase.IDLE,
    Phase.ADMITTING,
    Phase.COMPACTING,
    Phase.AWAITING_LLM,
    Phase.AWAITING_APPROVAL,
    Phase.AWAITING_TOOLS,
    Phase.AWAITING_CHILDREN,
    Phase.CLOSED,
)


class Transition(NamedTuple):
    phase: Phase
    input: type
    handler: Handler
    targets: tuple[Phase, ...]  # every phase the session can be in after the decision
    summary: str


_A, _T, _C = Phase.AWAITING_APPROVAL, Phase.AWAITING_TOOLS, Phase.AWAITING_CHILDREN
_ADM = Phase.ADMITTING
# The step is over: the next LLM call (maybe after compaction), or the turn ends on a
# guard (max iterations, context too large, budget).
_NEXT = (Phase.AWAITING_LLM, Phase.COMPACTING, Phase.IDLE)
# A message of an agent with a shared rate limit waits for its admission instead.
_START = (*_NEXT, Phase.ADMITTING)
# Right after a compaction the same iteration is never compacted again.
_AFTER_COMPACTION = (Phase.AWAITING_LLM, Phase.IDLE)

_ROWS: tuple[Transition, ...] = (
    (
        Transition(Phase.NEW, SendMessage, h.on_start_session, _START, "start session + turn"),
        Transition(Phase.FORKING, ForkSession, h.on_fork, (Phase.IDLE,), "fork at at_seq"),
        Transition(Phase.IDLE, SendMessage, h.on_send_message, _START, "start turn"),
    )
    + tuple(
        # A message during a turn waits in the queue; the phase does not change.
        Transition(phase, SendMessage, h.on_queue_message, (phase,), "queue message")
        for phase in sorted(TURN_PHASES, key=lambda p: p.value)
    )
    + tuple(
        # A model switch applies to the session's later LLM calls; the phase stays.
        Transition(phase, SetModel, h.on_set_model, (phase,), "switch model")
        for phase in sorted((Phase.IDLE, *TURN_PHASES), key=lambda p: p.value)
    )
    + tuple(
        # A spent budget across sessions: no new turn, no further LLM call; phase stays.
        Transition(phase, EnforceBudget, h.on_enforce_budget, (phase,), "budget spent")
        for phase in sorted((Phase.IDLE, *TURN_PHASES), key=lambda p: p.value)
    )
    + (
        # A shared rate limit (agents._admission): the message waits for its admission.
        Transition(_ADM, CompleteAdmission, on_admission, _NEXT, "admitted or limited"),
        Transition(_ADM, CancelTurn, on_cancel_admission, (Phase.IDLE,), "end admission"),
        Transition(_ADM, CloseSession, h.on_close, (Phase.CLOSED,), "close"),
        Transition(_ADM, SetModel, h.on_set_model, (_ADM,), "switch model"),
        Transition(_ADM, EnforceBudget, h.on_enforce_budget, (_ADM,), "budget spent"),
        Transition(Phase.IDLE, Tick, on_tick, (Phase.IDLE,), "nothing due"),
        Transition(Phase.IDLE, UpgradeAgent, on_upgrade, (Phase.IDLE,), "move to another version"),
        Transition(
            Phase.AWAITING_LLM,
            CompleteLlmCall,
            h.on_llm_completed,
            (_A, _T, _C, *_NEXT),
            "answer: final, or tool calls",
        ),
        Transition(Phase.AWAITING_LLM, FailLlmCall, h.on_llm_failed, (Phase.IDLE,), "turn fails"),
        Transition(
            Phase.AWAITING_LLM,
            Tick,
            on_tick,
            (Phase.AWAITING_LLM, Phase.IDLE),
            "re-issue or fail overdue call",
        ),
        Transition(
            Phase.COMPACTING,
            CompleteCompaction,
            h.on_compaction_completed,
            _AFTER_COMPACTION,
            "summary in",
        ),
        Transition(
            Phase.COMPACTING,
            FailLlmCall,
            h.on_compaction_failed,
            _AFTER_COMPACTION,
            "drop instead",
        ),
        Transition(
            Phase.COMPACTING,
            Tick,
            on_tick,
            (Phase.COMPACTING, *_AFTER_COMPACTION),
            "re-issue or drop instead",
        ),
        Transition(_A, DecideApproval, h.on_approval, (_A, _T, _C, *_NEXT), "grant or deny"),
        Transition(_A, CompleteToolCall, h.on_tool_completed, (_A,), "tool result"),
        Transition(_A, FailToolCall, h.on_tool_failed, (_A,), "tool error"),
        Transition(_A, CompleteChildSession, h.on_child_completed, (_A,), "child answer"),
        Transition(_A, Tick, on_tick, (_A, _T, _C, *_NEXT), "expire approvals"),
        Transition(_T, CompleteToolCall, h.on_tool_completed, (_T, _C, *_NEXT), "tool result"),
        Transition(_T, FailToolCall, h.on_tool_failed, (_T, _C, *_NEXT), "tool error"),
        Transition(_T, CompleteChildSession, h.on_child_completed, (_T,), "child answer"),
        # An overdue call of a non-idempotent tool asks a human again (agents._tick).
        Transition(_T, Tick, on_tick, (_T, _A, _C, *_NEXT), "re-issue or time out tools"),
        Transition(_C, CompleteChildSession, h.on_child_completed, (_C, *_NEXT), "child answer"),
        Transition(_C, Tick, on_tick, (_C, *_NEXT), "re-issue or time out children"),
    )
    + tuple(
        # The next queued message may start at once; dropping one queued message leaves
        # the turn running.
        Transition(phase, CancelTurn, h.on_cancel, (phase, *_NEXT), "cancel turn")
        for phase in sorted(TURN_PHASES, key=lambda p: p.value)
    )
    + tuple(
        Transition(phase, CloseSession, h.on_close, (Phase.CLOSED,), "close")
        for phase in [Phase.IDLE, *sorted(TURN_PHASES, key=lambda p: p.value)]
    )
)

# A decision that ends a turn starts the next queued message's turn (agents.fsm): every
# row that can end in idle can end wherever a new turn's first step can.
_ROWS = tuple(
    t._replace(targets=tuple(dict.fromkeys((*t.targets, *_NEXT))))
    if Phase.IDLE in t.targets and t.input is not CloseSession
    else t
    for t in _ROWS
)

TRANSITIONS: Mapping[tuple[Phase, type], Transition] = MappingProxyType(
    {(t.phase, t.input): t for t in _ROWS}
)
assert len(TRANSITIONS) == len(_ROWS), "a (phase, input) pair is listed twice"
assert all(t.input in REQUEST_TYPES for t in _ROWS)


def accepted_inputs(phase: Phase) -> tuple[str, ...]:
    """Names of the input types the table accepts in `phase`, sorted."""
    return tuple(sorted(t.input.__name__ for t in _ROWS if t.phase is phase))
