"""`turnlog dev kafka-cli`: Kafka's own CLI tools, from Maven jars, against the test broker."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.topics import ensure_topics
from tests.support.harness import ROOT
from turnlog.dev import _tools
from turnlog.settings import load_settings


def _turnlog(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run(
        [sys.executable, "-m", "turnlog", "dev", "kafka-cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_consumer_groups_and_topics_are_listed_by_kafkas_own_tools(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)).names
    group = f"{unique_prefix}cli-group"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(names.events, 0)
        consumer.assign([tp])
        await consumer.commit({tp: 0})
    finally:
        await consumer.stop()

    groups = _turnlog(kafka_bootstrap, "kafka-consumer-groups", "--list")
    assert groups.returncode == 0, groups.stderr
    assert group in groups.stdout.split()

    topics = _turnlog(kafka_bootstrap, "kafka-topics.sh", "--list")
    assert topics.returncode == 0, topics.stderr
    assert set(names.all()) <= set(topics.stdout.split())

    described = _turnlog(kafka_bootstrap, "topics", "--describe", "--topic", names.events)
    assert described.returncode == 0, described.stderr
    assert "retention.ms=-1" in described.stdout


def test_an_unknown_tool_fails_naming_the_tools(kafka_bootstrap: str) -> None:
    result = _turnlog(kafka_bootstrap, "kafka-nope", "--list")
    assert result.returncode == 1
    assert "kafka-consumer-groups" in result.stderr and "'kafka-nope'" in result.stderr


def test_every_tool_names_a_class_of_the_fetched_jars() -> None:
    settings = load_settings()
    tools_dir = _tools.fetch_tools(settings)
    classes = set()
    for jar in Path(tools_dir).glob("kafka-tools-*.jar"):
        with zipfile.ZipFile(jar) as archive:
            classes |= {
                n[:-6].replace("/", ".") for n in archive.namelist() if n.endswith(".class")
            }
    assert classes, f"no kafka-tools jar in {tools_dir}"
    missing = {
        name: tool.main_class
        for name, tool in _tools.TOOLS.items()
        if tool.main_class not in classes
    }
    assert not missing, missing
