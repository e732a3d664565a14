"""One owned partition of the session worker: its producer, its sessions, its loop.

Rule: everything a batch of inputs causes — the events (each session's next seqs), the
DLQ records, the reports to parent sessions, and the input offset consumed — is
committed in ONE transaction of this partition's producer, or not at all; the in-memory
state is updated only after the commit returns, and effects start only then.

The loop takes everything queued since its last commit as its next transaction, so
batches grow with the load while the number of transactions does not. The consumed
offset rides on the transaction's last event (INPUT_NEXT_HEADER); the consumer group's
offset (two more broker round trips in a transaction) is committed with a plain offset
commit once the partition has idled IDLE_GRACE_S, at most every `group_commit_s` — so
at light load no input's transaction pays for it, and none waits for it — and added to
a transaction of inputs only when it has no event or when a busy partition never idled
for GROUP_IN_TXN_FACTOR × `group_commit_s`.

The LLM requests the core built while deciding (their digests are in the events) are
handed to the effects with the committed state, so a call started right after its
commit is not built twice; they are dropped with the transaction when it fails.

Calls of inline tools, and LLM calls of a model that answers this worker fast
(TURNLOG_INLINE_LLM_MS), are run while deciding and their outcomes decided in the same
transaction (`_run_inline`): a turn of a fast model is one transaction.

Poison never stops the partition: a request record over `max_request_bytes`
(TURNLOG_MAX_REQUEST_BYTES) or whose session id no event can carry is dead-lettered
unread; every input is decided at its ingest time (the broker's LogAppendTime of the
record, else this worker's clock when it takes it), never at its sender's claim. A
transaction that fails because a record is too large (the producer's max_request_size
or a topic's max.message.bytes — not retriable) is not read again as is: its inputs
are decided one per transaction with a fresh producer, and the one whose own
transaction is refused is set aside in the DLQ (RecordTooLarge; headers only when even
that is too large). Every send is awaited before the commit: aiokafka would otherwise
commit a transaction without a batch the broker refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from agents.context import ContextMemo
from agents.effects import (
    Effect,
    LlmCallEffect,
    ToolCallEffect,
    cancel_requests,
    child_report,
    llm_outcome_of,
    next_deadline,
    outcome_request_id,
    pending_effects,
)
from agents.errors import DecodeError
from agents.events import CompleteLlmCall, Event, ForkSession, Request, RequestPayload
from agents.fsm import decide_built, initial_state
from agents.limits import session_id_problem
from agents.llm import LlmRequest
from agents.registry import AgentRegistry
from agents.snapshots import RESTORE_POINT_KEY, SNAPSHOT_EVERY, restore_point, snapshot_of
from agents.state import SessionState
from schemas.codec import (
    decode_request,
    encode_event_compact,
    encode_request,
    encode_snapshot,
)
from streams import telemetry
from streams._deadlines import DeadlineIndex
from streams._headers import event_headers
from streams._snapshots import Keeper, SnapshotReader
from streams.logread import INPUT_NEXT_HEADER
from streams.partitioning import partition_for
from streams.topics import DEFAULT_MAX_REQUEST_BYTES, SNAPSHOTS_MAX_BYTES, TopicNames
from streams.tracing import child_traceparent, get_traceparent, headers_with

__all__ = ["EffectSync", "OwnedPartition", "Shared"]

# The group offset's commit waits for this much idleness (a turn's next input comes a
# few ms after the previous commit: committing at once would hold it up) ...
IDLE_GRACE_S = 0.1
# ... and goes into a transaction of inputs only after this many group_commit_s without.
GROUP_IN_TXN_FACTOR = 5


class EffectSync(Protocol):
    """(partition, session id, committed state, traceparent of the session's latest
    event, the LLM requests the committed decisions built by call id — None after a
    restore); `restored=True` when the state was rebuilt by a takeover."""

    def __call__(
        self,
        partition: int,
        session_id: str,
        state: SessionState,
        traceparent: str | None,
        built: Mapping[str, LlmRequest] | None,
        /,
        *,
        restored: bool = False,
    ) -> None: ...


class InlineTools(Protocol):
    """Runs calls of inline tools (agents.tools.Tool.inline) and fast LLM calls for the
    partition loop: streams.effects.EffectRunner."""

    def runs_inline(self, effect: Effect) -> bool: ...

    async def run_inline(
        self, session_id: str, effect: ToolCallEffect, traceparent: str | None
    ) -> RequestPayload: ...

    async def run_llm_inline(
        self,
        partition: int,
        state: SessionState,
        effect: LlmCallEffect,
        traceparent: str | None,
        prebuilt: LlmRequest | None,
    ) -> RequestPayload | None: ...

    def taken(self, session_id: str, effect: Effect, payload: RequestPayload) -> None: ...


# Rounds of inline calls one input may cause (each round: the calls its last decision
# made pending): an LLM call, its tool calls, the next LLM call, ...
MAX_INLINE_ROUNDS = 6


# (source session, at_seq, new session) -> the fork's base state, or None
ForkBase = Callable[[str, int, str], Awaitable[SessionState | None]]
# An event on its way out: (value, key, headers).
_Out = tuple[bytes, bytes, list[tuple[str, bytes]]]
# The broker (or the producer, before sending) refuses a record or batch as too large:
# not retriable, the same inputs fail the same way on every attempt.
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOG_APPEND_TIME = 1  # ConsumerRecord.timestamp_type


def _refusal(exc: BaseException, sent: Sequence[asyncio.Future[Any]]) -> KafkaError | None:
    """The too-large refusal behind a failed transaction, or None. The broker's refusal
    of one batch fails the idempotent producer's later batches of that partition too
    (out of order), so the refusal may sit in a sent record's future, not in `exc`."""
    if isinstance(exc, _TOO_LARGE):
        return exc
    for fut in sent:
        if fut.done() and not fut.cancelled():
            found = fut.exception()
            if isinstance(found, _TOO_LARGE):
                return found
    return None


def _record_size(rec: ConsumerRecord) -> int:
    """Bytes of a record as a producer's limit counts them: key, value and headers."""
    size = len(rec.value or b"") + len(rec.key or b"")
    for key, value in rec.headers or ():
        size += len(key) + len(value or b"")
    return size


def _seq_of(state: SessionState | None) -> int:
    return 0 if state is None else int(state.last_seq)


def _ingest_time(rec: ConsumerRecord) -> datetime:
    """When this worker took `rec`: the broker's append time when the topic stamps it
    (message.timestamp.type=LogAppendTime, the same on every re-read), else our clock
    now. The core decides with it; the request's occurred_at is only its sender's claim."""
    if rec.timestamp_type == _LOG_APPEND_TIME and rec.timestamp is not None and rec.timestamp > 0:
        return _EPOCH + timedelta(milliseconds=rec.timestamp)
    return datetime.now(UTC)


@dataclass
class Shared:
    """What every partition of one worker shares."""

    topics: TopicNames
    partitions: int
    registry: AgentRegistry
    group_id: str
    consumer: AIOKafkaConsumer
    fork_base: ForkBase
    forget: Callable[[OwnedPartition], None]
    stats: dict[str, int]
    log: Any
    effect_sync: EffectSync | None = None
    effect_drop: Callable[[int], None] | None = None
    # Calls of inline tools run inside the decision that asked for them (None: every
    # call goes out through effect_sync).
    inline: InlineTools | None = None
    # Reads turnlog.agents again: a session pinned to a version this worker did not know
    # (published by a newer worker since this one started) is decided with it.
    refresh_versions: Callable[[], Awaitable[None]] | None = None
    max_batch: int = 500
    max_queue: int = 2000
    group_commit_s: float = 1.0
    # A request record (key + value + headers) larger than this is dead-lettered unread.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # A started producer for partition p that has fenced any other (after a refusal).
    new_producer: Callable[[int], Awaitable[AIOKafkaProducer]] | None = None
    # Sessions held in memory, per partition (idle ones beyond it are evicted, least
    # recently used first), the reader that brings one back, and a session's state
    # folded from its events when no snapshot of it can be read.
    session_budget: int = 10_000
    snapshot_reader: SnapshotReader | None = None
    rebuild: Callable[[str], Awaitable[SessionState | None]] | None = None
    deadlines: DeadlineIndex | None = None
    # Messages built for earlier LLM calls of a window (agents.context): a long
    # session's next call builds only what is new. The core keeps no such state itself.
    context_memo: ContextMemo = field(default_factory=ContextMemo)
    # A session's first uncovered event further back than this (offsets) is snapshotted.
    restore_lag: int = 5_000


class OwnedPartition:
    """Partition `number` while this worker owns it (see the module rule)."""

    def __init__(
        self,
        shared: Shared,
        number: int,
        producer: AIOKafkaProducer,
        sessions: dict[str, SessionState],
        traces: dict[str, str | None],
        *,
        position: int,
        group_offset: int,
        events_end: int | None = None,
        keeper: Keeper | None = None,
    ) -> None:
        self.shared = shared
        self.keeper = keeper if keeper is not None else Keeper({}, {}, events_end or 0)
        self.number = number
        self.producer = producer
        self.tp = TopicPartition(shared.topics.requests, number)
        self.sessions = sessions
        # The traceparent of each session's latest event: effects started from that
        # state report in the same trace.
        self.traces = traces
        # The next input offset to take: records below it (fetched before a seek) are
        # dropped, never processed twice.
        self.position = position
        # The input offset after the last commit, and the one the group last saw.
        self.done = position
        self.group_offset = group_offset
        self.group_committed_at = time.monotonic()
        self.idle_since = self.group_committed_at  # the end of the last transaction
        self.queue: deque[ConsumerRecord] = deque()
        self.wakeup = asyncio.Event()
        self.paused = False
        self.closed = False
        self._task: asyncio.Task[None] | None = None
        self._group_commit: asyncio.Task[None] | None = None
        # The events partition's end offset right after our last commit (None: unknown,
        # e.g. after an aborted transaction). If it still reads so when a rebalance gives
        # the partition back, nobody wrote in between and our sessions are current.
        self.events_end = events_end
        self._last_sent: asyncio.Future[Any] | None = None
        # After a takeover: the effects found pending start only once the inputs that
        # were already in the partition (up to `catch_up`) are decided, so an outcome the
        # previous owner reported folds before anything is re-issued; `on_caught_up`
        # runs once then.
        self.catch_up: int | None = None
        self.on_caught_up: Callable[[], None] | None = None
        self._deciding = False
        # Inputs whose own transaction failed as too large, by offset: how many times
        # (1: dead-letter the record; 2: dead-letter only its headers; 3: skip it).
        self._too_large: dict[int, int] = {}
        self._sent: list[asyncio.Future[Any]] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the loop and fetching from `position` (the consumer may have fetched
        from a stale committed offset while the state was being restored)."""
        self._task = asyncio.create_task(self._loop())
        if self.position:
            self.shared.consumer.seek(self.tp, self.position)
        self.paused = False
        self.shared.consumer.resume(self.tp)
        self._check_caught_up()

    async def suspend(self) -> None:
        """Let the transaction in flight finish (commit or fail), then stop taking
        inputs. The sessions, the producer and the running effects stay: a rebalance
        that gives the partition back resumes it (`resume`) without a restore."""
        self.closed = True
        self.wakeup.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None

    async def resume(self, producer: AIOKafkaProducer) -> None:
        """Ready to take inputs again (`start`) with `producer` (freshly initialised:
        it fenced whoever may have held the partition meanwhile), where we stopped."""
        old, self.producer = self.producer, producer
        with contextlib.suppress(Exception):
            await old.stop()
        self.closed = False

    async def close(self) -> None:
        """Suspend, then give the partition up: its effects are cancelled (the new
        owner decides what to do with them) and queued records are left to the next
        owner, which reads from the committed offset."""
        await self.suspend()
        if self.shared.effect_drop is not None:
            self.shared.effect_drop(self.number)
        if self.shared.deadlines is not None:  # its sessions are ticked elsewhere now
            for session_id in self.sessions:
                self.shared.deadlines.set(session_id, None)
        with contextlib.suppress(Exception):
            await self.producer.stop()

    def fetched_to(self, position: int) -> None:
        """The consumer's fetch position: past `catch_up` with nothing queued or being
        decided means caught up, even when the last offsets before it were transaction
        markers or aborted records, which a read_committed fetch never hands over."""
        if (
            self.catch_up is not None
            and position >= self.catch_up
            and not self.queue
            and not self._deciding
        ):
            self.done = max(self.done, self.catch_up)
            self._check_caught_up()

    def _check_caught_up(self) -> None:
        if self.catch_up is not None and self.done >= self.catch_up:
            self.catch_up = None
            callback, self.on_caught_up = self.on_caught_up, None
            if callback is not None:
                callback()

    def offer(self, records: Sequence[ConsumerRecord]) -> None:
        """Queue fetched records (synchronously: the dispatch cannot interleave)."""
        if self.closed:
            return  # being revoked: the next owner reads them again
        fresh = [r for r in records if r.offset >= self.position]
        if not fresh:
            return
        self.position = fresh[-1].offset + 1
        self.queue.extend(fresh)
        self.wakeup.set()
        if len(self.queue) >= self.shared.max_queue and not self.paused:
            self.shared.consumer.pause(self.tp)  # backpressure
            self.paused = True

    # ------------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        while not self.closed:
            if not self.queue:
                if self.done > self.group_offset:
                    # Progress the group has not seen: commit it once the partition idles.
                    now = time.monotonic()
                    grace = min(IDLE_GRACE_S, self.shared.group_commit_s)
                    wait = max(
                        self.shared.group_commit_s - (now - self.group_committed_at),
                        grace - (now - self.idle_since),
                    )
                    if wait <= 0:
                        self._commit_group()
                        continue
                    # A timer rather than wait_for (a task and a timeout per idle moment):
                    # the loop comes back here either way and looks again.
                    timer = asyncio.get_running_loop().call_later(wait, self.wakeup.set)
                    try:
                        await self.wakeup.wait()
                    finally:
                        timer.cancel()
                    if not self.queue:
                        self.wakeup.clear()
                    continue
                await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue and not self.closed:
                n = min(len(self.queue), self.shared.max_batch)
                records = [self.queue.popleft() for _ in range(n)]
                self._deciding = True
                try:
                    await self._transaction(records)
                except Exception as exc:
                    # Not a broker error (those are handled inside): say so loudly, drop
                    # the transaction and read the batch again after a pause, rather than
                    # leave the partition with no loop.
                    self.shared.log.exception(
                        "batch.crashed", partition=self.number, error=repr(exc)
                    )
                    self.events_end = None
                    with contextlib.suppress(Exception):
                        await self.producer.abort_transaction()
                    self.queue.clear()
                    self.position = records[0].offset
                    await asyncio.sleep(1.0)
                    if not self.closed:
                        self._rewind(records[0].offset)
                    break
                finally:
                    self._deciding = False
                if self.paused and len(self.queue) < self.shared.max_queue // 2:
                    if not self.closed:
                        self.shared.consumer.resume(self.tp)
                    self.paused = False

    def _commit_group(self) -> None:
        """Tell the consumer group how far this partition's committed transactions went,
        with a plain offset commit, in the background: one round trip to the group
        coordinator, and the producer is free for the next input meanwhile. An
        offsets-only transaction took three (AddOffsetsToTxn, TxnOffsetCommit, EndTxn),
        and until its markers were written the next input's transaction was answered
        CONCURRENT_TRANSACTIONS. Exactly-once does not rest on this offset: a new owner
        resumes from the offset the log records (INPUT_NEXT_HEADER) or a later committed
        one, and this one is only ever a committed transaction's end (a commit from an
        owner the group has moved on from is refused by its generation)."""
        offset = self.done
        self.group_committed_at = time.monotonic()
        if self._group_commit is not None and not self._group_commit.done():
            return
        self._group_commit = asyncio.get_running_loop().create_task(
            self._commit_group_offset(offset)
        )

    async def _commit_group_offset(self, offset: int) -> None:
        try:
            await self.shared.consumer.commit({self.tp: offset})
        except (KafkaError, OSError, AssertionError) as exc:
            # (aiokafka asserts the partition is assigned: revoked meanwhile.) The next
            # idle moment tries again; the next owner reads the log anyway.
            self.shared.log.info(
                "group_offset.not_committed", partition=self.number, error=repr(exc)
            )
            return
        self.group_offset = max(self.group_offset, offset)
        self.shared.stats["group_commits"] += 1
        self._check_caught_up()

    def _rewind(self, offset: int) -> None:
        """Fetch this partition again from `offset` (its queue was dropped), resuming it
        if backpressure had paused it: nothing else would."""
        self.shared.consumer.seek(self.tp, offset)
        if self.paused:
            self.shared.consumer.resume(self.tp)
            self.paused = False

    async def _isolate(self, records: Sequence[ConsumerRecord], exc: KafkaError) -> None:
        """A transaction of `records` failed as too large: decide them one per
        transaction, and set aside (dead-letter) an input whose own transaction fails
        so; the partition goes on with the next input instead of re-reading the batch."""
        if self.shared.new_producer is not None and not self.closed:
            # The broker's refusal leaves an idempotent producer's sequence numbers
            # broken for the partition: go on with a fresh one (same transactional id).
            old, self.producer = self.producer, await self.shared.new_producer(self.number)
            with contextlib.suppress(Exception):
                await old.stop()
        if len(records) > 1:
            for rec in records:
                if self.closed:
                    return
                await self._transaction([rec])
                if self.done != rec.offset + 1:
                    return  # failed otherwise (rewound or fenced): the loop takes over
            return
        rec = records[0]
        attempt = self._too_large.get(rec.offset, 0) + 1
        self._too_large[rec.offset] = attempt
        self.shared.log.error(
            "input.too_large",
            partition=self.number,
            offset=rec.offset,
            attempt=attempt,
            error=repr(exc),
        )
        await self._transaction([rec])
        self._too_large.pop(rec.offset, None)

    async def _set_aside(self, rec: ConsumerRecord) -> None:
        """Dead-letter an input whose events could not be written (too large), without
        deciding it again; with only error headers if the record itself was too large
        for the DLQ; or, failing that too, skip it with an error line."""
        attempt = self._too_large[rec.offset]
        message = (
            f"What this input caused (events, DLQ record or report) is larger than the "
            f"broker or producer accepts (max.message.bytes of the topic written, or the "
            f"producer's max_request_size); the input was set aside after attempt {attempt}."
        )
        extra = [("turnlog.error.limit", b"max.message.bytes")]
        if attempt == 1:
            await self._dead_letter(rec, "RecordTooLarge", message, None, extra)
        elif attempt == 2:
            await self._dead_letter(rec, "RecordTooLarge", message, None, extra, value=False)
        else:
            self.shared.stats["dlq"] += 1
            self.shared.log.error(
                "input.skipped", partition=self.number, offset=rec.offset, error=message
            )

    async def _transaction(self, records: Sequence[ConsumerRecord]) -> None:
        """`records` (possibly none: an offsets-only commit) as one transaction."""
        shared, producer = self.shared, self.producer
        staged: dict[str, SessionState] = {}
        traces: dict[str, str | None] = {}
        built: dict[str, dict[str, LlmRequest]] = {}
        held: list[_Out] = []
        end = records[-1].offset + 1 if records else self.done
        now = time.monotonic()
        self._last_sent = None
        self._sent = []
        too_large: KafkaError | None = None
        try:
            await producer.begin_transaction()
            telemetry.batch_begin(shared.stats)  # spans and metrics of this transaction
            for rec in records:
                await self._handle(rec, staged, traces, built, held)
            floor_before = self.keeper.floor
            touched = [
                sid for sid, st in staged.items() if st.last_seq != _seq_of(self.sessions.get(sid))
            ]
            written = await self._write_snapshots(staged, touched, end)
            # The consumed offset rides on the last event; the group offset costs two
            # more broker round trips, so it comes along only now and then.
            to_group = (
                not held
                or now - self.group_committed_at >= shared.group_commit_s * GROUP_IN_TXN_FACTOR
            )
            if held:
                value, key, headers = held.pop()
                headers.append((INPUT_NEXT_HEADER, str(end).encode()))
                await self._send_event(value, key, headers)
            if to_group:
                await producer.send_offsets_to_transaction({self.tp: end}, shared.group_id)
            decided = time.monotonic()
            # A record the broker refused fails only its own future: a commit would go
            # through without it. Every send must have succeeded before we commit.
            for fut in self._sent:
                await fut
            written_at = time.monotonic()
            await producer.commit_transaction()
            if records:
                # Where a transaction's time goes (turnlog_transaction_*_microseconds).
                stats, done_at = shared.stats, time.monotonic()
                stats["txn_timed"] += 1
                stats["txn_decide_us"] += int((decided - now) * 1e6)
                stats["txn_write_us"] += int((written_at - decided) * 1e6)
                stats["txn_commit_us"] += int((done_at - written_at) * 1e6)
            telemetry.batch_committed()
            if self._last_sent is not None:
                # One offset past our last event holds the commit marker.
                self.events_end = self._last_sent.result().offset + 2
        except ProducerFenced:
            # Another worker owns the partition now (we missed the rebalance): stop.
            shared.log.warning("partition.fenced", partition=self.number)
            self.closed = True
            self.queue.clear()
            shared.forget(self)
            if shared.effect_drop is not None:
                shared.effect_drop(self.number)
            with contextlib.suppress(Exception):
                await producer.stop()
            return
        except (KafkaError, OSError) as exc:
            # A record refused as too large is not retriable: read again, the same batch
            # would fail the same way forever. It is set aside instead (_isolate).
            too_large = _refusal(exc, self._sent)
            if too_large is not None:
                shared.log.error(
                    "batch.too_large", partition=self.number, error=repr(exc), inputs=len(records)
                )
            else:
                shared.log.error("batch.failed", partition=self.number, error=repr(exc))
            self.events_end = None  # an abort marker may or may not have been written
            with contextlib.suppress(Exception):
                await producer.abort_transaction()
            if too_large is None:
                # Nothing of the batch is visible; read it again (and whatever was
                # queued after it) from its first offset.
                self.queue.clear()
                if records:
                    self.position = records[0].offset
                    if not self.closed:
                        self._rewind(records[0].offset)
                return
        if too_large is not None:
            await self._isolate(records, too_large)
            return
        self.done = end
        self.idle_since = time.monotonic()
        if to_group:
            self.group_offset, self.group_committed_at = end, now
        if not records:
            self._check_caught_up()
            return
        self.keeper.committed(touched, written, floor_before)
        if self.events_end is not None:
            self.keeper.floor = max(self.keeper.floor, self.events_end)
        for sid, state in staged.items():  # most recently used last
            self.sessions.pop(sid, None)
            self.sessions[sid] = state
            if shared.deadlines is not None:
                shared.deadlines.set(sid, next_deadline(state))
        self.traces.update(traces)
        shared.stats["batches"] += 1
        shared.stats["snapshots"] += len(written)
        if len(self.sessions) > shared.session_budget:
            self._evict()
        if shared.effect_sync is not None:
            for session_id, state in staged.items():
                shared.effect_sync(
                    self.number,
                    session_id,
                    state,
                    self.traces.get(session_id),
                    built.get(session_id),
                )
        self._check_caught_up()

    # ------------------------------------------------------------------ one input

    async def _handle(
        self,
        rec: ConsumerRecord,
        staged: dict[str, SessionState],
        traces: dict[str, str | None],
        built: dict[str, dict[str, LlmRequest]],
        held: list[_Out],
    ) -> None:
        shared = self.shared
        shared.stats["inputs"] += 1
        if rec.offset in self._too_large:
            await self._set_aside(rec)
            return
        size = _record_size(rec)
        if size > shared.max_request_bytes:
            limit = f"TURNLOG_MAX_REQUEST_BYTES={shared.max_request_bytes}"
            await self._dead_letter(
                rec,
                "RequestTooLarge",
                f"The request record is {size} bytes, over the maximum request size "
                f"{limit} bytes; it was not decoded.",
                None,
                [("turnlog.error.limit", limit.encode())],
            )
            return
        try:
            req = decode_request(rec.value)
        except DecodeError as exc:
            await self._dead_letter(rec, "DecodeError", str(exc), exc.fingerprint)
            return
        problem = session_id_problem(req.session_id)
        if problem is not None:
            # No event can name this session: there is no log to reject it on.
            await self._dead_letter(
                rec, "InvalidSessionId", f"Request {req.request_id!r}: {problem}.", None
            )
            return
        expected = partition_for(req.session_id, shared.partitions)
        if expected != self.number:
            # Produced with the wrong key: forward it to its session's partition rather
            # than let two workers write one session.
            shared.stats["rerouted"] += 1
            self._sent.append(
                await self.producer.send(
                    shared.topics.requests,
                    value=rec.value,
                    key=req.session_id.encode(),
                    partition=expected,
                    headers=list(rec.headers or ()),
                )
            )
            return
        state = staged.get(req.session_id) or self.sessions.get(req.session_id)
        if state is None and req.session_id in self.keeper.stored:
            # Outside the try below: a broker that cannot be read now is not the input's
            # fault (the batch is read again, see _transaction), never a dead letter.
            state = await self._load(req.session_id)
        if (
            state is not None
            and state.agent
            and shared.refresh_versions is not None
            and shared.registry.pinned(state.agent, state.definition_hash) is None
        ):
            await shared.refresh_versions()
        try:
            if state is None:
                if isinstance(req.payload, ForkSession):
                    state = await shared.fork_base(
                        req.payload.source_session_id, req.payload.at_seq, req.session_id
                    )
                if state is None:
                    state = initial_state(req.session_id)
            before, ingested = state, _ingest_time(rec)
            events, state, requests = decide_built(
                state, req, shared.registry, ingested_at=ingested, memo=shared.context_memo
            )
            encoded = [encode_event_compact(ev) for ev in events]
        except Exception as exc:  # a bug in the core must not become a crash loop
            shared.log.exception(
                "decide.failed", session_id=req.session_id, request_id=req.request_id
            )
            await self._dead_letter(rec, "InternalError", f"{type(exc).__name__}: {exc}", None)
            return
        # A request without trace context starts a trace of its own (derived from its id,
        # so a re-processed input gets the same one): all the events it causes, and the
        # effects they start, share it.
        # With tracing on, the events carry the id of this input's span (streams.telemetry).
        parent_tp = telemetry.input_traceparent(
            rec, req, events, get_traceparent(rec.headers)
        ) or child_traceparent(None, req.request_id)
        if shared.inline is not None and state.turn is not None:
            # (events and encoded grow in place: the input's span counts what they hold)
            state, requests = await self._run_inline(
                ingested, before, events, encoded, state, requests, parent_tp
            )
        cause, last = None, events[-1] if events else None
        for ev, blob in zip(events, encoded, strict=True):
            # The first event of each input (an inline call's outcome is one) carries
            # the trace context; the last one's is what the session's effects report in.
            # Another event's is made only when a request it causes needs it (deriving
            # one costs a SHA-256).
            first, cause = ev.causation_id != cause or ev is events[0], ev.causation_id
            event_tp = child_traceparent(parent_tp, ev.event_id) if first or ev is last else None
            if held:  # every event but the transaction's last goes out at once
                await self._send_event(*held.pop())
            held.append(
                (blob, ev.session_id.encode(), event_headers(event_tp, first_of_input=first))
            )
            shared.stats["events"] += 1
            report = child_report(state, ev)
            cancels = cancel_requests(ev)
            if report is not None or cancels:
                if event_tp is None:
                    event_tp = child_traceparent(parent_tp, ev.event_id)
                if report is not None:
                    await self._send_request(report, event_tp)
                for cancel in cancels:
                    await self._send_request(cancel, event_tp)
            if ev is last:
                traces[req.session_id] = event_tp
        staged[req.session_id] = state
        if requests:
            built.setdefault(req.session_id, {}).update(requests)

    async def _run_inline(
        self,
        ingested: datetime,
        before: SessionState,
        events: list[Event],
        encoded: list[bytes],
        state: SessionState,
        requests: dict[str, LlmRequest],
        traceparent: str,
    ) -> tuple[SessionState, dict[str, LlmRequest]]:
        """Run the calls of inline tools (and the LLM calls of a fast model: the effect
        runner's `runs_inline`) this input's decision made pending and decide their
        outcomes at once: the call, its result and what the session does next go out in
        this input's transaction, a hop (effect, outcome record, fetch, decision,
        transaction) fewer per call. An LLM call whose answer does not come within the
        budget, or whose events would not give its answer back whole
        (agents.effects.llm_outcome_of: what replay --verify rebuilds it from), is left
        pending: the runner reports its outcome after the commit. The outcome is the request the effect runner would
        have sent (same id, same payload); it is recorded only as the events it causes
        (appended to `events` and `encoded`), from which `replay --verify` rebuilds it.
        It is decided at the input's time (the log's clock, not this worker's): its
        events follow the input's in time as in the log. A call that was pending before
        this input (a takeover's, or one sync() already runs) is left to the effect
        runner; a decision that raises leaves the call pending for it too. The calls'
        spans are children of the input's (`traceparent`)."""
        inline, shared = self.shared.inline, self.shared
        assert inline is not None
        calls = [e for e in pending_effects(state) if inline.runs_inline(e)]
        if not calls:  # the rule: most decisions make no inline call pending
            return state, requests
        done: set[tuple[str, int]] = {(e.effect_id, e.attempt) for e in pending_effects(before)}
        for round_ in range(MAX_INLINE_ROUNDS):
            if round_:
                calls = [e for e in pending_effects(state) if inline.runs_inline(e)]
            calls = [e for e in calls if (e.effect_id, e.attempt) not in done]
            if not calls:
                break
            for n, effect in enumerate(calls):
                key = (effect.effect_id, effect.attempt)
                if n and key not in {(e.effect_id, e.attempt) for e in pending_effects(state)}:
                    continue  # the previous call's outcome ended it (a cancelled turn)
                done.add(key)
                payload: RequestPayload | None
                if isinstance(effect, ToolCallEffect):
                    payload = await inline.run_inline(state.session_id, effect, traceparent)
                else:
                    assert isinstance(effect, LlmCallEffect)
                    payload = await inline.run_llm_inline(
                        self.number, state, effect, traceparent, requests.get(effect.effect_id)
                    )
                    if not isinstance(payload, CompleteLlmCall):
                        # Late (it runs on), or failed: reported after the commit as any
                        # outcome is — a failure's events do not hold all of it.
                        continue
                outcome = Request(
                    request_id=outcome_request_id(effect),
                    session_id=state.session_id,
                    occurred_at=ingested,
                    payload=payload,
                    causation_id=effect.effect_id,
                    correlation_id=effect.correlation_id,
                )
                try:
                    more, after, built = decide_built(
                        state,
                        outcome,
                        shared.registry,
                        ingested_at=ingested,
                        memo=shared.context_memo,
                    )
                    blobs = [encode_event_compact(ev) for ev in more]
                except Exception:
                    shared.log.exception(
                        "decide.failed", session_id=state.session_id, request_id=outcome.request_id
                    )
                    return state, requests
                if isinstance(effect, LlmCallEffect):
                    if llm_outcome_of(more, effect.effect_id, effect.attempt) != payload:
                        # Its events would not give the answer back (replay --verify
                        # rebuilds it from them): decided from its record instead.
                        continue
                    inline.taken(state.session_id, effect, payload)
                events.extend(more)
                encoded.extend(blobs)
                state = after
                if built:
                    requests = {**requests, **built}
        return state, requests

    # ------------------------------------------------------------------ snapshots

    async def _write_snapshots(
        self, staged: dict[str, SessionState], touched: list[str], end: int
    ) -> dict[str, tuple[asyncio.Future[Any], int, SessionState, int]]:
        """Send the snapshots this transaction owes (sessions whose turn ended, that
        grew by SNAPSHOT_EVERY events, or that hold the restore point back) and, with
        them, the partition's restore point. Returns session -> (future, seq, state, size)."""
        keeper, shared = self.keeper, self.shared
        chosen = keeper.plan({sid: staged[sid] for sid in touched}, SNAPSHOT_EVERY)
        chosen += [
            sid
            for sid in keeper.laggards(shared.restore_lag)
            if sid not in staged and sid in self.sessions
        ]
        if len(self.sessions) > shared.session_budget:
            chosen += [
                sid
                for sid in keeper.to_cover(self.sessions, shared.session_budget)
                if sid not in staged and sid not in chosen
            ]
        if not chosen:
            return {}
        now = datetime.now(UTC)
        written: dict[str, tuple[asyncio.Future[Any], int, SessionState, int]] = {}
        for sid in chosen:
            state = staged.get(sid) or self.sessions[sid]
            value = encode_snapshot(snapshot_of(state, events_offset=keeper.floor, now=now))
            if len(value) + len(sid) > SNAPSHOTS_MAX_BYTES - 1024:
                # Restored from its events instead; said once per seq.
                keeper.too_large.add((sid, state.last_seq))
                shared.log.warning("snapshot.too_large", session_id=sid, bytes=len(value))
                continue
            future = await self.producer.send(
                shared.topics.snapshots, value=value, key=sid.encode(), partition=self.number
            )
            self._sent.append(future)
            written[sid] = (future, state.last_seq, state, len(value))
        if written:
            point = restore_point(keeper.restore_from(touched, set(written)), end, now)
            self._sent.append(
                await self.producer.send(
                    shared.topics.snapshots,
                    value=encode_snapshot(point),
                    key=RESTORE_POINT_KEY.encode(),
                    partition=self.number,
                )
            )
        return written

    async def _load(self, session_id: str) -> SessionState:
        """An evicted session back from its snapshot (or, when that cannot be read, from
        its events)."""
        shared = self.shared
        stored = self.keeper.stored[session_id]
        state = None
        if shared.snapshot_reader is not None:
            state = await shared.snapshot_reader.state(self.number, stored.offset)
        if state is None and shared.rebuild is not None:
            shared.stats["sessions_rebuilt"] += 1
            state = await shared.rebuild(session_id)
        if state is None:
            raise LookupError(
                f"Session {session_id}: neither its snapshot at offset "
                f"{stored.offset} nor its events could be read."
            )
        shared.stats["sessions_loaded"] += 1
        self.sessions[session_id] = state
        return state

    def _evict(self) -> None:
        """Idle sessions wholly in their snapshots leave memory, least recently used
        first, until the partition is within its budget."""
        shared, over = self.shared, len(self.sessions) - self.shared.session_budget
        gone = []
        for sid, state in self.sessions.items():
            if over <= 0:
                break
            if self.keeper.evictable(sid, state):
                gone.append(sid)
                over -= 1
        for sid in gone:
            del self.sessions[sid]
            self.traces.pop(sid, None)
            if shared.deadlines is not None:
                shared.deadlines.set(sid, None)
        shared.stats["sessions_evicted"] += len(gone)

    async def _send_event(self, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        self._last_sent = await self.producer.send(
            self.shared.topics.events,
            value=value,
            key=key,
            partition=self.number,
            headers=headers,
        )
        self._sent.append(self._last_sent)

    async def _send_request(self, req: Request, traceparent: str | None) -> None:
        self._sent.append(
            await self.producer.send(
                self.shared.topics.requests,
                value=encode_request(req),
                key=req.session_id.encode(),
                partition=partition_for(req.session_id, self.shared.partitions),
                headers=headers_with(child_traceparent(traceparent, req.request_id)),
            )
        )

    async def _dead_letter(
        self,
        rec: ConsumerRecord,
        error_type: str,
        message: str,
        fingerprint: str | None,
        extra: Sequence[tuple[str, bytes]] = (),
        *,
        value: bool = True,
    ) -> None:
        self.shared.stats["dlq"] += 1
        # Without the value, the record's own headers go too (they may be what is big).
        headers = (list(rec.headers or ()) if value else []) + [
            ("turnlog.error.type", error_type.encode()),
            ("turnlog.error.message", message.encode("utf-8", "replace")[:4000]),
            ("turnlog.source.topic", rec.topic.encode()),
            ("turnlog.source.partition", str(rec.partition).encode()),
            ("turnlog.source.offset", str(rec.offset).encode()),
        ]
        if fingerprint:
            headers.append(("turnlog.error.fingerprint", fingerprint.encode()))
        headers.extend(extra)
        self._sent.append(
            await self.producer.send(
                self.shared.topics.dlq,
                value=rec.value if value else None,
                key=rec.key,
                headers=headers,
            )
        )
        self.shared.log.warning(
            "input.dead_lettered",
            error_type=error_type,
            error=message[:500],
            partition=rec.partition,
            offset=rec.offset,
        )
