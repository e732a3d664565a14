"""Helpers for the live-platform tests (approvals, delegation, bad input, cancellation).

Rule: nothing here fakes Kafka, Postgres or the worker. A test runs the REAL session
worker (`streams.app.SessionProcess`) as an asyncio task in the test's own event loop,
produces real requests with the real codec, and reads the session log back from the
events topic with a read_committed consumer — exactly what a user's client would see.
Waiting is always on a condition with a deadline (`EventLog.wait_for`), never a sleep.

    async with live_platform(bootstrap, names, registry=..., provider=...) as live:
        await live.client.send(session, SendMessage("hi"), agent="approver")
        done = await live.log.wait_for_type(session, TurnCompleted)
        live.worker.assert_alive()

Agent files and scripts for these tests live in tests/data/live/.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from agents.agentfile import registry_from_file
from agents.effects import DEFAULT_INLINE_LLM_MS
from agents.events import Event, Request, RequestPayload
from agents.llm import LlmRequest, TextBlock
from agents.providers.scripted import ScriptedProvider
from agents.registry import AgentRegistry
from agents.tools import ToolSettings, builtin_registry
from schemas.codec import decode_event, encode_request
from streams.app import SessionProcess
from streams.partitioning import partition_for
from streams.topics import TopicNames, ensure_topics

__all__ = [
    "DATA",
    "DlqRecord",
    "EventLog",
    "GatedProvider",
    "Live",
    "RawTail",
    "RequestClient",
    "WorkerTask",
    "fresh_topics",
    "live_platform",
    "load_agents",
    "load_script",
    "new_session_id",
    "payloads",
    "turnlog_cli",
]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "live"
PARTITIONS = 4
# Generous: a first LLM step on a cold broker (group join, producer fencing) takes ~1 s
# on the 2-core CI machine; nothing in these tests should take more than a few.
DEFAULT_TIMEOUT_S = 30.0

P = TypeVar("P")


def load_agents(name: str = "agents.toml") -> AgentRegistry:
    return registry_from_file(DATA / name)


def load_script(name: str) -> ScriptedProvider:
    return ScriptedProvider.from_file(DATA / name)


def new_session_id(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


async def fresh_topics(bootstrap: str, prefix: str, partitions: int = PARTITIONS) -> TopicNames:
    """All turnlog topics under `prefix` (created now): one test's private platform."""
    return (await ensure_topics(bootstrap, prefix, partitions=partitions)).names


def payloads(events: Iterable[Event], kind: type[P]) -> list[P]:
    """The payloads of `events` that are `kind`, in log order."""
    return [e.payload for e in events if isinstance(e.payload, kind)]


class GatedProvider:
    """A real provider (the scripted one) whose calls whose last user text contains
    `hold_text` wait at a gate until the test opens it: an LLM call that is provably in
    flight for as long as the test needs, with no wall-clock latency to race against.
    Every other call goes straight through."""

    def __init__(self, inner: Any, hold_text: str) -> None:
        self.inner = inner
        self.hold_text = hold_text
        self.gate = asyncio.Event()
        self.held = 0
        self.arrived = asyncio.Event()
        self.aborted = 0  # held calls cancelled by the worker (a cancelled turn)
        self.aborted_event = asyncio.Event()

    def _holds(self, request: LlmRequest) -> bool:
        last = request.messages[-1] if request.messages else None
        texts = [b.text for b in (last.content if last else ()) if isinstance(b, TextBlock)]
        return bool(texts) and self.hold_text in texts[-1]

    async def complete(self, request: LlmRequest, **options: Any) -> Any:
        if self._holds(request):
            self.held += 1
            self.arrived.set()
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.aborted += 1
                self.aborted_event.set()
                raise
        return await self.inner.complete(request, **options)

    async def wait_aborted(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Until the worker cancelled a held call (the HTTP request would be closed)."""
        await asyncio.wait_for(self.aborted_event.wait(), timeout)

    async def wait_held(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Until a call is waiting at the gate (i.e. it is in flight at the provider)."""
        await asyncio.wait_for(self.arrived.wait(), timeout)


# --------------------------------------------------------------------------- reading


def _consumer(bootstrap: str, client_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id=client_id,
        fetch_max_wait_ms=20,
    )


class _Tail:
    """A background read_committed consumer over every partition of one topic, from the
    beginning; `_on_record` sees each record once, in partition order."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.error: BaseException | None = None

    def _on_record(self, rec: ConsumerRecord) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        self._consumer = _consumer(self.bootstrap, f"live-tail-{self.topic}")
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.topic)
        deadline = time.monotonic() + 10
        while not parts and time.monotonic() < deadline:
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            raise AssertionError(f"Topic {self.topic} has no partitions (was it created?).")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _loop(self) -> None:
        assert self._consumer is not None
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
                if not batch:
                    continue
                for records in batch.values():
                    for rec in records:
                        self._on_record(rec)
                async with self._changed:
                    self._changed.notify_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = exc
            async with self._changed:
                self._changed.notify_all()

    async def wait_until(
        self, predicate: Callable[[], Any], what: str, timeout: float = DEFAULT_TIMEOUT_S
    ) -> Any:
        """Wait until `predicate()` is truthy (returned) — re-checked whenever new records
        arrive — or fail after `timeout` seconds naming `what`."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                if self.error is not None:
                    raise AssertionError(f"Reading {self.topic} failed: {self.error!r}")
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"Timed out after {timeout}s waiting for {what}.")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)


class EventLog(_Tail):
    """The session log as a client sees it (read_committed), grouped by session."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.by_session: dict[str, list[Event]] = defaultdict(list)
        self.partition_of: dict[str, set[int]] = defaultdict(set)
        self.count = 0

    def _on_record(self, rec: ConsumerRecord) -> None:
        event = decode_event(rec.value)
        self.by_session[event.session_id].append(event)
        self.partition_of[event.session_id].add(rec.partition)
        self.count += 1

    def events(self, session_id: str) -> list[Event]:
        return list(self.by_session.get(session_id, ()))

    def of_type(self, session_id: str, kind: type[P]) -> list[P]:
        return payloads(self.events(session_id), kind)

    async def wait_for(
        self,
        session_id: str,
        predicate: Callable[[list[Event]], Any],
        what: str,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> Any:
        """Wait until `predicate(events of session)` is truthy; the failure message shows
        the session's log so far."""
        try:
            return await self.wait_until(lambda: predicate(self.events(session_id)), what, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe(session_id)}") from None

    async def wait_for_type(
        self,
        session_id: str,
        kind: type[P],
        *,
        where: Callable[[P], bool] = lambda _p: True,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> P:
        """The first `kind` payload of the session matching `where`, once it is there."""

        def found(events: list[Event]) -> P | None:
            for p in payloads(events, kind):
                if where(p):
                    return p
            return None

        result: P = await self.wait_for(
            session_id, found, f"{kind.__name__} in session {session_id}", timeout
        )
        return result

    def describe(self, session_id: str) -> str:
        lines = [f"log of {session_id}:"]
        for e in self.events(session_id):
            lines.append(f"  {e.seq:>3} {type(e.payload).__name__}: {_short(e.payload)}")
        return "\n".join(lines)


def _short(payload: Any, limit: int = 160) -> str:
    text = repr(payload)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class DlqRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


class RawTail(_Tail):
    """Every record of a topic with its headers (for the DLQ)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.records: list[DlqRecord] = []

    def _on_record(self, rec: ConsumerRecord) -> None:
        headers = {k: v.decode("utf-8", "replace") for k, v in (rec.headers or ())}
        self.records.append(DlqRecord(rec.partition, rec.offset, rec.key, rec.value, headers))


# --------------------------------------------------------------------------- writing


class RequestClient:
    """Produces requests the way any client would: encoded, keyed by session id."""

    def __init__(self, bootstrap: str, names: TopicNames, partitions: int) -> None:
        self.names = names
        self.partitions = partitions
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=2
        )
        self._n = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    def request(
        self,
        session_id: str,
        payload: RequestPayload,
        *,
        agent: str | None = None,
        request_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Request:
        self._n += 1
        return Request(
            request_id=request_id or f"test-{secrets.token_hex(6)}-{self._n}",
            session_id=session_id,
            occurred_at=occurred_at or datetime.now(UTC),
            payload=payload,
            agent=agent,
        )

    async def send(
        self,
        session_id: str,
        payload: RequestPayload,
        *,
        agent: str | None = None,
        request_id: str | None = None,
    ) -> Request:
        req = self.request(session_id, payload, agent=agent, request_id=request_id)
        await self.send_request(req)
        return req

    async def send_request(self, req: Request, *, wait: bool = True) -> None:
        await self.send_raw(
            encode_request(req),
            key=req.session_id.encode(),
            partition=partition_for(req.session_id, self.partitions),
            wait=wait,
        )

    async def send_raw(
        self, value: bytes, *, key: bytes | None, partition: int, wait: bool = True
    ) -> None:
        fut = await self._producer.send(
            self.names.requests, value=value, key=key, partition=partition
        )
        if wait:
            await fut

    async def flush(self) -> None:
        await self._producer.flush()


async def turnlog_cli(
    bootstrap: str, names: TopicNames, *args: str, timeout: float = DEFAULT_TIMEOUT_S
) -> tuple[int, str, str]:
    """Run `python -m turnlog ARGS` against this test's topics (a subprocess, awaited
    without blocking the worker running on this loop): (exit code, stdout, stderr)."""
    prefix = names.requests[: -len("turnlog.requests")]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TURNLOG_TOPIC_PREFIX": prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "turnlog",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()  # only the process this call started
        await proc.wait()
        raise AssertionError(f"turnlog {' '.join(args)} did not finish within {timeout}s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


# --------------------------------------------------------------------------- the worker


class WorkerTask:
    """A SessionProcess running as a task of this event loop. `assert_alive()` proves it
    never died (and so never restarted): the task is still running."""

    def __init__(self, process: SessionProcess) -> None:
        self.process = process
        self._stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.task = asyncio.create_task(self.process.run(self._stop))
        assigned = asyncio.create_task(self.process.worker.assigned_event.wait())
        done, _ = await asyncio.wait(
            {self.task, assigned}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if assigned not in done:
            assigned.cancel()
            self.assert_alive()
            raise AssertionError(f"The session worker got no partitions within {timeout}s.")

    def assert_alive(self) -> None:
        assert self.task is not None, "start() first"
        if self.task.done():
            exc = None if self.task.cancelled() else self.task.exception()
            raise AssertionError(f"The session worker stopped on its own: {exc!r}") from exc

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.process.worker.stats)

    async def stop(self, timeout: float = 30.0) -> None:
        if self.task is None:
            return
        self._stop.set()
        await asyncio.wait_for(self.task, timeout)


@dataclass
class Live:
    names: TopicNames
    partitions: int
    worker: WorkerTask
    log: EventLog
    client: RequestClient
    dlq: RawTail
    sandbox: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def live_platform(
    bootstrap: str,
    names: TopicNames,
    *,
    registry: AgentRegistry,
    provider: Any,
    partitions: int = PARTITIONS,
    sandbox: Path | None = None,
    tick_interval_s: float = 0.2,
    tool_settings: ToolSettings | None = None,
    inline_llm_ms: float = DEFAULT_INLINE_LLM_MS,
) -> AsyncIterator[Live]:
    """The session worker (in this process, on `names`), an event-log reader, a DLQ reader
    and a request client; everything stopped afterwards, the worker last-checked alive."""
    settings = tool_settings or ToolSettings(sandbox_dir=sandbox or Path("."), allowed_hosts=())
    process = SessionProcess(
        bootstrap=bootstrap,
        topics=names,
        partitions=partitions,
        registry=registry,
        provider=provider,
        tools=builtin_registry(),
        tool_context=settings,
        tick_interval_s=tick_interval_s,
        client_id=f"live-{secrets.token_hex(3)}",
        inline_llm_ms=inline_llm_ms,
    )
    worker = WorkerTask(process)
    log = EventLog(bootstrap, names.events)
    dlq = RawTail(bootstrap, names.dlq)
    client = RequestClient(bootstrap, names, partitions)
    started: list[Any] = []
    try:
        for part in (log, dlq, client):
            await part.start()
            started.append(part)
        await worker.start()
        started.append(worker)
        yield Live(names, partitions, worker, log, client, dlq, sandbox)
        worker.assert_alive()
    finally:
        for part in reversed(started):
            with contextlib.suppress(Exception):
                await part.stop()


def by_seq(events: Sequence[Event]) -> dict[int, Event]:
    return {e.seq: e for e in events}


async def project_to_end(
    bootstrap: str, database_url: str, events_topic: str, consumer: str, timeout_s: float = 60
) -> None:
    """Run the projector over `events_topic` into `database_url` until it caught up (the
    tests that read the projections after a step)."""
    from projections.projector import Projector, ProjectorConfig

    projector = Projector(
        ProjectorConfig(
            bootstrap=bootstrap,
            database_url=database_url,
            events_topic=events_topic,
            checkpoints_topic=None,
            consumer=consumer,
            group_id=None,
        )
    )
    await asyncio.wait_for(projector.run(until_caught_up=True), timeout_s)
