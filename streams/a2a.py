"""A remote A2A agent as a delegate: `delegates = ["a2a:<url>"]` in the agent file.

Rule: a delegation to a remote agent is a child effect like a local one, executed here
instead of by a child session: the task is sent with the official a2a-sdk client (the
effect id as the message id, so a re-issue of the same effect is recognisably the same
message), the result comes back to the parent session as `CompleteChildSession` —
completed with the answer (the task's artifacts, else its status message), failed,
cancelled or rejected with the agent's reason — with the tokens and cost the remote
reports in an artifact's `turnlog` metadata (another turnlog reports them; other agents
report nothing, recorded as zero). A cancelled turn cancels the remote task
(`tasks/cancel`, best effort) before the effect ends. Nothing here raises for what the
remote agent does: an unreachable agent or a protocol error is a failed child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import httpx

from agents.events import ChildStatus, CompleteChildSession, Usage
from agents.toolspecs import REMOTE_AGENT_PREFIX

__all__ = ["call_remote_agent", "is_remote_agent"]

_CANCEL_S = 5.0


def is_remote_agent(agent: str) -> bool:
    return agent.startswith(REMOTE_AGENT_PREFIX)


def _text(parts: Any) -> str:
    return "".join(p.text for p in parts if p.HasField("text"))


def _cost(task: Any) -> tuple[Usage, int]:
    for artifact in task.artifacts:
        meta = dict(artifact.metadata).get("turnlog")
        if meta is not None:
            m = dict(meta)
            usage = Usage(
                input_tokens=int(m.get("input_tokens", 0)),
                output_tokens=int(m.get("output_tokens", 0)),
            )
            return usage, max(0, int(m.get("cost_nanos", 0)))
    return Usage(), 0


def _outcome(effect: Any, task: Any) -> CompleteChildSession:
    from a2a.types import TaskState

    state = task.status.state
    said = _text(task.status.message.parts) if task.status.HasField("message") else ""
    answer = "\n".join(t for t in (_text(a.parts) for a in task.artifacts) if t)
    usage, cost = _cost(task)
    status = {
        TaskState.TASK_STATE_COMPLETED: ChildStatus.COMPLETED,
        TaskState.TASK_STATE_CANCELED: ChildStatus.CANCELLED,
    }.get(state, ChildStatus.FAILED)
    if status is ChildStatus.COMPLETED:
        text = answer or said
    else:
        name = TaskState.Name(state).removeprefix("TASK_STATE_").lower()
        text = f"The remote agent's task ended {name}" + (f": {said}" if said else ".")
    return CompleteChildSession(
        call_id=effect.effect_id,
        child_session_id=effect.child_session_id,
        status=status,
        answer=text,
        usage=usage,
        cost_nanos=cost,
    )


def _failed(effect: Any, message: str) -> CompleteChildSession:
    return CompleteChildSession(
        call_id=effect.effect_id,
        child_session_id=effect.child_session_id,
        status=ChildStatus.FAILED,
        answer=message,
    )


def _headers(definition: Any, url: str) -> dict[str, str]:
    """The headers the agent file says this remote agent wants (values from the
    environment: the shell holds the secrets, the file names them)."""
    remote = definition.a2a.get(url) if definition is not None else None
    if remote is None or remote.bearer_token_env is None:
        return {}
    token = os.environ.get(remote.bearer_token_env)
    if not token:
        raise LookupError(
            f"The remote agent {url} wants a bearer token from the environment variable "
            f"{remote.bearer_token_env} (agent file: a2a), which is not set for the worker."
        )
    return {"Authorization": f"Bearer {token}"}


async def call_remote_agent(
    effect: Any, *, timeout_s: float, definition: Any = None
) -> CompleteChildSession:
    """Run one delegation to the remote A2A agent `effect.agent` ("a2a:<url>");
    `definition` (the delegating agent's) says how to authenticate to it."""
    from a2a.client import A2AClientError, ClientConfig, create_client
    from a2a.types import (
        CancelTaskRequest,
        GetTaskRequest,
        Message,
        Part,
        Role,
        SendMessageRequest,
        TaskState,
    )

    url = effect.agent.removeprefix(REMOTE_AGENT_PREFIX)
    terminal = {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
    try:
        headers = _headers(definition, url)
    except LookupError as exc:
        return _failed(effect, str(exc))
    http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30.0, read=None))
    try:
        # Polling: message/send returns the task at once, so a cancel has its id.
        config = ClientConfig(streaming=False, polling=True, httpx_client=http)
        client = await create_client(
            url, client_config=config, resolver_http_kwargs={"headers": headers}
        )
    except (A2AClientError, OSError, ValueError) as exc:
        await http.aclose()
        return _failed(effect, f"The remote agent {url} could not be reached: {exc}")
    task: Any = None
    try:
        message = Message(
            message_id=f"{effect.effect_id}:{effect.attempt}",
            role=Role.ROLE_USER,
            parts=[Part(text=effect.task)],
        )
        async with asyncio.timeout(timeout_s):
            async for response in client.send_message(SendMessageRequest(message=message)):
                if response.HasField("message"):
                    return CompleteChildSession(
                        call_id=effect.effect_id,
                        child_session_id=effect.child_session_id,
                        status=ChildStatus.COMPLETED,
                        answer=_text(response.message.parts),
                    )
                if response.HasField("task"):
                    task = response.task
            while task is not None and task.status.state not in terminal:
                await asyncio.sleep(0.5)
                task = await client.get_task(GetTaskRequest(id=task.id))
        if task is None:
            return _failed(effect, f"The remote agent {url} answered with no task or message.")
        return _outcome(effect, task)
    except TimeoutError:
        return _failed(effect, f"The remote agent {url} did not finish within {timeout_s:g}s.")
    except asyncio.CancelledError:
        if task is not None:  # the turn was cancelled: so is the remote task
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CANCEL_S):
                    await asyncio.shield(client.cancel_task(CancelTaskRequest(id=task.id)))
        raise
    except (A2AClientError, OSError, ValueError) as exc:
        return _failed(effect, f"The remote agent {url} failed: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        with contextlib.suppress(Exception):
            await http.aclose()
