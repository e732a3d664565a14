"""Registry mode against a real schema registry: Apicurio Registry, run from its Maven
Central jars and started by `turnlog dev registry up`, serving the Confluent API on
loopback. One registry for the module, started once (a few seconds).

- A request framed by confluent-kafka's AvroSerializer (00 + schema id; the producer
  knows nothing of single-object encoding) drives a turn through the session worker; the
  events the worker writes are registry-framed, with ids the registry gave, and a
  separate process that only knows the registry framing (confluent-kafka's
  DeserializingConsumer + AvroDeserializer, a fresh registry client, no turnlog import)
  reads every event of the session.
- Every subject is `<topic>-value` (topic-name strategy) holding the current schema.
- The compatibility level turnlog sets is read back from the server, and the server's
  verdict on changed schemas agrees with turnlog's own evolution gate (FULL, which is
  stricter than the registries' usual BACKWARD).
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from agents.events import TurnCompleted
from schemas import codec
from schemas.compat import evolution_problems
from schemas.registry import COMPATIBILITY, ConfluentRegistry, subject_for
from streams.topics import TopicNames, ensure_topics
from tests.integration.test_cli_support import DEMO_AGENTS, DEMO_SCRIPT
from tests.support.harness import EventLog, InProcessWorker, free_port, scripted_script
from turnlog import wire
from turnlog.dev import DevInfraError, fetch_registry, registry_status, registry_up
from turnlog.dev._proc import pid_alive
from turnlog.dev._registry import pinned_version
from turnlog.settings import load_settings


@dataclass(frozen=True)
class Registry:
    url: str
    port: int
    pid: int
    version: str
    state_dir: Path


def _turnlog(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog", "dev", "registry", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "TURNLOG_STATE_DIR": str(state_dir)},
    )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real Apicurio Registry on a free loopback port, started as a user starts it
    (`turnlog dev registry up`) in a state dir of its own that shares the unpacked
    registry (fetched once, by CI's setup or here); fails, never skips, when it cannot
    start. Stopped by `turnlog dev registry down` at the end of the module."""
    try:
        app = fetch_registry(load_settings())
    except DevInfraError as exc:
        pytest.fail(f"The schema registry could not be fetched:\n{exc}", pytrace=False)
    state = tmp_path_factory.mktemp("registry-state")
    (state / "registry").mkdir()
    (state / "registry" / "app").symlink_to(app)
    port = free_port()
    up = _turnlog(state, "up", "--port", str(port), "--json")
    if up.returncode != 0:
        pytest.fail(f"`turnlog dev registry up` failed:\n{up.stderr}", pytrace=False)
    started = json.loads(up.stdout)
    try:
        yield Registry(started["url"], port, started["pid"], started["version"], state)
    finally:
        down = _turnlog(state, "down", "--json")
        assert down.returncode == 0, down.stderr
        assert json.loads(down.stdout)["state"] == "stopped"
        assert not pid_alive(started["pid"])


@pytest.fixture
def client(registry: Registry) -> Iterator[SchemaRegistryClient]:
    yield SchemaRegistryClient({"url": registry.url})
    codec.use_single_object()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


def _produce(bootstrap: str, names: TopicNames, client: SchemaRegistryClient, session: str) -> None:
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


# A consumer of a shop that runs a registry: confluent-kafka only, the registry's framing
# only. It prints one JSON line per record of the session, then the modules it loaded
# that are turnlog's (none).
_REGISTRY_ONLY_CONSUMER = """
import json, sys
from confluent_kafka import DeserializingConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

bootstrap, registry, topic, session, expected = sys.argv[1:6]
consumer = DeserializingConsumer({
    "bootstrap.servers": bootstrap, "group.id": "registry-only-" + session,
    "auto.offset.reset": "earliest", "isolation.level": "read_committed",
    "value.deserializer": AvroDeserializer(
        SchemaRegistryClient({"url": registry}), return_record_name=True),
})
consumer.subscribe([topic])
seen, empty = [], 0
while len(seen) < int(expected) and empty < 20:
    msg = consumer.poll(1.0)
    if msg is None:
        empty += 1
        continue
    if msg.error():
        raise SystemExit(str(msg.error()))
    if msg.key() == session.encode():
        value = msg.value()
        seen.append({"seq": value["seq"], "type": value["payload"][0]})
consumer.close()
for row in seen:
    print(json.dumps(row))
ours = {"agents", "schemas", "streams", "projections", "turnlog"}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ours)))
"""


async def test_a_registry_framed_turn_through_a_real_registry(
    kafka_bootstrap: str,
    unique_prefix: str,
    tmp_path: Path,
    registry: Registry,
    client: SchemaRegistryClient,
) -> None:
    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)).names
    topics = wire.envelope_topics(names)
    codec.use_registry(ConfluentRegistry(registry.url, topics), write=True)
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
        await asyncio.to_thread(_produce, kafka_bootstrap, names, client, session)
        await log.wait_for(
            lambda: any(isinstance(e.payload, TurnCompleted) for e in log.of(session)),
            60,
            "the registry-framed request's turn completed",
            diagnose=log.summary,
        )
        assert process.worker.stats["dlq"] == 0
    events = log.of(session)

    # Written registry-framed, with the id the registry holds under the events' subject.
    values = await _raw_values(kafka_bootstrap, names.events, session)
    assert len(values) == len(events)
    event_id = client.get_latest_version(subject_for(names.events)).schema_id
    assert event_id is not None
    assert {v[:5] for v in values} == {b"\x00" + event_id.to_bytes(4, "big")}

    # Every subject of this platform is <topic>-value, holding its envelope's schema.
    ours = {s for s in client.get_subjects() if s.startswith(unique_prefix)}
    assert ours, "nothing was registered"
    by_subject = {subject_for(t): env for env, ts in topics.items() for t in ts}
    assert ours <= set(by_subject), f"subjects outside the topic-name strategy: {ours}"
    assert {subject_for(names.requests), subject_for(names.events)} <= ours
    for subject in ours:
        held = json.loads(client.get_latest_version(subject).schema.schema_str or "null")
        assert held == codec.current_schema(by_subject[subject]), subject
        # One version: the producer's registration and turnlog's are the same schema.
        assert client.get_versions(subject) == [1], subject
        assert _get(f"{registry.url}/config/{subject}")["compatibilityLevel"] == COMPATIBILITY

    # A consumer that only knows the registry framing reads every event of the session.
    read = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-I", "-c", _REGISTRY_ONLY_CONSUMER, kafka_bootstrap, registry.url]
        + [names.events, session, str(len(events))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert read.returncode == 0, read.stderr[-3000:]
    *rows, loaded = [json.loads(line) for line in read.stdout.splitlines()]
    assert loaded == []
    assert [r["seq"] for r in rows] == [e.seq for e in events]
    assert rows[-1]["type"] == "turnlog.v1.TurnCompleted"


def _with_field(schema: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    changed["fields"].append(field)
    return changed


def _without_field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    changed = copy.deepcopy(schema)
    changed["fields"] = [f for f in changed["fields"] if f["name"] != name]
    return changed


def _optional_added(schema: dict[str, Any]) -> dict[str, Any]:
    return _with_field(schema, {"name": "note", "type": ["null", "string"], "default": None})


def _required_added(schema: dict[str, Any]) -> dict[str, Any]:
    # Backward fails: the new reader has no default for the old records' missing field.
    return _with_field(schema, {"name": "note", "type": "string"})


def _required_removed(schema: dict[str, Any]) -> dict[str, Any]:
    # Backward holds (the new reader ignores it), forward fails: a registry left at its
    # usual BACKWARD would accept this; turnlog's gate and FULL refuse it.
    return _without_field(schema, "request_id")


# (what changed, the change to the Request schema, compatible under FULL)
_CHANGES: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], bool]] = [
    ("an optional field added", _optional_added, True),
    ("a required field added", _required_added, False),
    ("a required field removed", _required_removed, False),
]


def test_the_registry_compatibility_level_is_turnlogs_gate(
    registry: Registry, client: SchemaRegistryClient, unique_prefix: str
) -> None:
    topic = f"{unique_prefix}compat.requests"
    subject = subject_for(topic)
    seam = ConfluentRegistry(registry.url, {"Request": (topic,)})
    assert seam.compatibility_of(subject) is None  # a new subject has no level of its own

    schema_id = seam.id_for("Request")

    assert _get(f"{registry.url}/config/{subject}") == {"compatibilityLevel": "FULL"}
    assert seam.compatibility_of(subject) == COMPATIBILITY
    assert client.get_latest_version(subject).schema_id == schema_id
    current = codec.current_schema("Request")
    for what, change, compatible in _CHANGES:
        changed = change(current)
        ours = evolution_problems(current, changed)
        theirs = client.test_compatibility(subject, Schema(json.dumps(changed), "AVRO"))
        assert (not ours, theirs) == (compatible, compatible), (what, ours)
    # A second process's seam finds the level set and the schema registered.
    again = ConfluentRegistry(registry.url, {"Request": (topic,)})
    assert again.id_for("Request") == schema_id
    assert list(client.get_versions(subject)) == [1]


def _listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                if table == "tcp":
                    text = socket.inet_ntop(socket.AF_INET, raw[::-1])
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    six = ipaddress.IPv6Address(words)
                    text = str(six.ipv4_mapped or six)  # a JVM's ::ffff:127.0.0.1
                found.add((text, int(port, 16)))
    return found


def test_turnlog_dev_registry_up_status_down(tmp_path: Path, registry: Registry) -> None:
    """What `turnlog dev registry` says about the one the fixture started with it, a
    second `up` on its port, and an `up` on a port something else holds."""
    settings = load_settings().model_copy(update={"state_dir": registry.state_dir})
    status = _turnlog(registry.state_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    running = json.loads(status.stdout)
    assert running["state"] == "running"
    assert (running["pid"], running["url"]) == (registry.pid, registry.url)
    assert registry.url == f"http://127.0.0.1:{registry.port}/apis/ccompat/v7"
    assert registry.version == pinned_version()
    # Idempotent: a second `up` reuses the running one.
    assert registry_up(settings, registry.port).pid == registry.pid
    # Loopback only: every socket the registry listens on.
    listening = _listening(registry.pid)
    assert ("127.0.0.1", registry.port) in listening
    assert {address for address, _ in listening} == {"127.0.0.1"}, listening

    # A port held by something that is not a registry: a clear error, nothing started.
    port = free_port()
    with (
        socket.create_server(("127.0.0.1", port)),
        pytest.raises(DevInfraError, match=f"Port {port} on 127.0.0.1 is taken"),
    ):
        registry_up(settings.model_copy(update={"state_dir": tmp_path}), port)
    assert registry_status(settings, port).state == "stopped"

    # A registry that cannot start: the error says so, with its log.
    broken = tmp_path / "broken"
    (broken / "registry" / "app").mkdir(parents=True)
    (broken / "registry" / "app" / "apicurio-registry-app-runner.jar").write_bytes(b"not a jar")
    marker = fetch_registry(load_settings()) / ".pom-sha256"
    (broken / "registry" / "app" / ".pom-sha256").write_text(marker.read_text())
    with pytest.raises(DevInfraError, match=r"exited with code 1\.\n(.|\n)*jarfile"):
        registry_up(settings.model_copy(update={"state_dir": broken}), port)
