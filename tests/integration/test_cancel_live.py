"""Cancellation and queueing on the live platform: CancelTurn while an LLM call is in
flight ends the turn at once (TurnCancelled naming the call) and the worker stops the
call; a late outcome of it is charged once; the session takes the next message, and a
message sent during a turn waits for it. Cancelling a delegated child fails only the
parent's tool call for it; cancelling the parent cancels the child.

Real broker, the real session worker (in this process), the scripted model of
tests/data/live/script.yaml; "think slowly" calls are held at a gate until the cancel is
on the log, so the call is provably in flight when cancelled and its outcome provably late.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from agents.events import (
    ApprovalRequested,
    CancelTurn,
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    CompleteLlmCall,
    DecideApproval,
    LlmCallCompleted,
    LlmCallRequested,
    MessageQueued,
    RequestRejected,
    SendMessage,
    ToolCallCompleted,
    TurnCancelled,
    TurnCompleted,
    TurnStarted,
    Usage,
)
from agents.fsm import fold
from streams.topics import TopicNames
from tests.support.live import (
    GatedProvider,
    live_platform,
    load_agents,
    load_script,
    new_session_id,
    payloads,
    turnlog_cli,
)


async def test_cancel_during_an_llm_call_aborts_it_and_a_late_outcome_is_charged_once(
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
        assert cancelled.llm_call_id == slow.call_id
        # The worker stops the call it no longer wants (the provider sees it cancelled,
        # as an SDK's HTTP request is closed), without anyone opening the gate.
        await provider.wait_aborted()
        assert provider.aborted == 1 and not provider.gate.is_set()
        events = live.log.events(session)
        assert next(e for e in events if isinstance(e.payload, TurnCancelled)).causation_id == (
            cancel.request_id
        )

        # The session takes a new message at once.
        await live.client.send(session, SendMessage("quick question"))
        second = await live.log.wait_for_type(session, TurnCompleted)

        # An outcome of the abandoned call still arrives (an executor that did not hear
        # of the cancel in time): its tokens were billed, so they are charged, once.
        late = CompleteLlmCall(slow.call_id, "scripted-small", "finally", usage=Usage(40, 10))
        await live.client.send(session, late)
        charged = await live.log.wait_for_type(
            session, LlmCallCompleted, where=lambda p: p.call_id == slow.call_id
        )
        assert charged.discarded == "late" and charged.text == "" and charged.cost_nanos > 0
        again = await live.client.send(session, late)
        await live.log.wait_for_type(
            session, RequestRejected, where=lambda r: r.request_id == again.request_id
        )

        events = live.log.events(session)
        assert [t.turn_no for t in payloads(events, TurnStarted)] == [1, 2]
        answered = [p for p in payloads(events, LlmCallCompleted) if p.discarded is None]
        assert len(answered) == 1 and "quick question" in answered[0].text
        assert second.cost_nanos == answered[0].cost_nanos > 0
        state = fold(events, session)
        assert state.spent_nanos == answered[0].cost_nanos + charged.cost_nanos
        assert state.turn is None and state.abandoned == ()
        live.worker.assert_alive()


async def test_a_message_during_a_turn_is_queued_and_answered_after_it(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    provider = GatedProvider(load_script("script.yaml"), hold_text="think slowly")
    async with live_platform(
        kafka_bootstrap, names, registry=load_agents(), provider=provider, sandbox=tmp_path
    ) as live:
        session = new_session_id("queue")
        await live.client.send(session, SendMessage("Please think slowly."), agent="slowpoke")
        await provider.wait_held()
        sent = await live.client.send(session, SendMessage("quick question"))
        queued = await live.log.wait_for_type(session, MessageQueued)
        assert queued.position == 1
        # Time travel shows the queue as session state.
        at = next(e.seq for e in live.log.events(session) if isinstance(e.payload, MessageQueued))
        code, out, err = await turnlog_cli(
            kafka_bootstrap, names, "replay", session, "--to", str(at)
        )
        assert code == 0 and f"queued     (position 1) request {sent.request_id}" in out, (
            code,
            out,
            err,
        )
        # `turnlog send` while a turn runs says so (and exits 0).
        code, out, err = await turnlog_cli(
            kafka_bootstrap,
            names,
            "send",
            "--session",
            session,
            "another quick question",
            "--timeout",
            "30",
        )
        assert code == 0 and "queued (position 2)" in out, (code, out, err)
        provider.gate.set()
        await live.log.wait_for_type(session, TurnCompleted, where=lambda t: t.turn_no == 3)
        events = live.log.events(session)
        # The queued turn is the sender's: caused by and correlated with its request.
        second = next(
            e for e in events if isinstance(e.payload, TurnStarted) and e.payload.turn_no == 2
        )
        assert second.causation_id == second.correlation_id == sent.request_id
        answers = [p.text for p in payloads(events, LlmCallCompleted)]
        assert len(answers) == 3 and "quick question" in answers[1]
        started = payloads(events, TurnStarted)
        assert [(t.turn_no, t.queued_seq is not None) for t in started] == [
            (1, False),
            (2, True),
            (3, True),
        ]
        assert fold(events, session).queue == ()
        live.worker.assert_alive()


async def test_cancel_while_waiting_for_approval_and_a_late_decision_is_rejected(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=load_agents(),
        provider=load_script("script.yaml"),
        sandbox=tmp_path,
    ) as live:
        session = new_session_id("cancel-approval")
        await live.client.send(session, SendMessage("approval-pair please"), agent="approver")
        asked = await live.log.wait_for_type(session, ApprovalRequested)
        # Let the auto-allowed calculator finish, so only the approval is outstanding.
        await live.log.wait_for_type(session, ToolCallCompleted)
        # The way a person cancels: `turnlog cancel` (exit 0 once the turn is cancelled).
        code, out, err = await turnlog_cli(
            kafka_bootstrap,
            names,
            "cancel",
            session,
            "--reason",
            "changed my mind",
            "--timeout",
            "30",
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
        # The child's call was stopped by the cancel; the parent hears nothing more.
        await provider.wait_aborted()
        assert len(live.log.of_type(parent, ChildSessionCompleted)) == 1
        assert not live.log.of_type(child.child_session_id, LlmCallCompleted)
        live.worker.assert_alive()


async def test_cancelling_a_parent_cancels_its_children(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    provider = GatedProvider(load_script("script.yaml"), hold_text="think slowly")
    async with live_platform(
        kafka_bootstrap, names, registry=load_agents(), provider=provider, sandbox=tmp_path
    ) as live:
        parent = new_session_id("parent")
        await live.client.send(
            parent, SendMessage("Please delegate the slow thing."), agent="patient"
        )
        child = await live.log.wait_for_type(parent, ChildSessionRequested)
        await live.log.wait_for_type(child.child_session_id, LlmCallRequested)
        await provider.wait_held()
        await live.client.send(parent, CancelTurn(reason="stop it all"))
        cancelled = await live.log.wait_for_type(parent, TurnCancelled)
        assert cancelled.child_session_ids == (child.child_session_id,)
        child_cancelled = await live.log.wait_for_type(child.child_session_id, TurnCancelled)
        assert parent in (child_cancelled.reason or "")
        await provider.wait_aborted()
        # The child's end is not reported back: the parent's turn is over.
        assert not live.log.of_type(parent, ChildSessionCompleted)
        assert not live.log.of_type(parent, RequestRejected)
        live.worker.assert_alive()


def _running(pattern: str) -> bool:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False)
    return found.returncode == 0


async def test_cancel_kills_a_running_tool(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=load_agents(),
        provider=load_script("script.yaml"),
        sandbox=tmp_path,
    ) as live:
        session = new_session_id("cancel-tool")
        await live.client.send(session, SendMessage("run the slow-command"), agent="approver")
        # The shell tool requires approval by default: grant it.
        asked = await live.log.wait_for_type(session, ApprovalRequested)
        await live.client.send(
            session, DecideApproval(call_id=asked.call_id, approved=True, decided_by="ops")
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not _running("sleep 47.25"):  # the command is running (where it lands)
            assert loop.time() < deadline, "the shell command never started"
            await asyncio.sleep(0.1)
        await live.client.send(session, CancelTurn(reason="too slow"))
        cancelled = await live.log.wait_for_type(session, TurnCancelled)
        assert len(cancelled.tool_call_ids) == 1
        deadline = loop.time() + 15
        while _running("sleep 47.25"):
            assert loop.time() < deadline, "the cancelled tool's process is still running"
            await asyncio.sleep(0.1)
        assert not live.log.of_type(session, ToolCallCompleted)
        live.worker.assert_alive()
