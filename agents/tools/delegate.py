"""`delegate`: hand a task to another agent, which runs it as a child session.

Rule: this tool is never executed by the registry. The session worker turns a `delegate`
call into a `ChildSessionRequested` fact and a child session of its own (its own key and
partition); the child's final answer completes the call. It is registered here only so
that the model is told about it with the same declaration machinery as every other tool;
the function below answers a direct call with a failure instead of pretending to delegate.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agents.tools.tool import ToolResult

__all__ = ["DELEGATE_NOT_EXECUTED", "delegate"]

DELEGATE_NOT_EXECUTED = (
    "delegate is handled by the session worker, which starts a child session; "
    "it cannot be executed as a tool here."
)


async def delegate(
    agent: Annotated[
        str,
        Field(description="Name of the agent to hand the task to.", min_length=1, max_length=200),
    ],
    task: Annotated[
        str,
        Field(
            description="The task, written as a complete message to that agent: it sees "
            "nothing of this conversation but this text.",
            min_length=1,
        ),
    ],
) -> ToolResult:
    """Delegate a task to another agent and get its final answer back as this tool's
    result. Several delegations in one step run in parallel."""
    return ToolResult(ok=False, content=DELEGATE_NOT_EXECUTED, error_kind="refused")
