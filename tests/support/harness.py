"""Helpers for integration tests and benchmarks that drive the session worker for real.

Rule: nothing here fakes Kafka, the worker or a provider. Workers are real subprocesses
(`python -m turnlog worker session`) configured only through their environment, stopped with SIGKILL
when a test wants a crash; requests are encoded with the real codec and produced with a
real producer; the session log is read back with a read_committed consumer. Waiting is
always on a condition with a deadline (`wait_until`), never a bare sleep.

Typical use (see tests/integration/test_worker_crash.py):

    env = worker_env(bootstrap, prefix, agents=DATA / "agents.toml",
                     script=scripted_script(tmp_path, latency_ms=20))
    async with WorkerGroup(env, tmp_path) as group, RequestSender(bootstrap, names) as send, \\
            EventLog(bootstrap, names.events) as log:
        worker = group.start("w1")
        await worker.wait_assigned()
        await send.request(user_message("s1", "what is 6*7?", agent="calc"))
        await log.wait_for(lambda: log.turns_completed("s1") == 1, 30, "s1's turn")
        worker.kill()                                   # SIGKILL
        ...
        assert seq_problems(log.events) == []
        assert lost_inputs(await read_requests(bootstrap, names), log.events) == []

Everything is reusable by other tests (approvals, delegation, fuzz, CLI): the session
ids, agents and scripts are the caller's. What is here:

- workers: `worker_env` (the environment `python -m turnlog worker session` reads), `WorkerProcess`
  (one subprocess; `argv=("-m", "turnlog", "worker", "session")` runs the CLI instead;
  `kill()` is SIGKILL, `owned_partitions()` / `wait_assigned()` read its JSON log),
  `WorkerGroup` (a test's workers, all SIGKILLed at exit), `InProcessWorker` (the same
  SessionProcess on the test's event loop, when no crash is needed);
- inputs: `user_message`, `request_for` (any payload), `RequestSender` (keyed produce,
  optional traceparent header, raw bytes for DLQ tests), `scripted_script` (a copy of
  tests/data/calc.script.yaml with another latency);
- reading: `EventLog` (tails the events topic read_committed; per-session views,
  headers, turns completed), `read_records` (a whole topic, any isolation level),
  `read_requests`, `group_caught_up` (the worker committed every input);
- invariants: `seq_problems` (gap-free, no seq twice), `lost_inputs` (every input
  caused an event or a rejection), `llm_completions`, `trace_id`;
- waiting: `wait_until` (sync or async predicate, deadline, diagnosis on failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from agents.errors import DecodeError
from agents.events import (
    SUPERSEDED,
    Event,
    LlmCallCompleted,
    LlmCallRequested,
    Request,
    RequestPayload,
    RequestRejected,
    SendMessage,
    Tick,
    ToolCallCompleted,
    ToolCallRequested,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UserMessageReceived,
)
from schemas.codec import decode_event, decode_request, encode_request
from streams._headers import EventTraces
from streams.logread import read_to_end, topic_partitions
from streams.topics import TopicNames
from streams.tracing import TRACEPARENT
from tests.support.poll import wait_until

__all__ = [
    "DATA",
    "ROOT",
    "TURN_SHAPE",
    "EventLog",
    "InProcessWorker",
    "RequestSender",
    "WorkerGroup",
    "WorkerProcess",
    "group_caught_up",
    "llm_completions",
    "lost_inputs",
    "read_records",
    "read_requests",
    "request_for",
    "scripted_script",
    "seq_problems",
    "trace_id",
    "user_message",
    "wait_until",
    "worker_env",
]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"

# --------------------------------------------------------------------------- waiting


def free_port() -> int:
    """A TCP port on the loopback nobody listens on now (for a server of a test's own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- scripts, env


def scripted_script(
    directory: Path, *, latency_ms: int = 0, source: Path | None = None, chunks: int | None = None
) -> Path:
    """A copy of a script file (default tests/data/calc.script.yaml) in `directory` with
    `defaults.latency_ms` (and `chunks`) replaced, so one script serves every latency."""
    source = source or DATA / "calc.script.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    defaults = dict(data.get("defaults") or {})
    defaults["latency_ms"] = latency_ms
    if chunks is not None:
        defaults["chunks"] = chunks
    data["defaults"] = defaults
    target = directory / f"{source.stem}.{latency_ms}ms.yaml"
    target.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return target


def worker_env(
    bootstrap: str,
    prefix: str,
    *,
    partitions: int = 4,
    agents: Path | str = DATA / "agents.toml",
    script: Path | str | None = None,
    provider: str | None = None,
    session_timeout_ms: int = 3000,
    sandbox: Path | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a worker subprocess. `script` sets TURNLOG_PROVIDER to
    scripted:<script> (or give `provider` verbatim). ANTHROPIC_* variables of the test
    process are NOT inherited: a test that wants the real SDK passes them in `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TURNLOG_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TURNLOG_TOPIC_PREFIX": prefix,
            "TURNLOG_PARTITIONS": str(partitions),
            "TURNLOG_AGENTS": str(agents),
            "TURNLOG_SESSION_TIMEOUT_MS": str(session_timeout_ms),
            "TURNLOG_LOG_LEVEL": "INFO",
            # Each worker's /metrics endpoint on a free port (logged: endpoint.listening),
            # so workers of concurrent tests never contend for one.
            "TURNLOG_METRICS_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if provider is not None:
        env["TURNLOG_PROVIDER"] = provider
    elif script is not None:
        env["TURNLOG_PROVIDER"] = f"scripted:{script}"
    if sandbox is not None:
        env["TURNLOG_SANDBOX_DIR"] = str(sandbox)
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- workers


class WorkerProcess:
    """One `python -m turnlog worker session` subprocess; its stderr (JSON log lines) goes to a file.
    `argv` replaces `-m turnlog worker session` (e.g. a profiler)."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_path: Path,
        argv: Sequence[str] = ("-m", "turnlog", "worker", "session"),
    ) -> None:
        self.name = name
        self.env = dict(env)
        self.log_path = log_path
        self.argv = tuple(argv)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where this start's lines begin in the (appended) log

    def start(self) -> Self:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.argv],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, and reap it: the process gets no chance to flush or commit."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (a clean stop); SIGKILL when it does not exit within `timeout_s`."""
        if not self.alive:
            return None if self.proc is None else self.proc.returncode
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log_text(self, *, this_start: bool = False) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[self._log_offset if this_start else 0 :].decode("utf-8", "replace")

    def log_records(self, *, this_start: bool = True) -> list[dict[str, Any]]:
        """The structured log lines (JSON objects); other lines are skipped."""
        out: list[dict[str, Any]] = []
        for line in self.log_text(this_start=this_start).splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def owned_partitions(self) -> set[int]:
        """The partitions this start of the worker owns now, per its own log."""
        owned: set[int] = set()
        for rec in self.log_records():
            event = rec.get("event")
            if event == "partitions.assigned":
                owned |= set(rec.get("partitions", ()))
            elif event == "partitions.revoked":
                owned -= set(rec.get("partitions", ()))
            elif event == "partition.fenced":
                owned.discard(rec.get("partition"))
        return owned if self.alive else set()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    async def wait_assigned(self, timeout_s: float = 60.0, *, at_least: int = 1) -> set[int]:
        """Wait until this start owns `at_least` partitions (restore done); they are
        returned. Fails early, with the log, when the process died."""

        def check() -> set[int] | None:
            if not self.alive:
                raise AssertionError(f"worker {self.name} exited:\n{self.tail()}")
            owned = self.owned_partitions()
            return owned if len(owned) >= at_least else None

        result: set[int] = await wait_until(
            check,
            timeout_s,
            f"worker {self.name} owns {at_least} partition(s)",
            diagnose=self.tail,
        )
        return result


class WorkerGroup:
    """The worker subprocesses of one test; every one still running is SIGKILLed on
    exit (only these, by pid). Logs go to `log_dir/<name>.log`."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.workers: dict[str, WorkerProcess] = {}

    def start(self, name: str, **env_overrides: str) -> WorkerProcess:
        """Start worker `name` (again, after a kill: same log file, appended)."""
        worker = self.workers.get(name)
        if worker is None:
            worker = WorkerProcess(
                name, {**self.env, **env_overrides}, self.log_dir / f"{name}.log"
            )
            self.workers[name] = worker
        return worker.start()

    def kill_all(self) -> None:
        for worker in self.workers.values():
            worker.kill()

    def logs(self) -> str:
        """Every worker's whole log, for secret scans."""
        return "\n".join(w.log_text() for w in self.workers.values())

    def tails(self, lines: int = 15) -> str:
        return "\n".join(f"--- {n}:\n{w.tail(lines)}" for n, w in self.workers.items())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill_all()


class InProcessWorker:
    """A session-worker process (worker + effects + ticker) on this event loop, for
    tests that need no crash: `async with InProcessWorker(...) as process:`. It has
    its partitions (state restored) when the block starts and stops cleanly after."""

    def __init__(
        self,
        bootstrap: str,
        topics: TopicNames,
        *,
        partitions: int = 4,
        agents: Path | str = DATA / "agents.toml",
        script: Path | str = DATA / "calc.script.yaml",
        provider: Any = None,
        sandbox: Path | None = None,
        session_timeout_ms: int = 3000,
        group_commit_s: float = 1.0,
        max_sessions: int = 10_000,
        inline_llm_ms: float | None = None,
    ) -> None:
        from agents.agentfile import registry_from_file
        from agents.effects import DEFAULT_INLINE_LLM_MS
        from agents.providers import ScriptedProvider
        from agents.tools import ToolSettings, builtin_registry
        from streams.app import SessionProcess

        settings = ToolSettings(sandbox_dir=sandbox) if sandbox else ToolSettings()
        self.process = SessionProcess(
            bootstrap=bootstrap,
            topics=topics,
            partitions=partitions,
            registry=registry_from_file(agents),
            provider=provider if provider is not None else ScriptedProvider.from_file(script),
            tools=builtin_registry(),
            tool_context=settings,
            session_timeout_ms=session_timeout_ms,
            group_commit_s=group_commit_s,
            max_sessions=max_sessions,
            # None: the default (TURNLOG_INLINE_LLM_MS)
            inline_llm_ms=DEFAULT_INLINE_LLM_MS if inline_llm_ms is None else inline_llm_ms,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Any:
        self._task = asyncio.create_task(self.process.run(self._stop))
        assigned = asyncio.create_task(self.process.worker.assigned_event.wait())
        done, _ = await asyncio.wait(
            {self._task, assigned}, timeout=60, return_when="FIRST_COMPLETED"
        )
        if self._task in done:
            assigned.cancel()
            self._task.result()  # raises what the process died of
        if assigned not in done:
            assigned.cancel()
            raise AssertionError("The in-process session worker got no partitions within 60 s.")
        return self.process

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)


# The events of one turn of the calc agent (tests/data/agents.toml, calc.script.yaml):
# the calculator called once, then the answer.
TURN_SHAPE: list[type] = [
    TurnStarted,
    UserMessageReceived,
    LlmCallRequested,
    LlmCallCompleted,
    ToolCallRequested,
    ToolCallCompleted,
    LlmCallRequested,
    LlmCallCompleted,
    TurnCompleted,
]

# --------------------------------------------------------------------------- requests


def user_message(
    session_id: str,
    text: str,
    *,
    agent: str | None = None,
    request_id: str | None = None,
    turn: int = 1,
) -> Request:
    """A SendMessage request; `agent` is needed for a session's first message. The
    request id defaults to `<session>:u<turn>` (deterministic, so a test can resend)."""
    return Request(
        request_id=request_id or f"{session_id}:u{turn}",
        session_id=session_id,
        occurred_at=datetime.now(UTC),
        payload=SendMessage(text=text),
        agent=agent,
        correlation_id=f"{session_id}:c{turn}",
    )


def request_for(session_id: str, payload: RequestPayload, request_id: str) -> Request:
    """Any request payload in an envelope (approvals, cancels, forks...)."""
    return Request(
        request_id=request_id,
        session_id=session_id,
        occurred_at=datetime.now(UTC),
        payload=payload,
    )


class RequestSender:
    """Produces requests (keyed by session id, Kafka's default partitioner) and keeps
    what it sent, with the time it was acknowledged (for latency figures)."""

    def __init__(self, bootstrap: str, topics: TopicNames, *, linger_ms: int = 0) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            client_id="turnlog-test-sender",
        )
        self.sent: list[Request] = []
        self.sent_at: dict[tuple[str, str], float] = {}

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._producer.stop()

    async def request(self, request: Request, *, traceparent: str | None = None) -> None:
        await self.requests([request], traceparent=traceparent)

    async def requests(
        self, requests: Iterable[Request], *, traceparent: str | None = None
    ) -> None:
        """Produce all of them at once (one batch per partition), then wait for acks."""
        headers = [(TRACEPARENT, traceparent.encode())] if traceparent else []
        futures = []
        batch = list(requests)
        for req in batch:
            futures.append(
                await self._producer.send(
                    self.topics.requests,
                    value=encode_request(req),
                    key=req.session_id.encode(),
                    headers=headers,
                )
            )
            self.sent_at[(req.session_id, req.request_id)] = time.monotonic()
        await asyncio.gather(*futures)
        self.sent.extend(batch)

    async def raw(self, key: bytes, value: bytes, *, partition: int | None = None) -> None:
        """Any bytes (DLQ tests), or a request sent to a chosen partition (`partition`:
        what a client with another partitioner would do)."""
        await self._producer.send_and_wait(
            self.topics.requests, value=value, key=key, partition=partition
        )


# --------------------------------------------------------------------------- reading


async def read_records(
    bootstrap: str, topic: str, *, isolation_level: str = "read_committed"
) -> list[ConsumerRecord]:
    """Every record of `topic` (all partitions, one after the other) up to its end at
    call time, through the package's one log reader (streams.logread)."""
    out: list[ConsumerRecord] = []
    for partition in range(await topic_partitions(bootstrap, topic)):
        await read_to_end(
            bootstrap,
            topic,
            partition,
            None,
            client_id="turnlog-test-reader",
            each=out.append,
            isolation_level=isolation_level,
        )
    return out


async def read_requests(bootstrap: str, topics: TopicNames) -> list[Request]:
    """Every committed request on the requests topic (undecodable ones skipped)."""
    out: list[Request] = []
    for rec in await read_records(bootstrap, topics.requests):
        with contextlib.suppress(DecodeError):  # DLQ material, not a request
            out.append(decode_request(rec.value))
    return out


async def group_caught_up(bootstrap: str, group_id: str, topic: str) -> bool:
    """True when `group_id` has committed, on every partition of `topic`, an offset
    past the last committed record (so every input there was processed)."""
    records = await read_records(bootstrap, topic)
    last: dict[int, int] = {}
    for rec in records:
        last[rec.partition] = max(last.get(rec.partition, -1), rec.offset)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="turnlog-test-admin")
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    for partition, offset in last.items():
        meta = committed.get(TopicPartition(topic, partition))
        if meta is None or meta.offset <= offset:
            return False
    return True


class EventLog:
    """Tails the events topic (read_committed, from the beginning) and keeps every
    event with its headers and the monotonic time it became visible here."""

    def __init__(self, bootstrap: str, topic: str, *, partitions: int | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.events: list[Event] = []
        self.headers: list[tuple[tuple[str, bytes], ...]] = []
        self.seen_at: list[float] = []
        self.by_session: dict[str, list[Event]] = defaultdict(list)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id="turnlog-test-eventlog",
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.topic)
        if parts is None:
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 50) -> int:
        """Read what is there now; returns how many events were new."""
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=20_000)
        now = time.monotonic()
        n = 0
        for recs in batch.values():
            for rec in recs:
                ev = decode_event(rec.value)
                self.events.append(ev)
                self.headers.append(tuple(rec.headers or ()))
                self.seen_at.append(now)
                self.by_session[ev.session_id].append(ev)
                n += 1
        return n

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout_s: float,
        what: str,
        diagnose: Callable[[], str] | None = None,
    ) -> None:
        """Keep reading until `predicate()` holds (checked after every poll)."""

        async def check() -> Any:
            await self.poll(50)
            return predicate()

        await wait_until(check, timeout_s, what, interval_s=0, diagnose=diagnose)

    # -- questions about the log

    def of(self, session_id: str, kind: type | tuple[type, ...] | None = None) -> list[Event]:
        evs = self.by_session.get(session_id, [])
        return evs if kind is None else [e for e in evs if isinstance(e.payload, kind)]

    def turns_completed(self, session_id: str) -> int:
        return len(self.of(session_id, TurnCompleted))

    def turns_ended(self, session_id: str) -> int:
        return len(self.of(session_id, (TurnCompleted, TurnFailed)))

    def traceparents(self, session_id: str) -> list[tuple[Event, str | None]]:
        """Each event's traceparent: carried (an input's first event) or derived from
        it (streams._headers)."""
        traces = EventTraces()
        out = []
        for ev, h in zip(self.events, self.headers, strict=True):
            tp = traces(ev, list(h))
            if ev.session_id == session_id:
                out.append((ev, tp))
        return out

    def summary(self, session_ids: Sequence[str] | None = None, limit: int = 12) -> str:
        """Last event type per session (for failure messages)."""
        ids = list(session_ids) if session_ids is not None else sorted(self.by_session)
        lines = []
        for sid in ids[:limit]:
            evs = self.by_session.get(sid, [])
            tail = ", ".join(f"{e.seq}:{type(e.payload).__name__}" for e in evs[-4:])
            lines.append(f"  {sid}: {len(evs)} events ... {tail}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- invariants


def seq_problems(events: Iterable[Event]) -> list[str]:
    """What breaks "each session's seqs are 1..n, gap-free, none twice" in log order.
    A forked session's own seqs start at its SessionForked's seq."""
    seqs: dict[str, list[int]] = defaultdict(list)
    for ev in events:
        seqs[ev.session_id].append(ev.seq)
    problems = []
    for sid, got in seqs.items():
        start = got[0] if got and got[0] > 1 else 1
        expected = list(range(start, start + len(got)))
        if got != expected:
            dupes = sorted({s for s in got if got.count(s) > 1})
            problems.append(
                f"session {sid}: seqs {got[:5]}...{got[-5:]} (n={len(got)}) are not "
                f"{start}..{start + len(got) - 1}; duplicated: {dupes[:10]}"
            )
    return problems


def lost_inputs(requests: Iterable[Request], events: Iterable[Event]) -> list[Request]:
    """The requests with no trace in the log: no event names the request as its
    causation_id and no RequestRejected names it (keyed by session: ids such as tool
    call ids may repeat across sessions). A Tick is not counted: one with nothing due
    when it is decided (another worker's ticker, or a deadline already acted on) causes
    no event, by design."""
    caused: set[tuple[str, str]] = set()
    for ev in events:
        if ev.causation_id is not None:
            caused.add((ev.session_id, ev.causation_id))
        if isinstance(ev.payload, RequestRejected):
            caused.add((ev.session_id, ev.payload.request_id))
    return [
        r
        for r in requests
        if (r.session_id, r.request_id) not in caused and not isinstance(r.payload, Tick)
    ]


def llm_completions(events: Iterable[Event]) -> dict[tuple[str, str], list[LlmCallCompleted]]:
    """LlmCallCompleted payloads by (session, call id): the calls' answers. The charges
    of answers to replaced issues of a call (discarded "superseded": a previous owner's
    answer, an aborted stream's billed part) are money, not answers: left out."""
    out: dict[tuple[str, str], list[LlmCallCompleted]] = defaultdict(list)
    for ev in events:
        if isinstance(ev.payload, LlmCallCompleted) and ev.payload.discarded != SUPERSEDED:
            out[(ev.session_id, ev.payload.call_id)].append(ev.payload)
    return out


def trace_id(traceparent: str | None) -> str | None:
    """The trace-id field of a W3C traceparent."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else None
