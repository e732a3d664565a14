"""Reading one session's records out of a session-keyed topic partition.

Rule: a session lives in exactly one partition of every session-keyed topic, and every
record of it is keyed by its session id, so a reader filters on the record KEY before it
decodes anything. That keeps replaying one session cheap in a partition shared with
thousands of others. Reads are read_committed: an aborted transaction of the session
worker never shows up. Records without a key (a producer that ignored the contract) are
decoded and kept when their session id matches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from agents.errors import DecodeError, ExternalError

__all__ = ["KeyedRecord", "end_offset", "read_keyed", "topic_partitions"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeyedRecord:
    """A decoded record and where it was."""

    value: Any
    partition: int
    offset: int
    timestamp_ms: int


def _consumer(bootstrap: str, client_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id=client_id,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )


async def topic_partitions(bootstrap: str, topic: str, *, timeout: float = 1.0) -> int:
    """The partition count of `topic`; ExternalError when it does not exist. The broker
    says at once that a topic is missing (turnlog's brokers never auto-create); the
    short grace only covers a topic created an instant ago, so a command run before
    `turnlog topics ensure` fails within about a second."""
    consumer = _consumer(bootstrap, "turnlog-metadata")
    try:
        await consumer.start()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return len(parts)
            if asyncio.get_running_loop().time() > deadline:
                raise ExternalError(
                    f"Topic {topic} does not exist on {bootstrap}: create the topics with "
                    f"`turnlog topics ensure` (or run `turnlog demo`)."
                )
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
    except KafkaError as exc:
        raise ExternalError(f"Kafka at {bootstrap} did not answer: {exc}") from exc
    finally:
        await consumer.stop()


async def end_offset(bootstrap: str, topic: str, partition: int) -> int:
    """The last stable offset of one partition (where the next committed record goes)."""
    consumer = _consumer(bootstrap, "turnlog-offsets")
    try:
        await consumer.start()
        tp = TopicPartition(topic, partition)
        return int((await consumer.end_offsets([tp]))[tp])
    except KafkaError as exc:
        raise ExternalError(f"Kafka at {bootstrap} did not answer: {exc}") from exc
    finally:
        await consumer.stop()


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
    consumer = _consumer(bootstrap, client_id)
    out: list[KeyedRecord] = []
    try:
        await consumer.start()
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if start >= end:
            return out
        consumer.seek(tp, start)
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=20_000)
            for rec in batch.get(tp, ()):
                if rec.offset >= end:
                    break
                key = rec.key
                if key is not None and key not in wanted:
                    continue
                try:
                    value = decode(rec.value)
                except DecodeError as exc:
                    if skip_undecodable or key is None:
                        continue
                    raise DecodeError(
                        f"{topic} partition {partition} offset {rec.offset}: {exc}",
                        exc.fingerprint,
                    ) from exc
                if session_of(value) not in keys:  # a key that lied about its session
                    continue
                out.append(KeyedRecord(value, rec.partition, rec.offset, rec.timestamp))
        return out
    except KafkaError as exc:
        raise ExternalError(
            f"Reading {topic} partition {partition} from {bootstrap} failed: {exc}"
        ) from exc
    finally:
        await consumer.stop()
