"""Send a user message to turnlog with confluent-kafka (librdkafka): fastavro + confluent-kafka.

The twin of produce_plain.py (aiokafka) for the librdkafka family of clients
(confluent-kafka for Python, confluent-kafka-go, confluent-kafka-dotnet, node-rdkafka):
no turnlog code is imported. The one setting that matters beyond the contract:

    partitioner=murmur2_random

turnlog's workers find a session on partition murmur2(session id) mod partitions, which is
what the Java client, aiokafka and kafka-python do by default. librdkafka's default,
`consistent_random`, hashes with CRC32 instead and puts most session ids on another
partition; the worker that reads such a request forwards it to its session's partition (an
extra hop and a stray copy, counted as `rerouted` in the worker's metrics) rather than
serve the session from the wrong partition.

The record is the same as produce_plain.py's: Avro single-object encoding (C3 01 + the
CRC-64-AVRO fingerprint of the schema's parsing canonical form + the body) of a
`turnlog.v1.Request` with a SendMessage payload, keyed by the session id.

    python examples/produce_confluent.py --bootstrap 127.0.0.1:9092 --agent assistant \\
        --session s-confluent-1 "what is 17*23?"
"""

from __future__ import annotations

import argparse
import io
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer
from fastavro import schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "avro"
# The partitioner turnlog's workers expect (Kafka's default, murmur2 of the key).
PARTITIONER = "murmur2_random"


def request_schema(directory: Path = SCHEMAS) -> Any:
    """The parsed Request envelope, with the named types it refers to loaded alongside."""
    return load_schema(str(directory / "turnlog.v1.Request.avsc"))


def encode_send_message(
    schema: Any, *, session_id: str, text: str, agent: str | None, request_id: str | None = None
) -> bytes:
    record = {
        "request_id": request_id or str(uuid.uuid4()),
        "session_id": session_id,
        "occurred_at": time.time_ns() // 1000,  # timestamp-micros, UTC
        "payload": (
            "turnlog.v1.SendMessage",
            {"text": text, "parent_session_id": None, "parent_call_id": None},
        ),
        "correlation_id": None,
        "causation_id": None,
        "agent": agent,
    }
    out = io.BytesIO()
    out.write(b"\xc3\x01")
    out.write(bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")))
    schemaless_writer(out, schema, record)
    return out.getvalue()


def produce(
    bootstrap: str,
    topic: str,
    key: str,
    value: bytes,
    *,
    partitioner: str | None = PARTITIONER,
    timeout_s: float = 30.0,
) -> int:
    """Produce one record (idempotent, acks=all); returns the partition it landed on.
    `partitioner=None` leaves librdkafka's default (what a client that forgot the
    setting does)."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
    }
    if partitioner is not None:
        config["partitioner"] = partitioner
    producer = Producer(config)
    delivered: list[Any] = []
    producer.produce(
        topic,
        value=value,
        key=key.encode("utf-8"),
        on_delivery=lambda err, msg: delivered.append((err, msg)),
    )
    if producer.flush(timeout_s) != 0 or not delivered:
        raise KafkaException(f"The record was not delivered to {topic} within {timeout_s} s.")
    err, msg = delivered[0]
    if err is not None:
        raise KafkaException(err)
    partition: int = msg.partition()
    return partition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument(
        "--topic",
        default="turnlog.requests",
        help="the requests topic (with your TURNLOG_TOPIC_PREFIX, if any)",
    )
    parser.add_argument("--session", default=f"s-{uuid.uuid4().hex[:16]}")
    parser.add_argument("--agent", default=None, help="needed for a new session")
    parser.add_argument("--request-id", default=None)
    args = parser.parse_args()
    value = encode_send_message(
        request_schema(),
        session_id=args.session,
        text=args.text,
        agent=args.agent,
        request_id=args.request_id,
    )
    partition = produce(args.bootstrap, args.topic, args.session, value)
    print(f"{args.session} partition {partition}")


if __name__ == "__main__":
    main()
