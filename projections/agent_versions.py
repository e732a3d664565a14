"""The `agent_versions` table: every agent definition version on `turnlog.agents`, for SQL.

Rule: the topic is the source (compacted, keyed by definition hash; the session workers
publish what they serve); the table is a copy the projector refreshes now and then. A
version never changes once published, so the copy is an idempotent upsert keyed by hash
and needs no stored offsets: each refresh reads the small topic from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from agents.definitions import AgentDefinition, definition_hash
from agents.errors import DecodeError
from schemas.codec import decode_agent_version

__all__ = [
    "agents_topic_for",
    "keep_refreshing",
    "read_agent_versions",
    "refresh_agent_versions",
]

_UPSERT = (
    "INSERT INTO agent_versions (definition_hash, agent, definition, published_at) "
    "VALUES (%s, %s, %s::jsonb, %s) ON CONFLICT (definition_hash) DO NOTHING"
)


def agents_topic_for(events_topic: str) -> str:
    """`<prefix>turnlog.agents` beside `<prefix>turnlog.events`."""
    return events_topic.removesuffix("turnlog.events") + "turnlog.agents"


async def read_agent_versions(bootstrap: str, topic: str) -> list[tuple[str, str, str, Any]]:
    """(hash, agent, definition JSON, published_at) of every readable version whose
    content matches its hash."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id="turnlog-projector-agents",
    )
    await consumer.start()
    rows: dict[str, tuple[str, str, str, Any]] = {}
    try:
        if topic not in await consumer.topics():
            return []
        parts: set[int] = set()
        for _ in range(20):
            parts = consumer.partitions_for_topic(topic) or set()
            if parts:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(*tps, timeout_ms=200)).values():
                    for rec in records:
                        if rec.value is None:
                            continue
                        try:
                            v = decode_agent_version(rec.value)
                            d = AgentDefinition.model_validate_json(v.definition)
                        except (DecodeError, ValueError):
                            continue
                        if definition_hash(d) == v.definition_hash:
                            rows[v.definition_hash] = (
                                v.definition_hash,
                                v.agent,
                                json.dumps(json.loads(v.definition), sort_keys=True),
                                v.published_at,
                            )
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return list(rows.values())


async def refresh_agent_versions(bootstrap: str, topic: str, database_url: str) -> int:
    """Copy the topic's versions into `agent_versions`; how many were read."""
    rows = await read_agent_versions(bootstrap, topic)
    if rows:
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.cursor() as cur:
            await cur.executemany(_UPSERT, rows)
    return len(rows)


async def keep_refreshing(
    bootstrap: str,
    topic: str,
    database_url: str,
    stopping: asyncio.Event,
    log: Any,
    every_s: float = 30.0,
) -> None:
    """Refresh at once, then every `every_s`, until `stopping`; failures are logged and
    tried again at the next round (the table is a convenience copy)."""
    while not stopping.is_set():
        try:
            await refresh_agent_versions(bootstrap, topic, database_url)
        except (KafkaError, OSError, TimeoutError, psycopg.Error) as exc:
            log.warning("agent_versions.refresh_failed", error=str(exc)[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_s)
