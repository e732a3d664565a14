"""A session whose model calls an MCP tool, end to end: the real broker, a worker
process (the CLI) whose agent declares the SDK-written test server over stdio, the
scripted model. The call is a tool effect like any other (ToolCallRequested with its
policy decision, then ToolCallCompleted with the server's answer), and the offered tool
set is part of the record: `replay --verify` is OK while the server is unchanged, and
reports the LLM call whose tool set differs once the server's tools changed. A turn
cancelled during a slow MCP call stops it (nothing is reported for it), and the
server goes on serving the worker's next call.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from agents.events import (
    CancelTurn,
    LlmCallRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
)
from streams.topics import TopicNames, ensure_topics
from tests.support.harness import (
    ROOT,
    EventLog,
    RequestSender,
    WorkerGroup,
    WorkerProcess,
    request_for,
    user_message,
    wait_until,
    worker_env,
)

PARTITIONS = 2
FAKES = ROOT / "tests" / "fakes"

AGENTS = f"""
[agents.mcpuser]
model = "scripted-small"
system_prompt = "You add numbers with the MCP server's add tool."
max_iterations = 4
max_tokens = 256
[agents.mcpuser.policy]
default = "allow"
[agents.mcpuser.mcp.fake]
command = [{json.dumps(sys.executable)}, {json.dumps(str(FAKES / "mcp_server.py"))}]
read_only = [{json.dumps(str(FAKES))}]
tools = ["add", "slow"]
env = ["MCP_FAKE_VARIANT"]
idempotent = ["add"]
"""

SCRIPT = """
defaults: {latency_ms: 0, chunks: 1}
rules:
  - name: call-slow
    when: {user_contains: "slowly", last: user}
    respond:
      text: "This takes a while."
      tool_calls:
        - name: fake__slow
          arguments: {seconds: 120, marker: "slow-started"}
  - name: call-add
    when: {last: user}
    respond:
      text: "Adding."
      tool_calls:
        - name: fake__add
          arguments: {a: 2, b: 3}
      usage: {input_tokens: 50, output_tokens: 5}
  - name: answer
    when: {tool_result_of: fake__add}
    respond:
      text: "The sum is {{tool_result}}."
      usage: {input_tokens: 60, output_tokens: 5}
otherwise:
  text: "No."
"""


async def turnlog(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "turnlog",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


async def test_a_model_calls_an_mcp_tool_and_verify_notices_a_changed_server(
    kafka_bootstrap: str, unique_prefix: str, names: TopicNames, tmp_path: Path
) -> None:
    agents, script = tmp_path / "agents.toml", tmp_path / "script.yaml"
    agents.write_text(AGENTS, encoding="utf-8")
    script.write_text(SCRIPT, encoding="utf-8")
    env = worker_env(
        kafka_bootstrap,
        unique_prefix,
        partitions=PARTITIONS,
        agents=agents,
        script=script,
        sandbox=tmp_path / "sandbox",
        extra={"MCP_FAKE_VARIANT": "1", "ANTHROPIC_API_KEY": "sk-ant-never-seen-by-mcp-0000"},
    )
    session, slow, after = "mcp-live-1", "mcp-live-slow", "mcp-live-after"
    async with (
        WorkerGroup(env, tmp_path) as group,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        worker = WorkerProcess(
            "w1", env, tmp_path / "w1.log", argv=("-m", "turnlog", "worker", "session")
        )
        group.workers["w1"] = worker
        worker.start()
        await worker.wait_assigned(at_least=PARTITIONS)
        await send.request(user_message(session, "what is 2+3?", agent="mcpuser"))
        await log.wait_for(
            lambda: log.turns_completed(session) == 1,
            60,
            "the MCP turn completed",
            diagnose=lambda: f"{log.summary([session])}\n{worker.tail()}",
        )

        # A cancelled turn stops its running MCP call: nothing is reported for it, and
        # the server (one process per worker) goes on serving.
        marker = tmp_path / "mcp" / "fake" / "slow-started"
        await send.request(user_message(slow, "add slowly", agent="mcpuser"))
        await wait_until(marker.exists, 60, "the slow MCP call started")
        await send.request(request_for(slow, CancelTurn("enough"), f"{slow}:cancel"))
        await log.wait_for(
            lambda: bool(log.of(slow, TurnCancelled)), 60, "the slow turn was cancelled"
        )
        await send.request(user_message(after, "what is 2+3?", agent="mcpuser"))
        await log.wait_for(
            lambda: log.turns_completed(after) == 1,
            60,
            "an MCP call after the cancel completed",
            diagnose=lambda: f"{log.summary([after])}\n{worker.tail()}",
        )
    assert [e.payload.name for e in log.of(slow, ToolCallRequested)] == ["fake__slow"]
    assert not log.of(slow, ToolCallCompleted)  # the cancelled call reported nothing
    assert [e.payload.result for e in log.of(after, ToolCallCompleted)] == ["5"]

    requested = [e.payload for e in log.of(session, ToolCallRequested)]
    assert [(r.name, json.loads(r.arguments_json), r.decision.value) for r in requested] == [
        ("fake__add", {"a": 2, "b": 3}, "allow")
    ]
    completed = [e.payload for e in log.of(session, ToolCallCompleted)]
    failed = [e.payload.error for e in log.of(session, ToolCallFailed)]
    assert [c.result for c in completed] == ["5"], failed
    done = log.of(session)[-1].payload
    assert isinstance(done, TurnCompleted)
    calls = [e.payload for e in log.of(session, LlmCallRequested)]
    assert len({c.toolset_hash for c in calls}) == 1

    code, out = await turnlog(env, "replay", session, "--verify", "--no-timeline")
    assert code == 0 and "verify: OK" in out, out

    # The server was upgraded: `add` takes a third argument now. The agent file did not
    # change, its tool set did, and verify says where.
    code, out = await turnlog(
        {**env, "MCP_FAKE_VARIANT": "2"}, "replay", session, "--verify", "--no-timeline"
    )
    assert code != 0, out
    assert "toolset_hash" in out or "tool set" in out, out
