"""The schedules projector: `turnlog.schedules` -> Postgres `schedules`, `schedule_runs`.

Rule: each record is applied once. The projector's position in each partition is a row
of `schedule_projection_offsets`, locked and advanced in the same Postgres transaction
as the rows the records change; a record below it is skipped. So several projectors
(one per `turnlog worker scheduler`) may read every partition at once: the row lock
orders them and each record lands once.

Why a projector of its own and not a handler in projections/projector.py: that
projector consumes the session log (`turnlog.events`) in session order with its own
gap checks; schedules are another keyed store, with no seq, and the `next_slot` column
needs the scheduler's own slot arithmetic (streams.scheduler_plan), which the
projections package does not import. The SQL tables, their comments and the view that
joins the sessions projection are in projections/migrations/0011_schedules.sql.

The `schedules` row is the schedule's folded state (ScheduleState) as columns: each
record is folded into the state read from the row, and the row is written back with
the new next slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from agents.errors import DecodeError
from agents.events import ScheduleDefined, ScheduleFired, ScheduleRecord
from schemas.codec import decode_schedule_record
from streams.logs import get_logger
from streams.scheduler_plan import ScheduleState, fold, next_slot
from streams.topics import DEFAULT_FETCH_WAIT_MS

__all__ = ["ScheduleProjector", "apply_records"]

_COLUMNS = (
    "schedule_id, agent, message, kind, cron, timezone, every_s, start_at, at, session_id, "
    "overlap, catch_up, catch_up_limit, source, status, defined_at, not_before, updated_at, "
    "last_slot, last_session_id, next_slot"
)


def _state_of(row: dict[str, Any]) -> ScheduleState:
    spec = ScheduleDefined(
        agent=row["agent"],
        message=row["message"],
        cron=row["cron"],
        timezone=row["timezone"],
        every_s=row["every_s"],
        start_at=row["start_at"],
        at=row["at"],
        session_id=row["session_id"],
        overlap=row["overlap"],
        catch_up=row["catch_up"],
        catch_up_limit=row["catch_up_limit"],
        paused=row["status"] == "paused",
        source=row["source"],
    )
    removed = row["status"] == "removed"
    return ScheduleState(
        schedule_id=row["schedule_id"],
        spec=None if removed else spec,
        defined_at=row["defined_at"],
        paused=row["status"] == "paused",
        not_before=row["not_before"],
        removed=removed,
        last_slot=row["last_slot"],
        last_session_id=row["last_session_id"],
    )


def _kind(spec: ScheduleDefined) -> str:
    return "cron" if spec.cron is not None else "interval" if spec.every_s else "once"


async def _upsert(cur: Any, state: ScheduleState, spec: ScheduleDefined, at: datetime) -> None:
    status = "removed" if state.removed else "paused" if state.paused else "active"
    values = (
        state.schedule_id,
        spec.agent,
        spec.message,
        _kind(spec),
        spec.cron,
        spec.timezone,
        spec.every_s,
        spec.start_at,
        spec.at,
        spec.session_id,
        spec.overlap,
        spec.catch_up,
        spec.catch_up_limit,
        spec.source,
        status,
        state.defined_at,
        state.not_before,
        at,
        state.last_slot,
        state.last_session_id,
        next_slot(state),
    )
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (c.strip() for c in _COLUMNS.split(",")[1:]))
    # The counts are read from schedule_runs (a run may be projected before its
    # schedule's definition, from the history topic).
    counts = (
        "(SELECT count(*) FROM schedule_runs WHERE schedule_id = %s AND fired), "
        "(SELECT count(*) FROM schedule_runs WHERE schedule_id = %s AND NOT fired)"
    )
    await cur.execute(
        f"INSERT INTO schedules ({_COLUMNS}, runs, skipped) "
        f"VALUES ({', '.join(['%s'] * len(values))}, {counts}) "
        f"ON CONFLICT (schedule_id) DO UPDATE SET {updates}, "
        "runs = EXCLUDED.runs, skipped = EXCLUDED.skipped",
        (*values, state.schedule_id, state.schedule_id),
    )


async def apply_records(
    conn: Any, topic: str, partition: int, records: Sequence[tuple[int, bytes | None]]
) -> int:
    """Apply (offset, value) records of one partition in one transaction; returns how
    many were new. Records below the stored offset were applied before: skipped."""
    from psycopg.rows import dict_row

    applied = 0
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "INSERT INTO schedule_projection_offsets (topic, kafka_partition, next_offset) "
            "VALUES (%s, %s, 0) ON CONFLICT DO NOTHING",
            (topic, partition),
        )
        await cur.execute(
            "SELECT next_offset FROM schedule_projection_offsets "
            "WHERE topic = %s AND kafka_partition = %s FOR UPDATE",
            (topic, partition),
        )
        row = await cur.fetchone()
        assert row is not None
        start = int(row["next_offset"])
        fresh = [(o, v) for o, v in records if o >= start]
        if not fresh:
            return 0
        log = get_logger(component="schedule-projector")
        for offset, value in fresh:
            if value is None:
                continue
            try:
                record = decode_schedule_record(value)
            except DecodeError as exc:
                log.warning(
                    "schedules.undecodable", partition=partition, offset=offset, error=str(exc)
                )
                continue
            await _apply(cur, record, partition, offset)
            applied += 1
        await cur.execute(
            "UPDATE schedule_projection_offsets SET next_offset = %s "
            "WHERE topic = %s AND kafka_partition = %s",
            (fresh[-1][0] + 1, topic, partition),
        )
    return applied


async def _apply(cur: Any, record: ScheduleRecord, partition: int, offset: int) -> None:
    sid = record.schedule_id
    await cur.execute("SELECT * FROM schedules WHERE schedule_id = %s FOR UPDATE", (sid,))
    row = await cur.fetchone()
    before = _state_of(row) if row is not None else None
    after = fold(before, record)
    payload = record.payload
    if isinstance(payload, ScheduleFired):
        late_ms = (record.occurred_at - payload.slot).total_seconds() * 1000
        await cur.execute(
            "INSERT INTO schedule_runs (schedule_id, slot, fired, request_id, session_id, "
            "overlap, catch_up, missed, previous_session_id, fired_at, late_ms, "
            "kafka_partition, kafka_offset) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (schedule_id, slot) DO NOTHING RETURNING fired",
            (
                sid,
                payload.slot,
                payload.fired,
                payload.request_id,
                payload.session_id,
                payload.overlap,
                payload.catch_up,
                payload.missed,
                payload.previous_session_id,
                record.occurred_at,
                late_ms,
                partition,
                offset,
            ),
        )
        await cur.fetchone()
    spec = after.spec or (before.spec if before is not None else None)
    if spec is None and row is not None:
        spec = _state_of({**row, "status": "active"}).spec
    if spec is not None:
        await _upsert(cur, after, spec, record.occurred_at)


class ScheduleProjector:
    """Reads every partition of `topics` (the schedules topic and its history topic,
    read_committed) from the stored offsets and applies each batch in one Postgres
    transaction per partition. A firing is on both: the compacted topic keeps a
    schedule's last one only, the history topic every one (schedule_runs is rebuilt from
    it); a run row is inserted once whichever comes first."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        database_url: str,
        *,
        client_id: str = "turnlog-schedule-projector",
        max_records: int = 2000,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.database_url = database_url
        self.client_id = client_id
        self.max_records = max_records
        self.applied = 0
        self._log = get_logger(component="schedule-projector")

    async def run(self, stop: asyncio.Event) -> None:
        import psycopg

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=self.client_id,
            fetch_max_wait_ms=DEFAULT_FETCH_WAIT_MS,  # idle: few empty fetches
        )
        await consumer.start()
        try:
            tps: list[TopicPartition] = []
            for topic in self.topics:
                found = consumer.partitions_for_topic(topic)
                while not found and not stop.is_set():
                    # As streams.logread does: the client's metadata, refreshed (the topic
                    # is created by `turnlog topics ensure`, maybe a moment ago).
                    await consumer._client.force_metadata_update()
                    found = consumer.partitions_for_topic(topic)
                    if not found:
                        await asyncio.sleep(0.5)
                tps += [TopicPartition(topic, p) for p in sorted(found or ())]
            consumer.assign(tps)
            async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
                cur = await conn.execute(
                    "SELECT topic, kafka_partition, next_offset FROM schedule_projection_offsets "
                    "WHERE topic = ANY(%s)",
                    (list(self.topics),),
                )
                stored = {(t, int(p)): int(o) for t, p, o in await cur.fetchall()}
                await conn.commit()
                for tp in tps:
                    consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))
                self._log.info("schedule_projector.started", partitions=len(tps))
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                    for tp, records in batch.items():
                        rows = [(r.offset, r.value) for r in records]
                        self.applied += await apply_records(conn, tp.topic, tp.partition, rows)
        except KafkaError as exc:
            self._log.error("schedule_projector.kafka_failed", error=str(exc))
            raise
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
