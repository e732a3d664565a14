"""Projector benchmark: sustained exactly-once projection rate, and projection lag.

    .venv/bin/python bench/projector.py [--events 100000] [--repeat 1] [--processes 1]
                                        [--rate 500] [--seconds 20]

Needs Kafka and a Postgres superuser URL (KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, by
default the `turnlog dev up` ones). It creates its own database and topics and removes
them afterwards.

1. Throughput: `--events` synthetic events are produced first (committed transactions
   of 500, as the session worker writes them), then one projector process owning every
   partition projects them as the application role, with the audit log and checkpoints:
   the full exactly-once path. Rate = events / (time from the first batch to caught up).
2. Lag: a projector subprocess (`turnlog worker projector`) runs while a transactional
   producer commits events at `--rate` per second (a transaction every 20 ms).
   For each event, lag = time its partition's stored position (updated in the same
   transaction as the rows) passed it − time its transaction commit returned, polled
   every 2 ms.

Prints the figures; BENCHMARKS.md records them. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._pg import scratch_database
from projections.migrate import migrate
from projections.projector import Projector, ProjectorConfig
from streams.topics import delete_topics, ensure_topics
from tests.support.projections import produce_events, role_url, wait_until
from tests.support.synthetic import generate, interleave
from turnlog.settings import load_settings

T0 = datetime(2026, 3, 1, tzinfo=UTC)


async def _throughput_group(
    bootstrap: str, app_url: str, prefix: str, n_events: int, processes: int
) -> None:
    """`processes` workers in one consumer group; timed from the first projected event
    to the last (group joins excluded), by polling the events table."""
    procs = [_spawn_worker(app_url, bootstrap, prefix, group=True) for _ in range(processes)]
    try:
        count = 0
        while count == 0:
            count = _count(app_url, "SELECT count(*) FROM events")
            await asyncio.sleep(0.01)  # polling interval of the measurement
        started = time.perf_counter()
        while count < n_events:
            count = _count(app_url, "SELECT count(*) FROM events")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        print(
            f"THROUGHPUT ({processes} worker processes, one group): {n_events} events in "
            f"{elapsed:.2f}s = {n_events / elapsed:,.0f} events/s"
        )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


async def throughput(
    bootstrap: str, admin_url: str, n_events: int, partitions: int, processes: int = 1
) -> None:
    prefix = f"bench{secrets.token_hex(3)}."
    name = f"turnlog_bench_{secrets.token_hex(4)}"
    url = scratch_database(admin_url, name)
    try:
        migrate(url)
        names = (await ensure_topics(bootstrap, prefix, partitions=partitions)).names
        events = list(interleave(generate(n_events, seed=1, base=T0), seed=1))
        started = time.perf_counter()
        await produce_events(bootstrap, names.events, events, transactional_id=f"{prefix}w")
        print(f"produced {len(events)} events in {time.perf_counter() - started:.1f}s")
        app_url = role_url(url)
        if processes > 1:
            await _throughput_group(bootstrap, app_url, prefix, len(events), processes)
            return
        config = ProjectorConfig(
            bootstrap, app_url, names.events, names.checkpoints, group_id=None, max_records=10_000
        )
        projector = Projector(config)
        backend = _BackendCpu(admin_url, name)
        backend.start()
        cpu_before = time.process_time()
        await projector.run(until_caught_up=True)
        cpu_python = time.process_time() - cpu_before
        backend.done.set()
        backend.join()
        assert projector.first_batch_at is not None and projector.last_batch_at is not None
        elapsed = projector.last_batch_at - projector.first_batch_at
        with psycopg.connect(url) as conn:
            audited = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        n = projector.applied
        print(
            f"THROUGHPUT: {n} events projected exactly-once in {elapsed:.2f}s "
            f"= {n / elapsed:,.0f} events/s "
            f"({projector.batches} transactions; decode {projector.decode_seconds:.2f}s, "
            f"database {projector.db_seconds:.2f}s; audit rows {audited[0] if audited else 0})"
        )
        # CPU per event does not depend on what else the machine runs: it bounds the rate
        # of an otherwise idle machine (the projector and its Postgres backend each on a core).
        per_py, per_pg = cpu_python / n * 1e6, backend.cpu_seconds / n * 1e6
        print(
            f"  CPU per event: projector process {per_py:.0f} us, its Postgres backend "
            f"{per_pg:.0f} us -> idle 2-core bound ~{1e6 / max(per_py, per_pg):,.0f} events/s"
        )
    finally:
        await delete_topics(bootstrap, prefix)
        scratch_database(admin_url, name, drop=True)


class _BackendCpu(threading.Thread):
    """CPU time of the application role's Postgres backends on the bench database, read
    from /proc (the database runs on this machine)."""

    def __init__(self, admin_url: str, database: str) -> None:
        super().__init__(daemon=True)
        self.admin_url, self.database = admin_url, database
        self.ticks: dict[int, int] = {}
        self.done = threading.Event()

    @property
    def cpu_seconds(self) -> float:
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while True:
                pids = [
                    p
                    for (p,) in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND usename = %s",
                        (self.database, "turnlog_app"),
                    )
                ]
                for pid in pids:
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
                if self.done.wait(0.2):
                    return


class _Watcher(threading.Thread):
    """Polls the stored positions; records when each (partition, offset) became visible."""

    def __init__(self, url: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.url, self.topic = url, topic
        self.positions: dict[int, list[tuple[int, float]]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        last: dict[int, int] = {}
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.is_set():
                rows = conn.execute(
                    "SELECT partition, next_offset FROM projector_offsets WHERE topic = %s",
                    (self.topic,),
                ).fetchall()
                now = time.monotonic()
                for partition, offset in rows:
                    if offset != last.get(partition):
                        last[partition] = offset
                        self.positions.setdefault(partition, []).append((offset, now))
                time.sleep(0.002)  # the polling interval of the measurement, not a sync

    def visible_at(self, partition: int, offset: int) -> float | None:
        for position, when in self.positions.get(partition, []):
            if position > offset:
                return when
        return None


async def lag(bootstrap: str, admin_url: str, rate: int, seconds: float, partitions: int) -> None:
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    from schemas.codec import encode_event

    prefix = f"bench{secrets.token_hex(3)}."
    name = f"turnlog_bench_{secrets.token_hex(4)}"
    url = scratch_database(admin_url, name)
    proc: subprocess.Popen[bytes] | None = None
    try:
        migrate(url)
        names = (await ensure_topics(bootstrap, prefix, partitions=partitions)).names
        app_url = role_url(url)
        proc = _spawn_worker(app_url, bootstrap, prefix)
        wait_until(
            lambda: _count(app_url, "SELECT count(*) FROM projector_offsets") == partitions,
            60,
            "the projector to take its partitions",
        )
        watcher = _Watcher(app_url, names.events)
        watcher.start()
        events = list(interleave(generate(int(rate * seconds), seed=2, base=T0), seed=2))
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{prefix}w",
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
        )
        await producer.start()
        committed: list[tuple[int, int, float]] = []
        per_tick = max(1, rate // 50)
        started = time.monotonic()
        try:
            for i in range(0, len(events), per_tick):
                due = started + i / rate
                if (delay := due - time.monotonic()) > 0:
                    await asyncio.sleep(delay)  # pacing the load, not synchronisation
                async with producer.transaction():
                    futures = [
                        await producer.send(
                            names.events, encode_event(e), key=e.session_id.encode()
                        )
                        for e in events[i : i + per_tick]
                    ]
                done = time.monotonic()
                for f in futures:
                    meta = f.result()
                    committed.append((meta.partition, meta.offset, done))
        finally:
            await producer.stop()
        achieved = len(committed) / (time.monotonic() - started)
        wait_until(
            lambda: all(watcher.visible_at(p, o) is not None for p, o, _ in committed[-50:]),
            60,
            "the last events to become visible",
        )
        watcher.done.set()
        watcher.join()
        lags = sorted((watcher.visible_at(p, o) or float("inf")) - t for p, o, t in committed)
        q = statistics.quantiles(lags, n=100)
        print(
            f"LAG at {achieved:.0f} events/s over {len(lags)} events: "
            f"p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
            f"max {lags[-1] * 1000:.0f} ms"
        )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        await delete_topics(bootstrap, prefix)
        scratch_database(admin_url, name, drop=True)


def _spawn_worker(
    app_url: str, bootstrap: str, prefix: str, *, group: bool = False
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "turnlog",
            "worker",
            "projector",
            "--group" if group else "--no-group",
            "--max-records",
            "10000",
            "--checkpoint-interval",
            "5",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "DATABASE_URL": app_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TURNLOG_TOPIC_PREFIX": prefix,
        },
    )


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="Throughput with this many worker processes in one group.",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="Throughput runs (each on a fresh database and topics).",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-lag", action="store_true")
    args = parser.parse_args()
    settings = load_settings()
    bootstrap, admin = settings.kafka_bootstrap_servers, settings.database_url
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    if not args.skip_throughput:
        for _ in range(args.repeat):
            asyncio.run(throughput(bootstrap, admin, args.events, args.partitions, args.processes))
            print(f"  (load average now {os.getloadavg()[0]:.2f})")
    if not args.skip_lag:
        asyncio.run(lag(bootstrap, admin, args.rate, args.seconds, args.partitions))


if __name__ == "__main__":
    main()
