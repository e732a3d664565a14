"""The projector worker: turnlog.events → Postgres, exactly once.

Rule: Kafka only delivers; Postgres decides. The consumer reads with
isolation_level=read_committed; the position of every partition lives in
`projector_offsets` and moves in the same transaction as the rows (projections.store).
On assignment the projector seeks to the stored positions.

The positions are also mirrored to the consumer group's offsets in Kafka, at most once
a second and at a clean stop (advisory: nothing reads them back), so that
`kafka-consumer-groups`, Burrow or a lag exporter see the projector's lag. A partition
whose fetched records are all applied commits the consumer's position rather than the
next record's offset: past the transaction markers at the end of the log, so a
caught-up projector shows a lag of 0, not 1 (`lag()` counts the same way).

Why a consumer group with a rebalance listener rather than manual assignment: several
projector processes can then share the partitions and take over from each other without
an operator. The group coordinator only tracks membership; a process that still holds a
partition it has lost (a zombie mid-batch) cannot double-apply, because each transaction
locks the partition's offset row and checks it is where this process left it.
`group_id=None` assigns every partition to this process (used by rebuild and tests).

A partition that stops (seq gap, conflicting duplicate, undecodable record) is paused
and recorded in its offset row; by default the worker then exits with an error
(`PartitionStopped`), and on restart it leaves that partition paused — logging it on
every assignment — while it keeps projecting the others. Nothing is skipped.

An event whose rows Postgres refuses does not stop anything: it is quarantined
(projections.quarantine) with an error-level `projection.quarantined` log line, counted
in `quarantined`, and its partition goes on. Losing Postgres (a restart, a terminated
backend) does not stop the worker either: it reconnects with backoff, re-reads every
owned partition's stored position and seeks there, so a transaction whose commit was
lost in the cut is neither lost nor applied twice.

Run it with `turnlog worker projector`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.errors import IllegalStateError, KafkaError
from psycopg import AsyncConnection

from agents.errors import DecodeError, ExternalError
from projections._clean import needs_cleaning
from projections.agent_versions import agents_topic_for, keep_refreshing
from projections.audit import AuditHead, publish_checkpoint
from projections.quarantine import Quarantined, apply_isolating, is_transient
from projections.store import (
    BatchResult,
    PartitionStopped,
    Record,
    Stop,
    load_positions,
)

__all__ = ["Projector", "ProjectorConfig", "run_projector"]

log = structlog.get_logger("turnlog.projector")


# fetch.max.wait.ms when the settings do not say (TURNLOG_FETCH_WAIT_MS): the broker
# answers a fetch as soon as a record comes, so this is what an idle projector pays in
# empty fetches. The same figure as the workers' (streams.topics.DEFAULT_FETCH_WAIT_MS;
# the layers keep the two packages apart, tests/unit/test_settings.py that they agree).
DEFAULT_FETCH_WAIT_MS = 200


@dataclass(frozen=True, slots=True)
class ProjectorConfig:
    bootstrap: str
    database_url: str
    events_topic: str
    checkpoints_topic: str | None
    consumer: str = "projector"
    # None: assign every partition to this process; a name: share them with a group.
    group_id: str | None = "turnlog-projector"
    max_records: int = 5000
    poll_timeout_ms: int = 200
    checkpoint_interval: float = 5.0
    stop_on_gap: bool = True
    # How soon the group notices a dead member (a kill -9) and hands its partitions on.
    session_timeout_ms: int = 10_000
    # Backoff between attempts to reach Postgres again after losing it (doubling).
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 5.0
    # Seconds between `projector.metrics` log lines (the counters of `stats()`).
    metrics_interval_s: float = 30.0
    # Seconds between mirrors of the stored positions to the group's offsets in Kafka.
    group_commit_interval_s: float = 1.0
    # fetch.max.wait.ms (TURNLOG_FETCH_WAIT_MS): what idling costs in empty fetches.
    fetch_wait_ms: int = DEFAULT_FETCH_WAIT_MS


def decode(partition: int, offset: int, value: bytes | None) -> Record:
    """A consumed record made ready for the store: decoded, canonical JSON, digest."""
    from schemas.codec import canonical_event_json, decode_event

    if value is None:
        return Record(partition, offset, None, error="the record has no value (a tombstone)")
    try:
        event = decode_event(value)
    except DecodeError as exc:
        return Record(partition, offset, None, error=str(exc))
    canonical = canonical_event_json(event)
    try:
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:
        # A lone surrogate (not UTF-8): hashed as Python spells it, stored cleaned.
        digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
        return Record(partition, offset, event, canonical, digest, dirty=True, raw=value)
    return Record(
        partition, offset, event, canonical, digest, dirty=needs_cleaning(canonical), raw=value
    )


@dataclass(slots=True)
class _Fetched:
    batch: dict[int, list[Record]]
    # The seek epoch of each partition when its records were fetched.
    epochs: dict[int, int]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self._projector = projector

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._projector._forget(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._projector._take(assigned)
        self._projector.joined = True


class Projector:
    """One projector process. `run()` until stopped (or caught up, when asked)."""

    def __init__(self, config: ProjectorConfig) -> None:
        self.config = config
        self._conn: AsyncConnection[Any] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._db_lock = asyncio.Lock()
        # Where the stored position of each owned partition is (as this process wrote it).
        self._expected: dict[int, int] = {}
        self._stopped: dict[int, Stop] = {}
        # Bumped on every seek/pause of a partition: a prefetched batch from before is stale.
        self._epoch: dict[int, int] = {}
        self._stopping = asyncio.Event()
        self._head: AuditHead | None = None
        self._published: AuditHead | None = None
        self._last_publish = 0.0
        self.applied = 0
        self.batches = 0
        # Times a stored position was found moved by someone else (rebuild, other process).
        self.reseeks = 0
        # Events set aside in projection_quarantine (failed, or held behind one that did).
        self.quarantined = 0
        # Times the Postgres connection was lost and made again.
        self.reconnects = 0
        # Set when positions could not be loaded (Postgres away): re-take before applying.
        self._resync = False
        # Transient failures in a row (the backoff before trying the same events again).
        self._failures = 0
        self._last_metrics = time.monotonic()
        # Seconds spent decoding and in the database (for the benchmark's breakdown).
        self.decode_seconds = 0.0
        self.db_seconds = 0.0
        # perf_counter() at the start of the first and the end of the last transaction.
        self.first_batch_at: float | None = None
        self.last_batch_at: float | None = None
        # Mirror of the stored positions in the consumer group (advisory, for lag tools):
        # the offset last committed per partition, when, and how many commits.
        self._group_offsets: dict[int, int] = {}
        self._last_group_commit = 0.0
        self.group_commits = 0
        # One past the last record fetched per partition (fetched, maybe not applied).
        self._fetched_to: dict[int, int] = {}
        self._group_task: asyncio.Task[None] | None = None
        # Set once the group assigned partitions (even none) to this process.
        self.joined = False

    # -------------------------------------------------------------- assignment

    def _forget(self, revoked: Any) -> None:
        for tp in revoked:
            if tp.topic == self.config.events_topic:
                self._epoch[tp.partition] = self._epoch.get(tp.partition, 0) + 1
                self._expected.pop(tp.partition, None)
                self._stopped.pop(tp.partition, None)
                self._group_offsets.pop(tp.partition, None)

    async def _take(self, assigned: Any) -> None:
        cfg = self.config
        tps = [tp for tp in assigned if tp.topic == cfg.events_topic]
        if not tps:
            return
        assert self._conn is not None and self._consumer is not None
        try:
            async with self._db_lock:
                positions = await load_positions(
                    self._conn, cfg.consumer, cfg.events_topic, [tp.partition for tp in tps]
                )
        except psycopg.Error as exc:
            if not is_transient(exc, self._conn):
                raise
            # Called from the rebalance listener too, which must not raise: the main loop
            # reconnects and takes every owned partition again. Until then these are not
            # in _expected, so nothing fetched from them is applied.
            for tp in tps:
                self._epoch[tp.partition] = self._epoch.get(tp.partition, 0) + 1
                self._expected.pop(tp.partition, None)
            self._resync = True
            log.warning(
                "could not load stored positions; will reconnect",
                partitions=[tp.partition for tp in tps],
                error=str(exc).strip(),
            )
            return
        for tp in tps:
            offset, stop = positions[tp.partition]
            self._epoch[tp.partition] = self._epoch.get(tp.partition, 0) + 1
            if stop is not None:
                self._stopped[tp.partition] = stop
                self._consumer.pause(tp)
                log.error(
                    "partition stopped; not consuming it until an operator clears it",
                    topic=cfg.events_topic,
                    partition=tp.partition,
                    offset=stop.offset,
                    reason=stop.reason,
                )
                continue
            self._consumer.seek(tp, offset)
            self._expected[tp.partition] = offset
            self._fetched_to[tp.partition] = offset
        log.info(
            "partitions assigned",
            topic=cfg.events_topic,
            partitions={tp.partition: positions[tp.partition][0] for tp in tps},
        )

    # -------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        self._stopping.set()

    async def _start(self) -> None:
        cfg = self.config
        pause = 0.5
        while True:
            try:
                self._conn = await AsyncConnection.connect(cfg.database_url)
                break
            except psycopg.OperationalError as exc:
                # A refused login or a missing database is a configuration error: say so
                # at once. A server that is not there (yet) is waited for: a projector
                # (re)started during a PostgreSQL restart must not exit.
                if (exc.sqlstate or "").startswith(("28", "3D")) or self._stopping.is_set():
                    raise ExternalError(
                        f"The projector cannot reach Postgres: {str(exc).strip()}"
                    ) from exc
                log.warning(
                    "postgres unreachable at start; waiting",
                    error=str(exc).strip(),
                    retry_in_s=pause,
                )
                pause = await self._pause(pause)
        while True:
            consumer = self._new_consumer()
            try:
                await consumer.start()
                break
            except KafkaError as exc:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                if self._stopping.is_set():
                    raise
                log.warning(
                    "kafka unreachable at start; waiting", error=repr(exc), retry_in_s=pause
                )
                pause = await self._pause(pause)
        self._consumer = consumer
        if cfg.group_id is None:
            partitions = self._consumer.partitions_for_topic(cfg.events_topic)
            if not partitions:
                await self._consumer._client.force_metadata_update()
                partitions = self._consumer.partitions_for_topic(cfg.events_topic)
            if not partitions:
                raise ExternalError(f"Topic {cfg.events_topic} does not exist.")
            tps = [TopicPartition(cfg.events_topic, p) for p in sorted(partitions)]
            self._consumer.assign(tps)
            await self._take(tps)
            self.joined = True
        else:
            self._consumer.subscribe([cfg.events_topic], listener=_Listener(self))
        if cfg.checkpoints_topic:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=cfg.bootstrap, acks="all", enable_idempotence=True
            )
            await self._producer.start()

    async def _pause(self, seconds: float) -> float:
        """Wait `seconds` (less if stopped meanwhile); the next, longer pause."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return min(seconds * 2, 15.0)

    def _new_consumer(self) -> AIOKafkaConsumer:
        cfg = self.config
        return AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap,
            group_id=cfg.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=cfg.fetch_wait_ms,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(100, cfg.session_timeout_ms // 5),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    async def _close(self) -> None:
        if self._producer is not None:
            try:
                await self._maybe_publish(force=True)
            finally:
                await self._producer.stop()
        if self._consumer is not None:
            await self._mirror_offsets(force=True)
            await self._consumer.stop()
        if self._conn is not None:
            await self._conn.close()

    async def run(self, *, until_caught_up: bool = False) -> None:
        """Project until `stop()` (or, with until_caught_up, until every partition has
        reached the end it had when the run started). Raises PartitionStopped after
        committing everything before the stop, when config.stop_on_gap.

        Fetching and decoding the next batch overlaps the database work of the current
        one (the decode yields to the event loop every few hundred records), so the
        two cores are kept busy: Python decodes while Postgres writes."""
        await self._start()
        pending: asyncio.Task[_Fetched | None] | None = None
        cfg = self.config
        versions = asyncio.create_task(
            keep_refreshing(
                cfg.bootstrap,
                agents_topic_for(cfg.events_topic),
                cfg.database_url,
                self._stopping,
                log,
            )
        )
        try:
            targets = await self._end_offsets() if until_caught_up else None
            while not self._stopping.is_set():
                self._maybe_log_metrics()
                await self._mirror_offsets()
                if self._resync:
                    await self._recover()
                    continue
                fetched = await (pending or self._fetch())
                pending = None
                if fetched is None:
                    await self._maybe_publish()
                    if targets is not None and await self._caught_up(targets):
                        return
                    continue
                pending = asyncio.create_task(self._fetch())
                await self._apply(fetched)
        finally:
            versions.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await versions
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending
            await self._close()

    async def _fetch(self) -> _Fetched | None:
        """One poll, decoded; None when the poll brought nothing."""
        cfg = self.config
        assert self._consumer is not None
        polled = await self._consumer.getmany(
            timeout_ms=cfg.poll_timeout_ms, max_records=cfg.max_records
        )
        for tp, records in polled.items():  # before any await: see _applied_to
            if records:
                self._fetched_to[tp.partition] = records[-1].offset + 1
        started = time.perf_counter()
        fetched = _Fetched({}, {})
        for tp, records in polled.items():
            if tp.topic != cfg.events_topic or not records:
                continue
            fetched.epochs[tp.partition] = self._epoch.get(tp.partition, 0)
            out: list[Record] = []
            for i, r in enumerate(records):
                out.append(decode(tp.partition, r.offset, r.value))
                if i % 256 == 255:
                    await asyncio.sleep(0)  # let the database round trips of _apply go on
            fetched.batch[tp.partition] = out
        self.decode_seconds += time.perf_counter() - started
        return fetched if fetched.batch else None

    async def _apply(self, fetched: _Fetched) -> BatchResult | None:
        """One transaction for one fetched batch."""
        cfg = self.config
        assert self._consumer is not None and self._conn is not None
        # Records fetched before a seek of their partition are from the old position.
        batch = {
            p: records
            for p, records in fetched.batch.items()
            if fetched.epochs[p] == self._epoch.get(p, 0) and p in self._expected
        }
        if not batch:
            return None
        started = time.perf_counter()
        if self.first_batch_at is None:
            self.first_batch_at = started
        failed: list[Quarantined] = []
        async with self._db_lock:
            try:
                result: BatchResult | None = await apply_isolating(
                    self._conn, cfg.consumer, cfg.events_topic, batch, self._expected, failed
                )
            except psycopg.Error as exc:
                if not is_transient(exc, self._conn):
                    raise
                result = None
                lost = self._conn.broken or self._conn.closed
                delay = min(cfg.reconnect_initial_s * 2**self._failures, cfg.reconnect_max_s)
                self._failures += 1
                log.warning(
                    "projecting a batch failed; recovering",
                    error=str(exc).strip(),
                    connection_lost=lost,
                    retry_in_s=0 if lost else delay,
                )
        if result is None:
            # Lost, or rolled back (deadlock, cancel, read-only): whatever committed is in
            # the stored positions; the next loop reconnects if need be (with its own
            # backoff) and seeks there, after a pause that grows while failures go on.
            self._resync = True
            if not lost:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            return None
        self._failures = 0
        self.last_batch_at = time.perf_counter()
        self.db_seconds += self.last_batch_at - started
        self.batches += 1
        self.applied += result.applied
        self.quarantined += result.quarantined
        for q in failed:
            # Alert-worthy: an event of the log is not in the projections until retried.
            log.error(
                "projection.quarantined",
                topic=cfg.events_topic,
                partition=q.partition,
                offset=q.offset,
                session_id=q.session_id,
                seq=q.seq,
                event_type=q.event_type,
                error=q.error,
                audited=q.audited,
                quarantined_total=self.quarantined,
                hint="turnlog projections quarantine retry",
            )
        if result.quarantined > len(failed):
            log.warning(
                "events held behind quarantined ones",
                count=result.quarantined - len(failed),
                quarantined_total=self.quarantined,
            )
        if result.head is not None:
            self._head = result.head
        first_stop: PartitionStopped | None = None
        for part in result.partitions.values():
            if self._epoch.get(part.partition, 0) != fetched.epochs[part.partition]:
                # Revoked (or re-taken) while the transaction ran: whatever it committed
                # is in the stored position, which the next owner reads; nothing to track.
                continue
            tp = TopicPartition(cfg.events_topic, part.partition)
            if part.reseek is not None:
                if part.partition in self._expected:
                    # Someone else moved the stored position (a rebuild, another process):
                    # theirs is the truth; re-read it as if newly assigned.
                    self.reseeks += 1
                    log.warning(
                        "stored position moved; re-seeking",
                        partition=part.partition,
                        expected=self._expected[part.partition],
                        stored=part.reseek,
                    )
                    await self._take([tp])
                continue
            self._expected[part.partition] = part.next_offset
            if part.stop is not None:
                self._stopped[part.partition] = part.stop
                self._expected.pop(part.partition, None)
                self._epoch[part.partition] = self._epoch.get(part.partition, 0) + 1
                self._consumer.pause(tp)
                log.error(
                    "partition stopped",
                    topic=cfg.events_topic,
                    partition=part.partition,
                    offset=part.stop.offset,
                    reason=part.stop.reason,
                )
                if first_stop is None:
                    first_stop = PartitionStopped(
                        f"Projection of {cfg.events_topic} partition {part.partition} stopped "
                        f"at offset {part.stop.offset}: {part.stop.reason}",
                        topic=cfg.events_topic,
                        partition=part.partition,
                        offset=part.stop.offset,
                    )
        await self._maybe_publish()
        if first_stop is not None and cfg.stop_on_gap:
            raise first_stop
        return result

    # -------------------------------------------------------------- helpers

    async def _maybe_publish(self, *, force: bool = False) -> None:
        if self._producer is None or self._head is None or self.config.checkpoints_topic is None:
            return
        due = time.monotonic() - self._last_publish >= self.config.checkpoint_interval
        if self._head != self._published and (due or force):
            await publish_checkpoint(self._producer, self.config.checkpoints_topic, self._head)
            self._published = self._head
            self._last_publish = time.monotonic()

    def stats(self) -> dict[str, int]:
        """The counters since start: what `projector.metrics` lines carry."""
        return {
            "events_applied": self.applied,
            "batches": self.batches,
            "events_quarantined": self.quarantined,
            "reconnects": self.reconnects,
            "reseeks": self.reseeks,
            "partitions_stopped": len(self._stopped),
            "group_commits": self.group_commits,
        }

    # -------------------------------------------------------------- lag, readiness

    async def _applied_to(self, tp: TopicPartition) -> int | None:
        """The offset up to which partition `tp` is projected, counting the transaction
        markers behind the last applied record once every fetched record is applied
        (the consumer's position has stepped over them). None: not owned."""
        applied = self._expected.get(tp.partition)
        if applied is None or self._consumer is None:
            return None
        if self._fetched_to.get(tp.partition, applied) > applied:
            return applied  # fetched records wait to be applied
        try:
            position = int(await self._consumer.position(tp))
        except (KafkaError, AssertionError, IllegalStateError):
            return applied
        return max(applied, position)

    async def lag(self) -> dict[int, int]:
        """Records of each owned partition not yet projected (the last stable offset the
        consumer has seen, less `_applied_to`): 0 when caught up, markers or not."""
        if self._consumer is None:
            return {}
        out: dict[int, int] = {}
        for p in sorted(self._expected):
            tp = TopicPartition(self.config.events_topic, p)
            end = self._consumer.last_stable_offset(tp)
            if end is None:
                end = self._consumer.highwater(tp)
            applied = await self._applied_to(tp)
            if end is not None and applied is not None:
                out[p] = max(0, int(end) - applied)
        return out

    def ready(self) -> tuple[bool, str]:
        """Connected to Postgres and consuming (partitions assigned, positions loaded)."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return False, "not connected to Postgres"
        if self._consumer is None or not self.joined:
            return False, "not consuming yet (waiting for a partition assignment)"
        if self._resync:
            return False, "recovering (re-reading stored positions)"
        return True, f"consuming partitions {sorted(self._expected)}"

    async def _mirror_offsets(self, *, force: bool = False) -> None:
        """Commit the stored positions to the consumer group (advisory; see the module
        docstring) in a task of its own: a commit held up by a rebalance never holds up
        projecting. A refusal waits for the next round; `force` (a clean stop) waits
        for the commit."""
        if self.config.group_id is None or self._consumer is None:
            return
        running = self._group_task is not None and not self._group_task.done()
        if force and running:
            assert self._group_task is not None
            with contextlib.suppress(Exception):
                await self._group_task
        elif running:
            return
        now = time.monotonic()
        if not force and now - self._last_group_commit < self.config.group_commit_interval_s:
            return
        self._last_group_commit = now
        offsets: dict[TopicPartition, int] = {}
        for p in list(self._expected):
            tp = TopicPartition(self.config.events_topic, p)
            offset = await self._applied_to(tp)
            if offset is not None and offset != self._group_offsets.get(p):
                offsets[tp] = offset
        if not offsets:
            return
        self._group_task = asyncio.create_task(self._commit_group(offsets))
        if force:
            with contextlib.suppress(Exception):
                await self._group_task

    async def _commit_group(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        try:
            await asyncio.wait_for(self._consumer.commit(offsets), 10)
        except (KafkaError, IllegalStateError, TimeoutError) as exc:
            log.info("group offsets not committed; next round", error=repr(exc))
            return
        self.group_commits += 1
        for tp, offset in offsets.items():
            self._group_offsets[tp.partition] = offset

    def _maybe_log_metrics(self) -> None:
        now = time.monotonic()
        if now - self._last_metrics >= self.config.metrics_interval_s:
            self._last_metrics = now
            log.info("projector.metrics", interval_s=self.config.metrics_interval_s, **self.stats())

    async def _recover(self) -> None:
        """Reconnect to Postgres if the connection is gone (backoff, until it answers
        or the worker is stopped), then take every owned partition again: the stored
        positions are the truth after a transaction whose outcome was not seen."""
        cfg = self.config
        assert self._consumer is not None
        delay = cfg.reconnect_initial_s
        while not self._stopping.is_set():
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                with contextlib.suppress(Exception):
                    if conn is not None:
                        await conn.close()
                try:
                    self._conn = await AsyncConnection.connect(cfg.database_url, connect_timeout=10)
                except psycopg.OperationalError as exc:
                    log.warning(
                        "Postgres unreachable; retrying", in_s=delay, error=str(exc).strip()
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    delay = min(delay * 2, cfg.reconnect_max_s)
                    continue
                self.reconnects += 1
                log.warning("reconnected to Postgres", reconnects=self.reconnects)
            self._resync = False
            owned = [
                tp
                for tp in self._consumer.assignment()
                if tp.topic == cfg.events_topic and tp.partition not in self._stopped
            ]
            await self._take(owned)
            if not self._resync:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, cfg.reconnect_max_s)

    async def _end_offsets(self) -> dict[int, int]:
        assert self._consumer is not None
        partitions = self._consumer.partitions_for_topic(self.config.events_topic) or set()
        tps = [TopicPartition(self.config.events_topic, p) for p in partitions]
        ends = await self._consumer.end_offsets(tps)
        return {tp.partition: int(off) for tp, off in ends.items()}

    async def _caught_up(self, targets: Mapping[int, int]) -> bool:
        assert self._consumer is not None
        owned = self._consumer.assignment()
        if not owned:
            return False
        for tp in owned:
            if tp.partition in self._stopped:
                continue
            if tp.partition not in self._expected:
                return False
            if await self._consumer.position(tp) < targets.get(tp.partition, 0):
                return False
        return True


async def run_projector(
    config: ProjectorConfig, *, until_caught_up: bool = False, projector: Projector | None = None
) -> Projector:
    """Run a projector until SIGINT/SIGTERM (or caught up); returns it for its counters.
    `projector`: one built already (its metrics endpoint serves it)."""
    projector = projector if projector is not None else Projector(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, projector.stop)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    await projector.run(until_caught_up=until_caught_up)
    return projector
