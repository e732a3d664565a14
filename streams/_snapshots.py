"""Reading `turnlog.snapshots`: a partition's index at takeover, one session on demand.

Rule: a snapshot is only ever a shortcut. The index says, per session, where its latest
snapshot is, which seq it covers and whether a turn was in progress; a restore decodes
only the states it needs now (sessions with a turn in progress), and any other session
is loaded when an input or a deadline for it arrives. A record this code cannot read is
skipped (logged and counted by the caller): that session is rebuilt from its events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from agents.errors import DecodeError
from agents.events import RestorePoint, SessionSnapshot
from agents.snapshots import RESTORE_POINT_KEY, is_live, state_of
from agents.state import SessionState
from agents.state_codec import READABLE_FORMATS
from schemas.codec import decode_snapshot

# An event is about 450 bytes on the wire (BENCHMARKS.md: bytes per turn). A session is
# snapshotted again once it has written an event per 90 bytes of its last snapshot:
# about five times that snapshot's size in events, so snapshots add at most about a
# fifth of the events' own bytes, and their CPU (the state's JSON, which grows with the
# conversation window) falls the same way; a restore then reads at most that many
# events after a session's snapshot. (It was 200: at N = 100 closed loop the worker
# spent ~14 % more CPU per turn than before snapshots; BENCHMARKS.md, Restore.)
BYTES_PER_EVENT = 90

__all__ = [
    "BYTES_PER_EVENT",
    "Keeper",
    "SnapshotIndex",
    "SnapshotReader",
    "Stored",
    "read_snapshot_index",
]


@dataclass(slots=True)
class Stored:
    """Where a session's latest snapshot is, and what it says without decoding it.
    `snapshot` is kept only while the restore needs it (a turn in progress)."""

    offset: int
    seq: int
    live: bool
    snapshot: SessionSnapshot | None = None
    size: int = 0  # bytes of the record


@dataclass(slots=True)
class SnapshotIndex:
    stored: dict[str, Stored]
    restore_from: int  # events offset: everything below is covered
    input_next: int  # requests offset decided when the restore point was written
    # Sessions whose latest snapshot this code cannot read (another schema or state
    # format): rebuilt from their events.
    unreadable: set[str] = field(default_factory=set)


async def read_snapshot_index(
    bootstrap: str,
    topic: str,
    partition: int,
    *,
    client_id: str,
    keep: set[str] | None = None,
) -> SnapshotIndex:
    """Every committed record of one snapshots partition (compacted: about one per
    session), folded into an index: the latest per session, and the restore point. The
    snapshots themselves are kept for sessions with a turn in progress, and for `keep`."""
    index = SnapshotIndex({}, 0, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id=client_id,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            for rec in batch.get(tp, ()):
                if rec.offset >= end:
                    break
                _add(index, rec.offset, rec.key, rec.value, keep or set())
    finally:
        await consumer.stop()
    return index


def _add(
    index: SnapshotIndex, offset: int, key: bytes | None, value: bytes | None, keep: set[str]
) -> None:
    sid = (key or b"").decode("utf-8", "replace")
    if value is None:
        return  # a tombstone
    try:
        record = decode_snapshot(value)
    except DecodeError:
        index.stored.pop(sid, None)
        index.unreadable.add(sid)
        return
    p = record.payload
    if isinstance(p, RestorePoint):
        if record.session_id == RESTORE_POINT_KEY:
            index.restore_from, index.input_next = p.events_offset, p.input_next
        return
    if p.state_format not in READABLE_FORMATS:
        index.stored.pop(record.session_id, None)
        index.unreadable.add(record.session_id)
        return
    index.unreadable.discard(record.session_id)
    live = is_live(p.phase)
    index.stored[record.session_id] = Stored(
        offset,
        p.seq,
        live,
        p if live or record.session_id in keep else None,
        len(value),
    )


class SnapshotReader:
    """Reads single snapshot records by offset (a session loaded on demand)."""

    def __init__(self, bootstrap: str, topic: str, *, client_id: str) -> None:
        self._bootstrap, self._topic, self._client_id = bootstrap, topic, client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._assigned: set[TopicPartition] = set()

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=self._client_id,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_wait_ms=10,
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def state(self, partition: int, offset: int) -> SessionState | None:
        """The session state the snapshot at `offset` holds; None when that snapshot is
        gone or in a format this code does not read (the caller folds the events)."""
        snapshot = await self.read(partition, offset)
        return state_of(snapshot) if snapshot is not None else None

    async def read(self, partition: int, offset: int) -> SessionSnapshot | None:
        """The session snapshot at `offset` of `partition`; None when it is gone
        (compacted away: a newer one exists) or unreadable. KafkaTimeoutError when the
        broker does not answer (the caller's batch is read again later)."""
        tp = TopicPartition(self._topic, partition)
        consumer = self._consumer
        assert consumer is not None, "start() first"
        async with self._lock:
            if tp not in self._assigned:
                self._assigned.add(tp)
                # A new assignment resumes every partition: pause the others again
                # (each is paused after its own load, below).
                consumer.assign(sorted(self._assigned))
                for other in self._assigned - {tp}:
                    consumer.pause(other)
            consumer.resume(tp)
            consumer.seek(tp, offset)
            try:
                return await self._read_at(consumer, tp, offset)
            finally:
                # Idle between loads: a resumed partition would be fetched ahead (and,
                # at its end, polled every fetch wait) until the next load.
                consumer.pause(tp)

    async def _read_at(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int
    ) -> SessionSnapshot | None:
        while True:
            batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
            records = batch.get(tp, [])
            if not records:
                # Not an answer about the snapshot: the broker did not answer.
                raise KafkaTimeoutError(
                    f"No record of {self._topic} partition {tp.partition} from offset "
                    f"{offset} within 5 s."
                )
            rec = records[0]
            if rec.offset < offset:
                continue
            if rec.offset > offset or rec.value is None:
                return None
            try:
                record = decode_snapshot(rec.value)
            except DecodeError:
                return None
            p = record.payload
            return p if isinstance(p, SessionSnapshot) else None


class Keeper:
    """What one owned partition knows about its snapshots, and the rules for writing
    them (in the transaction of the events they cover) and for evicting sessions.

    A session is snapshotted when its turn ends, and during a long turn every
    SNAPSHOT_EVERY events, but not before it has written an event per BYTES_PER_EVENT
    bytes of its last snapshot: a long session's state grows with it, and a snapshot
    at every turn end would then write more than the events themselves. An idle
    session that is not (yet) covered is snapshotted when it is about to be evicted.

    `uncovered` holds, per session with events its latest snapshot does not cover, a
    lower bound of the offset of the first such event; the partition's restore point is
    the least of them. A session whose first uncovered event falls the restore lag
    (Shared.restore_lag) behind is snapshotted too, so the restore point keeps up with
    the log even while some turn waits for a human for days.
    """

    def __init__(self, stored: dict[str, Stored], uncovered: dict[str, int], floor: int) -> None:
        self.stored = stored
        self.uncovered = uncovered
        # A lower bound of the events partition's end offset (exact after our commits).
        self.floor = floor
        self.too_large: set[tuple[str, int]] = set()  # (session, seq) not written
        self._next_lag_check = 0

    def plan(self, staged: dict[str, SessionState], every: int) -> list[str]:
        """The sessions of this transaction to snapshot."""
        out = []
        for sid, state in staged.items():
            if (sid, state.last_seq) in self.too_large:
                continue
            last = self.stored.get(sid)
            covered = last.seq if last is not None else 0
            grown = state.last_seq - covered
            # Amortised: the events since the last snapshot outweigh it (in events).
            if grown < (last.size // BYTES_PER_EVENT if last is not None else 0):
                continue
            if not is_live(state.phase) or grown >= every:
                out.append(sid)
        return out

    def to_cover(
        self, sessions: dict[str, SessionState], budget: int, limit: int = 32
    ) -> list[str]:
        """Idle sessions at the cold end of `sessions` (least recently used first) that
        cannot leave memory for want of a current snapshot, while it is over budget."""
        over = len(sessions) - budget
        out: list[str] = []
        for sid, state in sessions.items():
            if over <= 0 or len(out) >= limit:
                break
            if is_live(state.phase) or (sid, state.last_seq) in self.too_large:
                continue
            over -= 1
            if not self.evictable(sid, state):
                out.append(sid)
        return out

    def laggards(self, lag: int) -> list[str]:
        """Sessions (not in this transaction) holding the restore point too far back.
        Looked for once the log has grown by a tenth of `lag` since the last look, not
        in every transaction: the scan costs every session with uncovered events."""
        if self.floor < self._next_lag_check:
            return []
        self._next_lag_check = self.floor + max(1, lag // 10)
        limit = self.floor - lag
        return [sid for sid, bound in self.uncovered.items() if bound < limit]

    def restore_from(self, touched: Iterable[str], snapshotted: set[str]) -> int:
        """The restore point once this transaction commits (a lower bound: it is computed
        before our own events' offsets are known)."""
        bounds = [b for sid, b in self.uncovered.items() if sid not in snapshotted]
        bounds += [
            self.floor for sid in touched if sid not in snapshotted and sid not in self.uncovered
        ]
        return min(bounds, default=self.floor)

    def committed(
        self,
        touched: Iterable[str],
        written: dict[str, tuple[Any, int, SessionState, int]],
        floor_before: int,
    ) -> None:
        """After the commit: `written` maps a snapshotted session to (the send future of
        its record, its seq, its state, the record's size)."""
        for sid in touched:
            if sid in written:
                self.uncovered.pop(sid, None)
            else:
                self.uncovered.setdefault(sid, floor_before)
        for sid, (future, seq, state, size) in written.items():
            self.stored[sid] = Stored(future.result().offset, seq, is_live(state.phase), None, size)

    def evictable(self, sid: str, state: SessionState) -> bool:
        """Idle and wholly in its snapshot: it can leave memory and come back from it."""
        last = self.stored.get(sid)
        return (
            last is not None
            and last.seq == state.last_seq
            and not is_live(state.phase)
            and sid not in self.uncovered
        )
