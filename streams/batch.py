"""Batches: push work items through an agent (a pipeline or team agent, or any agent),
each item once, with bounds on how many run at a time, failures dead-lettered.

Rule: an item is a session of its own, `batch/<batch id>/<n>` (n from 1, the item's place
in the batch), started by one SendMessage whose request id is `<session>:item`. Both ids
are fixed, so the session worker's deduplication makes every item run once however often
it is submitted, and the submitter keeps no state of its own: it learns what was sent
from the requests topic and what ran from the events topic. A submitter that dies (or is
stopped) is simply run again: it reads the requests and the events of the batch's
sessions, counts what was sent, what runs and what ended, and sends only what was never
sent. `concurrency` bounds the items in flight (backpressure: an item is sent when
another ends).

A pipeline with stage limits (streams are given `stages`: a sequential team whose agent
file declares `[agents.X.team.limits.<member>]`) is run by the submitter stage by stage:
stage k of item n is the session `batch/<id>/<n>/<k>of<K>` on the stage's agent, its
message the item's text (and from stage 2 on, the previous stage's answer, as the team
would pass it), sent once stage k-1 completed and while the stage has fewer than its
`max_concurrency` items in flight and started fewer than `max_per_minute` in the last
minute. A stage's item is in flight from its request until the submitter has read its
turn's end, so the limit holds on the worker's side too; after a restart the in-flight
count comes from the logs (requests sent, turns ended; a request's time from its record),
so no stage ever has more than its limit, whatever was killed when. Later stages go
first: an item further along frees its place sooner.

An item whose turn failed is dead-lettered once per submitter run that sees it fail
(`turnlog.requests.dlq`, its request as the value, headers `turnlog.error.type` =
ItemFailed, `turnlog.error.message`, `turnlog.batch.id`, `turnlog.batch.item`,
`turnlog.batch.stage`): consumers of the DLQ dedupe on (batch id, item).

Progress in SQL: the batch's sessions in the `sessions` projection (`turns_completed`,
`turns_failed`), see `progress_sql`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from agents.definitions import AgentDefinition
from agents.errors import DecodeError
from agents.events import (
    Event,
    LlmCallCompleted,
    OrchestrationCompleted,
    Request,
    RequestRejected,
    SendMessage,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
)
from schemas.codec import decode_event, decode_request, encode_request
from streams.batch_feed import TopicFeed, topic_items
from streams.partitioning import partition_for
from streams.topics import TopicNames

__all__ = [
    "Batch",
    "BatchItem",
    "BatchSummary",
    "Stage",
    "item_session_id",
    "progress_sql",
    "stage_session_id",
    "stages_of",
    "topic_items",
]

_PREFIX = "batch/"
_WINDOW_S = 60.0


def item_session_id(batch_id: str, n: int | str) -> str:
    """Item n of a file batch (n from 1), or the item `p<partition>o<offset>` of a batch
    read from a topic: fixed by where the item is, so a re-run finds the same sessions."""
    return f"{_PREFIX}{batch_id}/{n}"


def stage_session_id(batch_id: str, n: int | str, k: int, stages: int) -> str:
    """Stage k (from 1) of `stages` of item n of a batch run stage by stage."""
    return f"{item_session_id(batch_id, n)}/{k}of{stages}"


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a pipeline the submitter runs itself: its agent and limits."""

    agent: str
    max_concurrency: int | None = None
    max_per_minute: int | None = None


def stages_of(definition: AgentDefinition) -> tuple[Stage, ...]:
    """The stages of a pipeline agent with stage limits (`[agents.X.team.limits]`), or
    () when the batch runs the agent as it is (no team, or a team without limits)."""
    team = definition.team
    if team is None or not team.limits:
        return ()
    out = []
    for member in team.members:
        limit = team.limits.get(member)
        out.append(
            Stage(
                member,
                limit.max_concurrency if limit else None,
                limit.max_per_minute if limit else None,
            )
        )
    return tuple(out)


def progress_sql() -> str:
    """Counts of a batch's items from the projections (parameter: the batch id): its
    items (an item run stage by stage is one item: completed when its last stage is,
    failed when a stage failed; an item's stages' child sessions are not items), and the
    cost of every item's tree."""
    return (
        "WITH b AS (SELECT 'batch/' || %s || '/' AS p),"
        " s AS (SELECT split_part(substr(s.session_id, length(b.p) + 1), '/', 1) AS item,"
        " split_part(substr(s.session_id, length(b.p) + 1), '/', 2) AS stage,"
        " s.turns_completed, s.turns_failed, COALESCE(c.total_cost_nanos, 0) AS cost"
        " FROM b JOIN sessions s ON s.session_id LIKE b.p || '%%'"
        " LEFT JOIN cost_by_session c ON c.session_id = s.session_id"
        " WHERE NOT EXISTS"
        " (SELECT 1 FROM session_links l WHERE l.child_session_id = s.session_id)),"
        " i AS (SELECT item, bool_or(turns_failed > 0) AS failed,"
        " bool_or(turns_completed > 0 AND (stage = ''"
        " OR split_part(stage, 'of', 1) = split_part(stage, 'of', 2))) AS completed,"
        " sum(cost) AS cost FROM s GROUP BY item)"
        " SELECT count(*) AS started,"
        " count(*) FILTER (WHERE completed AND NOT failed) AS completed,"
        " count(*) FILTER (WHERE failed) AS failed,"
        " COALESCE(sum(cost), 0)::bigint AS cost_nanos FROM i"
    )


_IN_FLIGHT = ("sent", "running")


@dataclass(slots=True)
class StageRun:
    """One stage of one item (a plain batch's item has one: the item's own session)."""

    session_id: str
    k: int  # from 1
    status: str = "pending"  # pending | sent | running | completed | failed
    result: str = ""
    cost_nanos: int = 0
    answers: dict[int, str] = field(default_factory=dict)  # seq -> answer text


@dataclass(slots=True)
class BatchItem:
    n: str  # its place: the line number, or p<partition>o<offset>
    text: str
    runs: list[StageRun] = field(default_factory=list)
    ended: bool = False
    opened: bool = False  # its first stage left pending (it counts against concurrency)

    @property
    def status(self) -> str:
        """pending | sent | running | completed | failed (the item's, over its stages)."""
        if any(r.status == "failed" for r in self.runs):
            return "failed"
        if self.runs[-1].status == "completed":
            return "completed"
        for r in self.runs:
            if r.status != "completed":
                return r.status if r.status != "pending" or r.k == 1 else "running"
        return "pending"

    @property
    def result(self) -> str:
        failed = [r for r in self.runs if r.status == "failed"]
        return failed[0].result if failed else self.runs[-1].result

    @property
    def cost_nanos(self) -> int:
        return sum(r.cost_nanos for r in self.runs)


@dataclass(frozen=True, slots=True)
class BatchSummary:
    batch_id: str
    items: int
    completed: int
    failed: int
    sent_now: int  # requests this run sent (the others were sent by an earlier run)
    dead_lettered: int
    cost_nanos: int
    # stage agent -> the most of its items in flight at once, as this run counted them
    max_in_flight: dict[str, int] = field(default_factory=dict)


Progress = Callable[[int, int, int], None]  # (ended, completed, failed)


class Batch:
    """One submitter run over a batch (see the module doc)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: TopicNames,
        partitions: int,
        batch_id: str,
        agent: str,
        items: Sequence[str] | Mapping[str, str],
        concurrency: int = 8,
        stages: Sequence[Stage] = (),
        client_id: str = "turnlog-batch",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not batch_id or "/" in batch_id:
            raise ValueError(f"batch id {batch_id!r}: give a non-empty id without '/'.")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}.")
        for s in stages:
            for name in ("max_concurrency", "max_per_minute"):
                value = getattr(s, name)
                if value is not None and value < 1:
                    raise ValueError(f"stage {s.agent}: {name} must be at least 1, not {value}.")
        self.bootstrap, self.topics, self.partitions = bootstrap, topics, partitions
        self.batch_id, self.agent, self.concurrency = batch_id, agent, concurrency
        self.stages = tuple(stages) or (Stage(agent),)
        self.staged = bool(stages)
        self.client_id, self.clock = client_id, clock
        self.items: dict[str, BatchItem] = {}
        self._runs: dict[str, tuple[BatchItem, StageRun]] = {}
        k_max = len(self.stages)
        self._ready: list[deque[BatchItem]] = [deque() for _ in range(k_max + 1)]
        self._in_flight = [0] * (k_max + 1)
        self._max_in_flight = [0] * (k_max + 1)
        self._started: list[deque[float]] = [deque() for _ in range(k_max + 1)]
        self._open = 0
        self._ended = self._completed = 0
        self._progress: Progress | None = None
        self._failed_now: list[BatchItem] = []
        self.sent_now = 0
        self.dead_lettered = 0
        keyed = items.items() if isinstance(items, Mapping) else enumerate(items, 1)
        for key, text in keyed:
            self.add(str(key), text)

    # ------------------------------------------------------------------ the items

    def add(self, n: str, text: str) -> bool:
        """Add item n (False when the batch has it already)."""
        sid = item_session_id(self.batch_id, n)
        if sid in self.items:
            return False
        item = BatchItem(n, text)
        k_max = len(self.stages)
        for k in range(1, k_max + 1):
            run_id = stage_session_id(self.batch_id, n, k, k_max) if self.staged else sid
            item.runs.append(StageRun(run_id, k))
            self._runs[run_id] = (item, item.runs[-1])
        self.items[sid] = item
        self._ready[1].append(item)
        return True

    def _request(self, item: BatchItem, run: StageRun) -> Request:
        text = item.text
        if run.k > 1:
            text = f"{text}\n\nThe previous step's result:\n{item.runs[run.k - 2].result}"
        return Request(
            request_id=f"{run.session_id}:item",
            session_id=run.session_id,
            occurred_at=datetime.now(UTC),
            payload=SendMessage(text=text),
            agent=self.stages[run.k - 1].agent if self.staged else self.agent,
            correlation_id=f"batch/{self.batch_id}",
        )

    def _set(self, item: BatchItem, run: StageRun, status: str) -> None:
        """Move a stage run on (never back), keeping the counts."""
        order = ("pending", "sent", "running", "completed", "failed")
        if order.index(status) <= order.index(run.status):
            return
        was = run.status
        run.status = status
        k = run.k
        if was in _IN_FLIGHT:
            self._in_flight[k] -= 1
        if status in _IN_FLIGHT:
            self._in_flight[k] += 1
            self._max_in_flight[k] = max(self._max_in_flight[k], self._in_flight[k])
        if k == 1 and was == "pending" and not item.ended:
            item.opened = True
            self._open += 1
        if status == "completed" and k < len(item.runs) and item.runs[k].status == "pending":
            self._ready[k + 1].append(item)
        if not item.ended and (
            status == "failed" or (status == "completed" and k == len(item.runs))
        ):
            item.ended = True
            self._ended += 1
            self._completed += status == "completed"
            if item.opened:
                self._open -= 1
            if status == "failed":
                self._failed_now.append(item)

    def _fold(self, ev: Event) -> None:
        hit = self._runs.get(ev.session_id)
        if hit is None:
            return
        item, run = hit
        p = ev.payload
        if isinstance(p, LlmCallCompleted):
            run.answers[ev.seq] = p.text
        elif isinstance(p, OrchestrationCompleted):
            run.answers[ev.seq] = p.result
        elif isinstance(p, TurnStarted):
            self._set(item, run, "running")
        elif isinstance(p, TurnCompleted) and run.status not in ("completed", "failed"):
            run.cost_nanos = p.cost_nanos
            run.result = run.answers.get(p.answer_seq, "")
            run.answers.clear()  # a batch that follows a topic holds many ended runs
            self._set(item, run, "completed")
        elif isinstance(p, TurnFailed) and run.status not in ("completed", "failed"):
            run.result = p.reason
            run.answers.clear()
            self._set(item, run, "failed")
        elif (
            isinstance(p, RequestRejected)
            and p.request_id == f"{run.session_id}:item"
            and run.status in ("pending", "sent")
        ):
            # Refused before it started (not a duplicate: that comes after the start).
            run.result = p.reason
            self._set(item, run, "failed")

    # ------------------------------------------------------------------ limits

    def _room(self, k: int) -> bool:
        stage = self.stages[k - 1]
        if k == 1 and self._open >= self.concurrency:
            return False
        if stage.max_concurrency is not None and self._in_flight[k] >= stage.max_concurrency:
            return False
        if stage.max_per_minute is not None:
            started, now = self._started[k], self.clock()
            while started and started[0] <= now - _WINDOW_S:
                started.popleft()
            if len(started) >= stage.max_per_minute:
                return False
        return True

    def _note_sent(self, k: int, at: float) -> None:
        started = self._started[k]
        started.append(at)
        if len(started) > 1 and started[-2] > at:  # the logs give times out of order
            ordered = sorted(started)
            started.clear()
            started.extend(ordered)

    # ------------------------------------------------------------------ the run

    async def run(
        self,
        on_progress: Progress | None = None,
        *,
        feed: TopicFeed | None = None,
        stop: asyncio.Event | None = None,
    ) -> BatchSummary:
        """Send the batch's items and follow them until every one ended; with `feed`
        (items that keep coming), until `stop` is set — then it returns at once, items in
        flight go on and a later run finds them in the logs."""
        self._progress = on_progress
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=f"{self.client_id}-events",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all", linger_ms=5
        )
        await consumer.start()
        await producer.start()
        try:
            if feed is not None:
                parts = list(range(self.partitions))  # items to come may land anywhere
            else:  # only the partitions the batch's sessions live on are read
                parts = sorted({partition_for(s, self.partitions) for s in self._runs})
            # 1. What earlier runs sent, and what ran: both logs up to their end.
            await self._recount_requests(parts)
            tps = [TopicPartition(self.topics.events, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                await self._poll(consumer, producer)
            # 2. Send what was never sent, as the limits allow; follow until all ended.
            while stop is None or not stop.is_set():
                if feed is not None:
                    for n, text in (await feed.poll()).items():
                        self.add(n, text)
                await self._send_ready(producer)
                if feed is None and self._open == 0 and not self._ready[1]:
                    break
                await self._poll(consumer, producer)
        finally:
            await consumer.stop()
            await producer.stop()
        return self.summary()

    def summary(self) -> BatchSummary:
        items = list(self.items.values())
        return BatchSummary(
            batch_id=self.batch_id,
            items=len(items),
            completed=sum(i.status == "completed" for i in items),
            failed=sum(i.status == "failed" for i in items),
            sent_now=self.sent_now,
            dead_lettered=self.dead_lettered,
            cost_nanos=sum(i.cost_nanos for i in items),
            max_in_flight={
                s.agent if self.staged else self.agent: max(
                    self._max_in_flight[k]
                    for k in range(1, len(self.stages) + 1)
                    if self.stages[k - 1].agent == s.agent
                )
                for s in self.stages
            },
        )

    async def _recount_requests(self, parts: Sequence[int]) -> None:
        """Mark the stage runs an earlier run sent (their request is on the topic), with
        the record's time for the per-minute windows."""
        prefix = f"{_PREFIX}{self.batch_id}/".encode()
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=f"{self.client_id}-requests",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await reader.start()
        try:
            tps = [TopicPartition(self.topics.requests, p) for p in parts]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            while [tp for tp in tps if await reader.position(tp) < ends[tp]]:
                batch = await reader.getmany(timeout_ms=200, max_records=5000)
                for records in batch.values():
                    for rec in records:
                        if rec.key is not None and rec.key.startswith(prefix):
                            self._recount(rec)
        finally:
            await reader.stop()

    def _recount(self, rec: ConsumerRecord) -> None:
        hit = self._runs.get(rec.key.decode())
        if hit is None:
            return
        item, run = hit
        try:
            request = decode_request(rec.value)
        except DecodeError:  # not a request (the DLQ's business): not ours
            return
        if request.request_id == f"{run.session_id}:item" and run.status == "pending":
            self._set(item, run, "sent")
            self._note_sent(run.k, rec.timestamp / 1000.0)

    async def _send_ready(self, producer: AIOKafkaProducer) -> None:
        for k in range(len(self.stages), 0, -1):
            ready = self._ready[k]
            while ready and self._room(k):
                item = ready.popleft()
                run = item.runs[k - 1]
                if item.ended or run.status != "pending":
                    continue  # sent by an earlier run, or the item ended meanwhile
                await producer.send_and_wait(
                    self.topics.requests,
                    value=encode_request(self._request(item, run)),
                    key=run.session_id.encode(),
                    partition=partition_for(run.session_id, self.partitions),
                )
                self._set(item, run, "sent")
                self._note_sent(k, self.clock())
                self.sent_now += 1

    async def _poll(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        batch = await consumer.getmany(timeout_ms=200, max_records=5000)
        ended_before = self._ended
        for records in batch.values():
            for rec in records:
                if rec.key is not None and rec.key.startswith(_PREFIX.encode()):
                    self._fold(decode_event(rec.value))
        failed, self._failed_now = self._failed_now, []
        for item in failed:
            await self._dead_letter(producer, item)
        if self._ended != ended_before and self._progress is not None:
            self._progress(self._ended, self._completed, self._ended - self._completed)

    @property
    def failed(self) -> int:
        return sum(i.status == "failed" for i in self.items.values())

    async def _dead_letter(self, producer: AIOKafkaProducer, item: BatchItem) -> None:
        run = next(r for r in item.runs if r.status == "failed")
        await producer.send_and_wait(
            self.topics.dlq,
            value=encode_request(self._request(item, run)),
            key=run.session_id.encode(),
            partition=partition_for(run.session_id, self.partitions),
            headers=[
                ("turnlog.error.type", b"ItemFailed"),
                ("turnlog.error.message", run.result.encode("utf-8", "replace")[:4000]),
                ("turnlog.batch.id", self.batch_id.encode()),
                ("turnlog.batch.item", item.n.encode()),
                ("turnlog.batch.stage", str(run.k).encode()),
            ],
        )
        self.dead_lettered += 1
