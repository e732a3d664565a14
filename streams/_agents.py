"""The agent definition versions on `turnlog.agents`: published at a worker's start,
read back so that the worker can serve every version a session may be pinned to.

Rule: the topic is compacted and keyed by definition hash, so each version is stored
once, however many sessions pin it and however often workers start. A record whose
content does not hash to its key (written by a release whose definitions had other
defaults) is skipped: serving it under that hash would decide with another definition.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.definitions import AgentDefinition, definition_hash
from agents.errors import DecodeError
from agents.events import AgentVersion
from agents.registry import AgentRegistry
from schemas.codec import decode_agent_version, encode_agent_version

__all__ = ["load_versions", "publish_versions", "published_record"]


def published_record(info: Any) -> AgentVersion:
    d: AgentDefinition = info.definition
    return AgentVersion(
        definition_hash=info.definition_hash,
        agent=d.name,
        definition=d.model_dump_json(),
        published_at=datetime.now(UTC),
    )


async def publish_versions(bootstrap: str, topic: str, registry: AgentRegistry) -> int:
    """Publish the versions `registry` serves; returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", client_id="turnlog-agents"
    )
    await producer.start()
    try:
        served = [registry.info(name) for name in registry.names()]
        for info in served:
            await producer.send(
                topic,
                key=info.definition_hash.encode(),
                value=encode_agent_version(published_record(info)),
            )
        await producer.flush()
        return len(served)
    finally:
        await producer.stop()


async def load_versions(
    bootstrap: str, topic: str, *, timeout_s: float = 30.0, log: Any = None
) -> list[AgentDefinition]:
    """Every definition on `topic` whose content matches its hash. `log`: where to say
    what was skipped (a worker's logger; a CLI passes none and keeps stdout clean)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id="turnlog-agents-reader",
    )
    await consumer.start()
    found: dict[str, AgentDefinition] = {}
    try:
        parts: set[int] = set()
        if topic in await consumer.topics():
            # The consumer's cluster view holds the partitions of topics it was asked
            # about; a metadata refresh brings this one in (a moment after creation).
            for _ in range(20):
                parts = consumer.partitions_for_topic(topic) or set()
                if parts:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            if log is not None:
                log.warning("agents.topic_missing", topic=topic)
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(timeout_s):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(*tps, timeout_ms=200)
                for records in batch.values():
                    for rec in records:
                        _take(rec, found, log)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return list(found.values())


def _take(rec: Any, found: dict[str, AgentDefinition], log: Any) -> None:
    if rec.value is None:
        return
    try:
        version = decode_agent_version(rec.value)
        definition = AgentDefinition.model_validate_json(version.definition)
    except (DecodeError, ValueError) as exc:
        if log is not None:
            log.warning("agents.unreadable", offset=rec.offset, error=str(exc)[:300])
        return
    if definition_hash(definition) != version.definition_hash:
        if log is not None:
            log.warning(
                "agents.hash_mismatch", agent=version.agent, definition_hash=version.definition_hash
            )
        return
    found[version.definition_hash] = definition
