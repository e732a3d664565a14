"""Scenarios of the turn loop: tools in parallel, approvals, delegation, guards, budgets,
deadlines, cancel/close, forks, and the effects the shell derives from state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agents.context import build_llm_request, verify_llm_request
from agents.effects import (
    ChildSessionEffect,
    CompactionEffect,
    LlmCallEffect,
    ToolCallEffect,
    child_report,
    failure_outcome,
    next_deadline,
    pending_effects,
    started_effects,
)
from agents.errors import ContractError
from agents.events import (
    ApprovalDenied,
    BudgetExceeded,
    BudgetScope,
    BudgetUnit,
    CancelTurn,
    ChildSessionRequested,
    ChildStatus,
    CloseSession,
    CompleteChildSession,
    CompleteLlmCall,
    CompleteToolCall,
    DecideApproval,
    EffectReissued,
    FailToolCall,
    ForkSession,
    LlmCallCompleted,
    LlmCallRequested,
    PolicyAction,
    SendMessage,
    Tick,
    ToolCallFailed,
    ToolCallRequested,
    ToolUse,
    TurnCompleted,
    TurnFailed,
    Usage,
)
from agents.fold import fold, fork_base
from agents.fsm import decide, fork_source
from agents.pricing import cost_nanos
from agents.state import Phase, expand_context
from tests.unit.test_fsm_support import REGISTRY, Driver, types

CALC = ("c1", "calculator", '{"expression": "6*7"}')
TIME = ("c5", "current_time", "{}")
LS = ("c2", "shell", '{"command": "ls"}')
RM = ("c3", "shell", '{"command": "rm -rf /"}')


def delegate(call_id: str, task: str = "find out") -> tuple[str, str, str]:
    return (call_id, "delegate", f'{{"agent": "researcher", "task": "{task}"}}')


def started(agent: str = "assistant", text: str = "hello") -> Driver:
    d = Driver()
    d.send(SendMessage(text), agent=agent)
    return d


def payloads(events: list, kind: type) -> list:
    return [e.payload for e in events if isinstance(e.payload, kind)]


# --------------------------------------------------------------------------- the loop


def test_full_turn_with_parallel_tools_in_any_order() -> None:
    d = started()
    first_call = d.llm_call_id
    d.answer("let me check", tools=[CALC, TIME])
    assert d.state.phase is Phase.AWAITING_TOOLS
    assert {e.effect_id for e in d.effects()} == {"c1", "c5"}
    # results arrive in the reverse order of the calls
    assert types(d.send(CompleteToolCall("c5", "12:00"))) == ["ToolCallCompleted"]
    events = d.send(CompleteToolCall("c1", "42"))
    assert types(events) == ["ToolCallCompleted", "LlmCallRequested"]
    second = events[-1].payload
    assert second.iteration == 2 and second.call_id != first_call
    events = d.answer("6*7 is 42 and it is noon")
    completed = events[-1].payload
    assert isinstance(completed, TurnCompleted)
    assert completed.answer_seq == events[0].seq and completed.iterations == 2
    assert d.state.phase is Phase.IDLE and d.state.turn is None
    assert pending_effects(d.state) == [] and next_deadline(d.state) is None
    assert fold(d.log, "s1") == d.state

    # the second request shows results in arrival order, after one assistant message
    req = build_llm_request(d.state, second, REGISTRY).to_dict()
    assert [m["role"] for m in req["messages"]] == ["user", "assistant", "user"]
    results = req["messages"][2]["content"]
    assert [(b["tool_use_id"], b["content"]) for b in results] == [("c5", "12:00"), ("c1", "42")]


def test_ids_and_envelopes_are_deterministic() -> None:
    d = started()
    events = d.log
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert all(e.causation_id == "s1-r1" and e.correlation_id == "s1-r1" for e in events)
    assert events[0].turn_id is None and {e.turn_id for e in events[1:]} == {"s1:t1"}
    assert events[3].payload.call_id == "s1/llm/4"
    assert all(e.occurred_at == d.now for e in events)
    # same state + same request -> same events
    replay = Driver()
    req = replay.request(SendMessage("hello"), agent="assistant")
    assert decide(replay.state, req, REGISTRY) == events


def test_usage_and_cost_are_charged_once_per_call() -> None:
    d = started()
    d.answer("calc", tools=[CALC], usage=Usage(1000, 100, 50, 10))
    d.send(CompleteToolCall("c1", "42"))
    d.answer("42", usage=Usage(2000, 20))
    done = d.log[-1].payload
    expected = cost_nanos("scripted-small", Usage(1000, 100, 50, 10)) + cost_nanos(
        "scripted-small", Usage(2000, 20)
    )
    assert done.cost_nanos == expected == d.state.spent_nanos
    assert done.usage == Usage(3000, 120, 50, 10)
    assert d.state.spent_tokens == 3180


def test_mixed_step_with_approval_denial_tool_and_child() -> None:
    d = started()
    events = d.answer("several things", tools=[CALC, LS, RM, delegate("c4")])
    assert types(events) == [
        "LlmCallCompleted",
        "ToolCallRequested",
        "ToolCallRequested",
        "ApprovalRequested",
        "ToolCallRequested",
        "ToolCallFailed",
        "ToolCallRequested",
        "ChildSessionRequested",
    ]
    decisions = {p.call_id: (p.decision, p.rule) for p in payloads(events, ToolCallRequested)}
    assert decisions == {
        "c1": (PolicyAction.ALLOW, None),
        "c2": (PolicyAction.REQUIRE_APPROVAL, "shell-approval"),
        "c3": (PolicyAction.DENY, "no-rm"),
        "c4": (PolicyAction.ALLOW, None),
    }
    assert "destructive" in payloads(events, ToolCallFailed)[0].error
    assert d.state.phase is Phase.AWAITING_APPROVAL  # approval beats tools beats children
    assert {e.effect_id for e in d.effects()} == {"c1", "c4"}  # approvals are not effects
    d.send(CompleteToolCall("c1", "42"))
    assert d.state.phase is Phase.AWAITING_APPROVAL
    d.send(DecideApproval("c2", True, "alice"))
    assert d.state.phase is Phase.AWAITING_TOOLS
    assert {e.effect_id for e in d.effects()} == {"c2", "c4"}
    d.send(CompleteToolCall("c2", "a.txt"))
    assert d.state.phase is Phase.AWAITING_CHILDREN
    events = d.send(
        CompleteChildSession("c4", "s1/child/c4", ChildStatus.COMPLETED, "found", Usage(7, 3), 900)
    )
    assert types(events) == ["ChildSessionCompleted", "LlmCallRequested"]
    assert d.state.spent_nanos == d.log[4].payload.cost_nanos + 900
    messages = build_llm_request(d.state, events[-1].payload, REGISTRY).to_dict()["messages"]
    uses = [b["id"] for b in messages[1]["content"] if b["type"] == "tool_use"]
    answers = {b["tool_use_id"]: b for b in messages[2]["content"]}
    assert uses == ["c1", "c2", "c3", "c4"] and set(answers) == set(uses)
    assert answers["c3"]["is_error"] and answers["c4"]["content"] == "found"


def test_parallel_children_and_a_failed_child_fails_only_its_call() -> None:
    d = started()
    events = d.answer("delegating", tools=[delegate("k1", "a"), delegate("k2", "b")])
    children = payloads(events, ChildSessionRequested)
    assert [(c.child_session_id, c.agent, c.task) for c in children] == [
        ("s1/child/k1", "researcher", "a"),
        ("s1/child/k2", "researcher", "b"),
    ]
    effects = d.effects()
    assert all(isinstance(e, ChildSessionEffect) for e in effects)
    start = effects[0].start_request(d.now)
    assert start.session_id == "s1/child/k1" and start.agent == "researcher"
    assert start.payload == SendMessage("a", parent_session_id="s1", parent_call_id="k1")
    d.send(CompleteChildSession("k2", "s1/child/k2", ChildStatus.FAILED, "no budget"))
    events = d.send(CompleteChildSession("k1", "s1/child/k1", ChildStatus.COMPLETED, "A"))
    request = build_llm_request(d.state, events[-1].payload, REGISTRY).to_dict()
    results = {b["tool_use_id"]: b for b in request["messages"][2]["content"]}
    assert results["k1"] == {
        "type": "tool_result",
        "tool_use_id": "k1",
        "content": "A",
        "is_error": False,
    }
    assert results["k2"]["is_error"] and "failed: no budget" in results["k2"]["content"]


@pytest.mark.parametrize(
    "tool,rule,message",
    [
        (("x1", "launch_missiles", "{}"), "@unknown-tool", "not available to this agent"),
        (("x1", "calculator", "[1, 2]"), "@invalid-arguments", "must be a JSON object"),
        (("x1", "calculator", "{oops"), "@invalid-arguments", "must be a JSON object"),
        (
            ("x1", "delegate", '{"agent": "summarizer", "task": "t"}'),
            "@invalid-delegation",
            "only to 'researcher'",
        ),
        (("x1", "delegate", '{"agent": "researcher"}'), "@invalid-delegation", "non-empty 'task'"),
    ],
)
def test_unusable_tool_calls_are_answered_as_denied(tool: tuple, rule: str, message: str) -> None:
    d = started()
    events = d.answer("try", tools=[tool])
    assert types(events) == [
        "LlmCallCompleted",
        "ToolCallRequested",
        "ToolCallFailed",
        "LlmCallRequested",
    ]
    requested = events[1].payload
    assert requested.decision is PolicyAction.DENY and requested.rule == rule
    assert message in events[2].payload.error


def test_delegation_needing_approval_starts_the_child_on_grant() -> None:
    from tests.unit.test_fsm_support import agent, make_registry

    strict = agent(
        "strict",
        policy={"rules": [{"name": "ask", "tool": "delegate", "action": "require_approval"}]},
    )
    d = Driver(registry=make_registry(strict))
    d.send(SendMessage("go"), agent="strict")
    d.answer("delegating", tools=[delegate("k1")])
    assert d.state.phase is Phase.AWAITING_APPROVAL and d.effects() == []
    events = d.send(DecideApproval("k1", True, "alice"))
    assert types(events) == ["ApprovalGranted", "ChildSessionRequested"]
    assert d.state.phase is Phase.AWAITING_CHILDREN
    assert [type(e) for e in started_effects(events, d.state)] == [ChildSessionEffect]


def test_max_iterations_fails_the_turn() -> None:
    d = started()
    for i in range(4):  # max_iterations = 4
        d.answer("again", tools=[(f"c{i}", "calculator", '{"expression": "1"}')])
        events = d.send(CompleteToolCall(f"c{i}", "1"))
    assert types(events) == ["ToolCallCompleted", "TurnFailed"]
    assert events[-1].payload.error_type == "MaxIterationsExceeded"
    assert d.state.phase is Phase.IDLE and pending_effects(d.state) == []


def test_budget_is_reserved_before_the_call_and_fails_closed() -> None:
    d = Driver()
    # turn_tokens = 3000: the first call reserves ~prefix + message + max_tokens (256)
    events = d.send(SendMessage("hi"), agent="budgeted")
    call = events[-1].payload
    assert isinstance(call, LlmCallRequested)
    assert call.reserved_tokens > 256 and call.reserved_nanos > 0
    d.answer("calc", tools=[CALC], usage=Usage(2600, 100))
    events = d.send(CompleteToolCall("c1", "42"))
    assert types(events) == ["ToolCallCompleted", "BudgetExceeded", "TurnFailed"]
    exceeded = events[1].payload
    assert isinstance(exceeded, BudgetExceeded)
    assert (exceeded.scope, exceeded.unit, exceeded.limit) == (
        BudgetScope.TURN,
        BudgetUnit.TOKENS,
        3000,
    )
    assert exceeded.used == 2700 and exceeded.used + exceeded.requested > 3000
    assert events[-1].payload.error_type == "BudgetExceeded"


def test_session_usd_budget_counts_child_costs() -> None:
    d = Driver()
    d.send(SendMessage("hi"), agent="budgeted")  # session_usd = 0.001 = 1,000,000 nanos
    d.answer("delegating", tools=[delegate("k1")], usage=Usage(10, 10))
    events = d.send(
        CompleteChildSession("k1", "s1/child/k1", ChildStatus.COMPLETED, "x", Usage(1, 1), 990_000)
    )
    assert types(events) == ["ChildSessionCompleted", "BudgetExceeded", "TurnFailed"]
    exceeded = events[1].payload
    assert (exceeded.scope, exceeded.unit) == (BudgetScope.SESSION, BudgetUnit.USD)
    assert exceeded.used == d.state.spent_nanos > 990_000


def test_llm_deadline_reissues_with_the_same_id_then_fails() -> None:
    d = started()
    call_id = d.llm_call_id
    deadline = next_deadline(d.state)
    assert deadline == d.now + timedelta(seconds=60)
    events = d.send(Tick(), advance=60)
    reissued = events[0].payload
    assert isinstance(reissued, EffectReissued)
    assert (reissued.effect_id, reissued.attempt) == (call_id, 2)
    assert reissued.deadline_at == d.now + timedelta(seconds=60)
    effect = d.effects()[0]
    assert (effect.effect_id, effect.attempt, effect.timeout_s) == (call_id, 2, 60.0)
    assert started_effects(events, d.state) == [effect]
    # max_attempts = 2: the next overdue tick fails the call and the turn
    events = d.send(Tick(), advance=61)
    assert types(events) == ["LlmCallFailed", "TurnFailed"]
    assert events[-1].payload.error_type == "DeadlineExceeded"


def test_duplicate_outcome_of_a_reissued_effect_folds_once() -> None:
    d = started()
    call_id = d.llm_call_id
    d.send(Tick(), advance=60)
    first = CompleteLlmCall(call_id, "scripted-small", "answer", usage=Usage(100, 10))
    assert types(d.send(first)) == ["LlmCallCompleted", "TurnCompleted"]
    spent = d.state.spent_nanos
    late = CompleteLlmCall(call_id, "scripted-small", "answer #2", usage=Usage(100, 10))
    events = d.send(late)  # the second attempt's outcome, with its own request id
    assert types(events) == ["RequestRejected"]
    assert d.state.spent_nanos == spent


def test_tool_deadline_reissue_and_timeout() -> None:
    d = started()
    d.answer("calc", tools=[CALC])
    events = d.send(Tick(), advance=30)
    assert [(p.effect_id, p.attempt) for p in payloads(events, EffectReissued)] == [("c1", 2)]
    events = d.send(Tick(), advance=30)
    assert types(events) == ["ToolCallFailed", "LlmCallRequested"]
    assert "timed out" in events[0].payload.error
    # the executor's late answer finds nothing pending
    assert types(d.send(CompleteToolCall("c1", "42"))) == ["RequestRejected"]


def test_granted_tool_gets_its_deadline_from_the_grant() -> None:
    d = started()
    d.answer("ls", tools=[LS])
    d.send(DecideApproval("c2", True, "alice"), advance=50)
    effect = d.effects()[0]
    assert isinstance(effect, ToolCallEffect)
    assert effect.deadline_at == d.now + timedelta(seconds=30)
    assert (effect.tool_name, effect.arguments_json) == ("shell", '{"command": "ls"}')


def test_approval_expires_as_denied() -> None:
    d = started()
    d.answer("ls", tools=[LS, CALC])
    assert next_deadline(d.state) == d.now + timedelta(seconds=30)  # the tool's deadline
    d.send(CompleteToolCall("c1", "2"))
    events = d.send(Tick(), advance=100)
    denied = payloads(events, ApprovalDenied)[0]
    assert denied.expired and denied.call_id == "c2"
    assert types(events) == ["ApprovalDenied", "ToolCallFailed", "LlmCallRequested"]
    assert types(d.send(DecideApproval("c2", True, "late"))) == ["RequestRejected"]


def test_cancel_abandons_pending_effects_and_late_outcomes_are_rejected() -> None:
    d = started()
    d.answer("calc", tools=[CALC, delegate("k1")])
    events = d.send(CancelTurn("user changed their mind"))
    assert types(events) == ["TurnCancelled"]
    assert pending_effects(d.state) == [] and d.state.turn is None
    assert types(d.send(CompleteToolCall("c1", "42"))) == ["RequestRejected"]
    # the next turn's request answers the abandoned tool uses as not completed
    events = d.send(SendMessage("something else"))
    messages = build_llm_request(d.state, events[-1].payload, REGISTRY).to_dict()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    last = messages[-1]["content"]
    assert [b["type"] for b in last] == ["tool_result", "tool_result", "text"]
    assert all(b["is_error"] for b in last[:2]) and last[2]["text"] == "something else"


def test_close_mid_turn_cancels_then_closes_and_accepts_nothing() -> None:
    d = started()
    events = d.send(CloseSession("bye"))
    assert types(events) == ["TurnCancelled", "SessionClosed"]
    for payload in (SendMessage("x"), Tick(), CancelTurn(), CloseSession()):
        assert types(d.send(payload)) == ["RequestRejected"]
    assert d.state.phase is Phase.CLOSED


def test_unknown_session_rejects_everything_but_a_start() -> None:
    d = Driver()
    assert types(d.send(CompleteToolCall("c1", "x"))) == ["RequestRejected"]
    assert d.state.phase is Phase.NEW and d.state.last_seq == 1
    events = d.send(SendMessage("hi"), agent="assistant")
    assert events[0].seq == 2 and types(events)[0] == "SessionStarted"


def test_llm_outcome_from_a_fallback_and_circuits() -> None:
    d = started()
    events = d.send(
        CompleteLlmCall(
            d.llm_call_id,
            "claude-haiku-4-5-20251001",
            "hi",
            usage=Usage(10, 10),
            fallback_used=True,
            circuits_opened=("anthropic/claude-x",),
        )
    )
    assert types(events) == ["ProviderCircuitOpened", "LlmCallCompleted", "TurnCompleted"]
    completed = events[1].payload
    assert isinstance(completed, LlmCallCompleted) and completed.fallback_used
    assert completed.cost_nanos == cost_nanos("claude-haiku-4-5", Usage(10, 10))
    # a model outside the catalog is priced as the requested one, never rejected
    d.send(SendMessage("again"))
    events = d.send(CompleteLlmCall(d.llm_call_id, "mystery-1", "x", usage=Usage(10, 10)))
    assert events[0].payload.cost_nanos == cost_nanos("scripted-small", Usage(10, 10))


# --------------------------------------------------------------------------- requests


def test_executor_rebuilds_the_exact_request_from_state() -> None:
    d = started()
    d.answer("calc", tools=[CALC])
    events = d.send(CompleteToolCall("c1", "42"))
    call = events[-1].payload
    for effect_like in (call, d.state.turn.llm, d.effects()[0]):
        built = verify_llm_request(d.state, effect_like, REGISTRY)
        assert built.digest() == call.request_digest
    # user, assistant, tool use, tool result: one run of entries, one pair
    assert call.context_ranges == (3, 7) and call.context_entries == 4
    assert expand_context(d.state.history, call.context_ranges) == (3, 5, 6, 7)
    # still rebuildable after the session moved on
    d.answer("42")
    assert verify_llm_request(d.state, call, REGISTRY).digest() == call.request_digest


def test_verify_names_what_differs() -> None:
    from tests.unit.test_fsm_support import agent, make_registry

    d = started()
    changed = make_registry(agent("assistant", system_prompt="You are someone else."))
    with pytest.raises(ContractError, match=r"Session s1, LLM call s1/llm/4: the system prompt"):
        verify_llm_request(d.state, d.effects()[0], changed)
    tampered = d.log[-1].payload.__class__(
        **{
            **{f: getattr(d.log[-1].payload, f) for f in d.log[-1].payload.__slots__},
            "request_digest": "0" * 64,
        }
    )
    with pytest.raises(ContractError, match="rebuilt request digest"):
        verify_llm_request(d.state, tampered, REGISTRY)


# --------------------------------------------------------------------------- forks


def test_fork_shares_the_prefix_and_continues_at_at_seq_plus_one() -> None:
    src = started()
    src.answer("first answer")
    src.send(SendMessage("second question"))
    src.answer("second answer")
    at_seq = 6  # after the first TurnCompleted
    prefix = [e for e in src.log if e.seq <= at_seq]
    base = fork_base(fold(prefix, "s1"), "f1")
    fork = Driver(session_id="f1", state=base)
    events = fork.send(ForkSession("s1", at_seq))
    assert types(events) == ["SessionForked"] and events[0].seq == at_seq + 1
    assert fork_source(events[0]) == ("s1", at_seq)
    events = fork.send(SendMessage("another second question"))
    assert events[0].seq == at_seq + 2 and events[0].turn_id == "f1:t2"
    request = build_llm_request(fork.state, events[-1].payload, REGISTRY).to_dict()
    texts = [m["content"][0]["text"] for m in request["messages"]]
    assert texts == ["hello", "first answer", "another second question"]
    # the fork's log folds with its ancestry in front of it
    assert fold(prefix + fork.log, "f1") == fork.state
    assert fork.state.spent_nanos == 0 < src.state.spent_nanos  # the ancestry's cost stays put


def test_fork_mid_turn_drops_the_pending_work() -> None:
    src = started()
    src.answer("calc", tools=[CALC])
    base = fork_base(src.state, "f2")
    fork = Driver(session_id="f2", state=base)
    fork.send(ForkSession("s1", src.state.last_seq, agent="researcher"))
    assert fork.state.phase is Phase.IDLE and fork.state.agent == "researcher"
    assert pending_effects(fork.state) == []
    assert types(fork.send(CompleteToolCall("c1", "42"))) == ["RequestRejected"]
    events = fork.send(SendMessage("go on"))
    request = build_llm_request(fork.state, events[-1].payload, REGISTRY).to_dict()
    result = request["messages"][2]["content"][0]
    assert result["tool_use_id"] == "c1" and result["is_error"]


def test_fold_rejects_a_fork_without_its_ancestry() -> None:
    src = started()
    fork = Driver(session_id="f3", state=fork_base(src.state, "f3"))
    fork.send(ForkSession("s1", 4))
    with pytest.raises(ContractError, match="fork_base"):
        fold(fork.log, "f3")


def test_fold_rejects_gaps_and_foreign_events() -> None:
    d = started()
    with pytest.raises(ContractError, match="expected seq 2, got 3"):
        fold([d.log[0], d.log[2]], "s1")
    other = Driver(session_id="s9")
    other.send(SendMessage("x"), agent="assistant")
    with pytest.raises(ContractError, match="belongs to session s9"):
        fold(d.log + other.log[1:], "s1")


def test_decide_refuses_a_request_for_another_session() -> None:
    d = started()
    req = Driver(session_id="zz").request(Tick())
    with pytest.raises(ContractError, match="state given is session s1"):
        decide(d.state, req, REGISTRY)


# --------------------------------------------------------------------------- effects


def test_pending_effects_after_restart_cover_every_kind() -> None:
    d = started()
    d.answer("mixed", tools=[CALC, delegate("k1"), LS])
    restored = fold(d.log, "s1")  # a new worker's view
    effects = pending_effects(restored)
    assert [(type(e), e.effect_id, e.kind.value) for e in effects] == [
        (ToolCallEffect, "c1", "tool_call"),
        (ChildSessionEffect, "k1", "child_session"),
    ]
    assert all(e.turn_id == "s1:t1" and e.correlation_id == "s1-r1" for e in effects)
    assert isinstance(failure_outcome(effects[0], "boom"), FailToolCall)
    outcome = failure_outcome(effects[1], "boom")
    assert isinstance(outcome, CompleteChildSession) and outcome.status is ChildStatus.FAILED
    llm = pending_effects(fold(started().log, "s1"))[0]
    assert isinstance(llm, LlmCallEffect) and llm.request_digest == llm.requested.request_digest
    assert failure_outcome(llm, "x").call_id == llm.effect_id
    assert not any(isinstance(e, CompactionEffect) for e in effects)


def test_child_reports_its_first_turn_to_the_parent() -> None:
    child = Driver(session_id="s1/child/k1")
    child.send(
        SendMessage("find out", parent_session_id="s1", parent_call_id="k1"), agent="researcher"
    )
    events = child.answer("the answer", usage=Usage(30, 5))
    reports = [child_report(child.state, e) for e in events]
    assert reports[0] is None
    report = reports[-1]
    assert report is not None and report.session_id == "s1"
    assert report.request_id == events[-1].event_id
    assert report.payload == CompleteChildSession(
        "k1",
        "s1/child/k1",
        ChildStatus.COMPLETED,
        "the answer",
        Usage(30, 5),
        cost_nanos("scripted-small", Usage(30, 5)),
    )
    failed = Driver(session_id="s1/child/k2")
    failed.send(SendMessage("t", parent_session_id="s1", parent_call_id="k2"), agent="researcher")
    events = failed.send(CancelTurn("stop"))
    report = child_report(failed.state, events[-1])
    assert report is not None and report.payload.status is ChildStatus.CANCELLED
    # a top-level session reports nothing
    d = started()
    assert all(child_report(d.state, e) is None for e in d.answer("x"))


def test_turn_failed_in_a_child_reports_failure() -> None:
    child = Driver(session_id="s1/child/k1")
    child.send(SendMessage("t", parent_session_id="s1", parent_call_id="k1"), agent="researcher")
    from agents.events import FailLlmCall

    events = child.send(FailLlmCall(child.llm_call_id, "overloaded", "try later"))
    assert isinstance(events[-1].payload, TurnFailed)
    report = child_report(child.state, events[-1])
    assert report is not None and report.payload.status is ChildStatus.FAILED
    assert "overloaded" in report.payload.answer


def test_tool_uses_with_the_same_id_in_later_steps_pair_correctly() -> None:
    # scripted providers may reuse ids across steps; each step answers its own uses
    d = started()
    d.answer("one", tools=[CALC])
    d.send(CompleteToolCall("c1", "first"))
    d.answer("two", tools=[CALC])
    events = d.send(CompleteToolCall("c1", "second"))
    messages = build_llm_request(d.state, events[-1].payload, REGISTRY).to_dict()["messages"]
    results = [m["content"][0]["content"] for m in messages[1:] if m["role"] == "user"]
    assert results == ["first", "second"]


def test_tool_use_record_keeps_arguments_once() -> None:
    d = started()
    events = d.answer("calc", tools=[CALC])
    completed = events[0].payload
    assert completed.tool_call_ids == ("c1",)
    assert not hasattr(completed, "arguments_json")
    assert events[1].payload.arguments_json == CALC[2]
    assert ToolUse(*CALC).arguments_json == CALC[2]


@pytest.mark.parametrize(
    "default,expected,rule",
    [
        ("allow", PolicyAction.REQUIRE_APPROVAL, "@tool-default"),  # the tool is stricter
        ("require_approval", PolicyAction.REQUIRE_APPROVAL, None),
        ("deny", PolicyAction.DENY, None),  # the agent is stricter
    ],
)
def test_shell_asks_for_approval_by_default_unless_the_policy_is_stricter(
    default: str, expected: PolicyAction, rule: str | None
) -> None:
    from tests.unit.test_fsm_support import agent, make_registry

    loose = agent("loose", policy={"default": default}, tools=["shell", "calculator"], delegates=[])
    d = Driver(registry=make_registry(loose))
    d.send(SendMessage("go"), agent="loose")
    events = d.answer("run", tools=[LS, CALC])
    shell, calc = payloads(events, ToolCallRequested)
    assert (shell.decision, shell.rule) == (expected, rule)
    assert calc.decision is (
        PolicyAction.DENY
        if default == "deny"
        else PolicyAction.REQUIRE_APPROVAL
        if default == "require_approval"
        else PolicyAction.ALLOW
    )
