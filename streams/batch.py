"""Batches: push work items through an agent (a pipeline or team agent, or any agent),
each item once, with a bound on how many run at a time, failures dead-lettered.

Rule: an item is a session of its own, `batch/<batch id>/<n>` (n from 1, the item's place
in the batch), started by one SendMessage whose request id is `<session>:item`. Both ids
are fixed, so the session worker's deduplication makes every item run once however often
it is submitted, and the submitter keeps no state of its own: it learns what is done from
the events topic. A submitter that dies (or is stopped) is simply run again: it reads the
events of the batch's sessions, counts what ended, waits for what runs, and sends only
what never started. `concurrency` bounds the items in flight (backpressure: an item is
sent when another ends). An item whose turn failed is dead-lettered once per submitter
run that sees it fail (`turnlog.requests.dlq`, its request as the value, headers
`turnlog.error.type` = ItemFailed, `turnlog.error.message`, `turnlog.batch.id`,
`turnlog.batch.item`): consumers of the DLQ dedupe on (batch id, item).

Progress in SQL: the batch's sessions in the `sessions` projection (`turns_completed`,
`turns_failed`), see `progress_sql`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from agents.events import (
    Event,
    LlmCallCompleted,
    OrchestrationCompleted,
    Request,
    SendMessage,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
)
from schemas.codec import decode_event, encode_request
from streams.partitioning import partition_for
from streams.topics import TopicNames

__all__ = [
    "Batch",
    "BatchItem",
    "BatchSummary",
    "item_session_id",
    "progress_sql",
    "topic_items",
]

_PREFIX = "batch/"


def item_session_id(batch_id: str, n: int | str) -> str:
    """Item n of a file batch (n from 1), or the item `p<partition>o<offset>` of a batch
    read from a topic: fixed by where the item is, so a re-run finds the same sessions."""
    return f"{_PREFIX}{batch_id}/{n}"


async def topic_items(bootstrap: str, topic: str) -> dict[str, str]:
    """The work items on `topic` up to its end now: key `p<partition>o<offset>` -> text
    (the record's value as UTF-8, or its "text" when it is a JSON object with one).
    Records that are not text are refused naming their place."""
    import json

    from streams.logread import read_to_end

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="turnlog-batch-probe")
    await probe.start()
    try:
        parts = probe.partitions_for_topic(topic)
        if parts is None:
            await probe._client.force_metadata_update()
            parts = probe.partitions_for_topic(topic)
    finally:
        await probe.stop()
    if not parts:
        raise ValueError(f"Topic {topic!r} does not exist (or has no partitions).")
    items: dict[str, str] = {}

    def take(rec: ConsumerRecord) -> None:
        where = f"p{rec.partition}o{rec.offset}"
        try:
            text = (rec.value or b"").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{topic} {where}: the item is not UTF-8 text: {exc}") from exc
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, dict) and isinstance(value.get("text"), str):
                text = value["text"]
        if text.strip():
            items[where] = text

    for partition in sorted(parts):
        await read_to_end(
            bootstrap, topic, partition, None, client_id="turnlog-batch-items", each=take
        )
    return items


def progress_sql() -> str:
    """Counts of a batch's items from the projections (parameter: the batch id): its item
    sessions (not their stages' child sessions), and the cost of every item's tree."""
    return (
        "SELECT count(*) AS started,"
        " count(*) FILTER (WHERE s.turns_completed > 0) AS completed,"
        " count(*) FILTER (WHERE s.turns_failed > 0) AS failed,"
        " COALESCE(sum(c.total_cost_nanos), 0) AS cost_nanos"
        " FROM sessions s LEFT JOIN cost_by_session c ON c.session_id = s.session_id"
        " WHERE s.session_id LIKE 'batch/' || %s || '/%%'"
        " AND NOT EXISTS (SELECT 1 FROM session_links l WHERE l.child_session_id = s.session_id)"
    )


@dataclass(slots=True)
class BatchItem:
    n: str  # its place: the line number, or p<partition>o<offset>
    text: str
    status: str = "pending"  # pending | sent | running | completed | failed
    result: str = ""
    cost_nanos: int = 0
    answers: dict[int, str] = field(default_factory=dict)  # seq -> answer text


@dataclass(frozen=True, slots=True)
class BatchSummary:
    batch_id: str
    items: int
    completed: int
    failed: int
    sent_now: int  # items this run sent (the others were sent by an earlier run)
    dead_lettered: int
    cost_nanos: int


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
        client_id: str = "turnlog-batch",
    ) -> None:
        if not batch_id or "/" in batch_id:
            raise ValueError(f"batch id {batch_id!r}: give a non-empty id without '/'.")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}.")
        self.bootstrap, self.topics, self.partitions = bootstrap, topics, partitions
        self.batch_id, self.agent, self.concurrency = batch_id, agent, concurrency
        self.client_id = client_id
        keyed = items.items() if isinstance(items, Mapping) else enumerate(items, 1)
        self.items = {
            item_session_id(batch_id, key): BatchItem(str(key), text) for key, text in keyed
        }
        self.sent_now = 0
        self.dead_lettered = 0

    def _request(self, sid: str, item: BatchItem) -> Request:
        return Request(
            request_id=f"{sid}:item",
            session_id=sid,
            occurred_at=datetime.now(UTC),
            payload=SendMessage(text=item.text),
            agent=self.agent,
            correlation_id=f"batch/{self.batch_id}",
        )

    def _fold(self, ev: Event) -> BatchItem | None:
        """Update the item `ev` belongs to; the item when its turn ended now."""
        item = self.items.get(ev.session_id)
        if item is None:
            return None
        p = ev.payload
        if isinstance(p, LlmCallCompleted):
            item.answers[ev.seq] = p.text
        elif isinstance(p, OrchestrationCompleted):
            item.answers[ev.seq] = p.result
        elif isinstance(p, TurnStarted) and item.status in ("pending", "sent"):
            item.status = "running"
        elif isinstance(p, TurnCompleted) and item.status not in ("completed", "failed"):
            item.status, item.cost_nanos = "completed", p.cost_nanos
            item.result = item.answers.get(p.answer_seq, "")
            return item
        elif isinstance(p, TurnFailed) and item.status not in ("completed", "failed"):
            item.status, item.result = "failed", p.reason
            return item
        return None

    async def run(self, on_progress: Progress | None = None) -> BatchSummary:
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
            # Only the partitions the batch's sessions live on are read.
            parts = sorted({partition_for(sid, self.partitions) for sid in self.items})
            tps = [TopicPartition(self.topics.events, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            # 1. What earlier runs did: read the batch's partitions up to their end.
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                await self._poll(consumer, producer, on_progress)
            # 2. Send what never started, `concurrency` at a time; follow until all ended.
            pending = [sid for sid, it in self.items.items() if it.status == "pending"]
            pending.reverse()
            while True:
                in_flight = sum(it.status in ("sent", "running") for it in self.items.values())
                while pending and in_flight < self.concurrency:
                    sid = pending.pop()
                    item = self.items[sid]
                    await producer.send_and_wait(
                        self.topics.requests,
                        value=encode_request(self._request(sid, item)),
                        key=sid.encode(),
                        partition=partition_for(sid, self.partitions),
                    )
                    item.status = "sent"
                    self.sent_now += 1
                    in_flight += 1
                if not pending and in_flight == 0:
                    break
                await self._poll(consumer, producer, on_progress)
        finally:
            await consumer.stop()
            await producer.stop()
        items = list(self.items.values())
        return BatchSummary(
            batch_id=self.batch_id,
            items=len(items),
            completed=sum(i.status == "completed" for i in items),
            failed=sum(i.status == "failed" for i in items),
            sent_now=self.sent_now,
            dead_lettered=self.dead_lettered,
            cost_nanos=sum(i.cost_nanos for i in items),
        )

    async def _poll(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, on_progress: Progress | None
    ) -> None:
        batch = await consumer.getmany(timeout_ms=200, max_records=5000)
        ended = False
        for records in batch.values():
            for rec in records:
                if rec.key is None or not rec.key.startswith(_PREFIX.encode()):
                    continue
                item = self._fold(decode_event(rec.value))
                if item is None:
                    continue
                ended = True
                if item.status == "failed":
                    await self._dead_letter(producer, item)
        if ended and on_progress is not None:
            done = [i for i in self.items.values() if i.status in ("completed", "failed")]
            on_progress(len(done), sum(i.status == "completed" for i in done), self.failed)

    @property
    def failed(self) -> int:
        return sum(i.status == "failed" for i in self.items.values())

    async def _dead_letter(self, producer: AIOKafkaProducer, item: BatchItem) -> None:
        sid = item_session_id(self.batch_id, item.n)
        await producer.send_and_wait(
            self.topics.dlq,
            value=encode_request(self._request(sid, item)),
            key=sid.encode(),
            partition=partition_for(sid, self.partitions),
            headers=[
                ("turnlog.error.type", b"ItemFailed"),
                ("turnlog.error.message", item.result.encode("utf-8", "replace")[:4000]),
                ("turnlog.batch.id", self.batch_id.encode()),
                ("turnlog.batch.item", item.n.encode()),
            ],
        )
        self.dead_lettered += 1
