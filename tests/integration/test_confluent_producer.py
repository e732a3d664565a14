"""A librdkafka producer (confluent-kafka) and turnlog's partitions: examples/produce_confluent.py.

Without `partitioner=murmur2_random`, librdkafka hashes the key with CRC32, so the request
lands on another partition than its session's; the worker reading it forwards it to the
session's partition and counts it (`rerouted`), and the turn still completes. With the
setting, the request lands where the worker expects it and nothing is forwarded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import zlib
from pathlib import Path
from types import ModuleType

from agents.events import TurnCompleted
from streams.partitioning import partition_for
from streams.topics import ensure_topics
from tests.integration.test_cli_support import DEMO_AGENTS, DEMO_SCRIPT
from tests.support.harness import ROOT, EventLog, InProcessWorker, scripted_script

PARTITIONS = 4


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "produce_confluent", ROOT / "examples" / "produce_confluent.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _session_crc32_misplaces(prefix: str) -> str:
    """A session id that librdkafka's default partitioner (CRC32) puts elsewhere."""
    for i in range(100):
        session = f"s-rdkafka-{prefix}{i}"
        if zlib.crc32(session.encode()) % PARTITIONS != partition_for(session, PARTITIONS):
            return session
    raise AssertionError("no session id found that CRC32 and murmur2 place apart")


async def test_librdkafka_default_partitioner_is_forwarded_and_counted_murmur2_is_not(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    example = _example()
    schema = example.request_schema()
    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names
    script = scripted_script(tmp_path, latency_ms=0, source=DEMO_SCRIPT)
    misplaced = _session_crc32_misplaces(unique_prefix)
    placed = f"{misplaced}-murmur2"

    def done(log: EventLog, session: str) -> bool:
        return any(isinstance(e.payload, TurnCompleted) for e in log.of(session))

    async with (
        InProcessWorker(
            kafka_bootstrap,
            names,
            partitions=PARTITIONS,
            agents=DEMO_AGENTS,
            script=script,
            sandbox=tmp_path,
        ) as process,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        stats = process.worker.stats
        before = stats["rerouted"]

        value = example.encode_send_message(
            schema,
            session_id=misplaced,
            text="what is 17*23?",
            agent="assistant",
            request_id="rdkafka-default",
        )
        landed = await asyncio.to_thread(
            example.produce, kafka_bootstrap, names.requests, misplaced, value, partitioner=None
        )
        assert landed == zlib.crc32(misplaced.encode()) % PARTITIONS
        assert landed != partition_for(misplaced, PARTITIONS)
        await log.wait_for(
            lambda: done(log, misplaced), 60, "the forwarded turn completed", diagnose=log.summary
        )
        assert stats["rerouted"] == before + 1

        value = example.encode_send_message(
            schema,
            session_id=placed,
            text="what is 17*23?",
            agent="assistant",
            request_id="rdkafka-murmur2",
        )
        landed = await asyncio.to_thread(
            example.produce, kafka_bootstrap, names.requests, placed, value
        )
        assert landed == partition_for(placed, PARTITIONS)
        await log.wait_for(
            lambda: done(log, placed), 60, "the murmur2 turn completed", diagnose=log.summary
        )
        assert stats["rerouted"] == before + 1

    for session in (misplaced, placed):
        events = log.of(session)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert sum(isinstance(e.payload, TurnCompleted) for e in events) == 1
