"""Scheduler: CPU and memory with many schedules, firing lateness at a steady rate.

    .venv/bin/python bench/scheduler.py [--schedules 100000] [--idle-s 30]
        [--rate 1000] [--minutes 2] [--no-probe] [--write]

Needs a Kafka broker and PostgreSQL (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL; by default
the `turnlog dev up` ones). Each part uses topics under a fresh prefix (deleted after).
The scheduler runs in this process (streams.scheduler.Scheduler, the real clock, one
member owning every partition of an 8-partition turnlog.schedules), as
`turnlog worker scheduler` runs it, without the schedules projector (a separate
consumer, measured by nothing here).

1. Many schedules: `--schedules` ScheduleDefined records (cron in 6 time zones, daily
   to hourly, and intervals of 1 h to 1 day: none due during the run) are produced to
   the schedules topic; a scheduler starts and reads them. Measured: the time from
   start to every partition live (restore: read, fold, next slot of each, heap), the
   process's RSS before and after (VmRSS), and the CPU the process uses while it holds
   them idle for `--idle-s` seconds (CPU seconds / wall seconds).
2. Lateness: `--rate` schedules of `every 60s`, their first slots spread evenly over a
   minute, fire `--rate` times a minute for `--minutes` minutes (each firing a Kafka
   transaction with its SendMessage and ScheduleFired; the overlap check asks
   the sessions table of a freshly migrated database unless --no-probe). Lateness = the scheduler's clock once
   the slot's transaction is committed - the slot: p50, p99, max; and the CPU share
   while firing.

Prints the figures; `--write` also replaces the "Scheduler" section of BENCHMARKS.md.
Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.events import ScheduleDefined, ScheduleRecord
from schemas.codec import encode_schedule_record
from streams.partitioning import partition_for
from streams.scheduler import PostgresRunProbe, Scheduler
from streams.scheduler_plan import key_for
from streams.topics import delete_topics, ensure_topics

PARTITIONS = 8
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney",
         "America/Sao_Paulo")  # fmt: skip


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def many_specs(n: int, now: datetime) -> list[tuple[str, ScheduleDefined]]:
    """Schedules none of which is due in the next hour (the idle measurement)."""
    out = []
    for i in range(n):
        zone = ZONES[i % len(ZONES)]
        if i % 3 == 2:
            spec = ScheduleDefined(
                agent="calc", message=f"interval {i}", every_s=3600 * (2 + i % 23),
                start_at=now + timedelta(hours=2, seconds=i % 3600),
            )  # fmt: skip
        else:
            hour = (now.hour + 2 + i % 20) % 24
            spec = ScheduleDefined(
                agent="calc", message=f"cron {i}", cron=f"{i % 60} {hour} * * {i % 7}",
                timezone=zone,
            )  # fmt: skip
        out.append((f"bench-{i:06d}", spec))
    return out


async def produce(bootstrap: str, topic: str, specs: list[tuple[str, ScheduleDefined]],
                  at: datetime) -> None:  # fmt: skip
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, acks="all"
    )
    await producer.start()
    try:
        pending = []
        for sid, spec in specs:
            record = ScheduleRecord(sid, at, spec)
            pending.append(
                await producer.send(
                    topic,
                    value=encode_schedule_record(record),
                    key=key_for(sid, record).encode(),
                    partition=partition_for(sid, PARTITIONS),
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def run_scheduler(scheduler: Scheduler, stop: asyncio.Event) -> asyncio.Task[None]:
    await scheduler.start()
    return asyncio.create_task(scheduler.run(stop))


async def live(scheduler: Scheduler, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while len(scheduler.owned_partitions()) < PARTITIONS:
        if time.monotonic() > deadline:
            raise TimeoutError("the scheduler did not read its partitions in time")
        await asyncio.sleep(0.05)


async def part_many(bootstrap: str, n: int, idle_s: float) -> dict[str, float]:
    prefix = f"bench{secrets.token_hex(3)}."
    names = (await ensure_topics(bootstrap, prefix, PARTITIONS)).names
    try:
        now = datetime.now(UTC)
        specs = many_specs(n, now)
        started = time.monotonic()
        await produce(bootstrap, names.schedules, specs, now)
        produced_s = time.monotonic() - started
        rss_before = rss_mib()
        scheduler = Scheduler(bootstrap=bootstrap, topics=names, client_id="bench-scheduler")
        stop = asyncio.Event()
        cpu0, t0 = time.process_time(), time.monotonic()
        task = await run_scheduler(scheduler, stop)
        await live(scheduler)
        restore_s = time.monotonic() - t0
        restore_cpu = time.process_time() - cpu0
        held = len(scheduler.states())
        cpu1, t1 = time.process_time(), time.monotonic()
        await asyncio.sleep(idle_s)
        idle_cpu = (time.process_time() - cpu1) / (time.monotonic() - t1)
        rss_after = rss_mib()
        stop.set()
        await task
        await scheduler.stop()
        return {
            "schedules": held,
            "produce_s": produced_s,
            "restore_s": restore_s,
            "restore_cpu_s": restore_cpu,
            "idle_cpu_share": idle_cpu,
            "rss_before_mib": rss_before,
            "rss_after_mib": rss_after,
        }
    finally:
        await delete_topics(bootstrap, prefix)


async def part_rate(bootstrap: str, database_url: str | None, rate: int, minutes: float) -> dict[str, float]:  # fmt: skip
    prefix = f"bench{secrets.token_hex(3)}."
    names = (await ensure_topics(bootstrap, prefix, PARTITIONS)).names
    try:
        now = datetime.now(UTC)
        first = now.replace(microsecond=0) + timedelta(seconds=5)
        step = 60.0 / rate
        specs = [
            (
                f"rate-{i:05d}",
                ScheduleDefined(
                    agent="calc",
                    message="tick",
                    every_s=60,
                    start_at=first + timedelta(seconds=i * step),
                ),
            )
            for i in range(rate)
        ]
        await produce(bootstrap, names.schedules, specs, now)
        # The overlap query runs as in production; with no session worker here a run is
        # never projected, so an unprojected run counts as ended (grace 0) rather than as
        # running for a minute (which would skip every other slot of an every-60 s run).
        probe = PostgresRunProbe(database_url, grace=timedelta(0)) if database_url else None
        scheduler = Scheduler(
            bootstrap=bootstrap, topics=names, probe=probe, client_id="bench-scheduler"
        )
        stop = asyncio.Event()
        task = await run_scheduler(scheduler, stop)
        await live(scheduler)
        end = first + timedelta(minutes=minutes)
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep((end - datetime.now(UTC)).total_seconds() + 1.0)
        stopped_at = datetime.now(UTC)
        cpu = (time.process_time() - cpu0) / (time.monotonic() - t0)
        stop.set()
        await task
        await scheduler.stop()
        late = sorted(scheduler.lateness_ms)
        q = (
            statistics.quantiles(late, n=100, method="inclusive")
            if len(late) >= 2
            else [float("nan")] * 99
        )
        # Slots due a second or more before the stop (first slot, then every 60 s).
        due_by = stopped_at - timedelta(seconds=1)
        expected = sum(
            1 + int((due_by - spec.start_at).total_seconds() // 60)
            for _, spec in specs
            if spec.start_at is not None and spec.start_at <= due_by
        )
        return {
            "firings": len(late),
            "expected": expected,
            "p50_ms": q[49],
            "p99_ms": q[98],
            "max_ms": late[-1] if late else float("nan"),
            "cpu_share": cpu,
            "transactions": scheduler.stats["transactions"],
            "skipped": scheduler.stats["skipped"],
            "rss_mib": rss_mib(),
        }
    finally:
        await delete_topics(bootstrap, prefix)


@contextlib.contextmanager
def scratch_database(server_url: str | None) -> Iterator[str | None]:
    """A migrated database of its own on the server of `server_url` (dropped after):
    the overlap check's sessions table, empty."""
    if server_url is None:
        yield None
        return
    import psycopg

    from projections.migrate import migrate

    name = f"turnlog_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server_url.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(args: argparse.Namespace, many: dict[str, float], rate: dict[str, float]) -> str:
    command = "    .venv/bin/python bench/scheduler.py " + " ".join(sys.argv[1:])
    return f"""## Scheduler

Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, shared
with other work), Kafka and PostgreSQL of `turnlog dev up` on the same machine:

{command.rstrip()}

One scheduler (in the bench process) owning all {PARTITIONS} partitions of turnlog.schedules.

| {int(many["schedules"]):,} schedules (cron in 6 zones, intervals) | |
|---|---|
| restore: read, fold, next slot, heap | {many["restore_s"]:.1f} s wall, {many["restore_cpu_s"]:.1f} s CPU |
| RSS before / after holding them | {many["rss_before_mib"]:.0f} / {many["rss_after_mib"]:.0f} MiB |
| CPU while holding them ({args.idle_s:g} s, nothing due) | {many["idle_cpu_share"] * 100:.1f} % of a core |

| {args.rate:,} firings per minute, {args.minutes:g} min (every 60 s, slots spread evenly{", overlap check on PostgreSQL" if not args.no_probe else ""}) | |
|---|---|
| slots fired by the stop / due a second before it / skipped | {int(rate["firings"]):,} / {int(rate["expected"]):,} / {int(rate["skipped"])} |
| lateness p50 / p99 / max (handled - slot) | {rate["p50_ms"]:.0f} / {rate["p99_ms"]:.0f} / {rate["max_ms"]:.0f} ms |
| transactions (one per partition and tick) | {int(rate["transactions"]):,} |
| CPU while firing | {rate["cpu_share"] * 100:.1f} % of a core |

Lateness runs from the slot to the scheduler's clock once the slot's transaction is
committed (its SendMessage and ScheduleFired in the log). The tick is 200 ms: a slot
waits for the next tick (up to 200 ms, about 100 ms on average), then for the overlap
query and its transaction (the due slots of a partition go in one).
"""


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text(encoding="utf-8")
    start = doc.find("## Scheduler\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + 1)
        doc = doc[:start] + text + (doc[end + 1 :] if end >= 0 else "")
    path.write_text(doc, encoding="utf-8")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--no-probe", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    database_url = None if args.no_probe else os.environ.get(
        "DATABASE_URL", "postgresql://turnlog:turnlog@127.0.0.1:55432/turnlog"
    )  # fmt: skip
    from streams.logs import configure_logging

    configure_logging("WARNING")
    many = await part_many(bootstrap, args.schedules, args.idle_s)
    print(many, flush=True)
    with scratch_database(database_url) as url:
        rate = await part_rate(bootstrap, url, args.rate, args.minutes)
    print(rate, flush=True)
    text = report(args, many, rate)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    asyncio.run(main())
