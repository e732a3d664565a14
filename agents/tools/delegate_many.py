"""`delegate_many`: hand a task to several agents at once, combined by a mode.

Rule: like `delegate`, this tool is never executed by the registry. The core turns a
`delegate_many` call into an orchestration (agents.orchestration): member child sessions,
started, stopped and combined by the session's own decisions. It is registered here only
so that the model is told about it with the same declaration machinery as every other
tool; the function below answers a direct call with a failure instead of pretending.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from agents.tools.tool import ToolResult

__all__ = ["DELEGATE_MANY_NOT_EXECUTED", "delegate_many", "handoff"]

DELEGATE_MANY_NOT_EXECUTED = (
    "delegate_many is handled by the session worker, which starts child sessions; "
    "it cannot be executed as a tool here."
)


async def delegate_many(
    agents: Annotated[
        list[str],
        Field(description="Names of the agents, in order (an agent may repeat).", min_length=1),
    ],
    mode: Annotated[
        str, Field(description="all | race | quorum:N | sequential (default all).")
    ] = "all",
    task: Annotated[
        str | None, Field(description="The task every agent gets; each sees nothing else.")
    ] = None,
    tasks: Annotated[
        list[str] | None,
        Field(description="Instead of task: one task per agent, in the same order."),
    ] = None,
    combine: Annotated[
        Literal["concatenate", "first", "last", "vote"] | None,
        Field(description="How answers are combined (default by mode)."),
    ] = None,
    timeout_s: Annotated[float | None, Field(description="Seconds each agent gets.", gt=0)] = None,
    fail_fast: Annotated[
        bool, Field(description="Mode all: stop the others at the first failure.")
    ] = False,
) -> ToolResult:
    """Hand a task to several agents and get their answers back combined."""
    return ToolResult(ok=False, content=DELEGATE_MANY_NOT_EXECUTED, error_kind="refused")


async def handoff(
    agent: Annotated[
        str,
        Field(description="Name of the agent to hand over to.", min_length=1, max_length=200),
    ],
    note: Annotated[str, Field(description="What the next agent should know or do first.")] = "",
) -> ToolResult:
    """Hand the conversation to another agent (never executed here either: the core
    records the handoff and the session continues under that agent)."""
    return ToolResult(ok=False, content=DELEGATE_MANY_NOT_EXECUTED, error_kind="refused")
