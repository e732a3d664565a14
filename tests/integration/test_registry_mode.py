"""Registry mode end to end on the real broker: a request framed by confluent-kafka's
AvroSerializer (00 + schema id; the producer knows nothing of single-object encoding)
drives a turn through the session worker, and the events the worker writes are
registry-framed records that confluent-kafka's AvroDeserializer reads. The registry is
confluent-kafka's in-memory one, shared by the producer, the worker and the consumer of
this process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from agents.events import TurnCompleted
from schemas import codec
from schemas.registry import ConfluentRegistry
from streams.topics import TopicNames, ensure_topics
from tests.integration.test_cli_support import DEMO_AGENTS, DEMO_SCRIPT
from tests.support.harness import EventLog, InProcessWorker, scripted_script
from turnlog import wire


@pytest.fixture
def registry_client() -> Iterator[Any]:
    yield SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})
    codec.use_single_object()


def _produce(bootstrap: str, names: TopicNames, client: Any, session: str) -> None:
    serializer = AvroSerializer(
        client, json.dumps(codec.current_schema("Request")), conf={"auto.register.schemas": True}
    )
    record = {
        "request_id": f"registry-{session}",
        "session_id": session,
        "occurred_at": datetime.now(UTC),
        "payload": (
            "turnlog.v1.SendMessage",
            {"text": "what is 17*23?", "parent_session_id": None, "parent_call_id": None},
        ),
        "correlation_id": None,
        "causation_id": None,
        "agent": "assistant",
    }
    value = serializer(record, SerializationContext(names.requests, MessageField.VALUE))
    assert value[:1] == b"\x00"
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
        }
    )
    producer.produce(names.requests, key=session.encode(), value=value)
    assert producer.flush(30) == 0


async def _raw_values(bootstrap: str, topic: str, session: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [
            r.value
            for records in batches.values()
            for r in records
            if r.key == session.encode() and r.value is not None
        ]
    finally:
        await consumer.stop()


async def test_a_registry_framed_request_completes_a_turn_written_registry_framed(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path, registry_client: Any
) -> None:
    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)).names
    seam = ConfluentRegistry("mock://registry", wire.envelope_topics(names), client=registry_client)
    codec.use_registry(seam, write=True)
    script = scripted_script(tmp_path, latency_ms=0, source=DEMO_SCRIPT)
    session = "s-registry-framed"
    async with (
        InProcessWorker(
            kafka_bootstrap,
            names,
            partitions=2,
            agents=DEMO_AGENTS,
            script=script,
            sandbox=tmp_path,
        ) as process,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        await asyncio.to_thread(_produce, kafka_bootstrap, names, registry_client, session)
        await log.wait_for(
            lambda: any(isinstance(e.payload, TurnCompleted) for e in log.of(session)),
            60,
            "the registry-framed request's turn completed",
            diagnose=log.summary,
        )
        assert process.worker.stats["dlq"] == 0

    values = await _raw_values(kafka_bootstrap, names.events, session)
    assert len(values) == len(log.of(session))
    assert all(v[:1] == b"\x00" for v in values)
    read = AvroDeserializer(registry_client, return_record_name=True)
    records = [read(v, SerializationContext(names.events, MessageField.VALUE)) for v in values]
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert records[-1]["payload"][0] == "turnlog.v1.TurnCompleted"
    subjects = set(registry_client.get_subjects())
    assert {f"{names.requests}-value", f"{names.events}-value"} <= subjects
