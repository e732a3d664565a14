"""MCP tools in the pure core: decided like any tool (policy rules on name and
arguments, approvals, unknown tools), their specs in the recorded tool-set hash."""

from __future__ import annotations

import mcp_types as types

from agents.definitions import parse_definitions
from agents.effects import ToolCallEffect
from agents.events import (
    ApprovalRequested,
    LlmCallRequested,
    PolicyAction,
    SendMessage,
    ToolCallRequested,
)
from agents.registry import AgentRegistry
from agents.tools import builtin_registry
from agents.tools.mcp.bind import bind_mcp
from agents.tools.mcp.hub import Discovered, McpHub
from tests.unit.test_fsm_support import Driver

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}


def registry() -> AgentRegistry:
    defs, _ = parse_definitions(
        {
            "agents": {
                "ops": {
                    "model": "scripted-small",
                    "system_prompt": "You operate things.",
                    "mcp": {
                        "s": {"command": ["x"], "tools": ["add", "drop"], "idempotent": ["add"]}
                    },
                    "policy": {
                        "default": "allow",
                        "rules": [
                            {
                                "name": "no-500",
                                "tool": "s__add",
                                "action": "deny",
                                "when": [{"arg": "a", "op": "equals", "value": 500}],
                            },
                            {
                                "name": "drops-need-a-human",
                                "tool": "s__dr*",
                                "action": "require_approval",
                            },
                        ],
                    },
                }
            }
        }
    )
    found = {
        "s": Discovered(
            "s",
            (
                types.Tool(name="add", description="Add.", input_schema=SCHEMA),
                types.Tool(name="drop", description="Drop.", input_schema={"type": "object"}),
            ),
        )
    }
    bound, specs = bind_mcp(defs, found, McpHub({}), builtin_registry())
    return AgentRegistry(bound, specs)


def test_mcp_calls_are_decided_by_the_agents_policy() -> None:
    reg = registry()
    d = Driver(reg, session_id="mcp-1")
    started = d.send(SendMessage(text="go"), agent="ops")
    (llm,) = [e.payload for e in started if isinstance(e.payload, LlmCallRequested)]
    assert llm.toolset_hash == reg.info("ops").toolset_hash
    events = d.answer(
        "working",
        tools=[
            ("c1", "s__add", '{"a": 1, "b": 2}'),
            ("c2", "s__drop", "{}"),
            ("c3", "s__add", '{"a": 500, "b": 1}'),
            ("c4", "s__other", "{}"),
        ],
    )
    decided = {
        e.payload.call_id: (e.payload.decision, e.payload.rule)
        for e in events
        if isinstance(e.payload, ToolCallRequested)
    }
    assert decided["c1"] == (PolicyAction.ALLOW, None)
    assert decided["c2"] == (PolicyAction.REQUIRE_APPROVAL, "drops-need-a-human")
    assert decided["c3"] == (PolicyAction.DENY, "no-500")
    assert decided["c4"][0] is PolicyAction.DENY  # not a tool the file allows
    assert [e.payload.call_id for e in events if isinstance(e.payload, ApprovalRequested)] == ["c2"]
    running = [e for e in d.effects() if isinstance(e, ToolCallEffect)]
    assert [(e.effect_id, e.tool_name) for e in running] == [("c1", "s__add")]
    assert reg.is_idempotent("s__add") and not reg.is_idempotent("s__drop")
