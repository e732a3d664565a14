"""Does a read_committed fetch wait out fetch.max.wait.ms when a transaction commits?

    .venv/bin/python -m bench.fetch_wait [--waits 20,200,2000] [--records 20]

Needs a Kafka broker (KAFKA_BOOTSTRAP_SERVERS, by default the `turnlog dev up` one).
Creates a two-partition topic under a fresh name and deletes it afterwards.

For each fetch wait, a read_committed consumer sits at the end of the topic while a
transactional producer writes one record per transaction, a transaction every ~0.4 s
(the consumer's fetch is then always in flight, held by the broker). Each record carries
the wall time it was handed to the producer; the figure is how long after that the
consumer saw it. If the broker answered a held fetch only when its wait ran out, the
figures would grow with the wait; the session worker's, the projector's and the console's
waits (TURNLOG_FETCH_WAIT_MS) rest on their not doing so. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def one_wait(bootstrap: str, topic: str, wait_ms: int, records: int) -> list[float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        fetch_max_wait_ms=wait_ms,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-{wait_ms}")
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        seen: list[float] = []

        async def read() -> None:
            while len(seen) < records:
                batch = await consumer.getmany(timeout_ms=5000)
                for recs in batch.values():
                    seen.extend(time.time() * 1000 - float(r.value) for r in recs)

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.5)
        for i in range(records):
            async with producer.transaction():
                await producer.send_and_wait(
                    topic, str(time.time() * 1000).encode(), partition=i % 2
                )
            await asyncio.sleep(0.37)
        await asyncio.wait_for(reader, 30)
        return seen
    finally:
        await producer.stop()
        await consumer.stop()


async def main_async(waits: list[int], records: int) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    topic = f"bench-fetch-wait-{secrets.token_hex(3)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        await asyncio.sleep(1.0)
        for wait in waits:
            seen = sorted(await one_wait(bootstrap, topic, wait, records))
            print(
                f"fetch wait {wait:>5} ms: seen after p50 {statistics.median(seen):.1f} ms, "
                f"max {seen[-1]:.1f} ms ({len(seen)} transactions)",
                flush=True,
            )
    finally:
        await admin.delete_topics([topic])
        await admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--waits", default="20,200,2000")
    ap.add_argument("--records", type=int, default=20)
    args = ap.parse_args()
    asyncio.run(main_async([int(w) for w in args.waits.split(",")], args.records))


if __name__ == "__main__":
    main()
