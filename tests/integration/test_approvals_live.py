"""Human approval on the live platform: parallel tool calls in one step, some needing
approval, some auto-allowed; decisions arriving as requests from any producer; expiry.

Real broker, the real session worker (in this process), the scripted model of
tests/data/live/script.yaml, the real built-in tools (shell runs `echo` for real).
"""

from __future__ import annotations

from pathlib import Path

from agents.context import build_llm_request
from agents.events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    DecideApproval,
    Event,
    LlmCallCompleted,
    LlmCallRequested,
    PolicyAction,
    RequestRejected,
    SendMessage,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCompleted,
)
from agents.fsm import fold
from agents.llm import ToolResultBlock
from agents.registry import AgentRegistry
from streams.topics import TopicNames
from tests.support.live import (
    Live,
    live_platform,
    load_agents,
    load_script,
    new_session_id,
    payloads,
    turnlog_cli,
)


def _calls_by_name(events: list[Event]) -> dict[str, list[ToolCallRequested]]:
    out: dict[str, list[ToolCallRequested]] = {}
    for p in payloads(events, ToolCallRequested):
        out.setdefault(p.name, []).append(p)
    return out


def _tool_results_sent(events: list[Event], registry: AgentRegistry) -> dict[str, ToolResultBlock]:
    """The tool results the model was sent in the LAST LLM call of the log, rebuilt from
    the log exactly as the effect executor builds it (digest-checked)."""
    last = max((e for e in events if isinstance(e.payload, LlmCallRequested)), key=lambda e: e.seq)
    state = fold([e for e in events if e.seq <= last.seq], last.session_id)
    req = last.payload
    assert isinstance(req, LlmCallRequested)
    request = build_llm_request(state, req, registry)
    assert request.digest() == req.request_digest, "the rebuilt request is not the recorded one"
    blocks = [b for b in request.messages[-1].content if isinstance(b, ToolResultBlock)]
    return {b.call_id: b for b in blocks}


async def _start_and_wait_for_approvals(live: Live, session: str, text: str, n: int) -> None:
    await live.client.send(session, SendMessage(text), agent=live.extra["agent"])
    await live.log.wait_for(
        session,
        lambda evs: len(payloads(evs, ApprovalRequested)) == n,
        f"{n} ApprovalRequested",
    )


async def test_parallel_calls_one_needs_approval_the_other_completes_then_approved_shell_runs(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    registry = load_agents()
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=registry,
        provider=load_script("script.yaml"),
        sandbox=tmp_path,
    ) as live:
        live.extra["agent"] = "approver"
        session = new_session_id("approve")
        await _start_and_wait_for_approvals(live, session, "approval-pair please", 1)
        calls = _calls_by_name(live.log.events(session))
        shell, calc = calls["shell"][0], calls["calculator"][0]
        # One LLM step asked for both; the shell needs approval by the tool's own default
        # (the agent has no rule for it and allows everything else).
        assert shell.llm_call_id == calc.llm_call_id
        assert shell.decision is PolicyAction.REQUIRE_APPROVAL and shell.rule is not None
        assert calc.decision is PolicyAction.ALLOW
        # The auto-allowed call runs while the other waits for a human.
        done = await live.log.wait_for_type(
            session, ToolCallCompleted, where=lambda p: p.call_id == calc.call_id
        )
        assert done.result.strip() == "42"
        events = live.log.events(session)
        assert not payloads(events, TurnCompleted)
        assert not [p for p in payloads(events, ToolCallCompleted) if p.call_id == shell.call_id]

        await live.client.send(
            session, DecideApproval(call_id=shell.call_id, approved=True, decided_by="alice")
        )
        completed = await live.log.wait_for_type(session, TurnCompleted)
        events = live.log.events(session)
        granted = payloads(events, ApprovalGranted)
        assert [(g.call_id, g.decided_by) for g in granted] == [(shell.call_id, "alice")]
        ran = [p for p in payloads(events, ToolCallCompleted) if p.call_id == shell.call_id]
        assert len(ran) == 1 and "shell-ran" in ran[0].result
        # The model saw both results and answered from them.
        answer = next(e for e in events if e.seq == completed.answer_seq).payload
        assert isinstance(answer, LlmCallCompleted)
        assert "shell-ran" in answer.text and "42" in answer.text
        sent = _tool_results_sent(events, registry)
        assert not sent[shell.call_id].is_error and not sent[calc.call_id].is_error
        assert not payloads(events, ToolCallFailed)
        live.worker.assert_alive()


async def test_denied_call_goes_back_to_the_model_as_a_tool_result_saying_so(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    registry = load_agents()
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=registry,
        provider=load_script("script.yaml"),
        sandbox=tmp_path,
    ) as live:
        live.extra["agent"] = "approver"
        session = new_session_id("deny")
        await _start_and_wait_for_approvals(live, session, "approval-pair please", 1)
        shell = _calls_by_name(live.log.events(session))["shell"][0]
        # The way a person denies: the CLI, which waits for the turn to end.
        code, out, err = await turnlog_cli(
            kafka_bootstrap,
            names,
            "deny",
            session,
            shell.call_id,
            "--reason",
            "not on a Friday",
            "--by",
            "bob",
            "--timeout",
            "30",
        )
        assert code == 0, (code, out, err)
        completed = await live.log.wait_for_type(session, TurnCompleted)
        events = live.log.events(session)
        denied = payloads(events, ApprovalDenied)
        assert [(d.call_id, d.decided_by, d.expired) for d in denied] == [
            (shell.call_id, "bob", False)
        ]
        # The shell never ran; its call failed with the decision.
        assert not [p for p in payloads(events, ToolCallCompleted) if p.call_id == shell.call_id]
        failed = [p for p in payloads(events, ToolCallFailed) if p.call_id == shell.call_id]
        assert (
            len(failed) == 1 and "bob" in failed[0].error and "not on a Friday" in failed[0].error
        )
        # What the model was sent: an error tool result saying who denied it and why.
        sent = _tool_results_sent(events, registry)
        assert sent[shell.call_id].is_error
        assert "Denied by bob" in sent[shell.call_id].content
        assert "not on a Friday" in sent[shell.call_id].content
        answer = next(e for e in events if e.seq == completed.answer_seq).payload
        assert isinstance(answer, LlmCallCompleted)
        assert "Denied by bob" in answer.text and "42" in answer.text


async def test_one_approved_one_denied_one_auto_allowed_in_the_same_step(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    registry = load_agents()
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=registry,
        provider=load_script("script.yaml"),
        sandbox=tmp_path,
    ) as live:
        live.extra["agent"] = "approver"
        session = new_session_id("trio")
        await _start_and_wait_for_approvals(live, session, "approval-trio now", 2)
        shells = _calls_by_name(live.log.events(session))["shell"]
        calc = _calls_by_name(live.log.events(session))["calculator"][0]
        first, second = sorted(shells, key=lambda c: "second" in c.arguments_json)
        assert "first-shell" in first.arguments_json and "second-shell" in second.arguments_json
        # Decisions in the opposite order of the calls, from two people.
        await live.client.send(
            session, DecideApproval(call_id=second.call_id, approved=False, decided_by="carol")
        )
        await live.client.send(
            session, DecideApproval(call_id=first.call_id, approved=True, decided_by="dave")
        )
        await live.log.wait_for_type(session, TurnCompleted)
        events = live.log.events(session)
        assert [g.call_id for g in payloads(events, ApprovalGranted)] == [first.call_id]
        assert [d.call_id for d in payloads(events, ApprovalDenied)] == [second.call_id]
        results = {p.call_id: p.result for p in payloads(events, ToolCallCompleted)}
        assert set(results) == {first.call_id, calc.call_id}
        assert "first-shell" in results[first.call_id] and results[calc.call_id].strip() == "5"
        sent = _tool_results_sent(events, registry)
        assert {cid for cid, b in sent.items() if b.is_error} == {second.call_id}
        assert "Denied by carol" in sent[second.call_id].content
        assert set(sent) == {first.call_id, second.call_id, calc.call_id}
        # Exactly two LLM calls: the step, then the answer (no call per decision).
        assert len(payloads(events, LlmCallRequested)) == 2


async def test_unanswered_approval_expires_and_the_model_is_told(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    registry = load_agents()
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=registry,
        provider=load_script("script.yaml"),
        sandbox=tmp_path,
        tick_interval_s=0.2,
    ) as live:
        live.extra["agent"] = "hasty"  # approval_s = 1
        session = new_session_id("expire")
        await _start_and_wait_for_approvals(live, session, "approval-pair please", 1)
        shell = _calls_by_name(live.log.events(session))["shell"][0]
        # Nobody decides: the worker's ticker brings time to the core.
        denied = await live.log.wait_for_type(session, ApprovalDenied, timeout=20)
        assert denied.call_id == shell.call_id and denied.expired
        completed = await live.log.wait_for_type(session, TurnCompleted)
        events = live.log.events(session)
        sent = _tool_results_sent(events, registry)
        assert sent[shell.call_id].is_error and "expired" in sent[shell.call_id].content
        assert not [p for p in payloads(events, ToolCallCompleted) if p.call_id == shell.call_id]
        answer = next(e for e in events if e.seq == completed.answer_seq).payload
        assert isinstance(answer, LlmCallCompleted) and "expired" in answer.text
        # A decision arriving after the expiry changes nothing: it is rejected.
        late = await live.client.send(
            session, DecideApproval(call_id=shell.call_id, approved=True, decided_by="late")
        )
        rejected = await live.log.wait_for_type(
            session, RequestRejected, where=lambda r: r.request_id == late.request_id
        )
        assert rejected.request_type == "DecideApproval"
        assert not payloads(live.log.events(session), ApprovalGranted)


async def test_each_effect_runs_once_the_approved_command_and_every_llm_call(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    """A non-idempotent command must run once per approval, and the provider be asked
    once per LLM call: a second run is a real side effect (and a second bill), even
    though the core folds only the first outcome."""
    registry = load_agents()
    provider = load_script("script.yaml")
    async with live_platform(
        kafka_bootstrap, names, registry=registry, provider=provider, sandbox=tmp_path
    ) as live:
        live.extra["agent"] = "approver"
        session = new_session_id("once")
        await _start_and_wait_for_approvals(live, session, "approval-counted", 1)
        shell = _calls_by_name(live.log.events(session))["shell"][0]
        await live.log.wait_for(
            session, lambda evs: len(payloads(evs, ToolCallCompleted)) == 1, "the calculator"
        )
        await live.client.send(
            session, DecideApproval(call_id=shell.call_id, approved=True, decided_by="alice")
        )
        await live.log.wait_for_type(session, TurnCompleted)
        # The duplicate outcomes a second run would report arrive after the turn: send a
        # marker through the same partition and wait for it, so they are on the log too.
        marker = await live.client.send(
            session, DecideApproval(call_id="marker", approved=False, decided_by="test")
        )
        await live.log.wait_for_type(
            session, RequestRejected, where=lambda r: r.request_id == marker.request_id
        )
        events = live.log.events(session)
        duplicates = [
            r for r in payloads(events, RequestRejected) if r.request_id != marker.request_id
        ]
        assert len(list(tmp_path.glob("ran.*"))) == 1  # the command ran once
        assert provider.calls == len(payloads(events, LlmCallCompleted)) == 2
        assert duplicates == [], duplicates


def test_the_core_applies_the_default_actions_the_tools_declare() -> None:
    """The core's copy of the built-ins' default actions (pure, used when deciding) and
    the tools' own declarations (IO side) are the same table."""
    from agents.tools import builtin_registry
    from agents.toolspecs import BUILTIN_DEFAULT_ACTIONS

    assert dict(BUILTIN_DEFAULT_ACTIONS) == builtin_registry().default_actions()
