"""The audit log's hash chain: appending, checkpoints, and verification.

Rule: every stored column of a row is bound by its hash. Row N's hash is sha256 over
UTF-8 text of prev_hash (row N-1's hash as 64 lowercase hex digits, 64 zeros before row
1) and the row, by `hash_version`:

- 2 (every row written now): prev_hash, then "2", audit_id, session_id, seq, event_id
  (lowercase UUID text), event_type, occurred_at (integer microseconds since
  1970-01-01 UTC) and content, as decimal or plain text, each preceded by a NUL. No stored text holds a NUL (PostgreSQL cannot
  store one; projections._clean), so the fields cannot run into each other.
- 1 (rows written before migration 0006): prev_hash ‖ content. The other columns are not
  hashed, but each is a function of the hashed content (the event's canonical JSON holds
  session_id, seq, event_id, occurred_at and the payload's type), and verify checks that
  they are; audit_id is bound by the chain order.

Content is the event's canonical JSON (`schemas.codec.canonical_event_json`). Audit ids
are 1, 2, 3, … with no hole; a version-1 row after a version-2 row is a downgrade and is
refused. The projector appends rows in the same transaction as the projections and
publishes the chain head to `turnlog.audit.checkpoints` from time to time;
`verify_audit_log` recomputes the whole chain from the rows alone and compares it with
every published head, so a row edited (any column), deleted, swapped or cut off — even
by a database superuser who disabled the triggers and fixed up the hashes — is named.

What verify cannot prove: rows past the last published checkpoint. Deleting some of the
newest rows (a cut of the tail) leaves a shorter chain that is consistent in itself; it
is found only once a checkpoint covering those rows exists. The report says how many
rows lie past the last checkpoint; a cut of rows that a checkpoint covered is named.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from agents.errors import ExternalError
from agents.events import AuditCheckpoint

__all__ = [
    "AUDIT_COLUMNS",
    "GENESIS_HASH",
    "HASH_VERSION",
    "AuditHead",
    "BrokenRow",
    "VerifyReport",
    "chain_hash",
    "chain_rows",
    "publish_checkpoint",
    "read_checkpoints",
    "read_head",
    "row_hash_v2",
    "verify_audit_log",
    "verify_chain",
]

GENESIS_HASH = "0" * 64

# Every column of audit_log, in the order rows are written and read. verify refuses a
# table with any other column: a column nobody hashes would be a column nobody checks.
AUDIT_COLUMNS = (
    "audit_id",
    "session_id",
    "seq",
    "event_id",
    "event_type",
    "occurred_at",
    "content",
    "prev_hash",
    "row_hash",
    "hash_version",
)
# The version of the rows written now.
HASH_VERSION = 2


def chain_hash(prev_hash: str, content: str) -> str:
    """The version-1 hash: of a row whose predecessor has `prev_hash` and whose content
    is `content` (its other columns are checked against the content instead)."""
    return hashlib.sha256((prev_hash + content).encode("utf-8")).hexdigest()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(at: datetime) -> str:
    # Whatever the time zone it is read back in; three times cheaper than isoformat.
    return str((at - _EPOCH) // _MICROSECOND)


def row_hash_v2(
    prev_hash: str,
    audit_id: int,
    session_id: str,
    seq: int,
    event_id: Any,
    event_type: str,
    occurred_at: datetime,
    content: str,
) -> str:
    """The version-2 hash: over prev_hash and every other column of the row."""
    text = "\x00".join(
        (
            prev_hash,
            "2",
            str(audit_id),
            session_id,
            str(seq),
            str(event_id).lower(),
            event_type,
            _micros(occurred_at),
            content,
        )
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The chain head: the last row's id and hash (0 and GENESIS_HASH when empty)."""

    last_audit_id: int
    head_hash: str


def chain_rows(
    head: AuditHead, items: Iterable[tuple[str, int, Any, str, datetime, str]]
) -> tuple[list[tuple[Any, ...]], AuditHead]:
    """Rows (AUDIT_COLUMNS, hash version 2) to append after `head` for (session_id, seq,
    event_id, event_type, occurred_at, content) items, in order; returns them and the
    new head. The event id is canonical lowercase UUID text (Event checks it is the one
    derived from its session and seq), which is how Postgres gives it back."""
    rows: list[tuple[Any, ...]] = []
    audit_id, prev = head.last_audit_id, head.head_hash
    for session_id, seq, event_id, event_type, occurred_at, content in items:
        audit_id += 1
        if occurred_at.tzinfo is None:  # stored as UTC, so hashed as UTC
            occurred_at = occurred_at.replace(tzinfo=UTC)
        row_hash = row_hash_v2(
            prev, audit_id, session_id, seq, event_id, event_type, occurred_at, content
        )
        rows.append(
            (
                audit_id,
                session_id,
                seq,
                event_id,
                event_type,
                occurred_at,
                content,
                prev,
                row_hash,
                HASH_VERSION,
            )
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


async def read_checkpoints(
    bootstrap: str, topic: str, timeout: float = 30.0
) -> list[AuditCheckpoint]:
    """Every checkpoint published so far (committed ones), oldest first."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

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
    # The highest audit id a published checkpoint covers (None: no checkpoint compared).
    last_checkpoint_audit_id: int | None = None
    # Rows by hash version (1: written before migration 0006).
    versions: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.broken is None

    @property
    def rows_past_last_checkpoint(self) -> int:
        return max(0, self.head.last_audit_id - (self.last_checkpoint_audit_id or 0))

    @property
    def unproven(self) -> str:
        """What this verification cannot prove, in a sentence (empty when nothing)."""
        past = self.rows_past_last_checkpoint
        if self.last_checkpoint_audit_id is None:
            return (
                f"No published checkpoint was compared: a cut of the tail or a rewrite "
                f"with fixed-up hashes of any of the {past} rows cannot be detected."
            )
        if past == 0:
            return ""
        return (
            f"{past} rows lie past the last checkpoint (row "
            f"{self.last_checkpoint_audit_id}): a cut of rows written after it, or a "
            "rewrite of them with fixed-up hashes, cannot be detected until a "
            "checkpoint covers them; a cut of rows a checkpoint covered is detected."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "head_audit_id": self.head.last_audit_id,
            "head_hash": self.head.head_hash,
            "checkpoints": self.checkpoints,
            "checkpoints_matched": self.checkpoints_matched,
            "last_checkpoint_audit_id": self.last_checkpoint_audit_id,
            "rows_past_last_checkpoint": self.rows_past_last_checkpoint,
            "unproven": self.unproven,
            "hash_versions": {str(v): n for v, n in sorted(self.versions.items())},
            "first_broken_row": None
            if self.broken is None
            else {
                "audit_id": self.broken.audit_id,
                "session_id": self.broken.session_id,
                "seq": self.broken.seq,
                "reason": self.broken.reason,
            },
        }


def _content_mismatch(row: Sequence[Any]) -> str | None:
    """The first column of `row` (AUDIT_COLUMNS order) that is not what its content
    says, as a sentence; None when every derivable column agrees."""
    from projections._clean import clean_text

    _, session_id, seq, event_id, event_type, occurred_at, content = row[:7]
    try:
        event = json.loads(content)
        derived: dict[str, Any] = {
            "session_id": clean_text(str(event["session_id"])),
            "seq": int(event["seq"]),
            "event_id": str(uuid.UUID(str(event["event_id"]))),
            "event_type": str(event["payload"]["type"]),
            "occurred_at": datetime.fromisoformat(str(event["occurred_at"])),
        }
    except (ValueError, KeyError, TypeError) as exc:
        return f"its content is not an event's canonical JSON ({exc})"
    stored = {
        "session_id": session_id,
        "seq": seq,
        "event_id": str(event_id).lower(),
        "event_type": event_type,
        "occurred_at": occurred_at,
    }
    for column, value in derived.items():
        if stored[column] != value:
            return f"its {column} ({stored[column]!s}) is not the one of its content ({value!s})"
    return None


def _row_fault(
    row: Sequence[Any], prev_id: int, prev_hash: str, prev_version: int
) -> tuple[str | None, str, int]:
    """(why the row is broken or None, its recomputed hash, its version)."""
    (
        audit_id,
        session_id,
        seq,
        event_id,
        event_type,
        occurred_at,
        content,
        stored_prev,
        stored_hash,
        version,
    ) = row
    version = int(version)
    if stored_prev != prev_hash:
        return (
            (
                f"its prev_hash {stored_prev[:16]}… is not the hash of row {prev_id} "
                f"({prev_hash[:16]}…): rows were reordered, removed or rewritten"
            ),
            "",
            version,
        )
    if version == 2:
        own_hash = row_hash_v2(
            stored_prev,
            int(audit_id),
            session_id,
            int(seq),
            event_id,
            event_type,
            occurred_at,
            content,
        )
    elif version == 1 and prev_version == 1:
        own_hash = chain_hash(stored_prev, content)
    elif version == 1:
        return (
            (
                f"its hash_version is 1 after a version-{prev_version} row: the row was "
                "edited (a version never goes back)"
            ),
            "",
            version,
        )
    else:
        return f"its hash_version {version} is unknown: the row was edited", "", version
    if own_hash != stored_hash:
        which = _content_mismatch(row) or "one of its columns was changed"
        return (
            (
                f"its columns do not hash to its row_hash (stored {stored_hash[:16]}…, "
                f"recomputed {own_hash[:16]}…): the row was edited; {which}"
            ),
            own_hash,
            version,
        )
    if version == 1:
        mismatch = _content_mismatch(row)
        if mismatch is not None:
            return f"{mismatch}: the row was edited", own_hash, version
    return None, own_hash, version


def verify_chain(
    rows: Iterable[Sequence[Any]], checkpoints: Sequence[AuditCheckpoint] = ()
) -> VerifyReport:
    """Walk rows (AUDIT_COLUMNS order) in audit_id order; report the first row that
    breaks the chain or disagrees with a checkpoint.

    Checks per row: its id is the previous id + 1 (a deleted row leaves a hole), its
    prev_hash is the previous row's hash, its row_hash is the hash of its version over
    its columns (version 2: all of them; version 1: the content, and every other column
    must be the one its content says), and its version never goes back from 2 to 1.
    Then every checkpoint's head must be the recomputed hash at its audit id: one past
    the end means a cut-off tail, a different hash means rows before it were rewritten
    with fixed-up hashes.
    """
    report = VerifyReport(checkpoints=len(checkpoints))
    by_id: dict[int, list[AuditCheckpoint]] = {}
    for c in checkpoints:
        by_id.setdefault(c.audit_id, []).append(c)
    if checkpoints:
        report.last_checkpoint_audit_id = max(c.audit_id for c in checkpoints)
    prev_id, prev_hash, prev_version = 0, GENESIS_HASH, 1
    # The recomputed hash at each checkpointed id (only those are kept).
    recomputed: dict[int, str] = {0: GENESIS_HASH}
    for row in rows:
        audit_id, session_id, seq = int(row[0]), row[1], int(row[2])
        expected_id = prev_id + 1
        if audit_id != expected_id:
            report.broken = BrokenRow(
                expected_id,
                f"row {expected_id} is missing (the next row is {audit_id}): rows were "
                "deleted from the audit log",
            )
            return report
        fault, own_hash, version = _row_fault(row, prev_id, prev_hash, prev_version)
        if fault is not None:
            report.broken = BrokenRow(audit_id, fault, session_id, seq)
            return report
        prev_id, prev_hash, prev_version = audit_id, own_hash, version
        report.rows += 1
        report.versions[version] = report.versions.get(version, 0) + 1
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


def _check_columns(conn: psycopg.Connection[Any]) -> None:
    """audit_log has exactly the columns verify knows: an unknown one would be unchecked."""
    found = [
        str(r[0])
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'audit_log'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
    ]
    unknown = sorted(set(found) - set(AUDIT_COLUMNS))
    missing = sorted(set(AUDIT_COLUMNS) - set(found))
    if unknown or missing:
        raise ExternalError(
            f"audit_log does not have the columns this verifier checks (unknown: "
            f"{', '.join(unknown) or 'none'}; missing: {', '.join(missing) or 'none'}): "
            "run the migrations, or teach verify to check the new column."
        )


def _rows(conn: psycopg.Connection[Any], batch: int = 5000) -> Iterator[tuple[Any, ...]]:
    with conn.cursor(name="audit_walk") as cur:
        cur.itersize = batch
        cur.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log ORDER BY audit_id")
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
            _check_columns(conn)
            return verify_chain(_rows(conn), checkpoints)
    except psycopg.errors.UndefinedTable as exc:
        raise ExternalError(
            "This database has no audit_log table: the migrations have not run "
            "(`turnlog db migrate`), or the URL names another database."
        ) from exc
    except psycopg.OperationalError as exc:
        raise ExternalError(f"Could not read the audit log: {str(exc).strip()}") from exc
