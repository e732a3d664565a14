"""delegate_many in the pure core: every mode as a case table over member outcomes, the
stopping of members a race or quorum no longer needs (their cost still counted), member
timeouts, bad arguments denied with a reason, the combined result in the next LLM call,
cancel requests to stopped members, replay and the state codec over an orchestration."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from agents.context import build_llm_request
from agents.effects import ChildSessionEffect, cancel_requests, pending_effects
from agents.events import (
    CancelTurn,
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    CompleteChildSession,
    DecideApproval,
    OrchestrationCompleted,
    OrchestrationMemberCancelled,
    OrchestrationStarted,
    SendMessage,
    Tick,
    ToolCallFailed,
    Usage,
)
from agents.fold import fold
from agents.phases import NEW, track
from agents.state import Phase
from agents.state_codec import state_from_dict, state_to_dict
from projections.fold import fold as project
from projections.rows import Changes
from tests.unit.test_fsm_support import Driver, agent, make_registry, types

REGISTRY = make_registry(
    agent(
        "boss",
        tools=["calculator", "delegate_many"],
        delegates=["researcher", "summarizer"],
    )
)


def many(call_id: str = "o1", **args: Any) -> tuple[str, str, str]:
    body = {"agents": ["researcher", "researcher", "researcher"], "task": "find out"} | args
    return (call_id, "delegate_many", json.dumps(body))


def started(**args: Any) -> tuple[Driver, list[Any]]:
    d = Driver(REGISTRY)
    d.send(SendMessage("go"), agent="boss")
    events = d.answer("fanning out", tools=[many(**args)])
    return d, events


def payloads(events: list[Any], kind: type) -> list[Any]:
    return [e.payload for e in events if isinstance(e.payload, kind)]


def report(d: Driver, i: int, status: ChildStatus, answer: str, cost: int = 1000) -> list[Any]:
    member = f"o1.m{i}"
    return d.send(
        CompleteChildSession(member, f"s1/child/{member}", status, answer, Usage(10, 5), cost)
    )


OK, FAIL, CANCEL = ChildStatus.COMPLETED, ChildStatus.FAILED, ChildStatus.CANCELLED


def test_all_starts_every_member_as_a_child_session_and_combines_every_answer() -> None:
    d, events = started()
    assert types(events) == [
        "LlmCallCompleted",
        "ToolCallRequested",
        "OrchestrationStarted",
        "ChildSessionRequested",
        "ChildSessionRequested",
        "ChildSessionRequested",
    ]
    children = payloads(events, ChildSessionRequested)
    assert [c.child_session_id for c in children] == [f"s1/child/o1.m{i}" for i in range(3)]
    effects = pending_effects(d.state)
    assert [e.effect_id for e in effects] == ["o1.m0", "o1.m1", "o1.m2"]
    assert all(isinstance(e, ChildSessionEffect) for e in effects)
    start = effects[1].start_request(d.now)
    assert start.payload == SendMessage("find out", parent_session_id="s1", parent_call_id="o1.m1")
    assert d.state.phase is Phase.AWAITING_CHILDREN
    assert report(d, 2, OK, "C")[-1].payload.__class__ is ChildSessionCompleted
    report(d, 0, OK, "A")
    events = report(d, 1, OK, "B")
    done = payloads(events, OrchestrationCompleted)[0]
    assert (done.status, done.completed, done.failed, done.cancelled) == ("completed", 3, 0, 0)
    assert done.winner_call_id is None
    # In member order, whatever order the answers came in.
    assert done.result.index("\nA") < done.result.index("\nB") < done.result.index("\nC")
    assert types(events)[-1] == "LlmCallRequested"
    assert d.state.turn is not None and d.state.turn.cost_nanos >= 3000
    messages = build_llm_request(d.state, events[-1].payload, REGISTRY).to_dict()["messages"]
    results = [b for m in messages for b in m["content"] if b.get("type") == "tool_result"]
    assert [r["tool_use_id"] for r in results] == ["o1"] and not results[0]["is_error"]


@pytest.mark.parametrize(
    ("mode", "outcomes", "stopped", "status", "winner"),
    [
        # race: the first completed answer wins; the rest are stopped.
        ("race", [(1, OK, "B")], ["o1.m0", "o1.m2"], "completed", "o1.m1"),
        # race: failures do not win; a later success does.
        ("race", [(0, FAIL, "x"), (2, OK, "C")], ["o1.m1"], "completed", "o1.m2"),
        # race: nobody completes.
        ("race", [(0, FAIL, "x"), (1, FAIL, "y"), (2, FAIL, "z")], [], "failed", None),
        # quorum 2 of 3 with one failing member.
        ("quorum:2", [(0, FAIL, "x"), (1, OK, "B"), (2, OK, "C")], [], "completed", None),
        # quorum 2 reached early: the third is stopped.
        ("quorum:2", [(0, OK, "A"), (2, OK, "C")], ["o1.m1"], "completed", None),
        # quorum 2 out of reach after two failures: the third is stopped.
        ("quorum:2", [(0, FAIL, "x"), (1, FAIL, "y")], ["o1.m2"], "failed", None),
        # all: one failure fails it, with the answers that did come.
        ("all", [(0, OK, "A"), (1, FAIL, "y"), (2, OK, "C")], [], "failed", None),
    ],
)
def test_modes_over_member_outcomes(
    mode: str,
    outcomes: list[tuple[int, ChildStatus, str]],
    stopped: list[str],
    status: str,
    winner: str | None,
) -> None:
    d, _ = started(mode=mode)
    seen: list[Any] = []
    for i, st, answer in outcomes:
        seen += report(d, i, st, answer)
    cancelled = payloads(seen, OrchestrationMemberCancelled)
    assert [c.member_call_id for c in cancelled] == stopped
    assert not payloads(seen, OrchestrationCompleted) or not stopped
    for c in cancelled:  # a stopped member reports its cancel, with the cost it ran up
        i = int(c.member_call_id[-1])
        seen += report(d, i, CANCEL, "cancelled by the parent", cost=777)
    done = payloads(seen, OrchestrationCompleted)
    assert len(done) == 1, types(seen)
    assert (done[0].status, done[0].winner_call_id) == (status, winner)
    assert done[0].cancelled == len(stopped)
    assert d.state.phase is Phase.AWAITING_LLM
    # Every member's cost rolled into the turn, the stopped members' included.
    assert d.state.turn is not None
    assert d.state.turn.cost_nanos >= sum(1000 for _ in outcomes) + 777 * len(stopped)


def test_a_stopped_member_that_answers_anyway_does_not_count() -> None:
    d, _ = started(mode="race")
    events = report(d, 0, OK, "A")
    assert len(payloads(events, OrchestrationMemberCancelled)) == 2
    report(d, 1, OK, "late B")  # finished before the cancel reached it
    done = payloads(report(d, 2, CANCEL, "stopped"), OrchestrationCompleted)[0]
    assert (done.result, done.completed, done.cancelled) == ("A", 1, 2)


def test_sequential_feeds_each_member_the_previous_answer_and_stops_at_a_failure() -> None:
    d, events = started(mode="sequential", agents=["researcher", "summarizer", "researcher"])
    assert [c.call_id for c in payloads(events, ChildSessionRequested)] == ["o1.m0"]
    nxt = payloads(report(d, 0, OK, "facts"), ChildSessionRequested)
    assert [(c.call_id, c.agent) for c in nxt] == [("o1.m1", "summarizer")]
    assert nxt[0].task.endswith("The previous step's result:\nfacts")
    nxt = payloads(report(d, 1, OK, "summary"), ChildSessionRequested)
    assert nxt[0].task.endswith("\nsummary")
    done = payloads(report(d, 2, OK, "final"), OrchestrationCompleted)[0]
    assert (done.status, done.result, done.winner_call_id) == ("completed", "final", "o1.m2")

    d, _ = started(mode="sequential")
    events = report(d, 0, FAIL, "broke")
    assert not payloads(events, ChildSessionRequested)
    done = payloads(events, OrchestrationCompleted)[0]
    assert done.status == "failed" and "broke" in done.result


def test_vote_takes_the_most_frequent_answer() -> None:
    d, _ = started(mode="all", combine="vote")
    report(d, 0, OK, "Paris")
    report(d, 1, OK, "Lyon")
    done = payloads(report(d, 2, OK, "  paris "), OrchestrationCompleted)[0]
    assert done.winner_call_id == "o1.m0"
    assert done.result.startswith("Paris") and "2 of 3" in done.result


def test_a_member_past_its_deadline_is_reissued_then_failed_and_the_orchestration_goes_on() -> None:
    d, _ = started(mode="quorum:2", timeout_s=10)
    report(d, 0, OK, "A")
    events = d.send(Tick(), advance=10)
    assert types(events) == ["EffectReissued", "EffectReissued"]
    events = d.send(Tick(), advance=10)
    failed = payloads(events, ChildSessionCompleted)
    assert [f.call_id for f in failed] == ["o1.m1", "o1.m2"]
    done = payloads(events, OrchestrationCompleted)[0]
    assert (done.status, done.failed) == ("failed", 2)
    assert types(events)[-1] == "LlmCallRequested"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"agents": []}, "non-empty list"),
        ({"agents": ["assistant"]}, "may delegate only to"),
        ({"mode": "quorum:4"}, "1 <= N <= 3"),
        ({"mode": "fastest"}, "mode must be one of"),
        ({"task": " "}, "non-empty 'task'"),
        ({"tasks": ["a", "b"]}, "one non-empty task per agent"),
        ({"combine": "average"}, "combine must be one of"),
    ],
)
def test_bad_arguments_are_denied_with_the_reason(args: dict[str, Any], reason: str) -> None:
    _, events = started(**args)
    failed = payloads(events, ToolCallFailed)
    assert len(failed) == 1 and reason in failed[0].error
    assert not payloads(events, OrchestrationStarted)


def test_cancel_requests_go_to_stopped_members_and_are_not_a_parents_cancel() -> None:
    d, _ = started(mode="race")
    events = report(d, 1, OK, "B")
    stops = [e for e in events if isinstance(e.payload, OrchestrationMemberCancelled)]
    sent = [r for e in stops for r in cancel_requests(e)]
    assert [r.session_id for r in sent] == ["s1/child/o1.m0", "s1/child/o1.m2"]
    assert all(isinstance(r.payload, CancelTurn) and "/cancel/" not in r.request_id for r in sent)
    assert len({r.request_id for r in sent}) == 2


def test_cancelling_the_parents_turn_cancels_the_running_members() -> None:
    d, _ = started()
    report(d, 0, OK, "A")
    events = d.send(CancelTurn(reason="enough"))
    cancelled = events[0].payload
    assert cancelled.child_session_ids == ("s1/child/o1.m1", "s1/child/o1.m2")
    assert cancelled.tool_call_ids == ("o1",)
    assert d.state.phase is Phase.IDLE


def test_an_orchestration_that_needs_approval_starts_when_granted() -> None:
    registry = make_registry(
        agent(
            "boss",
            tools=["delegate_many"],
            delegates=["researcher"],
            policy={
                "rules": [{"name": "ask", "tool": "delegate_many", "action": "require_approval"}]
            },
        )
    )
    d = Driver(registry)
    d.send(SendMessage("go"), agent="boss")
    d.answer("fanning out", tools=[many(agents=["researcher"])])
    assert d.state.phase is Phase.AWAITING_APPROVAL
    events = d.send(DecideApproval("o1", True, "ann"))
    assert types(events) == ["ApprovalGranted", "OrchestrationStarted", "ChildSessionRequested"]


def test_replay_phase_track_and_state_codec_agree_over_an_orchestration() -> None:
    d, _ = started(mode="quorum:2")
    report(d, 0, OK, "A")
    mid = d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(mid)))) == mid
    report(d, 1, OK, "B")
    report(d, 2, CANCEL, "stopped")
    assert fold(d.log, "s1") == d.state
    t = NEW
    for ev in d.log:
        t = track(t, ev.payload)
    assert t.phase is d.state.phase


def test_timeout_of_a_member_is_its_own_allowance_from_its_start() -> None:
    d, events = started(mode="sequential", timeout_s=30)
    assert d.state.turn is not None
    member = next(c for c in d.state.turn.calls if c.call_id == "o1.m0")
    assert member.deadline_at == d.now + timedelta(seconds=30)
    started_at = payloads(events, OrchestrationStarted)[0]
    assert started_at.member_timeout_ms == 30_000


def _project(events: list[Any]) -> tuple[Any, Changes]:
    changes, row = Changes(), None
    for i, ev in enumerate(events):
        row = project(row, ev, changes, partition=0, offset=i, digest=f"d{i}")
    return row, changes


def test_the_projection_holds_the_tree_and_a_cancelled_turn_ends_its_orchestration() -> None:
    d, _ = started(mode="race")
    report(d, 0, FAIL, "x")
    d.send(CancelTurn(reason="enough"))
    row, changes = _project(d.log)
    orch = changes.patches["orchestrations"][("s1", "o1")]
    assert (orch["mode"], orch["status"]) == ("race", "failed")
    assert orch["result"] == "Cancelled with its turn: enough"
    members = changes.patches["orchestration_members"]
    assert {k[1]: v["status"] for k, v in members.items()} == {
        "o1.m0": "failed",
        "o1.m1": "cancelled",
        "o1.m2": "cancelled",
    }
    assert {k[1] for k in changes.patches["tool_calls"]} == {"o1"}  # members are no tool calls
    assert row.phase == "idle" and row.pending_calls == []


def test_all_with_fail_fast_stops_the_others_at_the_first_failure() -> None:
    d, events = started(mode="all", fail_fast=True)
    assert payloads(events, OrchestrationStarted)[0].fail_fast is True
    report(d, 0, OK, "A")
    events = report(d, 1, FAIL, "broke")
    assert [c.member_call_id for c in payloads(events, OrchestrationMemberCancelled)] == ["o1.m2"]
    done = payloads(report(d, 2, CANCEL, "stopped"), OrchestrationCompleted)[0]
    assert (done.status, done.completed, done.failed, done.cancelled) == ("failed", 1, 1, 1)
    # Without fail_fast the others run on after a failure.
    d, _ = started(mode="all")
    assert not payloads(report(d, 1, FAIL, "broke"), OrchestrationMemberCancelled)
