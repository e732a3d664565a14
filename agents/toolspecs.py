"""What the model is told about the built-in tools: names, descriptions, JSON schemas.

Rule: declarations only. These specs are part of every LLM request (and so of its
digest), which is why they live in the pure core; the IO implementations live in
agents/tools and must accept these arguments. `delegate` has no implementation there:
the core turns it into a child session of another agent.

`BUILTIN_DEFAULT_ACTIONS` is also a declaration: the policy action a built-in asks for
when no rule of the agent's policy matches a call of it (`shell` needs approval unless a
rule says otherwise). It lives here, not with the tool's implementation, because the
core applies it when it decides; a test checks it against the tools' own declarations
(`ToolRegistry.default_actions()`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from agents.events import PolicyAction
from agents.llm import ToolSpec

__all__ = [
    "BUILTIN_DEFAULT_ACTIONS",
    "BUILTIN_IDEMPOTENT",
    "BUILTIN_TOOL_SPECS",
    "DELEGATE",
    "REMOTE_AGENT_PREFIX",
    "builtin_tool_specs",
]

DELEGATE = "delegate"
# A delegate named "a2a:<url>" is a remote A2A agent (the shell calls it: streams.a2a).
REMOTE_AGENT_PREFIX = "a2a:"


def _obj(properties: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="calculator",
        description=(
            "Evaluate an arithmetic expression exactly as written and return the number. "
            "Supports + - * / // % ** and parentheses, and math functions such as sqrt."
        ),
        input_schema=_obj(
            {"expression": {"type": "string", "description": "e.g. '(3 + 4) * 2'"}},
            ("expression",),
        ),
    ),
    ToolSpec(
        name="current_time",
        description="The current date and time, in ISO 8601, in the given time zone.",
        input_schema=_obj(
            {
                "timezone": {
                    "type": "string",
                    "description": "IANA time zone name, e.g. 'Europe/Paris'. Defaults to UTC.",
                }
            },
            (),
        ),
    ),
    ToolSpec(
        name="read_file",
        description=(
            "Read a UTF-8 text file from the sandbox directory. Large files come in pieces; "
            "continue at the offset the answer names."
        ),
        input_schema=_obj(
            {
                "path": {"type": "string", "description": "Path relative to the sandbox."},
                "offset": {"type": "integer", "minimum": 0, "description": "Byte offset."},
            },
            ("path",),
        ),
    ),
    ToolSpec(
        name="write_file",
        description=(
            "Write a UTF-8 text file in the sandbox directory, replacing it if it exists."
        ),
        input_schema=_obj(
            {
                "path": {"type": "string", "description": "Path relative to the sandbox."},
                "content": {"type": "string", "description": "The complete new text."},
            },
            ("path", "content"),
        ),
    ),
    ToolSpec(
        name="http_get",
        description="Fetch a URL with HTTP GET (allowed hosts only) and return the body as text.",
        input_schema=_obj(
            {"url": {"type": "string", "description": "An http(s) URL."}},
            ("url",),
        ),
    ),
    ToolSpec(
        name="shell",
        description=(
            "Run a shell command in the sandbox directory and return its exit status, "
            "stdout and stderr."
        ),
        input_schema=_obj(
            {
                "command": {"type": "string", "description": "The command line to run."},
                "timeout_s": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": "Seconds before the command is killed.",
                },
            },
            ("command",),
        ),
    ),
    ToolSpec(
        name=DELEGATE,
        description=(
            "Hand a self-contained task to another agent and get its final answer back. "
            "Several delegations in one step run in parallel."
        ),
        input_schema=_obj(
            {
                "agent": {"type": "string", "description": "Name of the agent to delegate to."},
                "task": {
                    "type": "string",
                    "description": "The complete task; the agent sees nothing else.",
                },
            },
            ("agent", "task"),
        ),
    ),
    ToolSpec(
        name="delegate_many",
        description=(
            "Hand one task (or one task each) to several agents at once, as child sessions, "
            "and get their answers back combined. mode: 'all' (every answer), 'race' (the "
            "first answer wins, the others are stopped), 'quorum:N' (N answers, the others "
            "are stopped), 'sequential' (a pipeline: each agent gets the previous answer). "
            "To ask several agents the same question, give 'task' and the 'agents'."
        ),
        input_schema=_obj(
            {
                "agents": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "description": "Names of the agents, in order (an agent may repeat).",
                },
                "mode": {
                    "type": "string",
                    "description": "all | race | quorum:N | sequential (default all).",
                },
                "task": {
                    "type": "string",
                    "description": "The task every agent gets; each sees nothing else.",
                },
                "tasks": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Instead of task: one task per agent, in the same order.",
                },
                "combine": {
                    "type": "string",
                    "enum": ["concatenate", "first", "last", "vote"],
                    "description": "How answers are combined (default by mode).",
                },
                "timeout_s": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "description": "Seconds each agent gets.",
                },
                "fail_fast": {
                    "type": "boolean",
                    "description": "Mode all: stop the others at the first failure.",
                },
            },
            ("agents",),
        ),
    ),
    ToolSpec(
        name="handoff",
        description=(
            "Hand this conversation over to another agent: it continues from here with "
            "everything said so far, and answers the user instead of you."
        ),
        input_schema=_obj(
            {
                "agent": {"type": "string", "description": "Name of the agent to hand over to."},
                "note": {
                    "type": "string",
                    "description": "What the next agent should know or do first.",
                },
            },
            ("agent",),
        ),
    ),
)

# Built-ins that are harmless to run twice for one call (they read, or compute); the
# others change the world (a file written, a command run) and are never re-run blindly
# when their outcome is unknown. A test checks this against the tools' own declarations.
BUILTIN_IDEMPOTENT: frozenset[str] = frozenset(
    {"calculator", "current_time", "read_file", "http_get"}
)

BUILTIN_TOOL_SPECS: Mapping[str, ToolSpec] = MappingProxyType(
    {s.name: replace(s, idempotent=s.name in BUILTIN_IDEMPOTENT) for s in _SPECS}
)

BUILTIN_DEFAULT_ACTIONS: Mapping[str, PolicyAction] = MappingProxyType(
    {"shell": PolicyAction.REQUIRE_APPROVAL}
)


def builtin_tool_specs() -> dict[str, ToolSpec]:
    """A fresh name -> spec dict of the built-in tools (to extend with custom tools)."""
    return dict(BUILTIN_TOOL_SPECS)
