"""The session worker: requests in, facts out, exactly once.

Rule of this module: every fact a session emits, the session's new state and the input
offset that produced them are committed in ONE Kafka transaction, or not at all.

How (the classic consume-transform-produce loop, EOS with per-partition producers):

* A consumer in group `<prefix>turnlog-session` reads `turnlog.requests` (read_committed,
  no auto commit). Several worker processes share the partitions.
* For each assigned partition p the worker opens a transactional producer whose id is
  `<prefix>turnlog-session-p<p>`. Initialising it fences any previous owner of p (a
  SIGKILLed worker, a zombie) and aborts its open transaction before we read anything.
* The state of p's sessions is rebuilt by folding partition p of `turnlog.events` (read
  committed) through the pure FSM. The events topic IS the changelog: a second copy of
  the state in a changelog topic would be written on every input, and since a session's
  state includes its conversation, that copy would grow quadratically with the session —
  the very failure mode turnlog exists to avoid.
* Each partition has its own loop; everything queued for p since its last commit is
  p's next transaction: decode → decide → evolve → append events (partition p) →
  commit. Undecodable inputs go to the DLQ in the same transaction. A child session's
  end is reported to its parent in the same transaction too, so it can be neither lost
  nor doubled.
* The input offset is committed in the transaction as a header (INPUT_NEXT_HEADER) on
  its last event, so it is read back with the state it belongs to; the consumer group's
  offset (send_offsets_to_transaction, two more broker round trips) is added only when
  a transaction has no event, at most once a second otherwise, and after a second of
  idleness. A new owner resumes at the larger of the two. The group offset is thus at
  most about a second behind: lag monitoring sees the truth, slightly late.
* Effects (LLM calls, tools, summaries, child sessions) are started only after the commit,
  by the EffectRunner, and report back as requests; after an assignment, pending effects
  found in the rebuilt state are re-issued. Outcomes fold once, by effect id.
* Trace context: each event carries a W3C traceparent in the trace of the request that
  caused it (a request without one starts a trace derived from its id); effects report
  in the trace of their session's latest event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError, ProducerFenced

from agents.errors import DecodeError
from agents.events import Event, ForkSession, Request
from schemas.codec import decode_event, decode_request, encode_event, encode_request
from streams import _core
from streams.logs import get_logger
from streams.partitioning import partition_for
from streams.topics import TopicNames
from streams.tracing import child_traceparent, get_traceparent, headers_with

__all__ = [
    "INPUT_NEXT_HEADER",
    "SessionWorker",
    "read_partition_events",
    "read_partition_log",
    "read_session_events",
]

# Header on the last event of each transaction: the requests-topic offset after the
# inputs that transaction consumed (see the module docstring).
INPUT_NEXT_HEADER = "turnlog.input.next"

# (partition, session id, committed state, traceparent of the session's latest event)
EffectSync = Callable[[int, str, Any, str | None], None]


@dataclass
class _Partition:
    """One owned partition: its producer, its sessions, and its own processing loop."""

    number: int
    producer: AIOKafkaProducer
    sessions: dict[str, Any] = field(default_factory=dict)
    # The traceparent of each session's latest event: effects started from that state
    # report in the same trace (restored from the events' headers after a move).
    traces: dict[str, str | None] = field(default_factory=dict)
    # The next input offset to process: records below it (fetched before a seek) are
    # dropped, never processed twice.
    position: int = 0
    # Input offset after the last committed transaction, and the offset last committed
    # to the consumer group (which trails it; see the module docstring).
    done: int = 0
    group_offset: int = 0
    group_committed_at: float = 0.0
    queue: deque[ConsumerRecord] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    paused: bool = False
    closed: bool = False


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: SessionWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._worker._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._worker._on_assigned(assigned)


async def read_partition_events(
    bootstrap: str, topic: str, partition: int, *, client_id: str = "turnlog-restore"
) -> list[Event]:
    """Every committed event of one partition of the events topic, in log order."""
    log = await read_partition_log(bootstrap, topic, partition, client_id=client_id)
    return [ev for ev, _ in log]


Headers = tuple[tuple[str, bytes], ...]


async def read_partition_log(
    bootstrap: str, topic: str, partition: int, *, client_id: str = "turnlog-restore"
) -> list[tuple[Event, Headers]]:
    """Every committed event of one partition with its Kafka headers, in log order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id=client_id,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[tuple[Event, Headers]] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            for rec in batch.get(tp, ()):
                if rec.offset >= end:
                    break
                out.append((decode_event(rec.value), tuple(rec.headers or ())))
        return out
    finally:
        await consumer.stop()


async def read_session_events(
    bootstrap: str,
    topics: TopicNames,
    partitions: int,
    session_id: str,
    *,
    upto_seq: int | None = None,
) -> list[Event]:
    """The events of one session (its own, not its fork ancestry), up to `upto_seq`."""
    p = partition_for(session_id, partitions)
    events = await read_partition_events(bootstrap, topics.events, p)
    return [
        e
        for e in events
        if e.session_id == session_id and (upto_seq is None or e.seq <= upto_seq)
    ]


class SessionWorker:
    """Runs the session FSM for the partitions this process is assigned."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: TopicNames,
        partitions: int,
        registry: Any,
        effect_sync: EffectSync | None = None,
        effect_drop: Callable[[int], None] | None = None,
        group_id: str | None = None,
        transactional_prefix: str | None = None,
        max_poll_records: int = 500,
        max_queue: int = 2000,
        group_commit_s: float = 1.0,
        session_timeout_ms: int = 6000,
        client_id: str = "turnlog-session",
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions = partitions
        self.registry = registry
        self._effect_sync = effect_sync
        self._effect_drop = effect_drop
        prefix = topics.requests[: -len("turnlog.requests")]
        self.group_id = group_id or f"{prefix}turnlog-session"
        self._tx_prefix = transactional_prefix or f"{prefix}turnlog-session"
        self._max_poll_records = max_poll_records
        self._max_queue = max_queue
        self._group_commit_s = group_commit_s
        self._session_timeout_ms = session_timeout_ms
        self._client_id = client_id
        self._parts: dict[int, _Partition] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._log = get_logger(component="session-worker")
        self.stats = {"inputs": 0, "events": 0, "dlq": 0, "batches": 0, "rerouted": 0}
        self.assigned_event = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(300, self._session_timeout_ms // 6),
            max_poll_records=self._max_poll_records,
            fetch_max_wait_ms=20,
        )
        self._consumer.subscribe([self.topics.requests], listener=_Listener(self))
        await self._consumer.start()
        self._log.info("worker.started", group=self.group_id)

    async def stop(self) -> None:
        for part in list(self._parts.values()):
            await self._close_partition(part)
        self._parts.clear()
        if self._consumer is not None:
            await self._consumer.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch until `stop` is set, handing each partition's records to its loop.

        Partitions are processed independently (a slow commit on one does not hold up
        the others), and each partition's loop takes everything queued since its last
        commit as its next transaction: batches grow with the load, transactions don't.
        """
        assert self._consumer is not None, "start() first"
        consumer = self._consumer
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=self._max_poll_records)
            for tp, records in batch.items():
                part = self._parts.get(tp.partition)
                if part is None:
                    # Assigned, but its state is still being restored (the consumer
                    # fetches as soon as it is assigned): read these again once it is.
                    with contextlib.suppress(Exception):  # or no longer assigned at all
                        consumer.seek(tp, records[0].offset)
                        consumer.pause(tp)
                    continue
                if part.closed:
                    continue  # being revoked: the next owner reads them again
                fresh = [r for r in records if r.offset >= part.position]
                if not fresh:
                    continue
                part.position = fresh[-1].offset + 1
                part.queue.extend(fresh)
                part.wakeup.set()
                if len(part.queue) >= self._max_queue and not part.paused:
                    consumer.pause(tp)  # backpressure: stop fetching what we cannot process
                    part.paused = True

    def sessions(self) -> dict[str, Any]:
        """Current state of every session this worker owns (for tickers and inspection)."""
        out: dict[str, Any] = {}
        for part in self._parts.values():
            out.update(part.sessions)
        return out

    def owned_partitions(self) -> set[int]:
        return set(self._parts)

    # ------------------------------------------------------------------ rebalance

    async def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                part = self._parts.pop(tp.partition, None)
                if part is not None:
                    await self._close_partition(part)
            self._log.info("partitions.revoked", partitions=sorted(tp.partition for tp in revoked))

    async def _close_partition(self, part: _Partition) -> None:
        """Let the partition's transaction in flight finish (commit or fail), then stop:
        queued records are left to the next owner, which reads from the committed
        offset."""
        part.closed = True
        part.wakeup.set()
        if part.task is not None:
            with contextlib.suppress(BaseException):
                await part.task
        if self._effect_drop is not None:
            self._effect_drop(part.number)
        with contextlib.suppress(Exception):
            await part.producer.stop()

    async def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        async with self._lock:
            new = [tp.partition for tp in assigned if tp.partition not in self._parts]
            started = time.monotonic()
            parts = await asyncio.gather(*(self._open_partition(p) for p in new))
            for part in parts:
                self._parts[part.number] = part
                part.task = asyncio.create_task(self._partition_loop(part))
                if self._consumer is not None:
                    tp = TopicPartition(self.topics.requests, part.number)
                    if part.position:
                        self._consumer.seek(tp, part.position)
                    self._consumer.resume(tp)
            self._log.info(
                "partitions.assigned",
                partitions=sorted(new),
                sessions=sum(len(p.sessions) for p in parts),
                restore_ms=round((time.monotonic() - started) * 1000, 1),
            )
        for part in parts:
            for session_id, state in part.sessions.items():
                self._sync_effects(part.number, session_id, state, part.traces.get(session_id))
        self.assigned_event.set()

    async def _open_partition(self, p: int) -> _Partition:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=f"{self._tx_prefix}-p{p}",
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            client_id=f"{self._client_id}-p{p}",
        )
        await producer.start()
        # Wait until the broker has given us the producer id: that fences the previous
        # owner and completes (aborts or finishes committing) its open transaction, so the
        # events and the committed input offset we read next are consistent.
        await producer.begin_transaction()
        await producer.abort_transaction()
        sessions, traces, logged = await self._restore(p)
        # Read the committed group offset only now, after the fencing: the consumer may
        # have fetched it before the previous owner's last transaction completed.
        assert self._consumer is not None
        committed = await self._consumer.committed(TopicPartition(self.topics.requests, p)) or 0
        position = max(committed, logged)
        return _Partition(
            number=p, producer=producer, sessions=sessions, traces=traces,
            position=position, done=position, group_offset=committed,
            group_committed_at=time.monotonic(),
        )

    async def _restore(
        self, p: int
    ) -> tuple[dict[str, Any], dict[str, str | None], int]:
        """Sessions of partition p, their latest traceparent, and the input offset the
        log says was consumed (the last INPUT_NEXT_HEADER; 0 when none)."""
        log = await read_partition_log(
            self.bootstrap, self.topics.events, p, client_id=f"{self._client_id}-restore"
        )
        states: dict[str, Any] = {}
        traces: dict[str, str | None] = {}
        position = 0
        for ev, headers in log:
            state = states.get(ev.session_id)
            if state is None:
                state = await self._initial_for(ev)
            states[ev.session_id] = _core.evolve(state, ev)
            traces[ev.session_id] = get_traceparent(headers)
            for key, value in headers:
                if key == INPUT_NEXT_HEADER:
                    position = max(position, int(value))
        return states, traces, position

    async def _initial_for(self, first: Event) -> Any:
        """The state a session's first event folds into: empty, or a fork's ancestry."""
        fork = _core.fork_source(first)
        if fork is None:
            return _core.initial_state(first.session_id)
        source_id, at_seq = fork
        return await self._fork_base(source_id, at_seq, first.session_id)

    async def _fork_base(self, source_id: str, at_seq: int, new_session_id: str) -> Any:
        own = await read_session_events(
            self.bootstrap, self.topics, self.partitions, source_id, upto_seq=at_seq
        )
        if not own:
            return None
        state = await self._initial_for(own[0])
        for ev in own:
            state = _core.evolve(state, ev)
        return _core.fork_base(state, new_session_id)

    # ------------------------------------------------------------------ processing

    async def _partition_loop(self, part: _Partition) -> None:
        tp = TopicPartition(self.topics.requests, part.number)
        while not part.closed:
            if not part.queue:
                if part.done > part.group_offset:
                    # Progress the group has not seen: commit it once the partition idles.
                    wait = self._group_commit_s - (time.monotonic() - part.group_committed_at)
                    if wait <= 0:
                        await self._transaction(part, tp, [])
                        continue
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(part.wakeup.wait(), wait)
                    continue
                await part.wakeup.wait()
            part.wakeup.clear()
            while part.queue and not part.closed:
                n = min(len(part.queue), self._max_poll_records)
                records = [part.queue.popleft() for _ in range(n)]
                await self._transaction(part, tp, records)
                if part.paused and len(part.queue) < self._max_queue // 2 and not part.closed:
                    assert self._consumer is not None
                    self._consumer.resume(tp)
                    part.paused = False

    async def _transaction(
        self, part: _Partition, tp: TopicPartition, records: Sequence[ConsumerRecord]
    ) -> None:
        """`records` (possibly none: an offsets-only commit) as one transaction."""
        producer = part.producer
        staged: dict[str, Any] = {}
        traces: dict[str, str | None] = {}
        held: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
        end = records[-1].offset + 1 if records else part.done
        now = time.monotonic()
        try:
            await producer.begin_transaction()
            for rec in records:
                await self._handle(part, rec, staged, traces, held)
            # The consumed offset rides on the last event (one header per transaction);
            # the group offset is committed too only now and then, or when there is no
            # event to carry it: that saves two broker round trips per transaction.
            to_group = not held or now - part.group_committed_at >= self._group_commit_s
            if held:
                value, key, headers = held.pop()
                headers.append((INPUT_NEXT_HEADER, str(end).encode()))
                await producer.send(
                    self.topics.events, value=value, key=key, partition=part.number,
                    headers=headers,
                )
            if to_group:
                await producer.send_offsets_to_transaction({tp: end}, self.group_id)
            await producer.commit_transaction()
        except ProducerFenced:
            # Another worker owns the partition now (we missed the rebalance): stop.
            self._log.warning("partition.fenced", partition=tp.partition)
            part.closed = True
            part.queue.clear()
            if self._parts.get(tp.partition) is part:
                del self._parts[tp.partition]
            if self._effect_drop is not None:
                self._effect_drop(tp.partition)
            with contextlib.suppress(Exception):
                await producer.stop()
            return
        except (KafkaError, OSError) as exc:
            # Nothing of the batch is visible; read it again (and whatever was queued
            # after it) from its first offset.
            self._log.error("batch.failed", partition=tp.partition, error=repr(exc))
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            part.queue.clear()
            if records:
                part.position = records[0].offset
                if not part.closed:
                    assert self._consumer is not None
                    self._consumer.seek(tp, records[0].offset)
            return
        part.done = end
        if to_group:
            part.group_offset, part.group_committed_at = end, now
        if not records:
            return
        part.sessions.update(staged)
        part.traces.update(traces)
        self.stats["batches"] += 1
        for session_id, state in staged.items():
            self._sync_effects(part.number, session_id, state, part.traces.get(session_id))

    async def _handle(
        self,
        part: _Partition,
        rec: ConsumerRecord,
        staged: dict[str, Any],
        traces: dict[str, str | None],
        held: list[tuple[bytes, bytes, list[tuple[str, bytes]]]],
    ) -> None:
        self.stats["inputs"] += 1
        producer = part.producer
        try:
            req = decode_request(rec.value)
        except DecodeError as exc:
            await self._dead_letter(producer, rec, "DecodeError", str(exc), exc.fingerprint)
            return
        expected = partition_for(req.session_id, self.partitions)
        if expected != part.number:
            # Produced with the wrong key: forward it to its session's partition rather
            # than let two workers write one session.
            self.stats["rerouted"] += 1
            await producer.send(
                self.topics.requests,
                value=rec.value,
                key=req.session_id.encode(),
                partition=expected,
                headers=list(rec.headers or ()),
            )
            return
        state = staged.get(req.session_id) or part.sessions.get(req.session_id)
        try:
            if state is None:
                if isinstance(req.payload, ForkSession):
                    state = await self._fork_base(
                        req.payload.source_session_id, req.payload.at_seq, req.session_id
                    )
                if state is None:
                    state = _core.initial_state(req.session_id)
            events, state = _core.decide_and_evolve(state, req, self.registry)
        except Exception as exc:  # noqa: BLE001 - a core bug must not become a crash loop
            self._log.exception(
                "decide.failed", session_id=req.session_id, request_id=req.request_id
            )
            await self._dead_letter(producer, rec, "InternalError", f"{type(exc).__name__}: {exc}", None)
            return
        # A request without trace context starts a trace of its own (derived from its id,
        # so a re-processed input gets the same one): all the events it causes, and the
        # effects they start, share it.
        parent_tp = get_traceparent(rec.headers) or child_traceparent(None, req.request_id)
        for ev in events:
            event_tp = child_traceparent(parent_tp, ev.event_id)
            if held:  # every event but the transaction's last goes out at once
                value, key, headers = held.pop()
                await producer.send(
                    self.topics.events, value=value, key=key, partition=part.number,
                    headers=headers,
                )
            held.append((
                encode_event(ev),
                ev.session_id.encode(),
                headers_with(event_tp, event_type=type(ev.payload).__name__),
            ))
            traces[req.session_id] = event_tp
            self.stats["events"] += 1
            report = _core.child_report(state, ev)
            if report is not None:
                await self._send_request(producer, report, event_tp)
        staged[req.session_id] = state

    async def _send_request(
        self, producer: AIOKafkaProducer, req: Request, traceparent: str | None
    ) -> None:
        await producer.send(
            self.topics.requests,
            value=encode_request(req),
            key=req.session_id.encode(),
            partition=partition_for(req.session_id, self.partitions),
            headers=headers_with(child_traceparent(traceparent, req.request_id)),
        )

    async def _dead_letter(
        self,
        producer: AIOKafkaProducer,
        rec: ConsumerRecord,
        error_type: str,
        message: str,
        fingerprint: str | None,
    ) -> None:
        self.stats["dlq"] += 1
        headers = list(rec.headers or ()) + [
            ("turnlog.error.type", error_type.encode()),
            ("turnlog.error.message", message.encode("utf-8", "replace")[:4000]),
            ("turnlog.source.topic", rec.topic.encode()),
            ("turnlog.source.partition", str(rec.partition).encode()),
            ("turnlog.source.offset", str(rec.offset).encode()),
        ]
        if fingerprint:
            headers.append(("turnlog.error.fingerprint", fingerprint.encode()))
        await producer.send(
            self.topics.dlq, value=rec.value, key=rec.key, headers=headers
        )
        self._log.warning(
            "input.dead_lettered",
            error_type=error_type,
            error=message[:500],
            partition=rec.partition,
            offset=rec.offset,
        )

    def _sync_effects(
        self, partition: int, session_id: str, state: Any, traceparent: str | None
    ) -> None:
        if self._effect_sync is not None:
            self._effect_sync(partition, session_id, state, traceparent)


Runner = Callable[[asyncio.Event], Awaitable[None]]
