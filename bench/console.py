"""Console benchmark: time to first byte of a 1,000-event session's page, and how many
concurrent SSE followers one console process holds with p99 delivery under 100 ms.

    .venv/bin/python bench/console.py [--events 1000] [--requests 30]
                                      [--followers 50,200,500,1000,2000] [--turns 4]

Needs Kafka and a Postgres superuser URL (KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, by
default the `turnlog dev up` ones). It creates its own database and topics and removes
them afterwards. Everything is real: `turnlog worker all` and `turnlog ui` run as
subprocesses; the session is built by real turns of the scripted demo model through the
public client (what `turnlog demo` runs), projected by the real projector.

1. TTFB: GET /sessions/<id> of a session with >= `--events` events (the conversation,
   the tree, the LLM calls and every event in the timeline, rendered on the server):
   time from the request's last byte sent to the response's first byte received, over
   `--requests` requests after 5 warm-ups, one at a time.
2. Followers: N followers (raw HTTP/1.1 clients in 2 processes, live-only) follow one
   session's /api/sessions/<id>/stream while `--turns` turns run in it; a plain
   read_committed Kafka consumer (in this process, same fetch wait) reads the same
   partition. Delivery latency of an event to a follower = the time the follower read it
   − the time the plain consumer read it: what the console adds (its Kafka tail, the
   fan-out, SSE over HTTP). The end-to-end figure (− the event's occurred_at, the
   worker's clock when it decided it) is printed too; it is mostly the worker's.
   N grows until the console's p99 is 100 ms or more, or an event is missed.

Prints the figures; BENCHMARKS.md records them. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


_SEQ = re.compile(rb'"seq": (\d+)')
_AT = re.compile(rb'"occurred_at": "([^"]+)"')


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ----------------------------------------------------------------------- follower client


async def _follow_one(
    host: str, port: int, path: str, out: list[tuple[int, float, float]], ready: Any
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    first = True
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            if first and line.startswith(b": following"):
                first = False
                ready()
            if line.startswith(b"data: {") and b'"occurred_at"' in line:
                now = time.time()
                # Only the two fields (a full json.loads per follower would make the
                # followers' process, not the console, the bottleneck being measured).
                seq = _SEQ.search(line)
                at = _AT.search(line)
                if seq and at:
                    occurred = datetime.fromisoformat(at.group(1).decode()).timestamp()
                    out.append((int(seq.group(1)), now, occurred))
    finally:
        writer.close()


async def _client(host: str, port: int, path: str, n: int) -> None:
    """A follower process: N streams; prints 'ready' once all are open, then the
    latencies as JSON when 'stop' arrives on stdin."""
    latencies: list[tuple[int, float, float]] = []  # (seq, read at, occurred_at)
    opened = 0

    def ready() -> None:
        nonlocal opened
        opened += 1
        if opened == n:
            print("ready", flush=True)

    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(_follow_one(host, port, path, latencies, ready)))
        await asyncio.sleep(0.002)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(latencies), flush=True)


# ----------------------------------------------------------------------- the driver


def _wait_http(url: str, timeout: float = 60.0) -> None:
    import httpx2 as httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def _wait_log(
    path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float = 90.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited: {path.read_text()[-2000:]}")
        if needle in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"{needle!r} not in {path} after {timeout} s")


def _ttfb(host: str, port: int, path: str) -> tuple[float, float, int]:
    with socket.create_connection((host, port)) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        t0 = time.perf_counter()
        first = sock.recv(65536)
        t1 = time.perf_counter()
        size = len(first)
        while chunk := sock.recv(65536):
            size += len(chunk)
        t2 = time.perf_counter()
    assert first.startswith(b"HTTP/1.1 200"), first[:200]
    return (t1 - t0) * 1000.0, (t2 - t0) * 1000.0, size


async def _turns(client: Any, sid: str, n: int, text: str = "what is 17*23?") -> int:
    last = 0
    for _ in range(n):
        sent = await client.send_message(text, session_id=sid)
        outcome = await client.outcome(sent, timeout=60)
        if outcome.status != "completed":
            raise SystemExit(f"a turn ended {outcome.status}: {outcome.reason}")
        last = outcome.events[-1].seq
    return last


async def _reference(bootstrap: str, client: Any, sid: str, out: dict[int, float]) -> None:
    """A plain read_committed consumer of the session's partition (the same fetch wait
    as the console's): what any Kafka client sees, for comparison."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from schemas.codec import decode_event

    tp = TopicPartition(client.topics.events, client.partition_of(sid))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=500)
            now = time.time()
            for rec in batch.get(tp, ()):
                ev = decode_event(rec.value)
                if ev.session_id == sid:
                    out[ev.seq] = now
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--followers", default="50,200,500,1000,2000")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument(
        "--client", nargs=4, metavar=("HOST", "PORT", "PATH", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.client:
        host, port, path, n = args.client
        asyncio.run(_client(host, int(port), path, int(n)))
        return

    import psycopg
    from psycopg import sql

    from projections.migrate import migrate
    from streams.topics import delete_topics, ensure_topics
    from tests.conftest import database_url_for
    from tests.support.harness import free_port, scripted_script
    from turnlog.client import Client
    from turnlog.settings import load_settings

    settings = load_settings()
    admin = settings.database_url
    bootstrap = settings.kafka_bootstrap_servers
    tag = secrets.token_hex(3)
    dbname, prefix = f"bench_console_{tag}", f"benchui{tag}."
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    url = database_url_for(admin, dbname)
    migrate(url)
    asyncio.run(ensure_topics(bootstrap, prefix, partitions=4))
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-console-{tag}"
    work.mkdir(parents=True)
    (work / "sandbox").mkdir()
    script = scripted_script(
        work, latency_ms=0, source=ROOT / "examples" / "demo_session.script.yaml"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURNLOG_", "ANTHROPIC_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": url,
        "TURNLOG_TOPIC_PREFIX": prefix,
        "TURNLOG_PARTITIONS": "4",
        "TURNLOG_AGENTS": str(ROOT / "examples" / "demo_agents.toml"),
        "TURNLOG_PROVIDER": f"scripted:{script}",
        "TURNLOG_SANDBOX_DIR": str(work / "sandbox"),
        "TURNLOG_METRICS_PORT": "0",
        "TURNLOG_PROJECTOR_METRICS_PORT": "0",
        "TURNLOG_LOG_LEVEL": "INFO",
    }
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, *argv: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = work / f"{name}.log"
        with log.open("wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "turnlog", *argv],
                cwd=ROOT,
                env=env,
                stdout=f,
                stderr=f,
                stdin=subprocess.DEVNULL,
            )
        procs.append(proc)
        return proc, log

    try:
        worker, wlog = spawn("worker-all", "worker", "all")
        _wait_log(wlog, '"partitions.assigned"', worker)
        port = free_port()
        spawn("ui", "ui", "--port", str(port))
        host = "127.0.0.1"
        _wait_http(f"http://{host}:{port}/healthz")

        async def build() -> tuple[str, int]:
            async with Client(
                bootstrap_servers=bootstrap, topic_prefix=prefix, database_url=url
            ) as client:
                first = await client.send_message("what is 17*23?", agent="assistant")
                sid = first.session_id
                await client.outcome(first, timeout=60)
                last = 0
                t0 = time.perf_counter()
                while last < args.events:
                    last = await _turns(client, sid, 1)
                print(
                    f"built session {sid}: {last} events in {time.perf_counter() - t0:.1f} s",
                    flush=True,
                )
                await client.wait_projected(sid, last, timeout=120)
                return sid, last

        sid, last = asyncio.run(build())

        # 1. time to first byte of the session page
        page = f"/sessions/{sid}"
        for _ in range(5):
            _ttfb(host, port, page)
        ttfb, total, sizes = [], [], []
        for _ in range(args.requests):
            a, b, size = _ttfb(host, port, page)
            ttfb.append(a)
            total.append(b)
            sizes.append(size)
        print(
            f"session page, {last} events, {sizes[-1] / 1024:.0f} KiB: TTFB p50 {statistics.median(ttfb):.1f} ms, "
            f"p95 {_pct(ttfb, 0.95):.1f} ms, max {max(ttfb):.1f} ms; whole page p50 "
            f"{statistics.median(total):.1f} ms ({args.requests} requests, one at a time)",
            flush=True,
        )

        # 2. concurrent SSE followers
        stream = f"/api/sessions/{sid}/stream"
        for n in [int(x) for x in args.followers.split(",")]:
            halves = [n // 2, n - n // 2]
            clients = [
                subprocess.Popen(
                    [sys.executable, __file__, "--client", host, str(port), stream, str(k)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    cwd=ROOT,
                )
                for k in halves
                if k
            ]
            for c in clients:
                assert c.stdout is not None
                line = c.stdout.readline().decode().strip()
                if line != "ready":
                    raise SystemExit(f"a follower process said {line!r}")

            reference: dict[int, float] = {}

            async def drive(reference: dict[int, float] = reference) -> tuple[int, int]:
                async with Client(
                    bootstrap_servers=bootstrap, topic_prefix=prefix, database_url=url
                ) as client:
                    before = (
                        await client.query(
                            "SELECT max(seq) AS s FROM events WHERE session_id = %s", (sid,)
                        )
                    )[0]["s"]
                    tail = asyncio.create_task(_reference(bootstrap, client, sid, reference))
                    await asyncio.sleep(0.5)
                    end = await _turns(client, sid, args.turns)
                    await asyncio.sleep(0.5)
                    tail.cancel()
                    await asyncio.gather(tail, return_exceptions=True)
                    return int(before or 0), end

            start_seq, end_seq = asyncio.run(drive())
            time.sleep(1.0)
            deliveries: list[tuple[int, float, float]] = []
            for c in clients:
                assert c.stdin is not None and c.stdout is not None
                c.stdin.write(b"stop\n")
                c.stdin.flush()
                deliveries += [tuple(d) for d in json.loads(c.stdout.readline())]
                c.wait(30)
            expected = n * (end_seq - start_seq)
            # The console's own part: read by a follower − read by a plain consumer.
            latencies = [(t - reference[q]) * 1000.0 for q, t, _ in deliveries if q in reference]
            e2e = [(t - at) * 1000.0 for _, t, at in deliveries]
            ref_e2e = [
                (reference[q] - at) * 1000.0
                for q, at in {q: at for q, _, at in deliveries}.items()
                if q in reference
            ]
            p99 = _pct(latencies, 0.99)
            print(
                f"{n} followers: {len(deliveries)}/{expected} event deliveries; added by the "
                f"console (follower read − plain consumer read) p50 {_pct(latencies, 0.5):.1f} ms, "
                f"p99 {p99:.1f} ms, max {max(latencies, default=0):.1f} ms; end to end (− the "
                f"event's occurred_at) p50 {_pct(e2e, 0.5):.1f} ms, p99 {_pct(e2e, 0.99):.1f} ms "
                f"(a plain consumer: p50 {_pct(ref_e2e, 0.5):.1f}, p99 {_pct(ref_e2e, 0.99):.1f})",
                flush=True,
            )
            if p99 >= 100 or len(deliveries) < expected:
                break
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        asyncio.run(delete_topics(bootstrap, prefix))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


if __name__ == "__main__":
    main()
