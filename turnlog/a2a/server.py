"""turnlog's agents served over A2A (the `a2a-sdk` server: JSON-RPC, v1.0 and v0.3
method names: message/send, message/stream, tasks/get, tasks/cancel).

Rule: the A2A server is a client of the platform like the CLI: it produces requests and
follows their outcomes, and decides nothing itself. An A2A context is the session
`a2a/<agent>/<contextId>` (named per agent, so a caller cannot reach another agent's
sessions, nor any session not started over A2A); a task is the turn its message starts
(or waits for, queued). The task ends as the turn did: completed with the answer as an
artifact whose metadata carries `turnlog.cost_nanos` and the token usage, failed,
canceled or rejected, with the reason. `tasks/cancel` cancels the turn. Streaming sends
the turn's progress (tool calls, token deltas) as it happens.

Exposure: bound to 127.0.0.1 by default; anywhere else it refuses to start without a
bearer token (TURNLOG_A2A_TOKEN, or TURNLOG_A2A_TOKEN_FILE), which every request but
the agent cards must then carry. Tasks are held in this process's memory (a restart
forgets them; the sessions are in Kafka and Postgres as always).
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
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
    HTTPAuthSecurityScheme,
    Message,
    Role,
    SecurityRequirement,
    SecurityScheme,
    TaskState,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount

from agents.definitions import AgentDefinition, definition_hash
from agents.errors import ContractError
from agents.events import ApprovalRequested, Event, TokenDelta, ToolCallRequested

__all__ = ["A2A_TOKEN_ENV", "TurnExecutor", "build_app", "session_for", "token_from_env"]

A2A_TOKEN_ENV = "TURNLOG_A2A_TOKEN"
COST_KEY = "turnlog"


def session_for(agent: str, context_id: str) -> str:
    """The session of A2A context `context_id` of `agent`."""
    return f"a2a/{agent}/{context_id}"


def token_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The bearer token from TURNLOG_A2A_TOKEN or the file TURNLOG_A2A_TOKEN_FILE names."""
    env = os.environ if environ is None else environ
    value = env.get(A2A_TOKEN_ENV) or None
    path = env.get(f"{A2A_TOKEN_ENV}_FILE") or None
    if value and path:
        raise ContractError(f"Set {A2A_TOKEN_ENV} or {A2A_TOKEN_ENV}_FILE, not both.")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ContractError(
                f"{A2A_TOKEN_ENV}_FILE: cannot read the token file {path}: {exc}"
            ) from exc
    if value is not None and len(value) < 16:
        raise ContractError(f"{A2A_TOKEN_ENV}: the token must be at least 16 characters.")
    return value or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text(message: str) -> Message:
    return Message(message_id="", role=Role.ROLE_AGENT, parts=[new_text_part(message)])


class TurnExecutor(AgentExecutor):
    """One agent's tasks as turns of its sessions, through `client` (turnlog.Client)."""

    def __init__(self, client: Any, agent: str, *, timeout_s: float = 600.0) -> None:
        self.client = client
        self.agent = agent
        self.timeout_s = timeout_s

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        updater = TaskUpdater(event_queue, task_id, context_id)
        if context.current_task is None:
            history = [context.message] if context.message is not None else []
            await event_queue.enqueue_event(
                new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
            )
        parts = list(context.message.parts) if context.message is not None else []
        other = sorted({str(p.WhichOneof("content")) for p in parts} - {"text"})
        if other:  # refused rather than read in part: nothing of a message is dropped
            await updater.reject(
                _text(
                    f"turnlog agents read text; this message also has {', '.join(other)} "
                    "parts. Send their content as text."
                )
            )
            return
        text = context.get_user_input()
        if not text.strip():
            await updater.reject(_text("The message has no text; turnlog agents read text."))
            return
        session = session_for(self.agent, context_id)
        sent = await self.client.send_message(
            text, agent=self.agent, session_id=session, request_id=f"a2a:{task_id}"
        )
        await updater.start_work()

        async def progress(item: Event | TokenDelta) -> None:
            if isinstance(item, TokenDelta):
                if item.text:
                    await updater.add_artifact(
                        [new_text_part(item.text)], artifact_id="answer", append=item.index > 1
                    )
            elif isinstance(item.payload, ToolCallRequested):
                p = item.payload
                await updater.update_status(
                    TaskState.TASK_STATE_WORKING, _text(f"calling tool {p.name}")
                )
            elif isinstance(item.payload, ApprovalRequested):
                a = item.payload
                await updater.update_status(
                    TaskState.TASK_STATE_WORKING,
                    _text(
                        f"waiting for a human to approve {a.tool_name}: turnlog approve "
                        f"{session} {a.call_id}"
                    ),
                )

        try:
            outcome = await self.client.outcome(sent, timeout=self.timeout_s, on_item=progress)
        except TimeoutError as exc:
            await updater.failed(_text(f"No outcome within {self.timeout_s:g}s: {exc}"))
            return
        except Exception as exc:  # an outcome the client could not wait for
            if type(exc).__name__ != "OutcomeTimeout":
                raise
            await updater.failed(
                _text(f"The turn did not end within {self.timeout_s:g}s (session {session}).")
            )
            return
        if outcome.status == "completed":
            usage = outcome.usage
            meta = {
                COST_KEY: {
                    "session_id": session,
                    "cost_nanos": outcome.cost_nanos,
                    "input_tokens": getattr(usage, "input_tokens", 0),
                    "output_tokens": getattr(usage, "output_tokens", 0),
                }
            }
            await updater.add_artifact(
                [new_text_part(outcome.answer or "")],
                artifact_id="answer",
                name="answer",
                metadata=meta,
                last_chunk=True,
            )
            await updater.complete()
        elif outcome.status == "cancelled":
            await updater.cancel(_text(outcome.reason or "The turn was cancelled."))
        elif outcome.status == "rejected":
            await updater.reject(_text(outcome.reason or "The message was rejected."))
        else:
            await updater.failed(_text(outcome.reason or f"The turn ended: {outcome.status}."))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        session = session_for(self.agent, context.context_id or "")
        await self.client.cancel(session, reason="Cancelled over A2A (tasks/cancel).")
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel(_text("Cancelled."))


def agent_card(definition: AgentDefinition, url: str, *, secured: bool) -> AgentCard:
    card = AgentCard(
        name=definition.name,
        description=definition.description or f"turnlog agent {definition.name}",
        version=definition_hash(definition)[:12],  # the version the file defines now
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(
                id=definition.name,
                name=definition.name,
                description=definition.description or definition.system_prompt[:200],
                tags=["turnlog"],
            )
        ],
    )
    if secured:
        card.security_schemes["bearer"].CopyFrom(
            SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="Bearer"))
        )
        card.security_requirements.append(SecurityRequirement(schemes={"bearer": _empty()}))
    return card


def _empty() -> Any:
    from a2a.types import StringList

    return StringList()


def _bearer(token: str | None) -> Callable[[Any], Any]:
    """ASGI middleware: every request but GETs of an agent card carries the token."""

    def wrap(app: Any) -> Any:
        async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if token is not None and scope["type"] == "http":
                request = Request(scope)
                card = request.method == "GET" and request.url.path.endswith("agent-card.json")
                given = request.headers.get("authorization", "").encode()
                if not card and not hmac.compare_digest(given, f"Bearer {token}".encode()):
                    response: Response = JSONResponse(
                        {"error": "A bearer token is required (Authorization: Bearer ...)."},
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                    await response(scope, receive, send)
                    return
            await app(scope, receive, send)

        return guarded

    return wrap


def build_app(
    client: Any,
    definitions: Sequence[AgentDefinition],
    *,
    base_url: str,
    token: str | None = None,
    timeout_s: float = 600.0,
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Any:
    """The ASGI app: one A2A agent per definition, under /agents/<name>/."""
    routes: list[Any] = []
    for d in definitions:
        url = f"{base_url.rstrip('/')}/agents/{d.name}/"
        card = agent_card(d, url, secured=token is not None)
        handler = DefaultRequestHandlerV2(
            agent_executor=TurnExecutor(client, d.name, timeout_s=timeout_s),
            task_store=InMemoryTaskStore(),
            agent_card=card,
        )
        sub = Starlette(
            routes=[
                *create_agent_card_routes(card),
                *create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True),
            ]
        )
        routes.append(Mount(f"/agents/{d.name}", app=sub))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        for start in on_startup:
            await start()
        try:
            yield
        finally:
            for stop in on_shutdown:
                await stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    return _bearer(token)(app)
