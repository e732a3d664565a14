"""The schema-registry framing (00 + 4-byte schema id + Avro body) next to single-object.

The registry here is confluent-kafka's own in-memory one (`mock://`), reached through
the same `SchemaRegistryClient` API turnlog uses over HTTP, and the registry-only peer is
confluent-kafka's AvroSerializer/AvroDeserializer, which know nothing of single-object
encoding. An unreachable registry is a real closed port.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from agents.errors import DecodeError, ExternalError
from agents.events import (
    AuditCheckpoint,
    Event,
    LlmCallCompleted,
    Request,
    SendMessage,
    TokenDelta,
    Usage,
    event_id_for,
)
from schemas import codec
from schemas.registry import ConfluentRegistry, RegistryError, subject_for
from streams.topics import topic_names
from turnlog import wire
from turnlog.settings import load_settings

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
EVENT = Event(
    event_id_for("s1", 3),
    "s1",
    3,
    T0,
    "helper",
    LlmCallCompleted("c1", "m", "hello", ("t1",), "tool_use", Usage(1, 2, 3, 4), 5, 6, 1),
    turn_id="t1",
)
REQUEST = Request("r1", "s1", T0, SendMessage("hello there"), correlation_id="corr")
PREFIX = "reg."
NAMES = topic_names(PREFIX)


@pytest.fixture(autouse=True)
def _single_object_after() -> Iterator[None]:
    yield
    codec.use_single_object()


@pytest.fixture
def client() -> Any:
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})


@pytest.fixture
def registry(client: Any) -> ConfluentRegistry:
    seam = ConfluentRegistry("mock://test", wire.envelope_topics(NAMES), client=client)
    codec.use_registry(seam, write=True)
    return seam


def _ctx(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def test_registry_framing_is_zero_then_the_big_endian_id_then_the_same_body(
    registry: ConfluentRegistry,
) -> None:
    codec.use_single_object()
    single = codec.encode_event(EVENT)
    codec.use_registry(registry, write=True)
    framed = codec.encode_event(EVENT)
    schema_id = codec.registry_id("Event")
    assert framed[:1] == b"\x00"
    assert framed[1:5] == schema_id.to_bytes(4, "big")
    assert framed[5:] == single[10:]
    assert codec.wire_format() == "registry"


def test_every_schema_is_registered_under_its_topics_value_subject(
    registry: ConfluentRegistry, client: Any
) -> None:
    codec.encode_event(EVENT)
    codec.encode_request(REQUEST)
    codec.encode_delta(TokenDelta("s1", "c1", 0, "tok", T0))
    codec.encode_checkpoint(AuditCheckpoint(9, "ab" * 32, 9, T0))
    assert set(client.get_subjects()) == {
        f"{PREFIX}turnlog.events-value",
        f"{PREFIX}turnlog.requests-value",
        f"{PREFIX}turnlog.requests.dlq-value",
        f"{PREFIX}turnlog.deltas-value",
        f"{PREFIX}turnlog.audit.checkpoints-value",
    }
    latest = client.get_latest_version(subject_for(NAMES.events))
    assert latest.schema_id == codec.registry_id("Event")
    assert json.loads(latest.schema.schema_str) == codec.current_schema("Event")


@pytest.mark.parametrize(
    ("encode", "decode", "value"),
    [
        (codec.encode_event, codec.decode_event, EVENT),
        (codec.encode_request, codec.decode_request, REQUEST),
        (codec.encode_delta, codec.decode_delta, TokenDelta("s1", "c1", 4, "tok", T0, done=True)),
        (codec.encode_checkpoint, codec.decode_checkpoint, AuditCheckpoint(9, "ab" * 32, 9, T0)),
    ],
)
def test_each_envelope_round_trips_registry_framed(
    registry: ConfluentRegistry, encode: Any, decode: Any, value: object
) -> None:
    data = encode(value)
    assert data[:1] == b"\x00"
    assert decode(data) == value
    assert decode(bytearray(data)) == value


def test_readers_accept_both_framings_so_a_topic_can_be_migrated(
    registry: ConfluentRegistry,
) -> None:
    framed = codec.encode_event(EVENT)
    codec.use_single_object()
    single = codec.encode_event(EVENT)
    assert single[:2] == b"\xc3\x01"
    # Step 1 of a migration: readers know the registry, producers still write C3 01.
    codec.use_registry(registry, write=False)
    assert codec.wire_format() == "single-object"
    assert codec.encode_event(EVENT)[:2] == b"\xc3\x01"
    assert codec.decode_event(framed) == codec.decode_event(single) == EVENT
    # Step 2: producers switch; both kinds stay readable in the one topic.
    codec.use_registry(registry, write=True)
    assert codec.decode_event(codec.encode_event(EVENT)) == codec.decode_event(single) == EVENT
    assert codec.peek_fingerprint(framed) == codec.current_fingerprint("Event")


def test_a_registry_only_consumer_reads_what_turnlog_wrote(
    registry: ConfluentRegistry, client: Any
) -> None:
    data = codec.encode_event(EVENT)
    record = AvroDeserializer(client, return_record_name=True)(data, _ctx(NAMES.events))
    assert record["session_id"] == "s1"
    assert record["seq"] == 3
    assert record["event_id"] == EVENT.event_id
    assert record["payload"][0] == "turnlog.v1.LlmCallCompleted"
    assert record["payload"][1]["text"] == "hello"


def test_turnlog_reads_what_a_registry_only_producer_wrote(
    registry: ConfluentRegistry, client: Any
) -> None:
    serializer = AvroSerializer(
        client,
        json.dumps(codec.current_schema("Request")),
        conf={"auto.register.schemas": True},
    )
    data = serializer(codec._TO_AVRO["Request"](REQUEST), _ctx(NAMES.requests))
    assert data[:1] == b"\x00"
    assert codec.decode_request(data) == REQUEST


def test_an_id_the_registry_holds_for_another_record_is_a_decode_error(
    registry: ConfluentRegistry, client: Any
) -> None:
    other = {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [{"name": "id", "type": "string"}],
    }
    serializer = AvroSerializer(client, json.dumps(other), conf={"auto.register.schemas": True})
    data = serializer({"id": "o-1"}, _ctx("shop.orders"))
    with pytest.raises(DecodeError, match="not a turnlog envelope"):
        codec.decode_request(data)


def test_a_registry_framed_record_without_a_registry_names_the_setting() -> None:
    data = b"\x00\x00\x00\x00\x07" + b"\x02"
    with pytest.raises(DecodeError, match="TURNLOG_SCHEMA_REGISTRY_URL"):
        codec.decode_request(data)


def test_an_unreachable_registry_is_an_outside_failure_not_a_bad_record() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    unreachable = SchemaRegistryClient({"url": url, "max.retries": 0, "timeout": 2})
    seam = ConfluentRegistry(url, wire.envelope_topics(NAMES), client=unreachable)
    codec.use_registry(seam, write=True)
    with pytest.raises(RegistryError, match=f"127.0.0.1:{port}") as err:
        codec.encode_event(EVENT)
    assert isinstance(err.value, ExternalError)
    with pytest.raises(RegistryError):
        codec.decode_event(b"\x00\x00\x00\x00\x09" + b"\x00")


def test_settings_choose_the_framing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_SCHEMA_REGISTRY_URL", "mock://settings")
    monkeypatch.setenv("TURNLOG_WIRE_FORMAT", "registry")
    wire.install(load_settings())
    assert codec.wire_format() == "registry"
    assert codec.encode_request(REQUEST)[:1] == b"\x00"
    monkeypatch.setenv("TURNLOG_WIRE_FORMAT", "single-object")
    wire.install(load_settings())
    assert codec.wire_format() == "single-object"
    monkeypatch.delenv("TURNLOG_SCHEMA_REGISTRY_URL")
    wire.install(load_settings())
    assert codec.encode_request(REQUEST)[:2] == b"\xc3\x01"


def test_registry_mode_without_a_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TURNLOG_SCHEMA_REGISTRY_URL", raising=False)
    monkeypatch.setenv("TURNLOG_WIRE_FORMAT", "registry")
    with pytest.raises(Exception, match="^TURNLOG_SCHEMA_REGISTRY_URL"):
        load_settings()
