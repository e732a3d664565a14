"""Readiness of the workers, and the projector's lag where Kafka's tools look.

Real Kafka and Postgres. The session worker runs in-process (its endpoint on a free
port); the projector too, in a consumer group of its own.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from agents.agentfile import registry_from_file
from agents.providers import ScriptedProvider
from agents.tools import ToolSettings, builtin_registry
from projections.metrics import ProjectorMetrics
from projections.migrate import migrate
from projections.projector import Projector, ProjectorConfig
from streams.app import SessionProcess
from streams.endpoint import Endpoint, EndpointConfig
from streams.metrics import SessionMetrics, session_endpoint
from streams.topics import TopicNames, ensure_topics
from tests.support.harness import DATA, wait_until
from tests.support.projections import produce_events
from tests.support.synthetic import generate, interleave

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = (await reader.read()).decode()
    writer.close()
    head, _, body = raw.partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_readyz_turns_ready_once_the_assigned_partitions_are_restored(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    process = SessionProcess(
        bootstrap=kafka_bootstrap,
        topics=names,
        partitions=4,
        registry=registry_from_file(DATA / "agents.toml"),
        provider=ScriptedProvider.from_file(DATA / "calc.script.yaml"),
        tools=builtin_registry(),
        tool_context=ToolSettings(sandbox_dir=tmp_path),
        session_timeout_ms=3000,
    )
    endpoint = session_endpoint(process, EndpointConfig(port=0))
    port = await endpoint.start()
    assert port is not None
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        # Alive but not ready before it has joined the group.
        assert (await get(port, "/healthz"))[0] == 200
        status, body = await get(port, "/readyz")
        assert status == 503 and "assignment" in body
        task = asyncio.create_task(process.run(stop))
        seen: list[tuple[int, set[int], set[int]]] = []

        async def ready() -> bool:
            status, _ = await get(port, "/readyz")
            consumer = process.worker._consumer
            assigned = {tp.partition for tp in consumer.assignment()} if consumer else set()
            seen.append((status, assigned, process.worker.owned_partitions()))
            assert not task.done(), task
            return status == 200

        await wait_until(ready, 60, "/readyz says ready", interval_s=0.02)
        _, assigned, owned = seen[-1]
        # Ready means: every partition the group assigned is restored and owned.
        assert assigned and assigned <= owned == set(range(4))
        # Never ready while an assigned partition was still being restored.
        assert all(s == 503 for s, a, o in seen[:-1] if a and not a <= o)
        status, text = await get(port, "/metrics")
        values = {
            s.name: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if not s.labels
        }
        assert values["turnlog_ready"] == 1 and values["turnlog_partitions_owned"] == 4
        assert values["turnlog_restore_duration_seconds_count"] >= 1
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 30)
        await endpoint.stop()
    # A stopped worker is not ready.
    metrics = SessionMetrics(process.worker, process.effects)
    try:
        assert metrics.ready()[0] is False
    finally:
        metrics.close()


async def test_projector_mirrors_its_positions_to_its_consumer_group_past_the_markers(
    kafka_bootstrap: str, unique_prefix: str, scratch_database_url: str
) -> None:
    migrate(scratch_database_url)
    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=4)).names
    events = list(interleave(generate(600, base=T0)))
    # As the session worker writes them: in transactions (each ends with a marker).
    await produce_events(
        kafka_bootstrap,
        names.events,
        events,
        transactional_id=f"{unique_prefix}writer",
        per_transaction=50,
    )
    group = f"{unique_prefix}turnlog-projector"
    projector = Projector(
        ProjectorConfig(
            kafka_bootstrap,
            scratch_database_url,
            names.events,
            None,
            group_id=group,
            session_timeout_ms=6000,
            group_commit_interval_s=0.2,
        )
    )
    metrics = ProjectorMetrics(projector)
    endpoint = Endpoint(
        EndpointConfig(port=0),
        metrics.registry,
        ready=projector.ready,
        refresh=metrics.refresh,
        name="projector",
    )
    port = await endpoint.start()
    assert port is not None
    assert (await get(port, "/readyz"))[0] == 503  # not connected yet
    ends = await _log_ends(kafka_bootstrap, names.events, 4)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    run = asyncio.create_task(projector.run())
    try:
        await wait_until(
            lambda: projector.applied >= len(events) or run.done(), 120, "every event projected"
        )
        assert not run.done(), run
        assert (await get(port, "/readyz"))[0] == 200

        async def group_at_ends() -> dict[int, int] | None:
            found = await admin.list_consumer_group_offsets(group)
            got = {tp.partition: meta.offset for tp, meta in found.items()}
            return got if got == ends else None

        # kafka-consumer-groups computes lag as log end - committed: 0 here.
        await wait_until(group_at_ends, 30, f"the group's offsets at the log ends {ends}")
        # Postgres, the truth, holds the offset after the last event; the log's last
        # offset is the transaction's marker, which the lag does not count.
        with psycopg.connect(scratch_database_url) as conn:
            stored = dict(
                conn.execute(
                    "SELECT partition, next_offset FROM projector_offsets WHERE consumer = %s",
                    ("projector",),
                ).fetchall()
            )
        assert stored == {p: end - 1 for p, end in ends.items()}
        assert await projector.lag() == dict.fromkeys(ends, 0)
        status, text = await get(port, "/metrics")
        assert status == 200
        lag = {
            s.labels["partition"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "turnlog_projector_lag"
        }
        assert lag == {str(p): 0 for p in ends}
        applied = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
        assert applied["turnlog_projector_events_applied_total"] == len(events)
        assert applied["turnlog_projector_group_commits_total"] >= 1
        assert applied["turnlog_projector_ready"] == 1
        # The projector's own consumer reports the same through the group API.
        consumer = projector._consumer
        assert consumer is not None
        for p, end in ends.items():
            assert await consumer.committed(TopicPartition(names.events, p)) == end
    finally:
        projector.stop()
        await asyncio.wait_for(run, 60)
        await admin.close()
        await endpoint.stop()


async def _log_ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        client_id=f"ends-{secrets.token_hex(2)}",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: int(off) for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def test_worker_all_serves_both_workers_metrics_on_one_endpoint(
    kafka_bootstrap: str, unique_prefix: str, scratch_database_url: str, tmp_path: Path
) -> None:
    from turnlog.demo import WorkerAll
    from turnlog.observability import worker_all_endpoint
    from turnlog.settings import load_settings

    migrate(scratch_database_url)
    await ensure_topics(kafka_bootstrap, unique_prefix, partitions=4)
    settings = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=scratch_database_url,
        topic_prefix=unique_prefix,
        partitions=4,
        agents=DATA / "agents.toml",
        provider=f"scripted:{DATA / 'calc.script.yaml'}",
        sandbox_dir=tmp_path,
        metrics_port=0,
    )
    workers = WorkerAll(settings)
    endpoint = worker_all_endpoint(workers, settings)
    port = await endpoint.start()
    assert port is not None
    try:
        status, body = await get(port, "/readyz")
        assert status == 503 and "session worker:" in body and "projector:" in body
        workers.start()

        async def ready() -> bool:
            assert not any(t.done() for t in workers._tasks), workers._tasks
            return (await get(port, "/readyz"))[0] == 200

        await wait_until(ready, 60, "worker all ready")
        _, text = await get(port, "/metrics")
        values = {
            s.name: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if not s.labels
        }
        assert values["turnlog_ready"] == 1 and values["turnlog_projector_ready"] == 1
        assert values["turnlog_partitions_owned"] == 4
        assert "turnlog_projector_events_applied_total" in values
    finally:
        workers.stop()
        await asyncio.gather(*workers._tasks, return_exceptions=True)
        await endpoint.stop()
