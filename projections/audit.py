"""The audit log's hash chain: appending, checkpoints, and verification.

Rule: row N's hash is sha256(prev_hash ‖ content) over UTF-8 text, where prev_hash is
row N-1's hash as 64 lowercase hex digits (64 zeros before row 1) and content is the
event's canonical JSON (`schemas.codec.canonical_event_json`). Audit ids are 1, 2, 3, …
with no hole. The projector appends rows in the same transaction as the projections and
publishes the chain head to `turnlog.audit.checkpoints` from time to time;
`verify_audit_log` recomputes the whole chain from the rows alone and compares it with
every published head, so a row edited, deleted, swapped or cut off — even by a database
superuser who disabled the triggers and fixed up the hashes — is named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from agents.errors import ExternalError
from agents.events import AuditCheckpoint

__all__ = [
    "GENESIS_HASH",
    "AuditHead",
    "BrokenRow",
    "VerifyReport",
    "chain_hash",
    "chain_rows",
    "publish_checkpoint",
    "read_checkpoints",
    "read_head",
    "verify_audit_log",
    "verify_chain",
]

GENESIS_HASH = "0" * 64

AUDIT_COLUMNS = (
    "audit_id", "session_id", "seq", "event_id", "event_type", "occurred_at", "content",
    "prev_hash", "row_hash",
)


def chain_hash(prev_hash: str, content: str) -> str:
    """The hash of a row whose predecessor has `prev_hash` and whose content is `content`."""
    return hashlib.sha256((prev_hash + content).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The chain head: the last row's id and hash (0 and GENESIS_HASH when empty)."""

    last_audit_id: int
    head_hash: str


def chain_rows(
    head: AuditHead, items: Iterable[tuple[str, int, Any, str, datetime, str]]
) -> tuple[list[tuple[Any, ...]], AuditHead]:
    """Rows to append after `head` for (session_id, seq, event_id, event_type,
    occurred_at, content) items, in order; returns them and the new head."""
    rows: list[tuple[Any, ...]] = []
    audit_id, prev = head.last_audit_id, head.head_hash
    for session_id, seq, event_id, event_type, occurred_at, content in items:
        audit_id += 1
        row_hash = chain_hash(prev, content)
        rows.append(
            (audit_id, session_id, seq, event_id, event_type, occurred_at, content, prev,
             row_hash)
        )
        prev = row_hash
    return rows, AuditHead(audit_id, prev)


def read_head(conn: psycopg.Connection[Any]) -> AuditHead:
    row = conn.execute("SELECT last_audit_id, head_hash FROM audit_head WHERE id = 1").fetchone()
    if row is None:
        raise ExternalError("The audit_head row is missing: the audit migration did not run.")
    return AuditHead(int(row[0]), str(row[1]))


# ------------------------------------------------------------------ checkpoints


async def publish_checkpoint(producer: Any, topic: str, head: AuditHead) -> AuditCheckpoint:
    """Publish `head` to the checkpoints topic (acks from all replicas) and return it."""
    from schemas.codec import encode_checkpoint

    checkpoint = AuditCheckpoint(
        audit_id=head.last_audit_id,
        head_hash=head.head_hash,
        event_count=head.last_audit_id,
        occurred_at=datetime.now(UTC),
    )
    await producer.send_and_wait(topic, encode_checkpoint(checkpoint), key=b"audit")
    return checkpoint


async def read_checkpoints(bootstrap: str, topic: str, timeout: float = 30.0) -> list[AuditCheckpoint]:
    """Every checkpoint published so far (committed ones), oldest first."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

    from schemas.codec import decode_checkpoint

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            partitions = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[AuditCheckpoint] = []
        import asyncio
        import time

        deadline = time.monotonic() + timeout
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                if time.monotonic() > deadline:
                    raise ExternalError(
                        f"Reading the audit checkpoints of {topic} took longer than {timeout}s."
                    )
                batch = await consumer.getmany(tp, timeout_ms=500)
                for record in batch.get(tp, []):
                    found.append(decode_checkpoint(record.value))
                await asyncio.sleep(0)
        return found
    finally:
        await consumer.stop()


async def _partitions(consumer: Any, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ExternalError(f"Topic {topic} does not exist: no audit checkpoints to compare.")
    return set(partitions)


# ------------------------------------------------------------------ verification


@dataclass(frozen=True, slots=True)
class BrokenRow:
    """The first place where the chain is wrong. `audit_id` is the first row that is not
    what the chain says it must be (for a cut-off tail: the first missing row)."""

    audit_id: int
    reason: str
    session_id: str | None = None
    seq: int | None = None

    def __str__(self) -> str:
        where = f" (session {self.session_id} seq {self.seq})" if self.session_id else ""
        return f"audit row {self.audit_id}{where}: {self.reason}"


@dataclass(slots=True)
class VerifyReport:
    rows: int = 0
    head: AuditHead = field(default_factory=lambda: AuditHead(0, GENESIS_HASH))
    checkpoints: int = 0
    checkpoints_matched: int = 0
    broken: BrokenRow | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "head_audit_id": self.head.last_audit_id,
            "head_hash": self.head.head_hash,
            "checkpoints": self.checkpoints,
            "checkpoints_matched": self.checkpoints_matched,
            "first_broken_row": None
            if self.broken is None
            else {
                "audit_id": self.broken.audit_id,
                "session_id": self.broken.session_id,
                "seq": self.broken.seq,
                "reason": self.broken.reason,
            },
        }


def verify_chain(
    rows: Iterable[Sequence[Any]], checkpoints: Sequence[AuditCheckpoint] = ()
) -> VerifyReport:
    """Walk (audit_id, session_id, seq, content, prev_hash, row_hash) rows in audit_id
    order; report the first row that breaks the chain or disagrees with a checkpoint.

    Checks per row: its id is the previous id + 1 (a deleted row leaves a hole), its
    prev_hash is the previous row's hash, and its row_hash is chain_hash(prev, content)
    (an edited or swapped row fails one of these). Then every checkpoint's head must be
    the recomputed hash at its audit id: one past the end means a cut-off tail, a
    different hash means rows before it were rewritten with fixed-up hashes.
    """
    report = VerifyReport(checkpoints=len(checkpoints))
    by_id: dict[int, list[AuditCheckpoint]] = {}
    for c in checkpoints:
        by_id.setdefault(c.audit_id, []).append(c)
    prev_id, prev_hash = 0, GENESIS_HASH
    # The recomputed hash at each checkpointed id (only those are kept).
    recomputed: dict[int, str] = {0: GENESIS_HASH}
    for audit_id, session_id, seq, content, stored_prev, stored_hash in rows:
        audit_id, seq = int(audit_id), int(seq)
        expected_id = prev_id + 1
        if audit_id != expected_id:
            report.broken = BrokenRow(
                expected_id,
                f"row {expected_id} is missing (the next row is {audit_id}): rows were "
                "deleted from the audit log",
            )
            return report
        own_hash = chain_hash(stored_prev, content)
        if stored_prev != prev_hash:
            report.broken = BrokenRow(
                audit_id,
                f"its prev_hash {stored_prev[:16]}… is not the hash of row {prev_id} "
                f"({prev_hash[:16]}…): rows were reordered, removed or rewritten",
                session_id,
                seq,
            )
            return report
        if own_hash != stored_hash:
            report.broken = BrokenRow(
                audit_id,
                f"its content does not hash to its row_hash (stored {stored_hash[:16]}…, "
                f"recomputed {own_hash[:16]}…): the row was edited",
                session_id,
                seq,
            )
            return report
        prev_id, prev_hash = audit_id, own_hash
        report.rows += 1
        if audit_id in by_id:
            recomputed[audit_id] = own_hash
    report.head = AuditHead(prev_id, prev_hash)
    for c in sorted(checkpoints, key=lambda c: c.audit_id):
        if c.audit_id > prev_id:
            report.broken = BrokenRow(
                prev_id + 1,
                f"checkpoint published at {c.occurred_at.isoformat()} covers rows up to "
                f"{c.audit_id}, but the log ends at row {prev_id}: its tail was cut off",
            )
            return report
        if recomputed.get(c.audit_id) != c.head_hash:
            report.broken = BrokenRow(
                c.audit_id,
                f"the published chain head at row {c.audit_id} ({c.head_hash[:16]}…) differs "
                f"from the recomputed one ({recomputed.get(c.audit_id, '')[:16]}…): rows up "
                "to here were rewritten with fixed-up hashes",
            )
            return report
        report.checkpoints_matched += 1
    return report


def _rows(conn: psycopg.Connection[Any], batch: int = 5000) -> Iterator[tuple[Any, ...]]:
    with conn.cursor(name="audit_walk") as cur:
        cur.itersize = batch
        cur.execute(
            "SELECT audit_id, session_id, seq, content, prev_hash, row_hash "
            "FROM audit_log ORDER BY audit_id"
        )
        yield from cur


def verify_audit_log(
    database_url: str, checkpoints: Sequence[AuditCheckpoint] = ()
) -> VerifyReport:
    """Verify the audit log of `database_url` (needs SELECT on audit_log) against the
    given published checkpoints."""
    try:
        with psycopg.connect(database_url) as conn, conn.transaction():
            # One snapshot for the whole walk: rows appended meanwhile are not half-seen.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return verify_chain(_rows(conn), checkpoints)
    except psycopg.OperationalError as exc:
        raise ExternalError(f"Could not read the audit log: {str(exc).strip()}") from exc
