"""Case tables for the transition table: every legal (phase, input) with its resulting
phase and facts, and every illegal (phase, input) answered by one RequestRejected with
the state unchanged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import pytest

from agents.events import (
    REQUEST_TYPES,
    CancelTurn,
    ChildStatus,
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
    ReissueEffect,
    RequestPayload,
    RequestRejected,
    SendMessage,
    SetModel,
    Tick,
    UpgradeAgent,
    Usage,
)
from agents.fold import fork_base
from agents.state import Phase
from agents.transitions import TRANSITIONS
from tests.unit.test_fsm_support import REGISTRY, T0, Driver, agent, make_registry, types

CALC = ("c1", "calculator", '{"expression": "1+1"}')
LS = ("c2", "shell", '{"command": "ls"}')
RM = ("c3", "shell", '{"command": "rm -rf /"}')
DELEGATE = ("c4", "delegate", '{"agent": "researcher", "task": "find out"}')
BIG = "word " * 2_500  # ~3,100 estimated tokens


# --------------------------------------------------------------------------- setups


def new() -> Driver:
    return Driver()


def awaiting_llm(agent: str = "assistant") -> Driver:
    d = Driver()
    d.send(SendMessage("hello"), agent=agent)
    return d


def idle() -> Driver:
    d = awaiting_llm()
    d.answer("hi there")
    return d


def admitting() -> Driver:
    """An idle session of an agent with a shared rate limit, its message waiting."""
    shared = agent("shared", rate_limit={"per": "agent", "requests_per_minute": 2})
    d = Driver(make_registry(shared))
    d.send(SendMessage("hello"), agent="shared")
    return d


def idle_on_old_version() -> Driver:
    """An idle session of `assistant` whose worker now serves a changed definition."""
    d = idle()
    changed = agent("assistant", system_prompt="You are assistant, version two.")
    d.registry = make_registry(changed).with_versions([REGISTRY.get("assistant")])
    return d


def closed() -> Driver:
    d = idle()
    d.send(CloseSession())
    return d


def forking() -> Driver:
    source = idle()
    return Driver(session_id="s2", state=fork_base(source.state, "s2"))


def step(*tools: tuple[str, str, str]) -> Callable[[], Driver]:
    def setup() -> Driver:
        d = awaiting_llm()
        d.answer("working", tools=tools)
        return d

    setup.__name__ = "step_" + "_".join(t[1] for t in tools)
    return setup


def compacting() -> Driver:
    d = awaiting_llm("summarizer")
    d.answer("ok")
    d.send(SendMessage(BIG))
    d.answer("ok")
    d.send(SendMessage(BIG))
    assert d.state.phase is Phase.COMPACTING, d.state.phase
    return d


SETUPS: dict[Phase, Callable[[], Driver]] = {
    Phase.NEW: new,
    Phase.FORKING: forking,
    Phase.IDLE: idle,
    Phase.AWAITING_LLM: awaiting_llm,
    Phase.COMPACTING: compacting,
    Phase.AWAITING_TOOLS: step(CALC),
    Phase.AWAITING_APPROVAL: step(LS),
    Phase.AWAITING_CHILDREN: step(DELEGATE),
    Phase.CLOSED: closed,
    Phase.ADMITTING: admitting,
}


def test_every_phase_has_a_setup() -> None:
    for phase, setup in SETUPS.items():
        assert setup().state.phase is phase


# --------------------------------------------------------------------------- legal


def _llm(d: Driver) -> str:
    return d.llm_call_id


def _child(call_id: str) -> Callable[[Driver], RequestPayload]:
    return lambda d: CompleteChildSession(
        call_id, f"s1/child/{call_id}", ChildStatus.COMPLETED, "answer", Usage(5, 5), 1000
    )


Case = tuple[
    Callable[[], Driver], Callable[[Driver], RequestPayload], dict[str, Any], str, list[str]
]

NEXT = ["LlmCallRequested"]
CASES: list[Case] = [
    (
        new,
        lambda d: SendMessage("hi"),
        {"agent": "assistant"},
        "awaiting_llm",
        ["SessionStarted", "TurnStarted", "UserMessageReceived", "LlmCallRequested"],
    ),
    (forking, lambda d: ForkSession("s1", 6), {}, "idle", ["SessionForked"]),
    (
        idle,
        lambda d: SendMessage("again"),
        {},
        "awaiting_llm",
        ["TurnStarted", "UserMessageReceived", "LlmCallRequested"],
    ),
    (idle, lambda d: Tick(), {"advance": 10_000}, "idle", []),
    (
        admitting,
        lambda d: CompleteAdmission("s1-r1", True),
        {},
        "awaiting_llm",
        ["AdmissionDecided", "TurnStarted", "UserMessageReceived", "LlmCallRequested"],
    ),
    (admitting, lambda d: CancelTurn(), {}, "idle", ["AdmissionDecided"]),
    (admitting, lambda d: CloseSession(), {}, "closed", ["AdmissionDecided", "SessionClosed"]),
    (admitting, lambda d: SetModel("scripted-medium"), {}, "admitting", ["ModelChanged"]),
    (admitting, lambda d: SAMPLES[EnforceBudget], {}, "admitting", ["BudgetLimitReached"]),
    (idle, lambda d: CloseSession(), {}, "closed", ["SessionClosed"]),
    (idle_on_old_version, lambda d: UpgradeAgent(), {}, "idle", ["AgentVersionChanged"]),
    *[
        (SETUPS[p], lambda d: SetModel("scripted-medium"), {}, p.value, ["ModelChanged"])
        for p in (
            Phase.IDLE,
            Phase.AWAITING_LLM,
            Phase.COMPACTING,
            Phase.AWAITING_TOOLS,
            Phase.AWAITING_APPROVAL,
            Phase.AWAITING_CHILDREN,
        )
    ],
    *[
        (
            SETUPS[p],
            lambda d: SAMPLES[EnforceBudget],
            {},
            p.value,
            ["BudgetLimitReached"],
        )
        for p in (
            Phase.IDLE,
            Phase.AWAITING_LLM,
            Phase.COMPACTING,
            Phase.AWAITING_TOOLS,
            Phase.AWAITING_APPROVAL,
            Phase.AWAITING_CHILDREN,
        )
    ],
    (
        awaiting_llm,
        lambda d: CompleteLlmCall(_llm(d), "scripted-small", "final"),
        {},
        "idle",
        ["LlmCallCompleted", "TurnCompleted"],
    ),
    (
        awaiting_llm,
        lambda d: CompleteLlmCall(_llm(d), "scripted-small", "", tool_uses=()),
        {},
        "idle",
        ["LlmCallCompleted", "TurnCompleted"],
    ),
    (
        awaiting_llm,
        lambda d: FailLlmCall(_llm(d), "overloaded", "529"),
        {},
        "idle",
        ["LlmCallFailed", "TurnFailed"],
    ),
    (
        awaiting_llm,
        lambda d: FailLlmCall(_llm(d), "x", "y", circuits_opened=("scripted/m",)),
        {},
        "idle",
        ["ProviderCircuitOpened", "LlmCallFailed", "TurnFailed"],
    ),
    (awaiting_llm, lambda d: Tick(), {"advance": 30}, "awaiting_llm", []),
    (awaiting_llm, lambda d: Tick(), {"advance": 60}, "awaiting_llm", ["EffectReissued"]),
    (awaiting_llm, lambda d: CancelTurn("stop"), {}, "idle", ["TurnCancelled"]),
    (awaiting_llm, lambda d: CloseSession(), {}, "closed", ["TurnCancelled", "SessionClosed"]),
    (
        compacting,
        lambda d: CompleteCompaction(_llm(d), "the gist", "scripted-summarizer"),
        {},
        "awaiting_llm",
        ["ContextCompacted", *NEXT],
    ),
    (
        compacting,
        lambda d: FailLlmCall(_llm(d), "overloaded", "529"),
        {},
        "awaiting_llm",
        ["LlmCallFailed", "ContextCompacted", *NEXT],
    ),
    (compacting, lambda d: Tick(), {"advance": 61}, "compacting", ["EffectReissued"]),
    (compacting, lambda d: CancelTurn(), {}, "idle", ["TurnCancelled"]),
    (compacting, lambda d: CloseSession(), {}, "closed", ["TurnCancelled", "SessionClosed"]),
    (
        step(LS),
        lambda d: DecideApproval("c2", True, "alice"),
        {},
        "awaiting_tools",
        ["ApprovalGranted"],
    ),
    (
        step(LS),
        lambda d: DecideApproval("c2", False, "alice", "no"),
        {},
        "awaiting_llm",
        ["ApprovalDenied", "ToolCallFailed", *NEXT],
    ),
    (step(LS), lambda d: Tick(), {"advance": 99}, "awaiting_approval", []),
    (
        step(LS),
        lambda d: Tick(),
        {"advance": 100},
        "awaiting_llm",
        ["ApprovalDenied", "ToolCallFailed", *NEXT],
    ),
    (
        step(LS, DELEGATE),
        lambda d: DecideApproval("c2", False, "bob"),
        {},
        "awaiting_children",
        ["ApprovalDenied", "ToolCallFailed"],
    ),
    (step(LS), lambda d: CancelTurn(), {}, "idle", ["TurnCancelled"]),
    (step(LS), lambda d: CloseSession(), {}, "closed", ["TurnCancelled", "SessionClosed"]),
    (
        step(LS, CALC),
        lambda d: CompleteToolCall("c1", "2"),
        {},
        "awaiting_approval",
        ["ToolCallCompleted"],
    ),
    (
        step(LS, CALC),
        lambda d: FailToolCall("c1", "boom"),
        {},
        "awaiting_approval",
        ["ToolCallFailed"],
    ),
    (step(LS, DELEGATE), _child("c4"), {}, "awaiting_approval", ["ChildSessionCompleted"]),
    (
        step(CALC),
        lambda d: CompleteToolCall("c1", "2"),
        {},
        "awaiting_llm",
        ["ToolCallCompleted", *NEXT],
    ),
    (
        step(CALC),
        lambda d: FailToolCall("c1", "boom"),
        {},
        "awaiting_llm",
        ["ToolCallFailed", *NEXT],
    ),
    (step(CALC), lambda d: Tick(), {"advance": 30}, "awaiting_tools", ["EffectReissued"]),
    (
        step(CALC, DELEGATE),
        lambda d: CompleteToolCall("c1", "2"),
        {},
        "awaiting_children",
        ["ToolCallCompleted"],
    ),
    (step(CALC, DELEGATE), _child("c4"), {}, "awaiting_tools", ["ChildSessionCompleted"]),
    (step(CALC), lambda d: CancelTurn(), {}, "idle", ["TurnCancelled"]),
    (step(CALC), lambda d: CloseSession(), {}, "closed", ["TurnCancelled", "SessionClosed"]),
    (step(DELEGATE), _child("c4"), {}, "awaiting_llm", ["ChildSessionCompleted", *NEXT]),
    (step(DELEGATE), lambda d: Tick(), {"advance": 200}, "awaiting_children", ["EffectReissued"]),
    (step(DELEGATE), lambda d: CancelTurn(), {}, "idle", ["TurnCancelled"]),
    (step(DELEGATE), lambda d: CloseSession(), {}, "closed", ["TurnCancelled", "SessionClosed"]),
    (
        awaiting_llm,
        lambda d: CompleteLlmCall(_llm(d), "scripted-small", "", tool_uses=_uses(CALC)),
        {},
        "awaiting_tools",
        ["LlmCallCompleted", "ToolCallRequested"],
    ),
    (
        awaiting_llm,
        lambda d: CompleteLlmCall(_llm(d), "scripted-small", "", tool_uses=_uses(LS)),
        {},
        "awaiting_approval",
        ["LlmCallCompleted", "ToolCallRequested", "ApprovalRequested"],
    ),
    (
        awaiting_llm,
        lambda d: CompleteLlmCall(_llm(d), "scripted-small", "", tool_uses=_uses(DELEGATE)),
        {},
        "awaiting_children",
        ["LlmCallCompleted", "ToolCallRequested", "ChildSessionRequested"],
    ),
    (
        awaiting_llm,
        lambda d: CompleteLlmCall(_llm(d), "scripted-small", "", tool_uses=_uses(RM)),
        {},
        "awaiting_llm",
        ["LlmCallCompleted", "ToolCallRequested", "ToolCallFailed", *NEXT],
    ),
    # A message during a turn waits for it, in any turn phase.
    (awaiting_llm, lambda d: SendMessage("next"), {}, "awaiting_llm", ["MessageQueued"]),
    (compacting, lambda d: SendMessage("next"), {}, "compacting", ["MessageQueued"]),
    (step(LS), lambda d: SendMessage("next"), {}, "awaiting_approval", ["MessageQueued"]),
    (step(CALC), lambda d: SendMessage("next"), {}, "awaiting_tools", ["MessageQueued"]),
    (step(DELEGATE), lambda d: SendMessage("next"), {}, "awaiting_children", ["MessageQueued"]),
]


def _uses(*tools: tuple[str, str, str]) -> tuple[Any, ...]:
    from agents.events import ToolUse

    return tuple(ToolUse(*t) for t in tools)


def _case_id(case: Case) -> str:
    setup, _, _, phase, events = case
    return f"{setup.__name__}->{phase}:{'+'.join(events) or 'nothing'}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_transition(case: Case) -> None:
    setup, make, kw, phase, expected = case
    d = setup()
    before = d.state.phase
    payload = make(d)
    events = d.send(payload, **kw)
    assert types(events) == expected
    assert d.state.phase.value == phase
    assert d.state.phase in TRANSITIONS[(before, type(payload))].targets


def test_cases_cover_the_table() -> None:
    covered = set()
    for setup, make, _, _, _ in CASES:
        d = setup()
        covered.add((d.state.phase, type(make(d))))
    missing = sorted(f"{p.value}/{t.__name__}" for p, t in set(TRANSITIONS) - covered)
    assert not missing, f"no case for {missing}"


# --------------------------------------------------------------------------- illegal

SAMPLES: dict[type, RequestPayload] = {
    SendMessage: SendMessage("hi"),
    DecideApproval: DecideApproval("c9", True, "alice"),
    CancelTurn: CancelTurn(),
    CloseSession: CloseSession(),
    ForkSession: ForkSession("s0", 1),
    CompleteLlmCall: CompleteLlmCall("x", "scripted-small", "t"),
    FailLlmCall: FailLlmCall("x", "E", "m"),
    CompleteToolCall: CompleteToolCall("c9", "r"),
    FailToolCall: FailToolCall("c9", "e"),
    CompleteCompaction: CompleteCompaction("x", "s", "scripted-small"),
    CompleteChildSession: CompleteChildSession("c9", "s1/child/c9", ChildStatus.COMPLETED),
    Tick: Tick(),
    UpgradeAgent: UpgradeAgent(),
    SetModel: SetModel("scripted-medium"),
    EnforceBudget: EnforceBudget(
        "agent", "assistant", "2025-01-01", "usd", 1, 2, T0 + timedelta(1)
    ),
    ReissueEffect: ReissueEffect("x", 1),
    CompleteAdmission: CompleteAdmission("x", True),
}
assert set(SAMPLES) == set(REQUEST_TYPES)

ILLEGAL = [
    (phase, kind) for phase in SETUPS for kind in REQUEST_TYPES if (phase, kind) not in TRANSITIONS
]


@pytest.mark.parametrize("phase,kind", ILLEGAL, ids=[f"{p.value}/{k.__name__}" for p, k in ILLEGAL])
def test_illegal_pair_is_rejected(phase: Phase, kind: type) -> None:
    d = SETUPS[phase]()
    before = d.state
    events = d.send(SAMPLES[kind], agent="assistant")
    assert types(events) == ["RequestRejected"]
    rejected = events[0].payload
    assert isinstance(rejected, RequestRejected)
    assert rejected.request_type == kind.__name__
    assert rejected.phase == phase.value
    assert d.state.session_id in rejected.reason
    # check_decision (in Driver.send) proved everything but last_seq unchanged
    assert d.state.phase is (Phase.NEW if phase is Phase.FORKING else before.phase)


# Inputs whose (phase, type) is legal but whose content is not.
BAD: list[tuple[Callable[[], Driver], Callable[[Driver], RequestPayload], dict[str, Any], str]] = [
    (new, lambda d: SendMessage("hi"), {}, "No agent was named"),
    (
        new,
        lambda d: SendMessage("hi"),
        {"agent": "nobody"},
        "Unknown agent 'nobody' (known agents: assistant, budgeted, oldest, researcher, summarizer)",
    ),
    (new, lambda d: SendMessage("   "), {"agent": "assistant"}, "empty"),
    (idle, lambda d: SendMessage("hi"), {"agent": "researcher"}, "belongs to agent 'assistant'"),
    (idle, lambda d: SendMessage("hi", "p", "c"), {}, "delegation must start a new session"),
    (idle, lambda d: UpgradeAgent(), {}, "already runs on version"),
    (idle, lambda d: UpgradeAgent("f00"), {}, "has no version f00"),
    (
        awaiting_llm,
        lambda d: SendMessage("hi", "p", "c"),
        {},
        "delegation must start a new session",
    ),
    (
        awaiting_llm,
        lambda d: CancelTurn(queued_request_id="r-nope"),
        {},
        "no queued message was sent by request r-nope",
    ),
    (forking, lambda d: ForkSession("s1", 5), {}, "the state given is s1 at seq 6"),
    (forking, lambda d: ForkSession("other", 6), {}, "the state given is s1 at seq 6"),
    (forking, lambda d: ForkSession("s1", 6, agent="ghost"), {}, "Unknown agent 'ghost'"),
    (
        awaiting_llm,
        lambda d: CompleteLlmCall("s1/llm/99", "scripted-small", "x"),
        {},
        "LLM call s1/llm/99 is not pending",
    ),
    (awaiting_llm, lambda d: FailLlmCall("nope", "E", "m"), {}, "not pending"),
    (
        compacting,
        lambda d: CompleteCompaction("nope", "s", "scripted-small"),
        {},
        "compaction nope is not pending",
    ),
    (step(LS), lambda d: DecideApproval("c9", True, "alice"), {}, "tool call c9 is not pending"),
    (step(LS), lambda d: CompleteToolCall("c2", "r"), {}, "is waiting for approval"),
    (step(LS, CALC), lambda d: DecideApproval("c1", True, "alice"), {}, "not for an approval"),
    (step(CALC), lambda d: CompleteToolCall("c7", "r"), {}, "tool call c7 is not pending"),
    (
        step(DELEGATE),
        lambda d: CompleteChildSession("c4", "s1/child/zz", ChildStatus.COMPLETED),
        {},
        "not s1/child/zz",
    ),
    (step(DELEGATE, CALC), lambda d: CompleteToolCall("c4", "r"), {}, "not for a tool result"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[3][:40] for c in BAD])
def test_bad_content_is_rejected(case: Any) -> None:
    setup, make, kw, reason = case
    d = setup()
    events = d.send(make(d), **kw)
    assert types(events) == ["RequestRejected"]
    assert reason in events[0].payload.reason


def test_duplicate_request_id_is_rejected_and_changes_nothing() -> None:
    d = awaiting_llm()
    req = d.request(CompleteLlmCall(d.llm_call_id, "scripted-small", "final"))
    assert types(d.send_request(req)) == ["LlmCallCompleted", "TurnCompleted"]
    events = d.send_request(req)
    assert types(events) == ["RequestRejected"]
    assert "duplicate request id" in events[0].payload.reason
    assert d.state.spent_tokens == 0  # usage was zero; and nothing was charged twice


def test_rejected_fork_is_numbered_from_an_empty_session() -> None:
    d = forking()
    events = d.send(ForkSession("s1", 6, agent="ghost"))
    assert events[0].seq == 1
    assert d.state.phase is Phase.NEW and d.state.last_seq == 1 and not d.state.agent


def test_a_time_at_the_end_of_the_calendar_is_rejected_not_raised() -> None:
    from datetime import datetime

    from agents.events import Request

    d = Driver()
    req = Request(
        "late", "s1", datetime.max.replace(tzinfo=UTC), SendMessage("hi"), agent="assistant"
    )
    events = d.send_request(req)
    assert types(events) == ["RequestRejected"]
    assert "leaves no room for its deadlines" in events[0].payload.reason
