"""turnlog's A2A server driven by the official a2a-sdk client, against the real broker
and a session worker (scripted model): agent card, message/send, message/stream,
tasks/get, tasks/cancel; a context is a session, a task a turn, and the cost comes back
in the answer's metadata. Bound elsewhere than loopback it wants a bearer token.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from a2a.client import ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
)

from agents.agentfile import load_definitions
from agents.events import TurnCancelled, TurnCompleted
from streams.topics import TopicNames, ensure_topics
from tests.integration.test_cli_support import cli
from tests.support.harness import InProcessWorker, wait_until
from turnlog.a2a.server import build_app, session_for
from turnlog.client import Client

# The fixtures' loop (session scope): servers started by a fixture keep serving.
pytestmark = pytest.mark.asyncio(loop_scope="session")

PARTITIONS = 2
TOKEN = "a2a-test-token-0123456789"

AGENTS = """
[agents.helper]
description = "Does arithmetic."
model = "scripted-small"
system_prompt = "You do arithmetic with the calculator. (a2a test)"
tools = ["calculator", "shell"]  # shell: approval required (its default)
max_iterations = 4
[agents.helper.policy]
default = "allow"
"""

SCRIPT = """
defaults: {latency_ms: 0, chunks: 2}
rules:
  - name: slow
    when: {user_contains: "take your time", last: user}
    respond: {text: "Thinking for a long while.", latency_ms: 120000}
  - name: list
    when: {user_contains: "list the files", last: user}
    respond:
      text: "Listing."
      tool_calls: [{name: shell, arguments: {command: "ls"}}]
  - name: listed
    when: {tool_result_of: shell}
    respond: {text: "Listed."}
  - name: compute
    when: {user_contains: "17*23", last: user}
    respond:
      text: "Computing."
      tool_calls: [{name: calculator, arguments: {expression: "17*23"}}]
      usage: {input_tokens: 100, output_tokens: 10}
  - name: answer
    when: {tool_result_of: calculator}
    respond:
      text: "It is {{tool_result}}."
      usage: {input_tokens: 120, output_tokens: 8}
otherwise:
  text: "Hello again."
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


async def _serve(app: Any, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, 20, "the A2A server started")
        yield
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def platform(
    kafka_bootstrap: str, unique_prefix: str, names: TopicNames, tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    agents, script = tmp_path / "agents.toml", tmp_path / "script.yaml"
    agents.write_text(AGENTS, encoding="utf-8")
    script.write_text(SCRIPT, encoding="utf-8")
    definitions, _ = load_definitions(agents)
    async with (
        InProcessWorker(
            kafka_bootstrap,
            names,
            partitions=PARTITIONS,
            agents=agents,
            script=script,
            sandbox=tmp_path / "sandbox",
        ),
        Client(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix) as client,
    ):
        servers: dict[str, Any] = {}
        for name, token in (("open", None), ("secured", TOKEN)):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            app = build_app(client, definitions, base_url=base, token=token, timeout_s=60)
            gen = _serve(app, port)
            await gen.__anext__()
            servers[name] = (base, gen)
        try:
            yield {"client": client, **{k: v[0] for k, v in servers.items()}}
        finally:
            for _, gen in servers.values():
                with pytest.raises(StopAsyncIteration):
                    await gen.__anext__()


def user(text: str, context_id: str | None = None) -> SendMessageRequest:
    message = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])
    if context_id:
        message.context_id = context_id
    return SendMessageRequest(message=message)


async def final_task(a2a: Any, request: SendMessageRequest) -> tuple[Task, list[Any]]:
    seen: list[Any] = []
    task: Task | None = None
    async for response in a2a.send_message(request):
        seen.append(response)
        if response.HasField("task"):
            task = response.task
    assert task is not None, seen
    return await a2a.get_task(GetTaskRequest(id=task.id)), seen


def answer_of(task: Task) -> tuple[str, dict[str, Any]]:
    (artifact,) = [a for a in task.artifacts if a.artifact_id == "answer"]
    text = "".join(p.text for p in artifact.parts)
    meta = dict(artifact.metadata).get("turnlog")
    return text, dict(meta) if meta is not None else {}


async def test_message_send_runs_a_turn_and_tasks_get_reports_it(platform: dict) -> None:
    a2a = await create_client(
        f"{platform['open']}/agents/helper/", client_config=ClientConfig(streaming=False)
    )
    card = a2a._card  # the card the client resolved from /.well-known/agent-card.json
    assert card.name == "helper" and card.capabilities.streaming
    task, _ = await final_task(a2a, user("what is 17*23?"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    text, meta = answer_of(task)
    assert text == "It is 391."
    assert meta["cost_nanos"] >= 0 and meta["input_tokens"] == 220
    session = session_for("helper", task.context_id)
    assert meta["session_id"] == session
    log = await platform["client"].session_log(session)
    assert [type(e.payload).__name__ for e in log].count("TurnCompleted") == 1

    # The same context continues the same session: a second turn.
    again, _ = await final_task(a2a, user("hello", task.context_id))
    assert again.context_id == task.context_id and again.id != task.id
    assert answer_of(again)[0] == "Hello again."
    log = await platform["client"].session_log(session)
    assert sum(isinstance(e.payload, TurnCompleted) for e in log) == 2
    await a2a.close()


async def test_a_message_with_a_file_is_rejected_not_read_in_part(platform: dict) -> None:
    a2a = await create_client(
        f"{platform['open']}/agents/helper/", client_config=ClientConfig(streaming=False)
    )
    request = user("what is in this picture?")
    request.message.parts.append(Part(url="https://example.com/p.png", media_type="image/png"))
    task, _ = await final_task(a2a, request)
    assert task.status.state == TaskState.TASK_STATE_REJECTED
    assert "also has url parts" in task.status.message.parts[0].text
    await a2a.close()


async def test_message_stream_sends_progress_then_the_answer(platform: dict) -> None:
    a2a = await create_client(
        f"{platform['open']}/agents/helper/", client_config=ClientConfig(streaming=True)
    )
    task, seen = await final_task(a2a, user("what is 17*23 again?"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    kinds = {r.WhichOneof("payload") for r in seen}
    assert {"status_update", "artifact_update"} <= kinds
    working = [
        r.status_update.status.message.parts[0].text
        for r in seen
        if r.HasField("status_update") and r.status_update.status.message.parts
    ]
    assert "calling tool calculator" in working
    assert answer_of(task)[0] == "It is 391."
    await a2a.close()


async def test_a_stream_says_when_a_turn_waits_for_an_approval(platform: dict) -> None:
    a2a = await create_client(
        f"{platform['open']}/agents/helper/", client_config=ClientConfig(streaming=True)
    )
    said: list[str] = []
    final = None
    async for response in a2a.send_message(user("list the files please")):
        if response.HasField("status_update") and response.status_update.status.message.parts:
            text = response.status_update.status.message.parts[0].text
            said.append(text)
            if text.startswith("waiting for a human to approve shell"):
                _, session, call_id = text.rsplit(" ", 2)
                await platform["client"].approve(session, call_id, by="a2a-test")
        if response.HasField("task"):
            final = response.task
        if response.HasField("status_update"):
            final = response.status_update
    assert any(
        t.startswith("waiting for a human to approve shell: turnlog approve a2a/") for t in said
    )
    assert final is not None and final.status.state == TaskState.TASK_STATE_COMPLETED
    await a2a.close()


async def test_tasks_cancel_cancels_the_turn(platform: dict) -> None:
    a2a = await create_client(
        f"{platform['open']}/agents/helper/",
        client_config=ClientConfig(streaming=False, polling=True),
    )
    request = user("take your time")
    request.configuration.CopyFrom(SendMessageConfiguration(return_immediately=True))
    first = None
    async for response in a2a.send_message(request):
        first = response.task
    assert first is not None
    session = session_for("helper", first.context_id)

    async def turn_started() -> bool:
        log = await platform["client"].session_log(session)
        return any(type(e.payload).__name__ == "LlmCallRequested" for e in log)

    await wait_until(turn_started, 30, "the slow turn asked its model")
    cancelled = await a2a.cancel_task(CancelTaskRequest(id=first.id))
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED

    async def turn_cancelled() -> bool:
        log = await platform["client"].session_log(session)
        return any(isinstance(e.payload, TurnCancelled) for e in log)

    await wait_until(turn_cancelled, 30, "the turn was cancelled")
    await a2a.close()


async def test_a_token_is_required_when_one_is_set(platform: dict) -> None:
    base = platform["secured"]
    async with httpx.AsyncClient() as http:
        card = await http.get(f"{base}/agents/helper/.well-known/agent-card.json")
        assert card.status_code == 200
        assert "bearer" in card.json()["securitySchemes"]
        refused = await http.post(
            f"{base}/agents/helper/",
            json={"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "x"}},
        )
        assert refused.status_code == 401
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        a2a = await create_client(
            f"{base}/agents/helper/",
            client_config=ClientConfig(streaming=False, httpx_client=http),
        )
        task, _ = await final_task(a2a, user("what is 17*23?"))
        assert answer_of(task)[0] == "It is 391."


async def test_serving_beyond_loopback_without_a_token_is_refused() -> None:
    result = await asyncio.to_thread(
        cli,
        {"TURNLOG_A2A_TOKEN": "", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        "a2a",
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
    )
    said = f"{result.output}{result.exception}"
    assert result.exit_code == 1
    assert "TURNLOG_A2A_TOKEN" in said and "not a loopback address" in said
