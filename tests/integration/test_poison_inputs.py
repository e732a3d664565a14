"""Poison inputs on the live platform (issue 12, items 1, 2 and 4): a NUL character, a
request over the limits, a record the broker refuses, a client clock an hour slow and
one from year 1 — each decided, rejected or dead-lettered, and the partition moves on.

A real session worker (streams.app.SessionProcess) runs on this test's event loop
against the real broker; requests are produced by the turnlog Client or by a plain
aiokafka producer, as another language would; the log and the DLQ are read back
read_committed. Each test fails on the main before this change: the NUL message was
accepted, the 1.5 MB request wedged its partition, and the slow clock made the LLM call
overdue at once (re-issued: more provider calls than recorded).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from pydantic import Field

from agents.agentfile import load_definitions
from agents.events import (
    EffectReissued,
    LlmCallCompleted,
    Request,
    RequestRejected,
    SendMessage,
    ToolCallCompleted,
    TurnCompleted,
    UserMessageReceived,
)
from agents.limits import Limits
from agents.providers.scripted import ScriptedProvider
from agents.registry import AgentRegistry
from agents.tools import ToolContext, ToolSettings, builtin_registry
from schemas.codec import encode_request
from streams.app import SessionProcess
from streams.partitioning import partition_for
from streams.topics import TOPIC_SPECS, TopicNames, _admin, _alter_configs, expected_configs
from tests.integration.conftest import TEST_PARTITIONS
from tests.support.live import EventLog, RawTail, WorkerTask
from turnlog.client import Client
from turnlog.replay_verify import verify_session

AGENTS = """
[agents.reader]
model = "scripted-small"
system_prompt = "You read files from your sandbox. (poison test)"
tools = ["nul_echo"]
max_iterations = 4
[agents.reader.deadlines]
llm_s = 30
tool_s = 30
"""

SCRIPT = """
defaults: {latency_ms: %(latency)d, chunks: 1}
rules:
  - name: after-tool
    when: {system_contains: "poison test", last: tool_result}
    respond: {text: "The file says: {{tool_result}}"}
  - name: read-nul
    when: {user_contains: "read the nul file", last: user}
    respond:
      text: "Reading it."
      tool_calls: [{name: nul_echo, arguments: {text: "seven"}}]
otherwise: {text: "42"}
"""

TIMEOUT = 30.0


async def nul_echo(
    ctx: ToolContext, text: Annotated[str, Field(description="What to echo.", max_length=100)]
) -> str:
    """Echo `text` behind a NUL, as a tool reading the outside world may return."""
    return f"six\x00{text}"


def _sessions_on_one_partition(n: int, partitions: int = TEST_PARTITIONS) -> list[str]:
    """`n` fresh session ids that share one partition."""
    first = f"p-{secrets.token_hex(4)}"
    target = partition_for(first, partitions)
    out = [first]
    while len(out) < n:
        sid = f"p-{secrets.token_hex(4)}"
        if partition_for(sid, partitions) == target:
            out.append(sid)
    return out


class Platform:
    def __init__(
        self,
        names: TopicNames,
        worker: WorkerTask,
        log: EventLog,
        dlq: RawTail,
        provider: ScriptedProvider,
        producer: AIOKafkaProducer,
        registry: AgentRegistry,
    ) -> None:
        self.names, self.worker, self.log, self.dlq = names, worker, log, dlq
        self.provider, self.producer, self.registry = provider, producer, registry

    def request(
        self,
        session_id: str,
        text: str,
        *,
        agent: str | None = "reader",
        occurred_at: datetime | None = None,
    ) -> Request:
        return Request(
            request_id=f"r-{secrets.token_hex(6)}",
            session_id=session_id,
            occurred_at=occurred_at or datetime.now(UTC),
            payload=SendMessage(text),
            agent=agent,
        )

    async def produce(self, req: Request) -> None:
        """As any other language would: encoded, keyed by session id, default partitioner."""
        await self.producer.send_and_wait(
            self.names.requests, value=encode_request(req), key=req.session_id.encode()
        )


@contextlib.asynccontextmanager
async def platform(
    bootstrap: str,
    names: TopicNames,
    tmp_path: Path,
    *,
    latency_ms: int = 0,
    max_request_bytes: int | None = None,
    max_text_bytes: int | None = None,
) -> AsyncIterator[Platform]:
    agents = tmp_path / "agents.toml"
    agents.write_text(AGENTS, encoding="utf-8")
    script = tmp_path / "script.yaml"
    script.write_text(SCRIPT % {"latency": latency_ms}, encoding="utf-8")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir(exist_ok=True)
    limits = Limits() if max_text_bytes is None else Limits(max_text_bytes=max_text_bytes)
    provider = ScriptedProvider.from_file(script)
    tools = builtin_registry()
    tools.register(nul_echo)
    definitions, file_tools = load_definitions(agents)
    registry = AgentRegistry(
        definitions, {**file_tools, **tools.spec_map(["nul_echo"])}, limits=limits
    )
    process = SessionProcess(
        bootstrap=bootstrap,
        topics=names,
        partitions=TEST_PARTITIONS,
        registry=registry,
        provider=provider,
        tools=tools,
        tool_context=ToolSettings(sandbox_dir=sandbox, allowed_hosts=()),
        tick_interval_s=0.1,
        client_id=f"poison-{secrets.token_hex(3)}",
        max_request_bytes=max_request_bytes,
    )
    worker = WorkerTask(process)
    log, dlq = EventLog(bootstrap, names.events), RawTail(bootstrap, names.dlq)
    # A plain producer allowed to send whatever the requests topic accepts.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=5 * 1024 * 1024
    )
    started: list[Any] = []
    try:
        for part in (log, dlq, producer):
            await part.start()
            started.append(part)
        await worker.start()
        started.append(worker)
        yield Platform(names, worker, log, dlq, provider, producer, registry)
        worker.assert_alive()
    finally:
        for part in reversed(started):
            with contextlib.suppress(Exception):
                await part.stop()


def _prefix(names: TopicNames) -> str:
    return names.requests[: -len("turnlog.requests")]


# --------------------------------------------------------------------------- NUL


async def _nul(bootstrap: str, names: TopicNames, tmp_path: Path) -> None:
    async with platform(bootstrap, names, tmp_path) as p:
        async with Client(bootstrap_servers=bootstrap, topic_prefix=_prefix(names)) as client:
            sent = await client.send_message("what is 6*7?\x00", agent="reader")
            rejected = await p.log.wait_for_type(sent.session_id, RequestRejected, timeout=TIMEOUT)
            assert "U+0000 (NUL)" in rejected.reason and "text" in rejected.reason
            assert p.log.of_type(sent.session_id, UserMessageReceived) == []

            read = await client.send_message("read the nul file", agent="reader")
            await p.log.wait_for_type(read.session_id, TurnCompleted, timeout=TIMEOUT)
        (done,) = p.log.of_type(read.session_id, ToolCallCompleted)
        assert "\x00" not in done.result and "six\ufffdseven" in done.result
        answer = p.log.of_type(read.session_id, LlmCallCompleted)[-1]
        assert "six\ufffdseven" in answer.text  # what the model was told, cleaned
        for ev in p.log.events(read.session_id) + p.log.events(sent.session_id):
            assert "\x00" not in repr(ev.payload)


def test_nul_from_a_client_is_rejected_and_from_a_tool_is_cleaned(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    asyncio.run(_nul(kafka_bootstrap, names, tmp_path))


# --------------------------------------------------------------------------- sizes


async def _sizes(bootstrap: str, names: TopicNames, tmp_path: Path) -> None:
    big, huge, normal = _sessions_on_one_partition(3)
    async with platform(bootstrap, names, tmp_path, max_request_bytes=2 * 1024 * 1024) as p:
        # 1.5 MB of text: within the topic's and the worker's record limits, over the
        # text limit (1 MiB by default).
        await p.produce(p.request(big, "x" * 1_500_000))
        # 2.5 MB: over the worker's TURNLOG_MAX_REQUEST_BYTES (2 MiB here).
        await p.produce(p.request(huge, "y" * 2_500_000))
        # A session id no event can carry (it would be in every event of the session).
        await p.produce(p.request(f"{normal}\x00", "hello"))
        # Another session of the same partition, produced after all of them.
        await p.produce(p.request(normal, "what is 6*7?"))

        await p.log.wait_for_type(normal, TurnCompleted, timeout=TIMEOUT)
        rejected = await p.log.wait_for_type(big, RequestRejected, timeout=TIMEOUT)
        assert "TURNLOG_MAX_TEXT_BYTES" in rejected.reason
        assert "1500000 bytes" in rejected.reason and "1048576" in rejected.reason
        await p.dlq.wait_until(
            lambda: len(p.dlq.records) == 2,
            "the 2.5 MB request and the NUL session id in the DLQ",
            TIMEOUT,
        )
        by_type = {r.headers["turnlog.error.type"]: r for r in p.dlq.records}
        assert "U+0000" in by_type["InvalidSessionId"].headers["turnlog.error.message"]
        dead = by_type["RequestTooLarge"]
        assert dead.headers["turnlog.error.limit"] == "TURNLOG_MAX_REQUEST_BYTES=2097152"
        assert dead.key == huge.encode() and dead.value is not None
        assert len(dead.value) > 2_500_000
        assert p.log.events(huge) == []


def test_a_request_over_the_limits_is_rejected_or_dead_lettered_and_the_partition_moves_on(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    asyncio.run(_sizes(kafka_bootstrap, names, tmp_path))


async def _refused(bootstrap: str, names: TopicNames, tmp_path: Path) -> None:
    # An operator shrank the events topic below what a decided event can be: the broker
    # refuses the transaction's event. That must not be retried forever, nor committed
    # without the event: the input is set aside in the DLQ and the partition goes on.
    spec = next(s for s in TOPIC_SPECS if s.key == "events")
    admin = _admin(bootstrap, 30_000)
    await admin.start()
    try:
        await _alter_configs(
            admin,
            names.events,
            {**expected_configs(spec), "max.message.bytes": str(256 * 1024)},
            30.0,
        )
    finally:
        await admin.close()
    refused, normal = _sessions_on_one_partition(2)
    async with platform(bootstrap, names, tmp_path) as p:
        # Under the 1 MiB text limit, and incompressible: the topics store zstd batches,
        # and the broker's limit is on the compressed batch.
        await p.produce(p.request(refused, base64.b64encode(os.urandom(300_000)).decode()))
        await p.produce(p.request(normal, "what is 6*7?"))
        await p.log.wait_for_type(normal, TurnCompleted, timeout=TIMEOUT)
        await p.dlq.wait_until(lambda: p.dlq.records, "the refused input in the DLQ", TIMEOUT)
        (dead,) = p.dlq.records
        assert dead.headers["turnlog.error.type"] == "RecordTooLarge"
        assert dead.key == refused.encode()
        assert p.log.events(refused) == []  # nothing of its transaction was committed


def test_an_event_the_broker_refuses_sets_its_input_aside_instead_of_looping(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    asyncio.run(_refused(kafka_bootstrap, names, tmp_path))


# --------------------------------------------------------------------------- clocks


async def _clock(bootstrap: str, names: TopicNames, tmp_path: Path) -> None:
    slow, ancient = _sessions_on_one_partition(2)
    # Each LLM call takes longer than a tick: a deadline already past at ingest would be
    # re-issued while the first call is still running.
    async with platform(bootstrap, names, tmp_path, latency_ms=700) as p:
        claim = datetime.now(UTC) - timedelta(hours=1)
        before = datetime.now(UTC)
        await p.produce(p.request(slow, "what is 6*7?", occurred_at=claim))
        await p.log.wait_for_type(slow, TurnCompleted, timeout=TIMEOUT)
        after = datetime.now(UTC)
        events = p.log.events(slow)
        recorded = len(p.log.of_type(slow, LlmCallCompleted))
        assert p.log.of_type(slow, EffectReissued) == []
        assert p.provider.calls == recorded == 1
        for ev in events:
            if ev.causation_id == events[0].causation_id:
                # The log's time (the broker's append time), not the client's claim.
                assert before - timedelta(seconds=2) <= ev.occurred_at <= after
                assert ev.claimed_at == claim

        await p.produce(p.request(ancient, "hello", occurred_at=datetime(1, 1, 1, tzinfo=UTC)))
        rejected = await p.log.wait_for_type(ancient, RequestRejected, timeout=TIMEOUT)
        assert "2000-01-01" in rejected.reason
        assert p.provider.calls == 1  # decided without a call

        # replay --verify re-decides at the recorded ingest time, not at the claim.
        for sid in (slow, ancient):
            report = await verify_session(bootstrap, names, sid, p.registry)
            assert report.ok, report.as_dict()
            assert report.decisions_checked >= 1 and report.unverified_events == 0


def test_deadlines_run_from_the_ingest_time_and_absurd_dates_are_rejected(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    asyncio.run(_clock(kafka_bootstrap, names, tmp_path))
