"""Send a user message to turnlog from ANY Kafka producer: only fastavro + aiokafka.

No turnlog code is imported here, on purpose: this is what a service written in another
language does, with its own Avro and Kafka libraries. Everything it needs is the contract:

1. The value schema of `turnlog.requests` is the `turnlog.v1.Request` record of
   `schemas/avro/` (one named type per .avsc file; fastavro's `load_schema` follows the
   references between the files).
2. The wire format is Avro SINGLE-OBJECT encoding: the two bytes C3 01, the 8-byte
   CRC-64-AVRO fingerprint of the schema's parsing canonical form (little-endian), then
   the Avro binary body. No schema registry.
3. The record key is the session id (UTF-8), with Kafka's default partitioner (murmur2):
   every request and event of a session is in the same partition number.
4. `request_id` is unique per request (a duplicate is rejected); `agent` is needed on the
   first message of a new session; `occurred_at` is microseconds since the epoch (UTC).

    python examples/produce_plain.py --bootstrap 127.0.0.1:9092 --agent assistant \\
        --session s-plain-1 "what is 17*23?"

Then watch it: `turnlog events s-plain-1 --follow`. The events come back on
`turnlog.events` in the same encoding (schema `turnlog.v1.Event`); read them
read_committed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from fastavro import schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "avro"


def request_schema(directory: Path = SCHEMAS) -> Any:
    """The parsed Request envelope, with the named types it refers to loaded alongside."""
    return load_schema(str(directory / "turnlog.v1.Request.avsc"))


def single_object_header(schema: Any) -> bytes:
    """C3 01 + the CRC-64-AVRO fingerprint of the parsing canonical form."""
    return b"\xc3\x01" + bytes.fromhex(
        fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    )


def encode_send_message(
    schema: Any, *, session_id: str, text: str, agent: str | None, request_id: str | None = None
) -> bytes:
    record = {
        "request_id": request_id or str(uuid.uuid4()),
        "session_id": session_id,
        "occurred_at": time.time_ns() // 1000,  # timestamp-micros, UTC
        # A union branch is chosen by its full name: (name, value).
        "payload": (
            "turnlog.v1.SendMessage",
            {"text": text, "parent_session_id": None, "parent_call_id": None},
        ),
        "correlation_id": None,
        "causation_id": None,
        "agent": agent,
    }
    out = io.BytesIO()
    out.write(single_object_header(schema))
    schemaless_writer(out, schema, record)
    return out.getvalue()


async def produce(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key.encode("utf-8"))
    finally:
        await producer.stop()


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
    asyncio.run(produce(args.bootstrap, args.topic, args.session, value))
    print(args.session)


if __name__ == "__main__":
    main()
