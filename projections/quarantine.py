"""Quarantine: one event that PostgreSQL refuses does not stop its partition.

Rule: when the transaction of a batch fails because of what an event holds (Postgres
rejects a row: a constraint, a trigger, a value it cannot store — not a lost connection
or a deadlock, which are retried), the batch is split in halves until the failing event
is alone; everything before it is committed as usual, the event itself is written to
`projection_quarantine` (with its coordinates, the error and the raw record) in the
transaction that moves the partition's offset past it, and the partition goes on with
the next event. Exactly once still holds: every event is either projected or
quarantined, in a transaction that also moves the stored offset.

Ordering guarantee: per session, not per partition. Once an event of a session is
quarantined, every later event of that session is held in quarantine behind it (nothing
of that session is projected past the hole); other sessions, of the same partition too,
go on. A held session's audit_log rows are still written in log order: the audit log
records the log, not the projection. Rows that other sessions derive from a held one —
a parent's row for its child's delegated call, a fork's inherited branch — follow their
own sessions' events and may show the held session's rows as missing until a retry.

`retry_quarantined` re-applies a session's quarantined events in seq order, each in one
transaction that projects it and deletes its row (locking the partition's offset row, so
it serialises with the projector of that partition), and stops at the first that fails
again (its attempts, time and error are updated). A rebuild deletes the quarantined rows
with the projections and re-derives them by replaying.

Exception tree (what `is_event_failure` calls a failure of the event):
    psycopg.Error, not OperationalError ... the event's rows were refused: quarantine
      but SQLSTATE class 42, 28, 3D, 3F, XX  our SQL, schema or grants are wrong (a
                                             migration not run): raised, not the event
      and SQLSTATE class 08, 25, 40, 53, 55, 57, 58, the connection lost, or
    psycopg.OperationalError ............... the database is away, busy or read-only
                                             for now (`is_transient`): the projector
                                             backs off and tries the same events again
    ValueError, TypeError, OverflowError ... a value psycopg could not dump: quarantine
    anything else .......................... a defect: raised
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from agents.errors import ContractError, ExternalError
from projections._clean import clean_text
from projections._quarantine import held_sessions, insert_quarantine
from projections._staging import copy_rows, ensure_stage, merge_links, write_partition_rows
from projections.audit import AUDIT_COLUMNS, AuditHead, chain_rows
from projections.fold import Verdict, classify, fold
from projections.rows import Changes
from projections.store import (
    BatchResult,
    PartitionResult,
    Record,
    Stop,
    apply_batch,
    load_sessions,
)

__all__ = [
    "Quarantined",
    "RetryReport",
    "apply_isolating",
    "describe_error",
    "is_event_failure",
    "is_transient",
    "list_quarantined",
    "quarantine_record",
    "retry_quarantined",
]


# SQLSTATE classes of a database that is away, busy or read-only for now (connection
# exception, invalid transaction state — a read-only standby after a failover —,
# transaction rollback, insufficient resources, object not in prerequisite state,
# operator intervention, system error): wait and try the same events again.
_TRANSIENT = frozenset({"08", "25", "40", "53", "55", "57", "58"})
# SQLSTATE classes that blame the schema, the SQL or the role, never one event's values:
# syntax error or access rule violation (an undefined table, a missing grant), invalid
# authorization, invalid catalog or schema name, internal error.
_NOT_THE_EVENT = _TRANSIENT | {"42", "28", "3D", "3F", "XX"}


def _sqlstate_class(exc: BaseException) -> str:
    return (getattr(exc, "sqlstate", None) or "")[:2]


def is_transient(exc: BaseException, conn: AsyncConnection[Any] | None = None) -> bool:
    """Whether `exc` says the database is away or busy for now: retry, do not blame."""
    if conn is not None and (conn.closed or conn.broken):
        return True
    return isinstance(exc, psycopg.OperationalError) or (
        isinstance(exc, psycopg.Error) and _sqlstate_class(exc) in _TRANSIENT
    )


def is_event_failure(exc: BaseException, conn: AsyncConnection[Any] | None = None) -> bool:
    """Whether `exc`, raised while projecting, blames the events being written (and not
    the database being away, busy, or our own code)."""
    if is_transient(exc, conn):
        return False
    if isinstance(exc, psycopg.Error):
        return _sqlstate_class(exc) not in _NOT_THE_EVENT
    return isinstance(exc, (ValueError, TypeError, OverflowError)) and not isinstance(
        exc, ContractError
    )


def describe_error(exc: BaseException) -> str:
    """One line for the quarantine row and the log: the class, SQLSTATE and message."""
    state = getattr(exc, "sqlstate", None)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}" + (f" [{state}]" if state else "") + f": {text}"


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An event that failed by itself and was set aside."""

    partition: int
    offset: int
    session_id: str
    seq: int
    event_type: str
    error: str
    audited: bool


# ------------------------------------------------------------------ the projector's side


async def apply_isolating(
    conn: AsyncConnection[Any],
    consumer: str,
    topic: str,
    batch: Mapping[int, Sequence[Record]],
    expected: Mapping[int, int],
    quarantined: list[Quarantined],
) -> BatchResult:
    """`store.apply_batch`, but an event whose rows Postgres refuses is quarantined
    instead of failing the batch; the events it failed are appended to `quarantined`.
    Raises what is not an event's failure (see is_event_failure)."""
    try:
        return await apply_batch(conn, consumer, topic, batch, expected)
    except Exception as exc:
        if not is_event_failure(exc, conn):
            raise
    # Some event of the batch is refused: isolate it, partition by partition, by halves.
    total = BatchResult()
    positions = dict(expected)

    async def attempt(partition: int, records: Sequence[Record]) -> bool:
        """Apply `records` as one transaction: True when committed (or when the
        partition cannot go further: a stop or a moved position), False when refused."""
        try:
            result = await apply_batch(conn, consumer, topic, {partition: records}, positions)
        except Exception as exc:
            if not is_event_failure(exc, conn):
                raise
            if len(records) > 1:
                return False
            part, head = await quarantine_record(
                conn, consumer, topic, records[0], exc, positions[partition], quarantined
            )
            result = BatchResult({partition: part}, head)
        _merge(total, result)
        part = result.partitions[partition]
        if part.reseek is None:
            positions[partition] = part.next_offset
        return True

    async def isolate(partition: int, records: Sequence[Record]) -> bool:
        """Commit or quarantine every record; False once the partition stopped."""
        if await attempt(partition, records):
            part = total.partitions[partition]
            return part.stop is None and part.reseek is None
        mid = len(records) // 2
        return await isolate(partition, records[:mid]) and await isolate(partition, records[mid:])

    for partition, records in sorted(batch.items()):
        if records:
            await isolate(partition, list(records))
    return total


def _merge(total: BatchResult, result: BatchResult) -> None:
    for p, part in result.partitions.items():
        acc = total.partitions.setdefault(p, PartitionResult(p, part.next_offset))
        acc.next_offset = part.next_offset
        acc.applied += part.applied
        acc.duplicates += part.duplicates
        acc.audited += part.audited
        acc.quarantined += part.quarantined
        acc.stop = part.stop
        acc.reseek = part.reseek
    if result.head is not None:
        total.head = result.head


async def quarantine_record(
    conn: AsyncConnection[Any],
    consumer: str,
    topic: str,
    record: Record,
    error: BaseException,
    expected: int,
    quarantined: list[Quarantined],
) -> tuple[PartitionResult, AuditHead | None]:
    """Set aside `record`, whose rows were refused, and move its partition past it, in
    one transaction. Its audit row is written with it; if that very row is refused, the
    event is set aside unaudited (the retry audits it). If even that fails, the
    partition stops there (recorded in its offset row, as for a seq gap)."""
    event = record.event
    assert event is not None, "an undecodable record stops its partition before any write"
    reason = describe_error(error)
    for with_audit in (True, False):
        try:
            async with conn.transaction():
                cur = conn.cursor()
                await cur.execute(
                    "SELECT next_offset, audit_next_offset, stopped_offset FROM projector_offsets "
                    "WHERE consumer = %s AND topic = %s AND partition = %s FOR UPDATE",
                    (consumer, topic, record.partition),
                )
                row = await cur.fetchone()
                if row is None or int(row[0]) != expected or row[2] is not None:
                    stored = expected if row is None else int(row[0])
                    return PartitionResult(record.partition, stored, reseek=stored), None
                audit_due = record.offset >= int(row[1])
                held = await held_sessions(cur, [event.session_id])
                queue = held.get(event.session_id)
                behind = queue.first if queue is not None and event.seq > queue.first else None
                await insert_quarantine(
                    cur,
                    consumer,
                    topic,
                    record,
                    reason,
                    held_behind=behind,
                    audited=with_audit or not audit_due,
                )
                part = PartitionResult(record.partition, record.offset + 1, quarantined=1)
                head = None
                if with_audit and audit_due:
                    head = await append_audit(cur, [record])
                    part.audited = 1
                await cur.execute(
                    "UPDATE projector_offsets SET next_offset = %s, "
                    "audit_next_offset = GREATEST(audit_next_offset, %s) "
                    "WHERE consumer = %s AND topic = %s AND partition = %s",
                    (record.offset + 1, record.offset + 1, consumer, topic, record.partition),
                )
            quarantined.append(
                Quarantined(
                    record.partition,
                    record.offset,
                    event.session_id,
                    event.seq,
                    type(event.payload).__name__,
                    reason,
                    with_audit or not audit_due,
                )
            )
            return part, head
        except Exception as exc:
            if not is_event_failure(exc, conn):
                raise
            reason = f"{reason} (then, setting it aside: {describe_error(exc)})"
    stop = Stop(
        record.offset,
        f"The event at offset {record.offset} (session "
        f"{event.session_id} seq {event.seq}) could neither be "
        f"projected nor quarantined: {reason}",
    )
    async with conn.transaction():
        await conn.execute(
            "UPDATE projector_offsets SET stopped_offset = %s, stopped_reason = %s "
            "WHERE consumer = %s AND topic = %s AND partition = %s AND next_offset = %s",
            (stop.offset, clean_text(stop.reason), consumer, topic, record.partition, expected),
        )
    part = PartitionResult(record.partition, record.offset)
    part.stop = stop
    return part, None


async def append_audit(cur: Any, records: Sequence[Record]) -> AuditHead:
    """Append the audit rows of `records` under the audit-head lock; the new head."""
    from projections.store import audit_rows

    await cur.execute("SELECT last_audit_id, head_hash FROM audit_head WHERE id = 1 FOR UPDATE")
    head_row = await cur.fetchone()
    assert head_row is not None, "audit_head row missing"
    rows, head = chain_rows(AuditHead(int(head_row[0]), str(head_row[1])), audit_rows(records))
    await copy_rows(cur, "audit_log", AUDIT_COLUMNS, rows)
    await cur.execute(
        "UPDATE audit_head SET last_audit_id = %s, head_hash = %s WHERE id = 1",
        (head.last_audit_id, head.head_hash),
    )
    return head


# ------------------------------------------------------------------ operators' side


_LIST_COLUMNS = (
    "quarantine_id",
    "consumer",
    "topic",
    "kafka_partition",
    "kafka_offset",
    "session_id",
    "seq",
    "event_id",
    "event_type",
    "held_behind_seq",
    "error",
    "first_failed_at",
    "last_failed_at",
    "attempts",
    "audited",
)


def list_quarantined(database_url: str, *, with_events: bool = False) -> list[dict[str, Any]]:
    """Every quarantined event, oldest first (with its canonical JSON if asked)."""
    columns = _LIST_COLUMNS + (("event_json",) if with_events else ())
    try:
        with psycopg.connect(database_url, row_factory=dict_row) as conn:
            rows = conn.execute(
                f"SELECT {', '.join(columns)} FROM projection_quarantine ORDER BY quarantine_id"
            ).fetchall()
    except psycopg.OperationalError as exc:
        raise ExternalError(f"Could not read the quarantine: {str(exc).strip()}") from exc
    return rows


@dataclass(slots=True)
class RetryReport:
    # quarantine ids projected now (or found projected already) and deleted
    resolved: list[int] = field(default_factory=list)
    # (quarantine id, error) of the first event of a session that failed again
    failed: list[tuple[int, str]] = field(default_factory=list)
    # quarantine ids not tried because an earlier event of their session failed again
    still_held: list[int] = field(default_factory=list)
    # asked-for quarantine ids that no row has (resolved already, or never were)
    missing: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.still_held and not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "resolved": self.resolved,
            "failed": [{"quarantine_id": i, "error": e} for i, e in self.failed],
            "still_held": self.still_held,
            "missing": self.missing,
        }


class _RetryRefused(ContractError):
    """A quarantined event cannot be applied for a reason of the log, not of Postgres."""


async def retry_quarantined(database_url: str, ids: Sequence[int] | None = None) -> RetryReport:
    """Re-apply quarantined events: those of the sessions of `ids` (every session when
    None), each session's in seq order, stopping a session at its first failure."""
    report = RetryReport()
    try:
        conn = await AsyncConnection.connect(database_url)
    except psycopg.OperationalError as exc:
        raise ExternalError(f"Could not reach Postgres: {str(exc).strip()}") from exc
    try:
        await ensure_stage(conn)
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT session_id, min(quarantine_id) FROM projection_quarantine "
                "WHERE %s::bigint[] IS NULL OR quarantine_id = ANY(%s::bigint[]) "
                "GROUP BY session_id ORDER BY 2",
                (None if ids is None else list(ids), None if ids is None else list(ids)),
            )
            sessions = [str(r[0]) for r in await cur.fetchall()]
            if ids is not None:
                cur = await conn.execute(
                    "SELECT quarantine_id FROM projection_quarantine "
                    "WHERE quarantine_id = ANY(%s::bigint[])",
                    (list(ids),),
                )
                found = {int(r[0]) for r in await cur.fetchall()}
                report.missing = sorted(set(ids) - found)
        for sid in sessions:
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT quarantine_id FROM projection_quarantine WHERE session_id = %s "
                    "ORDER BY seq",
                    (sid,),
                )
                queue = [int(r[0]) for r in await cur.fetchall()]
            for i, qid in enumerate(queue):
                try:
                    await _retry_one(conn, qid)
                except Exception as exc:
                    if not (isinstance(exc, _RetryRefused) or is_event_failure(exc, conn)):
                        raise
                    error = describe_error(exc)
                    async with conn.transaction():
                        await conn.execute(
                            "UPDATE projection_quarantine SET error = %s, held_behind_seq = NULL, "
                            "attempts = attempts + 1, last_failed_at = now() "
                            "WHERE quarantine_id = %s",
                            (clean_text(error), qid),
                        )
                        # The later ones now wait behind this one (the earlier are resolved).
                        await conn.execute(
                            "UPDATE projection_quarantine SET held_behind_seq = f.seq "
                            "FROM projection_quarantine f WHERE f.quarantine_id = %s "
                            "AND projection_quarantine.session_id = f.session_id "
                            "AND projection_quarantine.seq > f.seq",
                            (qid,),
                        )
                    report.failed.append((qid, error))
                    report.still_held.extend(queue[i + 1 :])
                    break
                report.resolved.append(qid)
    finally:
        await conn.close()
    return report


async def _retry_one(conn: AsyncConnection[Any], qid: int) -> None:
    async with conn.transaction():
        cur = conn.cursor()
        await cur.execute(
            "SELECT consumer, topic, kafka_partition FROM projection_quarantine "
            "WHERE quarantine_id = %s",
            (qid,),
        )
        where = await cur.fetchone()
        if where is None:
            return  # resolved meanwhile (another retry)
        # The partition's offset row first, as the projector locks it: one at a time.
        await cur.execute(
            "SELECT 1 FROM projector_offsets WHERE consumer = %s AND topic = %s "
            "AND partition = %s FOR UPDATE",
            where,
        )
        await cur.execute(
            "SELECT kafka_partition, kafka_offset, digest, audited, raw_event, event_json "
            "FROM projection_quarantine WHERE quarantine_id = %s FOR UPDATE",
            (qid,),
        )
        row = await cur.fetchone()
        if row is None:
            return
        partition, offset, digest, audited, raw, event_json = row
        record = _record(int(partition), int(offset), bytes(raw), str(event_json), str(digest))
        event = record.event
        assert event is not None
        session = (await load_sessions(cur, [event.session_id])).get(event.session_id)
        verdict, why = classify(session, event)
        changes = Changes()
        if verdict is Verdict.GAP:
            raise _RetryRefused(
                f"Session {event.session_id} seq {event.seq} cannot be projected yet: {why}"
            )
        if verdict is Verdict.DUPLICATE:
            await cur.execute(
                "SELECT digest FROM events WHERE session_id = %s AND seq = %s",
                (event.session_id, event.seq),
            )
            known = await cur.fetchone()
            if known is not None and str(known[0]) != record.digest:
                raise _RetryRefused(
                    f"Session {event.session_id} seq {event.seq} was projected with another "
                    f"event (digest {str(known[0])[:16]}…, this one {record.digest[:16]}…)."
                )
        else:
            new = fold(
                session,
                event,
                changes,
                partition=record.partition,
                offset=record.offset,
                digest=record.digest,
            )
            await write_partition_rows(cur, changes, [new], clean=record.dirty)
        if changes.links or not audited:
            if changes.links:
                # Shared rows: under the audit-head lock, as in the store.
                await cur.execute("SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE")
                await merge_links(cur, changes, clean=record.dirty)
            if not audited:
                await append_audit(cur, [record])
        await cur.execute("DELETE FROM projection_quarantine WHERE quarantine_id = %s", (qid,))


def _record(partition: int, offset: int, raw: bytes, event_json: str, digest: str) -> Record:
    """The quarantined record again: decoded from the raw value as consumed (from its
    canonical JSON if the value was not kept), with the digest it was set aside with."""
    from projections.projector import decode
    from schemas.codec import event_from_dict

    if raw:
        record = decode(partition, offset, raw)
        if record.event is None:
            raise _RetryRefused(
                f"The quarantined record at offset {offset} no longer decodes: {record.error}"
            )
        return record
    from projections._clean import needs_cleaning

    event = event_from_dict(json.loads(event_json))
    return Record(
        partition, offset, event, event_json, digest, dirty=needs_cleaning(event_json), raw=None
    )
