"""The foundation, proven against the real broker and database."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition

from projections.migrate import (
    MIGRATIONS_DIR,
    MigrationChanged,
    MigrationFailed,
    applied_migrations,
    discover,
    migrate,
)
from streams.topics import TOPIC_SPECS, TopicNames, ensure_topics, expected_configs

# --- Kafka: transactions ----------------------------------------------------------------


async def _read_to_end(
    bootstrap: str, topic: str, isolation_level: str, timeout: float = 30.0
) -> list[bytes]:
    """Every value of `topic` up to its end offsets (the LSO under read_committed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation_level,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for p in consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        values: list[bytes] = []
        async with asyncio.timeout(timeout):
            while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    values.extend(r.value for r in records if r.value is not None)
        return values
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    async with asyncio.timeout(10):
        while True:
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return parts
            await consumer._client.force_metadata_update()


async def test_transactional_producer_commit_and_abort(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    topic = f"{unique_prefix}tx"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"{unique_prefix}tx-producer"
    )
    await producer.start()
    try:
        committed = [f"committed-{i}".encode() for i in range(5)]
        aborted = [f"aborted-{i}".encode() for i in range(5)]
        async with producer.transaction():
            for i, value in enumerate(committed):
                await producer.send(topic, value, key=f"session-{i}".encode())
        await producer.begin_transaction()
        for i, value in enumerate(aborted):
            await producer.send(topic, value, key=f"session-{i}".encode())
        await producer.abort_transaction()
    finally:
        await producer.stop()

    seen_committed = await _read_to_end(kafka_bootstrap, topic, "read_committed")
    seen_uncommitted = await _read_to_end(kafka_bootstrap, topic, "read_uncommitted")

    assert sorted(seen_committed) == sorted(committed)
    # The aborted batch really reached the log: only the isolation level hides it.
    assert sorted(seen_uncommitted) == sorted(committed + aborted)


# --- Kafka: topics ensure ---------------------------------------------------------------


async def _describe(
    bootstrap: str, names: list[str]
) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
        configs = {
            resource[3]: {entry[0]: entry[1] for entry in resource[4]}
            for response in responses
            for resource in response.resources
        }
        return partitions, configs
    finally:
        await admin.close()


def test_session_topics_fixture(kafka_bootstrap: str, topics: TopicNames) -> None:
    partitions, _ = asyncio.run(_describe(kafka_bootstrap, list(topics.all())))
    assert partitions[topics.requests] == partitions[topics.events] == 4


async def test_topics_ensure_creates_with_configs_then_changes_nothing(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    first = await ensure_topics(kafka_bootstrap, unique_prefix, partitions=3)
    names = first.names
    assert sorted(first.created) == sorted(names.all())
    assert first.drift == [] and first.unchanged == []

    partitions, configs = await _describe(kafka_bootstrap, list(names.all()))
    for spec in TOPIC_SPECS:
        name = getattr(names, spec.key)
        assert partitions[name] == (spec.partitions or 3), name
        for key, value in expected_configs(spec).items():
            assert configs[name][key] == value, (name, key)
    assert configs[names.events]["retention.ms"] == "-1"
    assert configs[names.events]["cleanup.policy"] == "delete"
    assert configs[names.checkpoints]["retention.ms"] == "-1"
    assert partitions[names.requests] == partitions[names.events]

    second = await ensure_topics(kafka_bootstrap, unique_prefix, partitions=3)
    assert second.created == [] and second.drift == []
    assert sorted(second.unchanged) == sorted(names.all())


async def test_topics_ensure_reports_and_fixes_drift(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)).names
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        # Someone shortened the retention of the source of truth by hand.
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    names.events,
                    {**expected_configs(TOPIC_SPECS[1]), "retention.ms": "3600000"},
                )
            ]
        )
        async with asyncio.timeout(30):  # the broker applies it a moment later
            while (await _describe(kafka_bootstrap, [names.events]))[1][names.events][
                "retention.ms"
            ] != "3600000":
                await asyncio.sleep(0.1)
    finally:
        await admin.close()

    report = await ensure_topics(kafka_bootstrap, unique_prefix, partitions=4)
    drift = {(d.topic, d.setting): (d.expected, d.actual) for d in report.drift}
    assert drift[(names.events, "retention.ms")] == ("-1", "3600000")
    assert drift[(names.requests, "partitions")] == ("4", "2")
    assert (names.checkpoints, "partitions") not in drift
    assert not report.ok

    fixed = await ensure_topics(kafka_bootstrap, unique_prefix, partitions=2, fix_configs=True)
    assert [(d.topic, d.setting) for d in fixed.fixed] == [(names.events, "retention.ms")]
    assert fixed.drift == []
    again = await ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)
    assert again.ok and again.fixed == []


# --- PostgreSQL: migrations -------------------------------------------------------------


def test_session_database_is_migrated(database_url: str) -> None:
    applied = applied_migrations(database_url)
    assert list(applied) == [m.name for m in discover()]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM turnlog_meta").fetchone() == (1,)


def test_migrations_apply_then_noop(scratch_database_url: str) -> None:
    names = [m.name for m in discover()]
    assert names and names[0] == "0001_init.sql"
    assert migrate(scratch_database_url) == names
    assert migrate(scratch_database_url) == []
    assert applied_migrations(scratch_database_url) == {m.name: m.checksum for m in discover()}


def test_changed_applied_migration_is_refused(scratch_database_url: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    assert migrate(scratch_database_url, migrations)

    first = min(migrations.glob("*.sql"))
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    (migrations / "9999_later.sql").write_text("CREATE TABLE later_table (id int);\n")
    with pytest.raises(MigrationChanged, match=first.name):
        migrate(scratch_database_url, migrations)
    # Refused before anything ran: the later migration was not applied.
    assert "9999_later.sql" not in applied_migrations(scratch_database_url)


def test_failing_migration_rolls_back_whole(scratch_database_url: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_ok.sql").write_text("CREATE TABLE ok_table (id int);\n")
    (migrations / "0002_broken.sql").write_text(
        "CREATE TABLE half_table (id int);\nINSERT INTO no_such_table VALUES (1);\n"
    )
    with pytest.raises(MigrationFailed, match="0002_broken.sql"):
        migrate(scratch_database_url, migrations)
    assert list(applied_migrations(scratch_database_url)) == ["0001_ok.sql"]
    with psycopg.connect(scratch_database_url) as conn:
        assert conn.execute("SELECT to_regclass('half_table')").fetchone() == (None,)
        assert conn.execute("SELECT to_regclass('ok_table')").fetchone() == ("ok_table",)


# --- the dev stack ---------------------------------------------------------------------


def test_dev_up_on_running_stack_is_noop(infra_source: str) -> None:
    if infra_source != "dev":
        pytest.skip("this run does not use the turnlog dev infrastructure")
    from turnlog.dev import ensure_up, status
    from turnlog.settings import load_settings

    settings = load_settings()
    before = status(settings)
    again = ensure_up(settings)
    assert again.started == ()
    assert again.up
    assert (again.kafka.pid, again.postgres.pid) == (before.kafka.pid, before.postgres.pid)
