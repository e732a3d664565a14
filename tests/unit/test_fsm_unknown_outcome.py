"""A tool that is not idempotent is never re-run blindly when its outcome is unknown.

Case table: (tool, on_unknown_outcome) -> what a Tick past the call's deadline emits.
An idempotent tool is re-issued as before; a non-idempotent one asks a human (the call
waits for approval again, with the reason) or fails, as the agent says.
"""

from __future__ import annotations

import pytest

from agents.definitions import definition_hash, parse_definitions
from agents.effects import ToolCallEffect
from agents.events import (
    ApprovalRequested,
    CompleteToolCall,
    DecideApproval,
    SendMessage,
    Tick,
    ToolCallFailed,
)
from agents.registry import AgentRegistry
from agents.state import Phase
from agents.toolspecs import BUILTIN_IDEMPOTENT, BUILTIN_TOOL_SPECS
from tests.unit.test_fsm_support import SHELL_RULES, Driver, agent, make_registry, types

CALC = ("c1", "calculator", '{"expression": "6*7"}')
LS = ("c2", "shell", '{"command": "ls"}')

# The shell runs without approval here, so its call is a running effect.
_ALLOW_SHELL = {
    "default": "allow",
    "rules": [r for r in SHELL_RULES if r["action"] == "deny"]
    + [{"name": "shell-runs", "tool": "shell", "action": "allow"}],
}
_DEADLINES = {"llm_s": 60, "tool_s": 30, "approval_s": 100, "child_s": 200, "max_attempts": 2}


def _driver(on_unknown: str | None) -> Driver:
    deadlines = dict(_DEADLINES)
    if on_unknown is not None:
        deadlines["on_unknown_outcome"] = on_unknown
    registry = make_registry(agent("runner", policy=_ALLOW_SHELL, deadlines=deadlines))
    d = Driver(registry)
    d.send(SendMessage("go"), agent="runner")
    return d


@pytest.mark.parametrize(
    ("use", "on_unknown", "expected"),
    [
        (CALC, None, ["EffectReissued"]),
        (CALC, "fail", ["EffectReissued"]),
        (LS, None, ["ApprovalRequested"]),
        (LS, "ask", ["ApprovalRequested"]),
        (LS, "fail", ["ToolCallFailed", "LlmCallRequested"]),
    ],
)
def test_overdue_call_by_idempotency(use: tuple, on_unknown: str | None, expected: list) -> None:
    d = _driver(on_unknown)
    d.answer("run", tools=[use])
    assert [type(e) for e in d.effects()] == [ToolCallEffect]
    before = d.state
    assert types(d.send(Tick(), advance=10)) == []  # not due yet
    assert d.state == before
    events = d.send(Tick(), advance=25)
    assert types(events) == expected
    if expected == ["ApprovalRequested"]:
        asked = events[0].payload
        assert isinstance(asked, ApprovalRequested)
        assert asked.reason is not None and "unknown" in asked.reason
        assert d.state.phase == Phase.AWAITING_APPROVAL
        assert d.effects() == []  # nothing runs until a human decides
    if expected[0] == "ToolCallFailed":
        failed = events[0].payload
        assert isinstance(failed, ToolCallFailed) and "not idempotent" in failed.error


def test_unknown_outcome_granted_runs_the_call_once_more() -> None:
    d = _driver("ask")
    d.answer("run", tools=[LS])
    d.send(Tick(), advance=31)
    events = d.send(DecideApproval("c2", True, "alice", "it did not run: the file is unchanged"))
    assert types(events) == ["ApprovalGranted"]
    [effect] = d.effects()
    assert isinstance(effect, ToolCallEffect) and effect.effect_id == "c2"
    events = d.send(CompleteToolCall("c2", "a.txt"))
    assert "ToolCallCompleted" in types(events)


def test_unknown_outcome_denied_fails_the_call() -> None:
    d = _driver("ask")
    d.answer("run", tools=[LS])
    d.send(Tick(), advance=31)
    events = d.send(DecideApproval("c2", False, "alice", "it ran already"))
    assert types(events)[:2] == ["ApprovalDenied", "ToolCallFailed"]
    assert d.effects()[0].__class__.__name__ == "LlmCallEffect"


def test_once_a_human_is_asked_the_human_decides() -> None:
    # A result arriving after the deadline (the runner kills a call at its deadline, so
    # this is a race at that instant) does not overrule the question already asked.
    d = _driver("ask")
    d.answer("run", tools=[LS])
    d.send(Tick(), advance=31)
    events = d.send(CompleteToolCall("c2", "a.txt"))
    assert types(events) == ["RequestRejected"]
    assert d.state.phase == Phase.AWAITING_APPROVAL


def test_idempotency_is_declared_per_tool() -> None:
    assert {n for n, s in BUILTIN_TOOL_SPECS.items() if s.idempotent} == BUILTIN_IDEMPOTENT
    assert not BUILTIN_TOOL_SPECS["shell"].idempotent
    assert not BUILTIN_TOOL_SPECS["write_file"].idempotent
    data = {
        "agents": {
            "a": {"model": "scripted-small", "system_prompt": "x", "tools": ["lookup", "send_mail"]}
        },
        "tools": {
            "lookup": {"description": "read", "idempotent": True},
            "send_mail": {"description": "write"},
        },
    }
    defs, tools = parse_definitions(data)
    registry = AgentRegistry(defs, tools)
    assert registry.is_idempotent("lookup") and not registry.is_idempotent("send_mail")
    assert not registry.is_idempotent("no-such-tool")
    # What the model sees does not change with the declaration.
    assert "idempotent" not in tools["lookup"].to_dict()


def test_the_new_setting_leaves_existing_definition_hashes_alone() -> None:
    plain = agent("a")
    asked = agent("a", deadlines={**_DEADLINES, "on_unknown_outcome": "ask"})
    failing = agent("a", deadlines={**_DEADLINES, "on_unknown_outcome": "fail"})
    assert definition_hash(plain) == definition_hash(asked)
    assert definition_hash(failing) != definition_hash(plain)
    # The pinned hash of a definition is the one computed before the field existed.
    data = plain.model_dump(mode="json")
    del data["deadlines"]["on_unknown_outcome"]
    for later in ("alert_at", "alert_at_usd", "day_usd"):
        data["budget"].pop(later)  # budget fields added later, left out at their defaults
    for later in (
        "max_queued",
        "on_truncated_tool_call",
        "on_change",
        "mcp",
        "a2a",
        "thinking_budget",
        "team",
        "handoffs",
        "guardrails",
        "output_schema",
        "project",
        "variants",
        "rate_limit",
        "cache",
    ):
        data.pop(later, None)  # fields added later still, left out at their defaults
    from agents.llm import canonical_json, sha256_hex

    assert definition_hash(plain) == sha256_hex(canonical_json(data))
