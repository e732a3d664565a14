"""A fallback chain that crosses vendors, end to end: worker subprocess → the real
anthropic, openai SDKs → HTTP → fake Messages and Chat Completions servers (a third fake
Chat Completions server stands in for a local Ollama) → events on the real broker → the
projector → Postgres, where each call is priced at the prices of the vendor that served it.

The worker is built from settings alone, as in production: TURNLOG_PROVIDER=anthropic,
ANTHROPIC_* and OPENAI_* naming the fakes, TURNLOG_MODEL_CATALOG adding a local model
served by the `ollama` endpoint, and TURNLOG_ENDPOINTS pointing that endpoint at its fake.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from agents.events import LlmCallCompleted, ProviderCircuitOpened, TurnCompleted
from agents.pricing import BUILTIN, cost_nanos
from projections.projector import Projector, ProjectorConfig
from streams.topics import TopicNames, ensure_topics
from tests.fakes.anthropic_server import FAKE_API_KEY, FakeAnthropicServer, FakeError
from tests.fakes.openai_server import (
    FAKE_OPENAI_KEY,
    FakeCompletion,
    FakeOpenAIError,
    FakeOpenAIServer,
    FakeToolCall,
)
from tests.fakes.openai_server import RecordedRequest as OpenAIRequest
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    WorkerProcess,
    seq_problems,
    user_message,
    wait_until,
    worker_env,
)
from turnlog.wiring import load_catalog

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLAUDE, GPT, LOCAL = "claude-haiku-4-5", "gpt-4o-mini", "local-qwen"
ANSWER = "6 times 7 is 42."
CATALOG = """
[models."local-qwen"]
provider = "ollama"
api_model = "qwen2.5:7b"
context_window = 32768
max_output_tokens = 4096
input = 0
output = 0
"""
AGENTS = f"""
[agents.xvendor]
description = "Claude first, then OpenAI, then a local model."
model = "{CLAUDE}"
fallbacks = ["{GPT}", "{LOCAL}"]
system_prompt = "You are a calculator assistant. Use the calculator tool for arithmetic."
tools = ["calculator"]
max_iterations = 4
max_tokens = 256

[agents.xvendor.deadlines]
llm_s = 300
tool_s = 300
"""


def calculator_then_answer(request: OpenAIRequest) -> FakeCompletion:
    if request.body["messages"][-1]["role"] == "tool":
        return FakeCompletion(ANSWER)
    return FakeCompletion("", tool_calls=[FakeToolCall("calculator", {"expression": "6*7"})])


@dataclass
class Run:
    anthropic: FakeAnthropicServer
    openai: FakeOpenAIServer
    ollama: FakeOpenAIServer
    names: TopicNames
    worker: WorkerProcess
    send: RequestSender
    log: EventLog
    database_url: str


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeAnthropicServer, FakeOpenAIServer, FakeOpenAIServer]]:
    with (
        FakeAnthropicServer(api_key=FAKE_API_KEY) as anthropic,
        FakeOpenAIServer(api_key=FAKE_OPENAI_KEY) as openai,
        FakeOpenAIServer(api_key=None) as ollama,
    ):
        yield anthropic, openai, ollama


@pytest.fixture(scope="module")
async def run(
    kafka_bootstrap: str,
    topic_prefix: str,
    database_url: str,
    servers: tuple[FakeAnthropicServer, FakeOpenAIServer, FakeOpenAIServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Run]:
    anthropic, openai, ollama = servers
    prefix = f"{topic_prefix}xv{secrets.token_hex(3)}."
    names = (await ensure_topics(kafka_bootstrap, prefix, partitions=4)).names
    tmp = tmp_path_factory.mktemp("cross-vendor")
    (tmp / "models.toml").write_text(CATALOG)
    (tmp / "agents.toml").write_text(AGENTS)
    env = worker_env(
        kafka_bootstrap,
        prefix,
        provider="anthropic",
        sandbox=tmp,
        agents=tmp / "agents.toml",
        extra={
            **anthropic.env(),
            "OPENAI_API_KEY": FAKE_OPENAI_KEY,
            "OPENAI_BASE_URL": f"{openai.base_url}/v1",
            "TURNLOG_MODEL_CATALOG": str(tmp / "models.toml"),
            "TURNLOG_ENDPOINTS": f'{{"ollama": {{"base_url": "{ollama.base_url}/v1"}}}}',
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
        worker = group.start("xvendor")
        await worker.wait_assigned(at_least=4)
        task = asyncio.create_task(projector.run())
        try:
            yield Run(anthropic, openai, ollama, names, worker, send, log, database_url)
        finally:
            projector.stop()
            await asyncio.wait_for(task, 30)


@pytest.fixture
def fresh(run: Run) -> Run:
    for server in (run.anthropic, run.openai, run.ollama):
        server.reset()
    run.anthropic.always(FakeError(529))  # Claude is overloaded for the whole test
    run.openai.respond_with(calculator_then_answer)
    run.ollama.respond_with(calculator_then_answer)
    return run


async def _turn(run: Run, session: str) -> list[Any]:
    await run.send.request(user_message(session, "what is 6*7?", agent="xvendor"))
    await run.log.wait_for(
        lambda: run.log.turns_ended(session) == 1,
        60,
        f"{session}'s turn ended",
        diagnose=lambda: run.worker.tail() + "\n" + run.log.summary([session]),
    )
    return run.log.of(session)


def _calls(events: list[Any]) -> list[LlmCallCompleted]:
    return [e.payload for e in events if isinstance(e.payload, LlmCallCompleted)]


async def _projected(run: Run, session: str, count: int) -> list[dict[str, Any]]:
    async def rows() -> list[dict[str, Any]] | None:
        async with await psycopg.AsyncConnection.connect(run.database_url) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT model, model_requested, fallback_used, attempts, cost_nanos, "
                "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens "
                "FROM llm_calls WHERE session_id = %s AND status = 'completed' "
                "ORDER BY requested_seq",
                (session,),
            )
            found = await cur.fetchall()
        return found if len(found) == count else None

    result: list[dict[str, Any]] = await wait_until(rows, 60, f"{session}'s calls projected")
    return result


async def test_claude_overloaded_falls_back_to_openai_priced_at_openai_prices(
    fresh: Run,
) -> None:
    events = await _turn(fresh, "xv-openai")
    assert isinstance(events[-1].payload, TurnCompleted)
    calls = _calls(events)
    assert [c.model for c in calls] == [GPT, GPT] and calls[1].text == ANSWER
    assert all(c.fallback_used and c.attempts >= 2 for c in calls)
    # Every Claude attempt went to Anthropic, then OpenAI answered: the hop is recorded.
    assert {r.model for r in fresh.anthropic.requests} == {CLAUDE}
    assert [r.status for r in fresh.openai.requests] == [200, 200]
    assert fresh.openai.requests[0].body["model"] == GPT
    opened = [e.payload for e in events if isinstance(e.payload, ProviderCircuitOpened)]
    assert all(o.target == f"anthropic/{CLAUDE}" for o in opened)
    # Priced per vendor: the OpenAI call at OpenAI's prices (cached tokens as cache reads).
    for call in calls:
        assert call.cost_nanos == cost_nanos(BUILTIN.info(GPT), call.usage) > 0
    rows = await _projected(fresh, "xv-openai", 2)
    assert [(r["model"], r["model_requested"], r["fallback_used"]) for r in rows] == [
        (GPT, CLAUDE, True),
        (GPT, CLAUDE, True),
    ]
    assert [r["cost_nanos"] for r in rows] == [c.cost_nanos for c in calls]
    assert seq_problems(events) == []


async def test_with_openai_down_too_a_local_model_answers_at_no_cost(
    fresh: Run, tmp_path: Path
) -> None:
    fresh.openai.always(FakeOpenAIError(500))
    events = await _turn(fresh, "xv-local")
    assert isinstance(events[-1].payload, TurnCompleted)
    calls = _calls(events)
    assert [c.model for c in calls] == [LOCAL, LOCAL] and calls[1].text == ANSWER
    # The local endpoint is sent the id it knows the model by, without a key.
    assert {r.body["model"] for r in fresh.ollama.requests} == {"qwen2.5:7b"}
    assert all(r.api_key_valid is None for r in fresh.ollama.requests)
    assert len(fresh.openai.requests) >= 2  # OpenAI was tried before the local model
    catalog_file = tmp_path / "models.toml"
    catalog_file.write_text(CATALOG)
    local = load_catalog(catalog_file).info(LOCAL)
    assert all(c.cost_nanos == cost_nanos(local, c.usage) == 0 for c in calls)
    assert all(c.usage.input_tokens > 0 for c in calls)  # used, and still free
    rows = await _projected(fresh, "xv-local", 2)
    assert [(r["model"], r["cost_nanos"]) for r in rows] == [(LOCAL, 0), (LOCAL, 0)]
    # The cost projection per model holds each vendor's spend of this run apart.
    async with await psycopg.AsyncConnection.connect(fresh.database_url) as conn:
        cur = await conn.execute(
            "SELECT model, sum(cost_nanos) FROM cost_ledger WHERE session_id IN "
            "('xv-openai', 'xv-local') GROUP BY model ORDER BY model"
        )
        spend = dict(await cur.fetchall())
    assert spend.keys() <= {GPT, LOCAL} and spend.get(LOCAL) == 0


async def test_no_key_reaches_an_event(run: Run) -> None:
    needles = [FAKE_API_KEY.encode(), FAKE_OPENAI_KEY.encode(), b"MUST-NEVER-LEAK"]
    assert run.log.events
    for event in run.log.events:
        text = repr(event).encode()
        assert not any(n in text for n in needles)
    log = run.worker.log_text().encode()
    assert b"llm.call" in log and not any(n in log for n in needles)
