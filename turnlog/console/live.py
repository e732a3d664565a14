"""Live events and token deltas for the console's followers, from Kafka.

Rule: ONE read_committed consumer per console process tails `turnlog.events` and
`turnlog.deltas` (every partition, from their ends) and fans each record out to the
followers of its session, so a thousand browsers cost one consumer, not a thousand. A
record is decoded only when someone follows its session (or every session). A follower
that does not keep up is cut off (`Follower.overflowed`): its SSE stream ends and the
browser reconnects with Last-Event-ID, catching up from the log — slowness never
blocks the others or grows memory without bound.

Catching up (`read_session`) reads the session's own partition from a starting offset
(found in the projections' events table when it knows the seq) to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from agents.errors import ExternalError
from agents.events import Event, TokenDelta
from schemas.codec import decode_delta, decode_event
from streams.partitioning import partition_for
from streams.topics import DEFAULT_FETCH_WAIT_MS, TopicNames

__all__ = ["ALL", "Follower", "Hub", "read_session"]

log = structlog.get_logger("turnlog.console.live")

ALL = "*"  # follow every session (the sessions list)
Item = Event | TokenDelta


@dataclass(eq=False, slots=True)
class Follower:
    session_id: str
    queue: asyncio.Queue[Item] = field(default_factory=lambda: asyncio.Queue(maxsize=2000))
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, item: Item) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            self.wake.set()


class Hub:
    """The fan-out described in the module docstring. `start()` before `follow()`."""

    def __init__(self, bootstrap: str, topics: TopicNames) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self._followers: dict[str, set[Follower]] = defaultdict(set)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.error: str | None = None
        self.records = 0

    @property
    def followers(self) -> int:
        return sum(len(s) for s in self._followers.values())

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id="turnlog-console-live",
            # A fetch is answered as soon as a record comes (a transaction's commit
            # included); the wait is what an idle console pays in empty fetches.
            fetch_max_wait_ms=DEFAULT_FETCH_WAIT_MS,
        )
        try:
            await consumer.start()
            tps: list[TopicPartition] = []
            for topic in (self.topics.events, self.topics.deltas):
                parts = consumer.partitions_for_topic(topic)
                for _ in range(50):
                    if parts:
                        break
                    await consumer._client.force_metadata_update()
                    parts = consumer.partitions_for_topic(topic)
                    await asyncio.sleep(0.1)
                if not parts:
                    raise ExternalError(
                        f"Topic {topic} has no partitions on {self.bootstrap}: run "
                        "`turnlog topics ensure` first."
                    )
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:  # resolve the end offsets now: later records are all live
                await consumer.position(tp)
        except KafkaError as exc:
            await consumer.stop()
            raise ExternalError(f"Kafka at {self.bootstrap} did not answer: {exc}") from exc
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="console-live")
        self.ready.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        for followers in self._followers.values():
            for f in followers:
                f.overflowed = True
                f.wake.set()

    @contextlib.contextmanager
    def follow(self, session_id: str) -> Iterator[Follower]:
        follower = Follower(session_id)
        self._followers[session_id].add(follower)
        try:
            yield follower
        finally:
            group = self._followers.get(session_id)
            if group is not None:
                group.discard(follower)
                if not group:
                    del self._followers[session_id]

    async def _run(self) -> None:
        assert self._consumer is not None
        events_topic = self.topics.events
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500, max_records=5000)
                self.error = None
            except KafkaError as exc:
                self.error = str(exc)
                log.warning("console.live.read_failed", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            for tp, records in batch.items():
                is_event = tp.topic == events_topic
                for rec in records:
                    self.records += 1
                    key = rec.key.decode("utf-8", "replace") if rec.key else None
                    if not self._followers:
                        continue
                    wanted = key in self._followers or (is_event and ALL in self._followers)
                    if not wanted or rec.value is None:
                        continue
                    try:
                        item: Item = (
                            decode_event(rec.value) if is_event else decode_delta(rec.value)
                        )
                    except Exception as exc:  # a record we cannot read is not ours to stop on
                        log.warning(
                            "console.live.undecodable",
                            topic=tp.topic,
                            offset=rec.offset,
                            error=str(exc),
                        )
                        continue
                    for f in tuple(self._followers.get(item.session_id, ())):
                        f.offer(item)
                    if is_event:
                        for f in tuple(self._followers.get(ALL, ())):
                            f.offer(item)
            for group in tuple(self._followers.values()):
                for f in group:
                    if not f.queue.empty():
                        f.wake.set()


async def read_session(
    bootstrap: str,
    topics: TopicNames,
    partitions: int,
    session_id: str,
    *,
    from_seq: int,
    from_offset: int = 0,
) -> AsyncIterator[Event]:
    """The session's own events with seq >= `from_seq`, from `from_offset` of its
    partition to the partition's end as it is now."""
    tp = TopicPartition(topics.events, partition_for(session_id, partitions))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id="turnlog-console-catchup",
        fetch_max_wait_ms=50,
    )
    key = session_id.encode()
    try:
        await consumer.start()
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, from_offset)
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=200, max_records=5000)
            for rec in batch.get(tp, ()):
                if rec.offset >= end:
                    return
                if rec.key != key or rec.value is None:
                    continue
                ev = decode_event(rec.value)
                if ev.session_id == session_id and ev.seq >= from_seq:
                    yield ev
    except KafkaError as exc:
        raise ExternalError(f"Reading session {session_id} from Kafka failed: {exc}") from exc
    finally:
        await consumer.stop()
