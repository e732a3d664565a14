"""Cancellation on the live platform: CancelTurn while an LLM call is in flight ends the
turn at once (TurnCancelled); the call's late outcome folds as ignored (no
LlmCallCompleted, no cost); the session takes the next message. Cancelling a delegated
child fails only the parent's tool call for it.

Real broker, the real session worker (in this process), the scripted model of
tests/data/live/script.yaml; "think slowly" calls are held at a gate until the cancel is
on the log, so the call is provably in flight when cancelled and its outcome provably late.
"""

from __future__ import annotations

from pathlib import Path

from agents.events import (
    ApprovalRequested,
    CancelTurn,
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    DecideApproval,
    LlmCallCompleted,
    LlmCallRequested,
    RequestRejected,
    SendMessage,
    ToolCallCompleted,
    TurnCancelled,
    TurnCompleted,
    TurnStarted,
)
from agents.fsm import fold
from streams.topics import TopicNames
from tests.integration.live_support import (
    GatedProvider,
    live_platform,
    load_agents,
    load_script,
    new_session_id,
    payloads,
    turnlog_cli,
)


async def test_cancel_during_an_llm_call_ignores_its_late_outcome_and_the_session_goes_on(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    provider = GatedProvider(load_script("script.yaml"), hold_text="think slowly")
    async with live_platform(
        kafka_bootstrap, names, registry=load_agents(), provider=provider, sandbox=tmp_path
    ) as live:
        session = new_session_id("cancel")
        await live.client.send(session, SendMessage("Please think slowly."), agent="slowpoke")
        slow = await live.log.wait_for_type(session, LlmCallRequested)
        await provider.wait_held()  # the call is at the provider now
        cancel = await live.client.send(session, CancelTurn(reason="user pressed stop"))
        cancelled = await live.log.wait_for_type(session, TurnCancelled)
        assert (cancelled.turn_no, cancelled.reason) == (1, "user pressed stop")
        events = live.log.events(session)
        assert not [p for p in payloads(events, LlmCallCompleted) if p.call_id == slow.call_id]
        assert next(e for e in events if isinstance(e.payload, TurnCancelled)).causation_id == (
            cancel.request_id
        )

        # The session takes a new message at once, while the old call is still out.
        await live.client.send(session, SendMessage("quick question"))
        second = await live.log.wait_for_type(session, TurnCompleted)
        assert provider.held == 1 and not provider.gate.is_set()
        # Now the old call answers: its outcome is late and ignored, with a reason.
        provider.gate.set()
        late = await live.log.wait_for_type(
            session, RequestRejected, where=lambda r: r.request_id.startswith(slow.call_id)
        )
        assert late.request_type == "CompleteLlmCall" and "ignored" in late.reason

        events = live.log.events(session)
        assert not [p for p in payloads(events, LlmCallCompleted) if p.call_id == slow.call_id]
        assert [t.turn_no for t in payloads(events, TurnStarted)] == [1, 2]
        answered = payloads(events, LlmCallCompleted)
        assert len(answered) == 1 and "quick question" in answered[0].text
        # Only the answered call is paid for: by the turn and by the session.
        assert second.cost_nanos == answered[0].cost_nanos > 0
        state = fold(events, session)
        assert state.spent_nanos == answered[0].cost_nanos
        assert state.turn is None
        live.worker.assert_alive()


async def test_cancel_while_waiting_for_approval_and_a_late_decision_is_rejected(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    async with live_platform(
        kafka_bootstrap, names, registry=load_agents(), provider=load_script("script.yaml"),
        sandbox=tmp_path,
    ) as live:
        session = new_session_id("cancel-approval")
        await live.client.send(session, SendMessage("approval-pair please"), agent="approver")
        asked = await live.log.wait_for_type(session, ApprovalRequested)
        # Let the auto-allowed calculator finish, so only the approval is outstanding.
        await live.log.wait_for_type(session, ToolCallCompleted)
        # The way a person cancels: `turnlog cancel` (exit 0 once the turn is cancelled).
        code, out, err = await turnlog_cli(
            kafka_bootstrap, names, "cancel", session, "--reason", "changed my mind",
            "--timeout", "30",
        )
        assert code == 0, (code, out, err)
        cancelled = await live.log.wait_for_type(session, TurnCancelled)
        assert cancelled.reason == "changed my mind"
        late = await live.client.send(
            session, DecideApproval(call_id=asked.call_id, approved=True, decided_by="erin")
        )
        rejected = await live.log.wait_for_type(
            session, RequestRejected, where=lambda r: r.request_id == late.request_id
        )
        assert rejected.phase == "idle"
        events = live.log.events(session)
        assert len(payloads(events, ToolCallCompleted)) == 1  # the calculator only
        assert len(payloads(events, LlmCallRequested)) == 1


async def test_cancelling_a_child_session_fails_only_the_parents_tool_call(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    provider = GatedProvider(load_script("script.yaml"), hold_text="think slowly")
    async with live_platform(
        kafka_bootstrap, names, registry=load_agents(), provider=provider, sandbox=tmp_path
    ) as live:
        parent = new_session_id("patient")
        await live.client.send(
            parent, SendMessage("Please delegate the slow thing."), agent="patient"
        )
        child = await live.log.wait_for_type(parent, ChildSessionRequested)
        await live.log.wait_for_type(child.child_session_id, LlmCallRequested)
        await provider.wait_held()
        # Anyone may cancel the child (it is a session like any other).
        await live.client.send(child.child_session_id, CancelTurn(reason="too slow"))
        await live.log.wait_for_type(child.child_session_id, TurnCancelled)
        done = await live.log.wait_for_type(parent, TurnCompleted)
        events = live.log.events(parent)
        report = payloads(events, ChildSessionCompleted)
        assert [(r.status, r.cost_nanos) for r in report] == [(ChildStatus.CANCELLED, 0)]
        answer = next(e for e in events if e.seq == done.answer_seq).payload
        assert isinstance(answer, LlmCallCompleted)
        assert "cancelled" in answer.text and "too slow" in answer.text
        # The child's abandoned call answers late: the child ignores it, the parent
        # hears nothing more (its call was already answered by the cancellation).
        provider.gate.set()
        await live.log.wait_for_type(child.child_session_id, RequestRejected)
        assert len(live.log.of_type(parent, ChildSessionCompleted)) == 1
        assert not live.log.of_type(child.child_session_id, LlmCallCompleted)
        live.worker.assert_alive()
