"""A remote A2A agent as a delegate (`delegates = ["a2a:<url>"]`): turnlog's A2A client
against an agent written with the a2a-sdk server (tests/fakes/a2a_server.py), called by
a real session worker on the real broker. The delegation is recorded like a local one
(ChildSessionRequested, ChildSessionCompleted with the answer, tokens and cost), a
failed remote task is a failed child, and cancelling the turn cancels the remote task.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from agents.events import (
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    TurnCancelled,
    TurnCompleted,
)
from streams.topics import TopicNames, ensure_topics
from tests.fakes.a2a_server import COST, echo_app
from tests.support.harness import InProcessWorker, wait_until
from turnlog.client import Client

# The fixtures' loop (session scope): the remote agent a fixture starts keeps serving.
pytestmark = pytest.mark.asyncio(loop_scope="session")

PARTITIONS = 2


def agents_file(url: str) -> str:
    return f"""
[agents.lead]
model = "scripted-small"
system_prompt = "You delegate to the remote agent. (a2a client test)"
tools = ["delegate"]
delegates = ["a2a:{url}"]
max_iterations = 4
[agents.lead.policy]
default = "allow"
"""


def script(url: str) -> str:
    return f"""
defaults: {{latency_ms: 0, chunks: 1}}
rules:
  - name: combine
    when: {{last: tool_result}}
    respond: {{text: "Remote said: {{{{tool_result}}}}"}}
  - name: delegate
    when: {{last: user}}
    respond:
      text: "Asking the remote agent."
      tool_calls:
        - name: delegate
          arguments: {{agent: "a2a:{url}", task: "{{{{user}}}}"}}
otherwise: {{text: "No."}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def remote() -> AsyncIterator[tuple[str, Any]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    app, executor = echo_app(url)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, 20, "the remote A2A agent started")
    try:
        yield url, executor
    finally:
        server.should_exit = True
        await task


async def run(
    kafka_bootstrap: str,
    prefix: str,
    tmp_path: Path,
    url: str,
    text: str,
    session: str,
    *,
    cancel_after: Any = None,
) -> list[Any]:
    names: TopicNames = (await ensure_topics(kafka_bootstrap, prefix, partitions=PARTITIONS)).names
    agents, scripted = tmp_path / "agents.toml", tmp_path / "script.yaml"
    agents.write_text(agents_file(url), encoding="utf-8")
    scripted.write_text(script(url), encoding="utf-8")
    async with (
        InProcessWorker(
            kafka_bootstrap, names, partitions=PARTITIONS, agents=agents, script=scripted
        ),
        Client(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix) as client,
    ):
        sent = await client.send_message(text, agent="lead", session_id=session)
        if cancel_after is not None:
            await wait_until(cancel_after, 30, "the remote task started")
            await client.cancel(session, reason="changed my mind")
        outcome = await client.outcome(sent, timeout=60)
        assert outcome.status in ("completed", "cancelled"), outcome
        return [e.payload for e in await client.session_log(session)]


async def test_a_remote_agent_answers_with_its_cost_recorded(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path, remote: tuple[str, Any]
) -> None:
    url, executor = remote
    log = await run(kafka_bootstrap, unique_prefix, tmp_path, url, "count to three", "a2a-c1")
    (requested,) = [p for p in log if isinstance(p, ChildSessionRequested)]
    assert requested.agent == f"a2a:{url}" and requested.task == "count to three"
    (done,) = [p for p in log if isinstance(p, ChildSessionCompleted)]
    assert done.status is ChildStatus.COMPLETED
    assert done.answer == "echo: count to three"
    assert done.cost_nanos == COST["cost_nanos"]
    assert (done.usage.input_tokens, done.usage.output_tokens) == (10, 5)
    (ended,) = [p for p in log if isinstance(p, TurnCompleted)]
    assert executor.received == ["count to three"]
    assert ended.cost_nanos >= COST["cost_nanos"]  # the child's cost rolls up


async def test_a_failed_remote_task_is_a_failed_child(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path, remote: tuple[str, Any]
) -> None:
    url, _ = remote
    log = await run(kafka_bootstrap, unique_prefix, tmp_path, url, "please fail", "a2a-c2")
    (done,) = [p for p in log if isinstance(p, ChildSessionCompleted)]
    assert done.status is ChildStatus.FAILED
    assert "failed" in done.answer and "no" in done.answer


async def test_cancelling_the_turn_cancels_the_remote_task(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path, remote: tuple[str, Any]
) -> None:
    url, executor = remote
    log = await run(
        kafka_bootstrap,
        unique_prefix,
        tmp_path,
        url,
        "be slow",
        "a2a-c3",
        cancel_after=lambda: executor.received == ["be slow"],
    )
    (cancelled,) = [p for p in log if isinstance(p, TurnCancelled)]
    assert cancelled.child_session_ids == ()  # no local session to send a CancelTurn to
    await wait_until(lambda: len(executor.cancelled) == 1, 15, "the remote task was cancelled")


async def test_an_unreachable_remote_agent_is_a_failed_child(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    log = await run(kafka_bootstrap, unique_prefix, tmp_path, url, "anyone?", "a2a-c4")
    (done,) = [p for p in log if isinstance(p, ChildSessionCompleted)]
    assert done.status is ChildStatus.FAILED and "could not be reached" in done.answer


TWO_AGENTS = """
[agents.lead]
model = "scripted-small"
system_prompt = "You delegate to the remote agent. (a2a client test)"
tools = ["delegate"]
delegates = ["a2a:{url}"]
max_iterations = 4
[agents.lead.policy]
default = "allow"

[agents.helper]
model = "scripted-small"
system_prompt = "You do arithmetic. (a2a helper)"
tools = ["calculator"]
max_iterations = 4
[agents.helper.policy]
default = "allow"
"""

TWO_SCRIPT = """
defaults: {{latency_ms: 0, chunks: 1}}
rules:
  - name: helper-computes
    when: {{system_contains: "a2a helper", last: user}}
    respond:
      text: "Computing."
      tool_calls: [{{name: calculator, arguments: {{expression: "17*23"}}}}]
      usage: {{input_tokens: 100, output_tokens: 10}}
  - name: helper-answers
    when: {{system_contains: "a2a helper", last: tool_result}}
    respond: {{text: "It is {{{{tool_result}}}}.", usage: {{input_tokens: 120, output_tokens: 8}}}}
  - name: lead-combines
    when: {{last: tool_result}}
    respond: {{text: "Remote said: {{{{tool_result}}}}"}}
  - name: lead-delegates
    when: {{last: user}}
    respond:
      text: "Asking the remote agent."
      tool_calls:
        - name: delegate
          arguments: {{agent: "a2a:{url}", task: "what is 17*23?"}}
otherwise: {{text: "No."}}
"""


@pytest.mark.parametrize("secured", [False, True], ids=["loopback", "bearer-token"])
async def test_turnlog_delegates_to_another_turnlogs_a2a_server_with_its_cost(
    kafka_bootstrap: str,
    unique_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    secured: bool,
) -> None:
    """Both ends are turnlog: the lead's worker calls `turnlog a2a serve`'s app (here on
    the same broker), whose helper turn reports its tokens and cost in the answer's
    metadata; the lead records them as the child's and rolls them up. Secured, the
    server wants a token, which the agent file names (a2a.<url>.bearer_token_env) and
    the worker's environment holds."""
    from agents.agentfile import load_definitions
    from turnlog.a2a.server import build_app

    port = free_port()
    url = f"http://127.0.0.1:{port}/agents/helper/"
    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names
    agents, scripted = tmp_path / "agents.toml", tmp_path / "script.yaml"
    token = "remote-token-0123456789" if secured else None
    auth = f'[agents.lead.a2a."{url}"]\nbearer_token_env = "A2A_REMOTE_TOKEN"\n'
    if token is not None:
        monkeypatch.setenv("A2A_REMOTE_TOKEN", token)
    agents.write_text(TWO_AGENTS.format(url=url) + (auth if secured else ""), encoding="utf-8")
    scripted.write_text(TWO_SCRIPT.format(url=url), encoding="utf-8")
    definitions, _ = load_definitions(agents)
    async with (
        InProcessWorker(
            kafka_bootstrap, names, partitions=PARTITIONS, agents=agents, script=scripted
        ),
        Client(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix) as client,
    ):
        app = build_app(
            client, definitions, base_url=f"http://127.0.0.1:{port}", token=token, timeout_s=60
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        try:
            await wait_until(lambda: server.started, 20, "the A2A server started")
            sent = await client.send_message("ask the helper", agent="lead", session_id="a2a-tt")
            outcome = await client.outcome(sent, timeout=60)
        finally:
            server.should_exit = True
            await serving
    assert outcome.status == "completed", outcome
    assert outcome.answer == "Remote said: It is 391."
    log = [e.payload for e in outcome.events]
    (done,) = [p for p in log if isinstance(p, ChildSessionCompleted)]
    assert done.status is ChildStatus.COMPLETED and done.answer == "It is 391."
    assert (done.usage.input_tokens, done.usage.output_tokens) == (220, 18)
    assert done.cost_nanos > 0
    (ended,) = [p for p in log if isinstance(p, TurnCompleted)]
    assert ended.cost_nanos > done.cost_nanos  # the lead's own calls plus the helper's
