"""An A2A agent written with the a2a-sdk server, for the tests of turnlog's A2A client.

It echoes the task (`echo: <text>`) as an artifact whose metadata reports tokens and cost
the way turnlog's own A2A server does; "fail" fails the task with a reason; "slow" works
until cancelled (and records the cancel, so a test can see `tasks/cancel` arrive).
"""

from __future__ import annotations

import asyncio
from typing import Any

from a2a.helpers.proto_helpers import new_task, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandlerV2
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Role,
    TaskState,
)
from starlette.applications import Starlette

COST = {"cost_nanos": 1234, "input_tokens": 10, "output_tokens": 5}


class EchoExecutor(AgentExecutor):
    def __init__(self) -> None:
        self.received: list[str] = []
        self.cancelled: list[str] = []

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        history = [context.message] if context.message is not None else []
        await event_queue.enqueue_event(
            new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
        )
        updater = TaskUpdater(event_queue, task_id, context_id)
        text = context.get_user_input()
        self.received.append(text)
        await updater.start_work()
        if "slow" in text:
            await asyncio.sleep(3600)
        if "fail" in text:
            reason = Message(message_id="m", role=Role.ROLE_AGENT, parts=[new_text_part("no")])
            await updater.failed(reason)
            return
        await updater.add_artifact(
            [new_text_part(f"echo: {text}")], name="answer", metadata={"turnlog": COST}
        )
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.cancelled.append(context.task_id or "")
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


def echo_app(url: str) -> tuple[Any, EchoExecutor]:
    card = AgentCard(
        name="echo",
        description="Echoes the task.",
        version="1",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="Echoes.", tags=["test"])],
    )
    executor = EchoExecutor()
    handler = DefaultRequestHandlerV2(
        agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card
    )
    routes = [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")]
    return Starlette(routes=routes), executor
