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

A session with a quarantined event is held (projections.quarantine): each of its later
events is written to projection_quarantine instead of the projections, in the same
transaction, and audited like any other. Text Postgres cannot store is cleaned on the
way in, for batches that hold any (projections._clean).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from agents.errors import ContractError
from agents.events import Event
from projections._clean import clean_text
from projections._quarantine import HOLD, check_held, held_sessions, insert_quarantine
from projections._staging import copy_rows, ensure_stage, merge_links, write_partition_rows
from projections.audit import AUDIT_COLUMNS, AuditHead, chain_rows
from projections.fold import Verdict, classify, fold, unstarted_session
from projections.rows import SESSION_COLUMNS, Changes, SessionRow

__all__ = [
    "PROJECTION_TABLES",
    "BatchResult",
    "PartitionResult",
    "PartitionStopped",
    "Record",
    "Stop",
    "apply_batch",
    "audit_rows",
    "load_positions",
    "load_sessions",
]

# Every table a rebuild empties (audit_log and the offsets themselves are not among them).
PROJECTION_TABLES: tuple[str, ...] = (
    "events",
    "sessions",
    "session_links",
    "entries",
    "llm_calls",
    "tool_calls",
    "approvals",
    "compactions",
    "queued_messages",
    "orchestrations",
    "orchestration_members",
    "guardrail_trips",
    "structured_outputs",
    "budget_alerts",
    "budget_limits",
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
    # Its text may hold what PostgreSQL cannot store (see projections._clean).
    dirty: bool = False
    # The record value as consumed: what a quarantine row keeps for a retry.
    raw: bytes | None = None


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
    # Set aside in projection_quarantine: failed themselves, or held behind one that did.
    quarantined: int = 0
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

    @property
    def quarantined(self) -> int:
        return sum(p.quarantined for p in self.partitions.values())


_SESSION_SELECT = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions WHERE session_id = ANY(%s)"
# Sessions with projected events but no row: their logs hold only rejections so far.
_UNSTARTED_SELECT = (
    "SELECT session_id, min(seq), max(seq), (array_agg(occurred_at ORDER BY seq))[1], "
    "(array_agg(occurred_at ORDER BY seq DESC))[1] FROM events "
    "WHERE session_id = ANY(%s) GROUP BY session_id"
)


async def load_sessions(cur: Any, session_ids: Sequence[str]) -> dict[str, SessionRow]:
    """The working rows of `session_ids`: the `sessions` row where there is one, else
    the not-started row rebuilt from the session's projected events (see
    projections.fold.NOT_STARTED); sessions with no projected event are absent."""
    await cur.execute(_SESSION_SELECT, (list(session_ids),))
    sessions: dict[str, SessionRow] = {row[0]: SessionRow(*row) for row in await cur.fetchall()}
    missing = [s for s in session_ids if s not in sessions]
    if missing:
        await cur.execute(_UNSTARTED_SELECT, (missing,))
        for sid, first, last, first_at, last_at in await cur.fetchall():
            sessions[sid] = unstarted_session(sid, int(first), int(last), first_at, last_at)
    return sessions


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
    await ensure_stage(conn)
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
        sessions = await load_sessions(cur, session_ids)
        stored_digests = await _stored_digests(cur, work, sessions)
        held = await held_sessions(cur, session_ids)

        changes = Changes()
        touched: set[str] = set()
        batch_digests: dict[tuple[str, int], str] = {}
        audit_items: list[AuditItem] = []
        held_items: list[Record] = []
        for partition, records in work.items():
            part = result.partitions[partition]
            audit_from = stored[partition][1]
            for record in records:
                event = record.event
                queue = None if event is None else held.get(event.session_id)
                # Held from its first quarantined seq on (a replay projects what precedes).
                if (
                    queue is not None
                    and event is not None
                    and event.seq >= queue.first
                    and (
                        event.session_id not in sessions
                        or event.seq > sessions[event.session_id].last_seq
                    )
                ):
                    verdict = check_held(record, queue)
                else:
                    verdict = _check(record, sessions, batch_digests, stored_digests)
                if isinstance(verdict, Stop):
                    part.stop = verdict
                    part.next_offset = record.offset
                    break
                part.next_offset = record.offset + 1
                if verdict is Verdict.DUPLICATE:
                    part.duplicates += 1
                    continue
                assert event is not None
                if verdict is HOLD:
                    assert queue is not None
                    queue.seqs[event.seq] = record.digest
                    held_items.append(record)
                    part.quarantined += 1
                    # Audited like a projected event (a replay's were audited before).
                    if record.offset >= audit_from:
                        audit_items.append(_audit_item(record))
                        part.audited += 1
                    continue
                sessions[event.session_id] = fold(
                    sessions.get(event.session_id),
                    event,
                    changes,
                    partition=partition,
                    offset=record.offset,
                    digest=record.digest,
                )
                touched.add(event.session_id)
                batch_digests[(event.session_id, event.seq)] = record.digest
                part.applied += 1
                if record.offset >= audit_from:
                    audit_items.append(_audit_item(record))
                    part.audited += 1

        clean = any(r.dirty for rs in work.values() for r in rs)
        await write_partition_rows(
            cur, changes, [sessions[s] for s in sorted(touched)], clean=clean
        )
        for record in held_items:
            assert record.event is not None
            first = held[record.event.session_id].first
            await insert_quarantine(
                cur,
                consumer,
                topic,
                record,
                f"Held behind seq {first} of its session, which is quarantined: a "
                "session's events are projected in seq order.",
                held_behind=first,
                audited=True,
            )

        if audit_items or changes.links:
            # From here on, rows shared between partitions: under the one global lock.
            # (A replay below the audit position without delegations never takes it.)
            await cur.execute(
                "SELECT last_audit_id, head_hash FROM audit_head WHERE id = 1 FOR UPDATE"
            )
            head_row = await cur.fetchone()
            assert head_row is not None, "audit_head row missing"
            head = AuditHead(int(head_row[0]), str(head_row[1]))
            await merge_links(cur, changes, clean=clean)
            if audit_items:
                rows, head = chain_rows(head, _clean_audit(audit_items) if clean else audit_items)
                await copy_rows(cur, "audit_log", AUDIT_COLUMNS, rows)
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
                    p.next_offset,
                    p.next_offset,
                    None if p.stop is None else p.stop.offset,
                    None if p.stop is None else clean_text(p.stop.reason),
                    consumer,
                    topic,
                    p.partition,
                )
                for p in result.partitions.values()
                if p.partition in work
            ],
        )
    return result


AuditItem = tuple[str, int, str, str, datetime, str]


def _audit_item(record: Record) -> AuditItem:
    event = record.event
    assert event is not None
    return (
        event.session_id,
        event.seq,
        event.event_id,
        type(event.payload).__name__,
        event.occurred_at,
        record.canonical,
    )


def audit_rows(records: Sequence[Record]) -> list[AuditItem]:
    """The audit items of `records` (decoded ones), cleaned when one needs it."""
    items = [_audit_item(r) for r in records]
    return _clean_audit(items) if any(r.dirty for r in records) else items


def _clean_audit(items: Sequence[AuditItem]) -> list[AuditItem]:
    """Audit items with storable text, cleaned before they are hashed: the chain covers
    what is stored (the content of a NUL is its JSON escape and needs no cleaning)."""
    return [(clean_text(s), q, clean_text(i), t, at, clean_text(c)) for s, q, i, t, at, c in items]


def _check(
    record: Record,
    sessions: Mapping[str, SessionRow],
    batch_digests: Mapping[tuple[str, int], str],
    stored_digests: Mapping[tuple[str, int], str],
) -> Stop | Verdict:
    """NEW or DUPLICATE for a record that may be projected; a Stop otherwise."""
    event = record.event
    if event is None:
        return Stop(
            record.offset, f"The record at offset {record.offset} is undecodable: {record.error}"
        )
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
