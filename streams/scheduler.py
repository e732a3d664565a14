"""The scheduler worker: each slot of each schedule fires exactly once.

Rule of this module: a slot's SendMessage (and the CancelTurn of the previous run, when
the overlap policy cancels) and the slot's progress record (ScheduleFired on
`turnlog.schedules`) are produced in ONE Kafka transaction, or not at all. The progress
is nowhere else: not in memory across a restart, not in consumer offsets, not in
Postgres.

How:

* A consumer in group `<prefix>turnlog-scheduler` subscribes to `turnlog.schedules`;
  several schedulers split its partitions (schedule id -> partition, murmur2).
* For each assigned partition p the scheduler opens a transactional producer
  `<prefix>turnlog-scheduler-p<p>`; initialising it fences the previous owner (a
  SIGKILLed or paused scheduler) and completes its open transaction. Only then does it
  read p from the beginning (read_committed, up to the end offset of that moment): the
  definitions, pause states and last firings (the topic is compacted: about three
  records per schedule). A firing that was not committed is not there, so its slot
  fires again; one that was committed is, so its slot never fires again.
* Once p is read, its schedules go into a heap by next slot. Every tick (the injected
  clock: `clock()`), the due slots of p are decided (scheduler_plan: catch-up, then
  overlap against the previous run's state in Postgres) and produced as one
  transaction per partition; the in-memory state advances only after the commit.
  Records added later (a schedule added, paused, removed) are folded as they arrive.
* A rebalance waits for the transaction in flight (a lock), then drops the partitions.

Overlap: the previous run's state is read from the sessions projection (Postgres), not
from the events topic: a query per tick for the few schedules that are due answers
"is session S in a turn?" at once, while the events topic would have to be consumed
whole (every session of every partition) to know it. The projection lags the log by
the projector's batch (well under a second when it runs); a run whose session is not
projected yet counts as running for UNPROJECTED_GRACE (15 s) after its firing.
When Postgres cannot be asked, the slot fires as if nothing ran (logged): a scheduler
that stopped firing because a read replica was down would lose slots silently.

Test seams (hidden CLI options): the clock can be read from a file, and the firing
can be held just before or just after its commit so that a test can SIGKILL there.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError, ProducerFenced

from agents.errors import DecodeError
from agents.events import (
    CancelTurn,
    Request,
    ScheduleDefined,
    ScheduleFired,
    ScheduleRecord,
    SendMessage,
)
from schemas.codec import decode_schedule_record, encode_request, encode_schedule_record
from streams import _txn_retry
from streams.logs import get_logger
from streams.partitioning import partition_for
from streams.scheduler_plan import (
    DEFAULT_GRACE,
    ScheduleState,
    due_slots,
    fold,
    key_for,
    next_slot,
    request_id_for,
    resolve_overlap,
    run_session_id,
)
from streams.topics import DEFAULT_FETCH_WAIT_MS, TopicNames

__all__ = [
    "Clock",
    "PostgresRunProbe",
    "RunProbe",
    "Scheduler",
    "file_clock",
    "system_clock",
]

Clock = Callable[[], datetime]
TURN_PHASES = (
    "admitting",  # its message waits for a shared rate limit: the run has not ended
    "awaiting_llm",
    "compacting",
    "awaiting_tools",
    "awaiting_approval",
    "awaiting_children",
)


def system_clock() -> datetime:
    return datetime.now(UTC)


def file_clock(path: Path) -> Clock:
    """A clock read from `path` (an ISO-8601 time; the system clock while it is absent
    or unreadable): the tests' way to move a scheduler process through time."""

    def now() -> datetime:
        try:
            text = path.read_text(encoding="utf-8").strip()
            value = datetime.fromisoformat(text)
        except (OSError, ValueError):
            return system_clock()
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    return now


class RunProbe(Protocol):
    """Which of these sessions are in a turn now (the overlap check)."""

    async def running(self, sessions: Mapping[str, datetime], now: datetime) -> set[str]: ...


# How long a run whose session the projection does not have yet counts as running: the
# projector's lag, generously (a run refused by the session worker never gets a row).
UNPROJECTED_GRACE = timedelta(seconds=15)


class PostgresRunProbe:
    """The sessions projection answers: a session is running when its row is active in
    a turn phase, or when it has no row yet and its run was fired less than `grace` ago
    (the projector has not caught up with it)."""

    def __init__(self, database_url: str, grace: timedelta = UNPROJECTED_GRACE) -> None:
        self.database_url = database_url
        self.grace = grace
        self._log = get_logger(component="scheduler")
        self._conn: Any = None

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def running(self, sessions: Mapping[str, datetime], now: datetime) -> set[str]:
        if not sessions:
            return set()
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                # One connection, kept: a query per tick at most, a connect costs more.
                self._conn = await psycopg.AsyncConnection.connect(
                    self.database_url, connect_timeout=5, autocommit=True
                )
            cur = await self._conn.execute(
                "SELECT session_id, status, phase FROM sessions WHERE session_id = ANY(%s)",
                (list(sessions),),
            )
            rows = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
        except psycopg.Error as exc:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
                self._conn = None
            self._log.warning(
                "scheduler.overlap_unknown",
                error=str(exc).strip()[:300],
                sessions=len(sessions),
                note="Postgres could not say whether the previous runs still run: "
                "the due slots fire as if they did not",
            )
            return set()
        out: set[str] = set()
        for session_id, fired_at in sessions.items():
            row = rows.get(session_id)
            if row is None:
                if now - fired_at <= self.grace:
                    out.add(session_id)
            elif row[0] == "active" and row[1] in TURN_PHASES:
                out.add(session_id)
        return out


@dataclass(slots=True)
class _Partition:
    number: int
    producer: AIOKafkaProducer
    target: int  # end offset when taken: live once read up to it
    live: bool = False  # read up to `target`: records are scheduled as they come
    ready: bool = False  # live, and every schedule read before is on the heap
    states: dict[str, ScheduleState] = field(default_factory=dict)
    # When each schedule's last run was fired (scheduler clock), for the overlap probe.
    fired_at: dict[str, datetime] = field(default_factory=dict)
    heap: list[tuple[datetime, str]] = field(default_factory=list)
    next_due: dict[str, datetime] = field(default_factory=dict)
    # Schedules whose due slot waits for the previous run (overlap=queue): when it
    # fires, its record says "queued" (in memory: after a restart it says "none").
    queued: set[str] = field(default_factory=set)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.scheduler._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.scheduler._on_assigned(list(assigned))


class Scheduler:
    """Fires the slots of the schedules in the partitions of `turnlog.schedules` that
    the group gives it (see the module docstring)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: TopicNames,
        clock: Clock = system_clock,
        probe: RunProbe | None = None,
        file_schedules: Mapping[str, ScheduleDefined] | None = None,
        grace: timedelta = DEFAULT_GRACE,
        tick_s: float = 0.2,
        session_timeout_ms: int = 6000,
        client_id: str = "turnlog-scheduler",
        group_id: str | None = None,
        hold_at: str | None = None,
        hold_marker: Path | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.clock = clock
        self.probe = probe
        self.file_schedules = dict(file_schedules or {})
        self.grace = grace
        self.tick_s = tick_s
        self.session_timeout_ms = session_timeout_ms
        self.client_id = client_id
        prefix = topics.schedules[: -len("turnlog.schedules")]
        self.group_id = group_id or f"{prefix}turnlog-scheduler"
        self._tx_prefix = f"{prefix}turnlog-scheduler"
        self.hold_at = hold_at  # test seam: "before_commit" | "after_commit"
        self.hold_marker = hold_marker
        self._parts: dict[int, _Partition] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._probe: AIOKafkaConsumer | None = None  # end offsets, outside the group
        self._request_partitions: int | None = None
        self._schedule_partitions: int | None = None
        self._log = get_logger(component="scheduler")
        self.assigned_event = asyncio.Event()
        self.stats = {"fired": 0, "skipped": 0, "transactions": 0, "records_read": 0, "ticks": 0}
        # The latest fired slots' lateness (slot -> commit), bounded (bench, metrics).
        self.lateness_ms: deque[float] = deque(maxlen=100_000)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        _txn_retry.shorten()  # its partitions' transactions run back to back
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(300, self.session_timeout_ms // 6),
            max_poll_records=5000,
            fetch_max_wait_ms=DEFAULT_FETCH_WAIT_MS,  # idle: few empty fetches
        )
        self._probe = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=f"{self.client_id}-probe",
        )
        await self._probe.start()
        # Subscribed before start, as aiokafka wants (the group coordinator is made then).
        self._consumer.subscribe([self.topics.schedules], listener=_Listener(self))
        await self._consumer.start()
        self._log.info("scheduler.started", group=self.group_id)

    async def stop(self) -> None:
        async with self._lock:
            for part in self._parts.values():
                await part.producer.stop()
            self._parts.clear()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._probe is not None:
            await self._probe.stop()
            self._probe = None
        close = getattr(self.probe, "close", None)
        if close is not None:
            await close()

    async def run(self, stop: asyncio.Event) -> None:
        """Read and fire until `stop` is set."""
        assert self._consumer is not None, "start() first"
        fire_task = asyncio.create_task(self._fire_loop(stop), name="scheduler-fire")
        try:
            while not stop.is_set():
                if fire_task.done():
                    fire_task.result()  # a failure of the firing loop ends the worker
                batch = await self._consumer.getmany(timeout_ms=100, max_records=5000)
                for tp, records in batch.items():
                    self._absorb(tp.partition, records)
                for part in list(self._parts.values()):
                    if not part.live:
                        await self._check_live(part)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await fire_task

    def owned_partitions(self) -> set[int]:
        return {p for p, part in self._parts.items() if part.ready}

    def schedule_count(self) -> int:
        return sum(len(part.states) for part in self._parts.values())

    def states(self) -> dict[str, ScheduleState]:
        """Every schedule this scheduler holds (inspection, bench)."""
        out: dict[str, ScheduleState] = {}
        for part in self._parts.values():
            out.update(part.states)
        return out

    # ------------------------------------------------------------------ reading

    def _absorb(self, p: int, records: Sequence[Any]) -> None:
        part = self._parts.get(p)
        if part is None:
            return
        for rec in records:
            if rec.value is None:  # a tombstone: nothing to fold
                continue
            try:
                record = decode_schedule_record(rec.value)
            except DecodeError as exc:
                self._log.warning(
                    "scheduler.undecodable", partition=p, offset=rec.offset, error=str(exc)
                )
                continue
            self.stats["records_read"] += 1
            sid = record.schedule_id
            state = fold(part.states.get(sid), record)
            part.states[sid] = state
            if isinstance(record.payload, ScheduleFired) and record.payload.fired:
                part.fired_at[sid] = record.occurred_at
            if part.live:
                self._schedule(part, sid)

    async def _check_live(self, part: _Partition) -> None:
        assert self._consumer is not None
        tp = TopicPartition(self.topics.schedules, part.number)
        with contextlib.suppress(Exception):  # revoked meanwhile: the next rebalance says
            if await self._consumer.position(tp) < part.target:
                return
            part.live = True  # records read from now on are scheduled as they come
            for i, sid in enumerate(list(part.states)):
                self._schedule(part, sid)
                if i % 1000 == 999:
                    # 100,000 next slots take seconds: let the group's heartbeat (on
                    # this loop) through, or the group drops us and the restore repeats.
                    await asyncio.sleep(0)
                    if self._parts.get(part.number) is not part:
                        return
            part.ready = True
            self._log.info(
                "scheduler.partition_live", partitions=[part.number], schedules=len(part.states)
            )
            await self._publish_file_schedules(part)
            self.assigned_event.set()

    def _schedule(self, part: _Partition, sid: str) -> None:
        """(Re)compute when schedule `sid` is next due; push it on the heap."""
        state = part.states[sid]
        due = next_slot(state)
        if due is None:
            part.next_due.pop(sid, None)
            return
        if part.next_due.get(sid) == due:
            return
        part.next_due[sid] = due
        heapq.heappush(part.heap, (due, sid))

    # ------------------------------------------------------------------ rebalance

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:  # the firing in flight finishes first
            for tp in revoked:
                part = self._parts.pop(tp.partition, None)
                if part is not None:
                    await part.producer.stop()
            self._log.info(
                "scheduler.partitions_revoked", partitions=sorted(tp.partition for tp in revoked)
            )

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        assert self._consumer is not None and self._probe is not None
        async with self._lock:
            new = sorted((tp for tp in assigned if tp.partition not in self._parts),
                         key=lambda t: t.partition)  # fmt: skip
            # All fences at once, and no partition read before they are done: this
            # callback must end well within the group's session timeout.
            producers = await asyncio.gather(*(self._fencing_producer(tp.partition) for tp in new))
            # After the fences: each previous owner's last transaction is complete, so the
            # end offsets (read_committed) cover every firing that happened.
            ends = await self._probe.end_offsets(new) if new else {}
            if new:
                await self._consumer.seek_to_beginning(*new)
            for tp, producer in zip(new, producers, strict=True):
                self._parts[tp.partition] = _Partition(tp.partition, producer, int(ends[tp]))
            self._log.info(
                "scheduler.partitions_restoring", partitions=sorted(tp.partition for tp in assigned)
            )

    async def _fencing_producer(self, p: int) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=f"{self._tx_prefix}-p{p}",
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            client_id=f"{self.client_id}-p{p}",
        )
        await producer.start()
        await producer.begin_transaction()
        await producer.abort_transaction()
        return producer

    async def _publish_file_schedules(self, part: _Partition) -> None:
        """Schedules of the agent file that belong to this partition and differ from
        what the topic holds are (re)defined. One removed at run time stays removed;
        one paused at run time stays paused (the file does not say `paused`)."""
        if self._schedule_partitions is None:
            found = await part.producer.partitions_for(self.topics.schedules)
            self._schedule_partitions = len(found)
        now = self.clock()
        records: list[ScheduleRecord] = []
        for sid, spec in self.file_schedules.items():
            if partition_for(sid, self._schedule_partitions) != part.number:
                continue
            state = part.states.get(sid)
            if state is not None and (state.removed or _same(state.spec, spec)):
                continue
            if state is not None and state.paused:
                spec = _with_paused(spec)
            records.append(ScheduleRecord(sid, now, spec))
        if not records:
            return
        async with self._lock:
            if self._parts.get(part.number) is not part:
                return
            await self._commit(part, [], records)
        for record in records:
            part.states[record.schedule_id] = fold(part.states.get(record.schedule_id), record)
            self._schedule(part, record.schedule_id)
        self._log.info("schedules.published", partition=part.number, count=len(records))

    # ------------------------------------------------------------------ firing

    async def _fire_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            async with self._lock:
                for part in list(self._parts.values()):
                    if part.live and self._parts.get(part.number) is part:
                        await self._fire_due(part)
            self.stats["ticks"] += 1
            elapsed = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, self.tick_s - elapsed))

    async def _fire_due(self, part: _Partition) -> None:
        now = self.clock()
        due: list[str] = []
        while part.heap and part.heap[0][0] <= now:
            at, sid = heapq.heappop(part.heap)
            if part.next_due.get(sid) == at:
                del part.next_due[sid]
                due.append(sid)
        if not due:
            return
        previous: dict[str, datetime] = {}
        for sid in due:
            prev = _previous_run(part.states[sid])
            if prev is not None:
                previous[prev] = part.fired_at.get(sid, _LONG_AGO)
        running: set[str] = set()
        if self.probe is not None and previous:
            running = await self.probe.running(previous, now)
        requests: list[Request] = []
        firings: list[ScheduleRecord] = []
        waiting: list[str] = []
        for sid in due:
            state = part.states[sid]
            spec = state.spec
            if spec is None:
                continue
            decisions = due_slots(state, now, self.grace)
            prev = _previous_run(state)
            for i, decision in enumerate(decisions):
                fired = False
                overlap = "none"
                session_id: str | None = None
                request_id: str | None = None
                if decision.fire:
                    # Overlap is judged once per schedule and pass: slots caught up
                    # together ("all") start together.
                    verdict = resolve_overlap(spec, i == 0 and prev in running)
                    if verdict.wait:
                        waiting.append(sid)
                        if sid not in part.queued:
                            part.queued.add(sid)
                            self._log.info(
                                "schedule.queued",
                                schedule_id=sid,
                                slot=decision.slot.isoformat(),
                                previous_session_id=prev,
                            )
                        break
                    overlap = verdict.overlap
                    if i == 0 and sid in part.queued:
                        part.queued.discard(sid)
                        overlap = "queued" if overlap == "none" else overlap
                    if verdict.cancel_previous and prev is not None:
                        cancel_id = f"cancel:{request_id_for(sid, decision.slot)}"
                        reason = f"schedule {sid}: overlap=cancel"
                        requests.append(_request(prev, cancel_id, now, CancelTurn(reason), None))
                    if verdict.fire:
                        session_id = spec.session_id or run_session_id(sid, decision.slot)
                        request_id = request_id_for(sid, decision.slot)
                        requests.append(
                            _request(
                                session_id, request_id, now, SendMessage(spec.message), spec.agent
                            )
                        )
                        fired = True
                firings.append(
                    ScheduleRecord(
                        sid,
                        now,
                        ScheduleFired(
                            slot=decision.slot,
                            fired=fired,
                            request_id=request_id,
                            session_id=session_id,
                            overlap=overlap,
                            catch_up=decision.catch_up,
                            missed=decision.missed,
                            previous_session_id=prev,
                        ),
                    )
                )
        if firings:
            try:
                await self._commit(part, requests, firings)
            except ProducerFenced:
                self._log.warning("scheduler.partition_fenced", partition=part.number)
                self._parts.pop(part.number, None)
                await part.producer.stop()
                return
            except KafkaError as exc:
                self._log.warning("scheduler.commit_failed", partition=part.number, error=str(exc))
                for sid in due:  # tried again on the next tick
                    self._requeue(part, sid, now)
                return
            self._hold("after_commit")
            committed = self.clock()
            for record in firings:
                sid = record.schedule_id
                part.states[sid] = fold(part.states[sid], record)
                payload = record.payload
                assert isinstance(payload, ScheduleFired)
                late_ms = (now - payload.slot).total_seconds() * 1000
                if payload.fired:
                    part.fired_at[sid] = now
                    self.stats["fired"] += 1
                    # Lateness as a run sees it: from the slot to the commit.
                    self.lateness_ms.append((committed - payload.slot).total_seconds() * 1000)
                else:
                    self.stats["skipped"] += 1
                self._log.info(
                    "schedule.fired" if payload.fired else "schedule.skipped",
                    schedule_id=sid,
                    slot=payload.slot.isoformat(),
                    session_id=payload.session_id,
                    overlap=payload.overlap,
                    catch_up=payload.catch_up,
                    missed=payload.missed,
                    late_ms=round(late_ms, 1),
                )
        for sid in due:
            if sid in waiting:
                self._requeue(part, sid, now)
            elif sid in part.states:
                self._schedule(part, sid)

    def _requeue(self, part: _Partition, sid: str, now: datetime) -> None:
        again = now + timedelta(seconds=1)
        part.next_due[sid] = again
        heapq.heappush(part.heap, (again, sid))

    async def _request_partition_count(self, producer: AIOKafkaProducer) -> int:
        if self._request_partitions is None:
            parts = await producer.partitions_for(self.topics.requests)
            self._request_partitions = len(parts)
        return self._request_partitions

    async def _commit(
        self, part: _Partition, requests: Sequence[Request], records: Sequence[ScheduleRecord]
    ) -> None:
        """One transaction: the requests, the schedule records (partition p) and the
        firings among them again on the history topic (partition p)."""
        producer = part.producer
        n = await self._request_partition_count(producer)
        await producer.begin_transaction()
        try:
            sends = [
                await producer.send(
                    self.topics.requests,
                    value=encode_request(req),
                    key=req.session_id.encode(),
                    partition=partition_for(req.session_id, n),
                )
                for req in requests
            ]
            sends += [
                await producer.send(
                    self.topics.schedules,
                    value=encode_schedule_record(rec),
                    key=key_for(rec.schedule_id, rec).encode(),
                    partition=part.number,
                )
                for rec in records
            ]
            # Each firing also goes to the history topic (never compacted), which the
            # schedule_runs projection is rebuilt from.
            sends += [
                await producer.send(
                    self.topics.schedule_history,
                    value=encode_schedule_record(rec),
                    key=key_for(rec.schedule_id, rec).encode(),
                    partition=part.number,
                )
                for rec in records
                if isinstance(rec.payload, ScheduleFired)
            ]
            await asyncio.gather(*sends)
            self._hold("before_commit")
            await producer.commit_transaction()
        except ProducerFenced:
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            raise
        self.stats["transactions"] += 1

    def _hold(self, where: str) -> None:
        """Test seam: stop the whole process here (a test SIGKILLs it)."""
        if self.hold_at != where:
            return
        if self.hold_marker is not None:
            self.hold_marker.write_text(where, encoding="utf-8")
        self._log.warning("scheduler.held", at=where)
        while True:  # blocks the event loop on purpose: nothing else may happen
            time.sleep(3600)


_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


def _previous_run(state: ScheduleState) -> str | None:
    """The session whose turn a new slot may overlap: the fixed session, or the
    session of the last run."""
    if state.spec is not None and state.spec.session_id is not None:
        return state.spec.session_id
    return state.last_session_id


def _request(
    session_id: str, request_id: str, now: datetime, payload: Any, agent: str | None
) -> Request:
    """A request of the scheduler. Its occurred_at is the wall clock, not the scheduler's
    (injected) clock: it is the sender's claim of when it sent, which the session worker
    checks against the broker's append time; the slot is in the request id."""
    del now
    return Request(
        request_id=request_id,
        session_id=session_id,
        occurred_at=system_clock(),
        payload=payload,
        agent=agent,
    )


def _same(a: ScheduleDefined | None, b: ScheduleDefined) -> bool:
    if a is None:
        return False
    return _with_paused(a, False) == _with_paused(b, False)


def _with_paused(spec: ScheduleDefined, paused: bool = True) -> ScheduleDefined:
    from dataclasses import replace

    return replace(spec, paused=paused)
