"""One poll batch of events into Postgres, in ONE transaction, exactly once.

Rule: the consumer position lives in `projector_offsets` and moves in the same
transaction as the rows it covers, so after a crash at any instant the database holds
either all of a batch (and the offsets past it) or none of it. The transaction:

1. locks this consumer's offset rows of the batch's partitions (FOR UPDATE, in
   partition order) and checks they are where this process believes it left them; if
   not (a rebuild reset them, or another projector process took the partition over),
   nothing of that partition is written and the caller is told where to seek;
2. loads the batch's sessions, classifies each event (new / duplicate / gap, see
   projections.fold), folds the new ones, and writes the rows that belong to these
   partitions alone (COPY into staging tables, one merge per table);
3. locks the audit chain head — one global line: every appending transaction
   serialises here — and only then writes what partitions share: the delegation links
   (a child and its parent may live in different partitions) and the audit rows of new
   events at or past the partition's audit position. Taking that one lock before
   touching any shared row is why two projector processes never deadlock;
4. advances both positions.

A duplicate (same session and seq) is skipped, after checking that its canonical
content is the same as the projected one; a different event at a projected seq, a seq
gap, or an undecodable record stops the partition: the events before it are committed,
the offset row records where and why, and the partition is not consumed again until an
operator clears it. Nothing is ever skipped silently.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from agents.errors import ContractError
from agents.events import Event
from projections.audit import AUDIT_COLUMNS, AuditHead, chain_rows
from projections.fold import (
    ENTRY_COLUMNS,
    EVENT_COLUMNS,
    PATCH_TABLES,
    SESSION_COLUMNS,
    Changes,
    PatchTable,
    SessionRow,
    Verdict,
    classify,
    fold,
)

__all__ = [
    "PROJECTION_TABLES",
    "BatchResult",
    "PartitionResult",
    "PartitionStopped",
    "Record",
    "Stop",
    "apply_batch",
    "load_positions",
]

# Every table a rebuild empties (audit_log and the offsets themselves are not among them).
PROJECTION_TABLES: tuple[str, ...] = (
    "events", "sessions", "session_links", "entries", "llm_calls", "tool_calls",
    "approvals", "compactions",
)


class PartitionStopped(ContractError):
    """A partition of the events topic cannot be projected past an offset: a seq gap,
    a different event at a projected seq, or an undecodable record."""

    def __init__(self, message: str, *, topic: str, partition: int, offset: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record: the decoded event with its canonical JSON and its digest, or
    `error` when it could not be decoded."""

    partition: int
    offset: int
    event: Event | None
    canonical: str = ""
    digest: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    offset: int
    reason: str


@dataclass(slots=True)
class PartitionResult:
    partition: int
    next_offset: int
    applied: int = 0
    duplicates: int = 0
    audited: int = 0
    stop: Stop | None = None
    # Set when the stored position was not ours: nothing was written, seek here.
    reseek: int | None = None


@dataclass(slots=True)
class BatchResult:
    partitions: dict[int, PartitionResult] = field(default_factory=dict)
    head: AuditHead | None = None

    @property
    def applied(self) -> int:
        return sum(p.applied for p in self.partitions.values())


_SESSION_SELECT = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions WHERE session_id = ANY(%s)"


def _stage(table: str) -> str:
    return f"stage_{table}"


# Rows reach their tables through COPY (one round trip for thousands of rows, formatted
# in C by psycopg) into per-connection temporary staging tables, then one INSERT …
# SELECT … ON CONFLICT per table: upsert semantics at COPY speed. The staging tables
# have exactly the written columns, with the target's types (CREATE … AS … WITH NO DATA).
def _staged_columns() -> dict[str, tuple[str, ...]]:
    cols = {
        "events": EVENT_COLUMNS,
        "sessions": SESSION_COLUMNS,
        "session_links": ("child_session_id", "parent_session_id", "parent_call_id"),
    }
    for table, spec in PATCH_TABLES.items():
        cols[table] = spec.key + spec.columns + spec.increments + spec.appends
    return cols


_STAGED = _staged_columns()


def _merge_sql(table: str) -> str:
    cols = _STAGED[table]
    head = f"INSERT INTO {table} AS t ({', '.join(cols)}) SELECT {', '.join(cols)} FROM {_stage(table)} "
    if table == "events":
        return head + "ON CONFLICT (session_id, seq) DO NOTHING"
    if table == "session_links":
        return head + "ON CONFLICT (child_session_id) DO NOTHING"
    if table == "sessions":
        sets = [f"{c} = excluded.{c}" for c in SESSION_COLUMNS[1:]]
        return head + f"ON CONFLICT (session_id) DO UPDATE SET {', '.join(sets)}"
    spec = PATCH_TABLES[table]
    sets = [f"{c} = {_coalesce(spec, c)}" for c in spec.columns]
    sets += [f"{c} = t.{c} + excluded.{c}" for c in spec.increments]
    sets += [f"{c} = t.{c} || excluded.{c}" for c in spec.appends]
    return head + f"ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {', '.join(sets)}"


def _coalesce(spec: PatchTable, column: str) -> str:
    """The new value of a patched column: the patch's, unless it is None (unchanged) or
    a sticky rule keeps the stored one."""
    merged = f"COALESCE(excluded.{column}, t.{column})"
    for col, kept, over in spec.sticky:
        if col == column:
            merged = (f"CASE WHEN t.{column} = '{kept}' AND excluded.{column} = '{over}' "
                      f"THEN t.{column} ELSE {merged} END")
    return merged


_MERGES = {table: _merge_sql(table) for table in _STAGED}
_STAGE_DDL = [
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_stage(table)} ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(cols)} FROM {table} WITH NO DATA"
    for table, cols in _STAGED.items()
]
_staged_connections: weakref.WeakSet[AsyncConnection[Any]] = weakref.WeakSet()


# Column type OIDs of every COPY target, per connection: binary COPY needs them.
_copy_types: weakref.WeakKeyDictionary[AsyncConnection[Any], dict[str, list[int]]] = (
    weakref.WeakKeyDictionary()
)


async def _ensure_stage(conn: AsyncConnection[Any]) -> None:
    if conn in _staged_connections:
        return
    types: dict[str, list[int]] = {}
    async with conn.transaction():
        for ddl in _STAGE_DDL:
            await conn.execute(ddl)
        targets = {_stage(t): cols for t, cols in _STAGED.items()}
        targets["entries"] = ENTRY_COLUMNS
        targets["audit_log"] = AUDIT_COLUMNS
        for table, cols in targets.items():
            # From the catalog: the application role may not SELECT from audit_log.
            cur = await conn.execute(
                "SELECT attname, atttypid::int FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
            oids = {str(name): int(oid) for name, oid in await cur.fetchall()}
            types[table] = [oids[c] for c in cols]
    _copy_types[conn] = types
    _staged_connections.add(conn)


async def _copy(cur: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    # Binary COPY: no text escaping of the (large) content columns.
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    async with cur.copy(sql) as copy:
        copy.set_types(_copy_types[cur.connection][table])
        for row in rows:
            await copy.write_row(row)


async def load_positions(
    conn: AsyncConnection[Any], consumer: str, topic: str, partitions: Sequence[int]
) -> dict[int, tuple[int, Stop | None]]:
    """The stored position of each partition (creating rows at 0 for new ones), with the
    recorded stop, if any. Call on assignment, then seek there."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO projector_offsets (consumer, topic, partition) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING",
            [(consumer, topic, p) for p in partitions],
        )
        await cur.execute(
            "SELECT partition, next_offset, stopped_offset, stopped_reason "
            "FROM projector_offsets WHERE consumer = %s AND topic = %s AND partition = ANY(%s)",
            (consumer, topic, list(partitions)),
        )
        rows = await cur.fetchall()
    return {
        int(p): (int(off), None if s_off is None else Stop(int(s_off), str(reason)))
        for p, off, s_off, reason in rows
    }


async def apply_batch(
    conn: AsyncConnection[Any],
    consumer: str,
    topic: str,
    batch: Mapping[int, Sequence[Record]],
    expected: Mapping[int, int],
) -> BatchResult:
    """Project `batch` (partition → records in offset order) in one transaction.

    `expected` is where this process believes each partition's stored position is."""
    result = BatchResult()
    await _ensure_stage(conn)
    async with conn.transaction():
        cur = conn.cursor()
        await cur.execute(
            "SELECT partition, next_offset, audit_next_offset, stopped_offset "
            "FROM projector_offsets WHERE consumer = %s AND topic = %s AND partition = ANY(%s) "
            "ORDER BY partition FOR UPDATE",
            (consumer, topic, sorted(batch)),
        )
        stored = {int(r[0]): (int(r[1]), int(r[2]), r[3]) for r in await cur.fetchall()}
        work: dict[int, list[Record]] = {}
        for partition, records in sorted(batch.items()):
            if partition not in stored:
                raise ContractError(
                    f"Partition {partition} of {topic} has no offset row for consumer "
                    f"{consumer}: load_positions must run on assignment."
                )
            next_offset, _, stopped = stored[partition]
            if next_offset != expected.get(partition) or stopped is not None:
                result.partitions[partition] = PartitionResult(
                    partition, next_offset, reseek=next_offset
                )
                continue
            work[partition] = [r for r in records if r.offset >= next_offset]
            result.partitions[partition] = PartitionResult(partition, next_offset)
        if not any(work.values()):
            return result

        session_ids = sorted(
            {r.event.session_id for rs in work.values() for r in rs if r.event is not None}
        )
        await cur.execute(_SESSION_SELECT, (session_ids,))
        sessions: dict[str, SessionRow] = {
            row[0]: SessionRow(*row) for row in await cur.fetchall()
        }
        stored_digests = await _stored_digests(cur, work, sessions)

        changes = Changes()
        touched: set[str] = set()
        batch_digests: dict[tuple[str, int], str] = {}
        audit_items: list[tuple[str, int, uuid.UUID, str, datetime, str]] = []
        for partition, records in work.items():
            part = result.partitions[partition]
            audit_from = stored[partition][1]
            for record in records:
                stop = _check(record, sessions, batch_digests, stored_digests)
                if isinstance(stop, Stop):
                    part.stop = stop
                    part.next_offset = record.offset
                    break
                part.next_offset = record.offset + 1
                if stop is Verdict.DUPLICATE:
                    part.duplicates += 1
                    continue
                event = record.event
                assert event is not None
                sessions[event.session_id] = fold(
                    sessions.get(event.session_id), event, changes,
                    partition=partition, offset=record.offset, digest=record.digest,
                )
                touched.add(event.session_id)
                batch_digests[(event.session_id, event.seq)] = record.digest
                part.applied += 1
                if record.offset >= audit_from:
                    audit_items.append(
                        (event.session_id, event.seq, uuid.UUID(event.event_id),
                         type(event.payload).__name__, event.occurred_at, record.canonical)
                    )
                    part.audited += 1

        await _write(cur, changes, [sessions[s] for s in sorted(touched)])

        # From here on, rows shared between partitions: under the one global lock.
        await cur.execute("SELECT last_audit_id, head_hash FROM audit_head WHERE id = 1 FOR UPDATE")
        head_row = await cur.fetchone()
        assert head_row is not None, "audit_head row missing"
        head = AuditHead(int(head_row[0]), str(head_row[1]))
        if changes.links:
            await _copy(cur, _stage("session_links"), _STAGED["session_links"],
                        list(changes.links.values()))
            await cur.execute(_MERGES["session_links"])
        if audit_items:
            rows, head = chain_rows(head, audit_items)
            await _copy(cur, "audit_log", AUDIT_COLUMNS, rows)
            await cur.execute(
                "UPDATE audit_head SET last_audit_id = %s, head_hash = %s WHERE id = 1",
                (head.last_audit_id, head.head_hash),
            )
        result.head = head
        await cur.executemany(
            "UPDATE projector_offsets SET next_offset = %s, "
            "audit_next_offset = GREATEST(audit_next_offset, %s), "
            "stopped_offset = %s, stopped_reason = %s "
            "WHERE consumer = %s AND topic = %s AND partition = %s",
            [
                (
                    p.next_offset, p.next_offset,
                    None if p.stop is None else p.stop.offset,
                    None if p.stop is None else p.stop.reason,
                    consumer, topic, p.partition,
                )
                for p in result.partitions.values()
                if p.partition in work
            ],
        )
    return result


def _check(
    record: Record,
    sessions: Mapping[str, SessionRow],
    batch_digests: Mapping[tuple[str, int], str],
    stored_digests: Mapping[tuple[str, int], str],
) -> Stop | Verdict:
    """NEW or DUPLICATE for a record that may be projected; a Stop otherwise."""
    event = record.event
    if event is None:
        return Stop(record.offset, f"The record at offset {record.offset} is undecodable: "
                                   f"{record.error}")
    verdict, why = classify(sessions.get(event.session_id), event)
    if verdict is Verdict.GAP:
        return Stop(record.offset, f"Seq gap at offset {record.offset}: {why}")
    if verdict is Verdict.DUPLICATE:
        key = (event.session_id, event.seq)
        known = batch_digests.get(key) or stored_digests.get(key)
        if known is not None and known != record.digest:
            return Stop(
                record.offset,
                f"Conflicting duplicate at offset {record.offset}: session {event.session_id} "
                f"seq {event.seq} was projected with digest {known[:16]}…, this "
                f"{type(event.payload).__name__} has digest {record.digest[:16]}….",
            )
    return verdict


async def _stored_digests(
    cur: Any, work: Mapping[int, Sequence[Record]], sessions: Mapping[str, SessionRow]
) -> dict[tuple[str, int], str]:
    """Digests of already-projected events that this batch delivers again."""
    keys = [
        (r.event.session_id, r.event.seq)
        for rs in work.values()
        for r in rs
        if r.event is not None
        and r.event.session_id in sessions
        and r.event.seq <= sessions[r.event.session_id].last_seq
    ]
    if not keys:
        return {}
    await cur.execute(
        "SELECT session_id, seq, digest FROM events "
        "WHERE (session_id, seq) IN (SELECT * FROM unnest(%s::text[], %s::bigint[]))",
        ([k[0] for k in keys], [k[1] for k in keys]),
    )
    return {(str(s), int(q)): str(d) for s, q, d in await cur.fetchall()}


async def _write(cur: Any, changes: Changes, sessions: list[SessionRow]) -> None:
    """The rows only this partition's owner writes (everything but links and audit)."""
    staged: dict[str, Sequence[Sequence[Any]]] = {
        "events": changes.events,
        "sessions": [s.as_tuple() for s in sessions],
    }
    for table in PATCH_TABLES:
        staged[table] = changes.patch_rows(table)
    for table, rows in staged.items():
        if rows:
            await _copy(cur, _stage(table), _STAGED[table], rows)
            await cur.execute(_MERGES[table])
    if changes.entries:
        await _copy(cur, "entries", ENTRY_COLUMNS, changes.entries)
