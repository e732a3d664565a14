"""Reading the session log back: one partition's committed events, with their headers.

Rule: only what a read_committed consumer sees counts — an aborted or still-open
transaction is not part of the log. The session worker restores state from here, and
reads a fork's ancestry from here.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from agents.events import Event
from schemas.codec import decode_event
from streams.partitioning import partition_for
from streams.topics import TopicNames

__all__ = [
    "INPUT_NEXT_HEADER",
    "Headers",
    "read_partition_events",
    "read_partition_keys",
    "read_partition_log",
    "read_partition_log_end",
    "read_session_events",
]

# Header on the last event of each session-worker transaction: the requests-topic offset
# after the inputs that transaction consumed (see streams.session_worker).
INPUT_NEXT_HEADER = "turnlog.input.next"

Headers = tuple[tuple[str, bytes], ...]


async def _read_committed(
    bootstrap: str,
    topic: str,
    partition: int,
    start: int | None,
    *,
    client_id: str,
    each: Callable[[ConsumerRecord], object],
) -> int:
    """Hand each committed record of one partition, from offset `start` (None: the
    beginning) up to the last stable offset when the read began, to `each`, in log
    order; return that offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id=client_id,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        # Position first: an assignment starts an offset reset of its own, which must not
        # land after ours.
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        # Under read_committed this is the last stable offset; the position moves past
        # control records too, so the loop ends there.
        end: int = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            for rec in batch.get(tp, ()):
                if rec.offset >= end:
                    break
                each(rec)
        return end
    finally:
        await consumer.stop()


async def read_partition_log(
    bootstrap: str, topic: str, partition: int, *, client_id: str = "turnlog-restore"
) -> list[tuple[Event, Headers]]:
    """Every committed event of one partition with its Kafka headers, in log order."""
    log, _ = await read_partition_log_end(bootstrap, topic, partition, client_id=client_id)
    return log


async def read_partition_log_end(
    bootstrap: str,
    topic: str,
    partition: int,
    *,
    start: int | None = None,
    client_id: str = "turnlog-restore",
) -> tuple[list[tuple[Event, Headers]], int]:
    """`read_partition_log` (from offset `start`, default the beginning), and the offset
    the read ended at (the last stable offset when it began)."""
    out: list[tuple[Event, Headers]] = []
    end = await _read_committed(
        bootstrap,
        topic,
        partition,
        start or None,
        client_id=client_id,
        each=lambda rec: out.append((decode_event(rec.value), tuple(rec.headers or ()))),
    )
    return out, end


async def read_partition_keys(
    bootstrap: str,
    topic: str,
    partition: int,
    start: int = 0,
    *,
    client_id: str = "turnlog-directory",
) -> tuple[set[str], int]:
    """The session ids (record keys) of one partition's committed events from offset
    `start` on, without decoding a value, and the offset the read ended at (where the
    next read starts)."""
    keys: set[str] = set()

    def add(rec: ConsumerRecord) -> None:
        if rec.key is not None:
            keys.add(rec.key.decode("utf-8", "replace"))

    end = await _read_committed(bootstrap, topic, partition, start, client_id=client_id, each=add)
    return keys, max(start, end)


async def read_partition_events(
    bootstrap: str, topic: str, partition: int, *, client_id: str = "turnlog-restore"
) -> list[Event]:
    """Every committed event of one partition of the events topic, in log order."""
    log = await read_partition_log(bootstrap, topic, partition, client_id=client_id)
    return [ev for ev, _ in log]


async def read_session_events(
    bootstrap: str,
    topics: TopicNames,
    partitions: int,
    session_id: str,
    *,
    upto_seq: int | None = None,
) -> list[Event]:
    """The events of one session (its own, not its fork ancestry), up to `upto_seq`."""
    p = partition_for(session_id, partitions)
    events = await read_partition_events(bootstrap, topics.events, p)
    return [
        e for e in events if e.session_id == session_id and (upto_seq is None or e.seq <= upto_seq)
    ]
