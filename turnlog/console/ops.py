"""The operations page's facts from Kafka: consumer lag and the DLQ's newest records.

Rule: read-only and bounded — end offsets and committed group offsets (what any lag
tool reads), and at most `limit` records from the tail of each DLQ partition.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from agents.errors import ExternalError
from streams.topics import TopicNames

__all__ = ["Offsets", "dlq_tail", "group_lag"]


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id="turnlog-console-ops",
        fetch_max_wait_ms=50,
    )


async def _stop(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer; aiokafka can raise the CancelledError of its own internal task
    from stop() right after start(), which is not a cancel of ours."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


class Offsets:
    """One consumer (no group) kept for the process's life: end offsets on demand.
    (Starting and stopping a consumer per page view is slow, and aiokafka's stop right
    after a start can raise CancelledError.)"""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer = _consumer(bootstrap)
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await _stop(self._consumer)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        async with self._lock:
            try:
                parts = self._consumer.partitions_for_topic(topic)
                if not parts:
                    await self._consumer._client.force_metadata_update()
                    parts = self._consumer.partitions_for_topic(topic) or set()
                tps = [TopicPartition(topic, p) for p in sorted(parts)]
                ends = await self._consumer.end_offsets(tps) if tps else {}
            except KafkaError as exc:
                raise ExternalError(
                    f"Kafka at {self.bootstrap}: end offsets of {topic}: {exc}"
                ) from exc
        return {tp.partition: int(o) for tp, o in ends.items()}


async def group_lag(offsets: Offsets, group: str, topic: str) -> list[dict[str, Any]]:
    """Per partition of `topic`: the group's committed offset, the end, and the lag."""
    bootstrap = offsets.bootstrap
    ends = await offsets.end_offsets(topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="turnlog-console-ops")
    try:
        await admin.start()
        committed = await admin.list_consumer_group_offsets(group)
    except KafkaError as exc:
        raise ExternalError(f"Kafka at {bootstrap}: offsets of group {group}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    rows = []
    for partition, end in sorted(ends.items()):
        meta = committed.get(TopicPartition(topic, partition))
        at = meta.offset if meta is not None and meta.offset >= 0 else None
        rows.append(
            {
                "group": group,
                "topic": topic,
                "partition": partition,
                "committed": at,
                "end": end,
                "lag": end - (at or 0),
            }
        )
    return rows


async def dlq_tail(bootstrap: str, topics: TopicNames, *, limit: int = 20) -> list[dict[str, Any]]:
    """The newest `limit` records of each DLQ partition, newest first, with their error
    headers (never the raw value: it may be anything; only its size)."""
    consumer = _consumer(bootstrap)
    out: list[dict[str, Any]] = []
    try:
        await consumer.start()
        parts = consumer.partitions_for_topic(topics.dlq) or set()
        tps = [TopicPartition(topics.dlq, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        for tp in tps:
            start = max(begins[tp], ends[tp] - limit)
            if start >= ends[tp]:
                continue
            consumer.seek(tp, start)
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=limit)
                for rec in batch.get(tp, ()):
                    headers = {k: v.decode("utf-8", "replace") for k, v in rec.headers or ()}
                    out.append(
                        {
                            "partition": tp.partition,
                            "offset": rec.offset,
                            "timestamp": rec.timestamp,
                            "key": rec.key.decode("utf-8", "replace") if rec.key else None,
                            "value_bytes": len(rec.value or b""),
                            "error_type": headers.get("turnlog.error.type"),
                            "error_message": headers.get("turnlog.error.message"),
                            "limit": headers.get("turnlog.error.limit"),
                        }
                    )
                if not batch:
                    break
    except KafkaError as exc:
        raise ExternalError(f"Kafka at {bootstrap}: reading {topics.dlq}: {exc}") from exc
    finally:
        await _stop(consumer)
    out.sort(key=lambda r: r["timestamp"] or 0, reverse=True)
    return out
