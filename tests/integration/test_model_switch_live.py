"""Model switching, extended thinking and image messages on the real broker and Postgres:
a worker subprocess built from settings alone (TURNLOG_PROVIDER=anthropic, the
ANTHROPIC_* / OPENAI_* variables naming the fake Messages and Chat Completions servers,
TURNLOG_BLOB_DIR shared with the CLI), the real CLI as a subprocess, the projector
writing Postgres.

- `turnlog model SESSION gpt-4o` switches a Claude session to OpenAI between turns: the
  next call goes to the other vendor, sessions.model says so, each call is priced at its
  vendor's price, an unknown model is rejected naming the catalog, replay --verify is OK.
- a thinking agent's tool loop: the Messages API fake refuses a follow-up without the
  thinking block, so a completed turn proves the block went back with the tool result.
- `turnlog send --image FILE` (inline) and `--image FILE --by-reference` (blob store):
  the Messages API receives the image bytes; replay --verify rebuilds the same requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import struct
import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agents.events import (
    LlmCallCompleted,
    LlmCallRequested,
    ModelChanged,
    RequestRejected,
    TurnCompleted,
    Usage,
    UserMessageReceived,
)
from agents.pricing import BUILTIN, cost_nanos
from projections.projector import Projector, ProjectorConfig
from streams.topics import ensure_topics
from tests.fakes.anthropic_server import (
    FAKE_API_KEY,
    FakeAnthropicServer,
    FakeMessage,
    FakeToolUse,
    RecordedRequest,
)
from tests.fakes.openai_server import FAKE_OPENAI_KEY, FakeCompletion, FakeOpenAIServer
from tests.support.harness import (
    ROOT,
    EventLog,
    RequestSender,
    WorkerGroup,
    WorkerProcess,
    user_message,
    wait_until,
    worker_env,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLAUDE, GPT = "claude-sonnet-4-5", "gpt-4o"
AGENTS = f"""
[agents.seer]
description = "Looks at images; thinks before it calls a tool."
model = "{CLAUDE}"
system_prompt = "You are a careful assistant. Use the calculator tool for arithmetic."
tools = ["calculator"]
max_iterations = 4
max_tokens = 2048
thinking_budget = 1024

[agents.seer.deadlines]
llm_s = 300
tool_s = 300
"""


def png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00\xff\x00"))
        + chunk(b"IEND", b"")
    )


def claude(request: RecordedRequest) -> FakeMessage:
    """A tool call first, the answer once the tool result is back."""
    last = request.body["messages"][-1]["content"]
    if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
        return FakeMessage("It is 42.", thinking="The calculator said 42.")
    if "calculate" in str(last):
        return FakeMessage(
            "", tool_uses=[FakeToolUse("calculator", {"expression": "6*7"})], thinking="6*7?"
        )
    return FakeMessage("A blue pixel.")


@dataclass
class Run:
    anthropic: FakeAnthropicServer
    openai: FakeOpenAIServer
    env: dict[str, str]
    tmp: Path
    worker: WorkerProcess
    send: RequestSender
    log: EventLog
    database_url: str

    async def turnlog(self, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "turnlog",
            *args,
            env=self.env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    async def turns(self, session: str, count: int) -> list[Any]:
        await self.log.wait_for(
            lambda: self.log.turns_ended(session) >= count,
            60,
            f"{session}: {count} turn(s) ended",
            diagnose=lambda: self.worker.tail() + "\n" + self.log.summary([session]),
        )
        return self.log.of(session)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeAnthropicServer, FakeOpenAIServer]]:
    with (
        FakeAnthropicServer(api_key=FAKE_API_KEY) as anthropic,
        FakeOpenAIServer(api_key=FAKE_OPENAI_KEY) as openai,
    ):
        yield anthropic, openai


@pytest.fixture(scope="module")
async def run(
    kafka_bootstrap: str,
    topic_prefix: str,
    database_url: str,
    servers: tuple[FakeAnthropicServer, FakeOpenAIServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Run]:
    anthropic, openai = servers
    prefix = f"{topic_prefix}ms{secrets.token_hex(3)}."
    names = (await ensure_topics(kafka_bootstrap, prefix, partitions=2)).names
    tmp = tmp_path_factory.mktemp("model-switch")
    (tmp / "agents.toml").write_text(AGENTS)
    env = worker_env(
        kafka_bootstrap,
        prefix,
        partitions=2,
        provider="anthropic",
        sandbox=tmp / "sandbox",
        agents=tmp / "agents.toml",
        extra={
            **anthropic.env(),
            "OPENAI_API_KEY": FAKE_OPENAI_KEY,
            "OPENAI_BASE_URL": f"{openai.base_url}/v1",
            "TURNLOG_BLOB_DIR": str(tmp / "blobs"),
        },
    )
    projector = Projector(
        ProjectorConfig(
            bootstrap=kafka_bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            group_id=None,
        )
    )
    async with (
        WorkerGroup(env, tmp) as group,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        worker = group.start("seer")
        await worker.wait_assigned(at_least=2)
        task = asyncio.create_task(projector.run())
        try:
            yield Run(anthropic, openai, env, tmp, worker, send, log, database_url)
        finally:
            projector.stop()
            await asyncio.wait_for(task, 30)


@pytest.fixture
def fresh(run: Run) -> Run:
    run.anthropic.reset()
    run.openai.reset()
    run.anthropic.respond_with(claude)
    run.openai.respond_with(lambda request: FakeCompletion("OpenAI says 42."))
    return run


async def _row(run: Run, sql: str, args: tuple[Any, ...], ready: Any) -> Any:
    async def fetch() -> Any:
        async with await psycopg.AsyncConnection.connect(run.database_url) as conn:
            cur = await conn.execute(sql, args)
            rows = await cur.fetchall()
        return rows if ready(rows) else None

    return await wait_until(fetch, 60, sql)


async def test_a_session_switches_vendor_mid_session_and_thinks_through_its_tool_loop(
    fresh: Run,
) -> None:
    run, session = fresh, f"switch-{secrets.token_hex(3)}"
    # Turn 1 on Claude, with thinking: tool call, then the answer after the result.
    await run.send.request(user_message(session, "calculate 6*7", agent="seer"))
    await run.turns(session, 1)
    assert run.log.of(session, TurnCompleted)
    first, second = run.anthropic.requests_for(CLAUDE)[:2]
    assert first.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assistant = second.body["messages"][1]["content"]
    assert [b["type"] for b in assistant] == ["thinking", "tool_use"]  # sent back
    calls = [e.payload for e in run.log.of(session, LlmCallCompleted)]
    assert all(c.thinking for c in calls)

    # An unknown model is refused, naming the catalog; nothing changes.
    code, out = await run.turnlog("model", session, "gpt-9000")
    assert code == 5, out
    assert "not in the model catalog" in out and "TURNLOG_MODEL_CATALOG" in out
    code, out = await run.turnlog("model", session, GPT)
    assert code == 0, out
    await run.log.wait_for(lambda: run.log.of(session, ModelChanged), 30, "ModelChanged")
    changed = run.log.of(session, ModelChanged)
    assert [e.payload for e in changed] == [ModelChanged(CLAUDE, GPT)]
    assert len(run.log.of(session, RequestRejected)) == 1

    # Turn 2 goes to OpenAI (thinking is Anthropic's, so it is not asked for there).
    await run.send.request(user_message(session, "and now?", turn=2))
    await run.turns(session, 2)
    requested = [e.payload for e in run.log.of(session, LlmCallRequested)]
    assert requested[-1].model == GPT and requested[0].model == CLAUDE
    assert len(run.openai.requests) == 1
    assert run.log.of(session, TurnCompleted)[-1].payload.answer_seq

    # Postgres: the session's model, each call priced at its own vendor's prices.
    rows = await _row(
        run,
        "SELECT s.model, c.model, c.cost_nanos, c.input_tokens, c.output_tokens, "
        "c.cache_read_tokens, c.cache_write_tokens, c.reasoning_tokens FROM sessions s "
        "JOIN llm_calls c USING (session_id) WHERE s.session_id = %s AND c.status = "
        "'completed' ORDER BY c.requested_seq",
        (session,),
        lambda rows: len(rows) == 3 and rows[0][0] == GPT,
    )
    for _, model, cost, inp, out_t, c_read, c_write, reasoning in rows:
        usage = Usage(inp, out_t, c_read, c_write, reasoning)
        assert cost == cost_nanos(BUILTIN.info(model), usage)
    assert [r[1] for r in rows] == [CLAUDE, CLAUDE, GPT]

    code, out = await run.turnlog("replay", session, "--verify", "--no-timeline")
    assert code == 0 and "verify: OK" in out, out
    code, out = await run.turnlog("replay", session, "--json", "--no-timeline")
    state = json.loads(out)["state"]
    assert state["model"] == GPT
    assert any(e.get("thinking_blocks") for e in state["window"])


async def test_an_image_message_inline_and_by_reference(fresh: Run) -> None:
    run, session = fresh, f"image-{secrets.token_hex(3)}"
    image = run.tmp / "pixel.png"
    image.write_bytes(png_1x1())
    code, out = await run.turnlog(
        "send", "--agent", "seer", "--session", session, "--image", str(image), "what is this?"
    )
    assert code == 0, out
    code, out = await run.turnlog(
        "send", "--session", session, "--image", str(image), "--by-reference", "and this?"
    )
    assert code == 0, out
    await run.turns(session, 2)
    inline, reference = [e.payload for e in run.log.of(session, UserMessageReceived)]
    assert inline.attachments[0].data is not None and inline.attachments[0].name == "pixel.png"
    assert reference.attachments[0].data is None  # in the log by its sha256 only
    assert reference.attachments[0].sha256 == inline.attachments[0].sha256
    # The Messages API got the bytes both times (the second from the blob store).
    last = run.anthropic.requests_for(CLAUDE)[-1].body["messages"]
    images = [b for m in last for b in m["content"] if b.get("type") == "image"]
    assert len(images) == 2
    assert all(base64.b64decode(b["source"]["data"]) == png_1x1() for b in images)

    code, out = await run.turnlog("replay", session, "--verify", "--no-timeline")
    assert code == 0 and "verify: OK" in out, out
    code, out = await run.turnlog("replay", session, "--json", "--no-timeline")
    first = json.loads(out)["state"]["window"][0]
    assert first["attachments"] == [
        {
            "media_type": "image/png",
            "sha256": inline.attachments[0].sha256,
            "name": "pixel.png",
            "inline": True,
        }
    ]
