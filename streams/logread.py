"""Reading topics back: the one committed-log reader of turnlog.

Rule: only what a read_committed consumer sees counts — an aborted or still-open
transaction is not part of the log. Every read goes from a start offset (None: the
beginning) up to the last stable offset the partition had when the read began, in log
order. The session worker restores state and reads a fork's ancestry from here; replay,
verify and the client read one session's records with `read_keyed`, which filters on the
record KEY before it decodes anything — a session lives in exactly one partition of
every session-keyed topic, keyed by its session id, so replaying one session stays cheap
in a partition shared with thousands of others. Records without a key (a producer that
ignored the contract) are decoded and kept when their session id matches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from agents.errors import DecodeError, ExternalError
from agents.events import Event
from schemas.codec import decode_event
from streams.partitioning import partition_for
from streams.topics import TopicNames

__all__ = [
    "INPUT_NEXT_HEADER",
    "Headers",
    "KeyedRecord",
    "consumer",
    "end_offset",
    "read_keyed",
    "read_partition_events",
    "read_partition_keys",
    "read_partition_log",
    "read_partition_log_end",
    "read_session_events",
    "read_to_end",
    "topic_partitions",
]

T = TypeVar("T")

# Header on the last event of each session-worker transaction: the requests-topic offset
# after the inputs that transaction consumed (see streams.session_worker).
INPUT_NEXT_HEADER = "turnlog.input.next"

Headers = tuple[tuple[str, bytes], ...]


def consumer(
    bootstrap: str, client_id: str, *, isolation_level: str = "read_committed"
) -> AIOKafkaConsumer:
    """An unstarted consumer for reading logs: no group, no auto-commit."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level=isolation_level,
        client_id=client_id,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )


async def read_to_end(
    bootstrap: str,
    topic: str,
    partition: int,
    start: int | None,
    *,
    client_id: str,
    each: Callable[[ConsumerRecord], object],
    isolation_level: str = "read_committed",
) -> int:
    """Hand each record of one partition, from offset `start` (None or 0: the
    beginning, wherever retention left it) up to the end offset when the read began, to
    `each`, in log order; return that end offset. Under read_committed the end is the
    last stable offset, and only committed records are handed over."""
    reader = consumer(bootstrap, client_id, isolation_level=isolation_level)
    await reader.start()
    try:
        tp = TopicPartition(topic, partition)
        reader.assign([tp])
        # Position first: an assignment starts an offset reset of its own, which must not
        # land after ours.
        if not start:
            await reader.seek_to_beginning(tp)
        else:
            reader.seek(tp, start)
        end: int = (await reader.end_offsets([tp]))[tp]
        # The position moves past control records too, so the loop ends there.
        while await reader.position(tp) < end:
            batch = await reader.getmany(tp, timeout_ms=500, max_records=10_000)
            for rec in batch.get(tp, ()):
                if rec.offset >= end:
                    break
                each(rec)
        return end
    finally:
        await reader.stop()


@dataclass(frozen=True, slots=True)
class KeyedRecord:
    """A decoded record and where it was."""

    value: Any
    partition: int
    offset: int
    timestamp_ms: int


async def topic_partitions(bootstrap: str, topic: str, *, timeout: float = 1.0) -> int:
    """The partition count of `topic`; ExternalError when it does not exist. The broker
    says at once that a topic is missing (turnlog's brokers never auto-create); the
    short grace only covers a topic created an instant ago, so a command run before
    `turnlog topics ensure` fails within about a second."""
    reader = consumer(bootstrap, "turnlog-metadata")
    try:
        await reader.start()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            parts = reader.partitions_for_topic(topic)
            if parts:
                return len(parts)
            if asyncio.get_running_loop().time() > deadline:
                raise ExternalError(
                    f"Topic {topic} does not exist on {bootstrap}: create the topics with "
                    f"`turnlog topics ensure` (or run `turnlog demo`)."
                )
            await reader._client.force_metadata_update()
            await asyncio.sleep(0.1)
    except KafkaError as exc:
        raise ExternalError(f"Kafka at {bootstrap} did not answer: {exc}") from exc
    finally:
        await reader.stop()


async def end_offset(bootstrap: str, topic: str, partition: int) -> int:
    """The last stable offset of one partition (where the next committed record goes)."""
    reader = consumer(bootstrap, "turnlog-offsets")
    try:
        await reader.start()
        tp = TopicPartition(topic, partition)
        return int((await reader.end_offsets([tp]))[tp])
    except KafkaError as exc:
        raise ExternalError(f"Kafka at {bootstrap} did not answer: {exc}") from exc
    finally:
        await reader.stop()


async def read_keyed(
    bootstrap: str,
    topic: str,
    partition: int,
    keys: Collection[str],
    decode: Callable[[bytes], T],
    *,
    session_of: Callable[[T], str],
    start: int = 0,
    client_id: str = "turnlog-reader",
    skip_undecodable: bool = False,
) -> list[KeyedRecord]:
    """Every committed record of the sessions `keys` in one partition, in log order,
    from offset `start` up to the end the partition had when the read began.

    Undecodable records of those sessions raise DecodeError naming topic, partition and
    offset, unless `skip_undecodable` (the requests topic may hold garbage that the
    worker dead-lettered)."""
    wanted = {k.encode() for k in keys}
    out: list[KeyedRecord] = []

    def keep(rec: ConsumerRecord) -> None:
        key = rec.key
        if key is not None and key not in wanted:
            return
        try:
            value = decode(rec.value)
        except DecodeError as exc:
            if skip_undecodable or key is None:
                return
            raise DecodeError(
                f"{topic} partition {partition} offset {rec.offset}: {exc}", exc.fingerprint
            ) from exc
        if session_of(value) in keys:  # not a key that lied about its session
            out.append(KeyedRecord(value, rec.partition, rec.offset, rec.timestamp))

    try:
        await read_to_end(bootstrap, topic, partition, start, client_id=client_id, each=keep)
    except KafkaError as exc:
        raise ExternalError(
            f"Reading {topic} partition {partition} from {bootstrap} failed: {exc}"
        ) from exc
    return out


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
    end = await read_to_end(
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

    end = await read_to_end(bootstrap, topic, partition, start, client_id=client_id, each=add)
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
