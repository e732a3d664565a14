"""Session-worker benchmark: turns/s, per-hop latency, and bytes per turn.

    .venv/bin/python bench/turns.py [--sessions 10,100,1000] [--seconds 15]
        [--rates 50,100] [--bytes-turns 1000] [--partitions 8] [--fetch-wait-ms 20]
        [--repeat 1] [--slices 1] [--tracing off|on|ab] [--write]

Needs a Kafka broker (KAFKA_BOOTSTRAP_SERVERS, by default the `turnlog dev up` one).
Every run creates topics under a fresh prefix and deletes them afterwards.

The worker is ONE `python -m turnlog worker session` subprocess (exactly what `turnlog worker session`
runs: consumer, per-partition transactional producers, effect runner), with the `calc`
agent of tests/data/agents.toml on the scripted provider at zero latency. A turn is
user message → LLM (asks for the calculator) → calculator → LLM → answer: 4 inputs, 9
events. This process is the client: it drives N sessions, reads the events topic with a
read_committed consumer, and the requests topic for the inputs' creation times.

1. Throughput at each N, closed loop: a session's next message is sent the moment its
   TurnCompleted is seen, so the worker is saturated; turns/s = TurnCompleted events seen
   per second over `--seconds`, after every session completed a first turn (warm-up).
   Hop latency there is queueing: N outstanding hops / hops per second (Little's law).
2. Per-hop latency at each N and each `--rates` (turns/s offered by all N sessions
   together, below saturation: a session sends its next message N/rate seconds after
   the previous one): for each input (the user's message and each effect outcome the
   worker reported), the time from its creation (the request's occurred_at, stamped by
   its sender — this client, or the effect runner when the outcome exists — on the
   machine's one clock) to the first event it caused becoming visible here; p50/p99.
   (Not the record's Kafka timestamp: the requests topic stamps the broker's append
   time, which leaves out the sender's own produce.)
3. Bytes per turn: one session runs `--bytes-turns` turns back to back; for turns 10,
   100, 1000 it prints the bytes written to Kafka for that turn (key + value + headers
   of its events and of its inputs). Flat = storage grows linearly with the session.

Each run also prints a hop split at the CreateTime of the event the input caused (set
by the worker's producer inside the transaction): input → decided (fetch, queue, decide)
and decided → visible (commit, fetch).
CPU per turn (worker, broker JVM, this client; from /proc) is printed beside each run:
on a 2-core machine the three compete, so it says where the time went. The client reads
the requests topic only for the inputs' creation times, in 100 ms lumps, so that it does not add
a fetch per input to the broker's and the cores' load; the events topic, whose timing is
the measurement, is read with `--fetch-wait-ms`.
BENCH_WORKER_ARGV replaces the worker's `-m turnlog worker session` (e.g. to run it under cProfile).

`--tracing on` runs the worker with OpenTelemetry tracing on (OTEL_TRACES_EXPORTER=otlp,
spans exported over OTLP/HTTP to a receiver in this process that counts and discards
them); `--tracing ab` measures the tracing overhead: every (N, load) run is a group of
three runs — off, on (every turn traced), and on with the trace-id ratio sampler at
`--sample-ratio` (OTEL_TRACES_SAMPLER=traceidratio: that share of the turns traced,
whole) — interleaved (the order rotates by repetition, so drift of the shared machine
falls on all three), and it prints the worker's CPU per turn of each and the overhead;
`--write` leaves the "Tracing overhead" section of BENCHMARKS.md alone: bench/tracing.py
(the same runs, its OTLP sink in a process of its own) writes it.

Prints the figures; `--write` also replaces the "Session worker" section of
BENCHMARKS.md. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.events import TurnCompleted
from bench._report import write_section
from schemas.codec import decode_event, decode_request, decode_snapshot, encode_request
from streams.topics import TopicNames, delete_topics, ensure_topics
from tests.support.harness import (
    WorkerProcess,
    read_records,
    scripted_script,
    user_message,
    worker_env,
)

SECTION = "## Session worker"
TRACING_SECTION = "## Tracing overhead"
# Extra environment of the worker subprocess (the tracing runs set OTEL_* here).
WORKER_ENV: dict[str, str] = {}
# The client's fetch.max.wait.ms (set from --fetch-wait-ms): how long the broker may hold
# an empty fetch; it bounds how late the client can notice an event.
FETCH_WAIT_MS = [20]
# --slices: how many equal parts of the measurement window get a p50 of their own.
SLICES = [1]
# The requests topic is read only for the inputs' creation times (occurred_at), which
# do not depend on when they are read: that consumer fetches in 100 ms lumps instead of
# once per record, so the client does not load the shared broker and cores with a fetch
# per input. (Its last lump is in by the time a window is evaluated, 0.5 s after it.)
REQUESTS_FETCH_WAIT_MS = 100


# The worker's counters the hop breakdown reads from its /metrics endpoint.
_STAGES = (
    "turnlog_transactions_timed",
    "turnlog_transaction_decide_microseconds",
    "turnlog_transaction_write_microseconds",
    "turnlog_transaction_commit_microseconds",
)


def _metrics_url(worker: WorkerProcess) -> str | None:
    """The worker's /metrics (its log says which port it bound), or None."""
    for rec in worker.log_records():
        if rec.get("event") == "endpoint.listening" and rec.get("port"):
            return f"http://127.0.0.1:{rec['port']}/metrics"
    return None


def _scrape(url: str | None) -> dict[str, float]:
    """The breakdown's counters from the worker's /metrics, by name (empty: unreadable,
    e.g. a revision before them)."""
    if url is None:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.removesuffix("_total") in _STAGES:
                out[sample.name.removesuffix("_total")] = sample.value
    return out


def _stages(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean ms per transaction of each stage over the window; NaN where the worker does
    not report them (a revision before the counters)."""

    def delta(name: str) -> float:
        if name not in before or name not in after:
            return float("nan")
        return after[name] - before[name]

    n = delta("turnlog_transactions_timed")

    def per(name: str) -> float:
        return delta(name) / n / 1000.0 if n > 0 else float("nan")

    return {
        "txn_decide_ms": per("turnlog_transaction_decide_microseconds"),
        "txn_write_ms": per("turnlog_transaction_write_microseconds"),
        "txn_commit_ms": per("turnlog_transaction_commit_microseconds"),
        "transactions": n,
    }


def _record_bytes(rec: Any) -> int:
    headers = sum(len(k) + len(v or b"") for k, v in rec.headers or ())
    key, value = int(rec.serialized_key_size), int(rec.serialized_value_size)
    return max(key, 0) + max(value, 0) + headers


def _cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by process `pid` (None: this one)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _threads_cpu_s(pid: int) -> float:
    """CPU seconds of the threads of `pid` other than its main thread (the event loop):
    with tracing on, chiefly the OpenTelemetry exporter's (Python names no OS thread,
    so they cannot be told apart by name)."""
    total = 0.0
    try:
        tasks = [t for t in Path(f"/proc/{pid}/task").iterdir() if t.name != str(pid)]
    except OSError:
        return float("nan")
    for task in tasks:
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _broker_pid() -> int | None:
    """The `turnlog dev` broker's pid, when it runs on this machine."""
    try:
        return int((ROOT / ".turnlog" / "kafka" / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Observed:
    """What the client saw: events by arrival, inputs by produce time."""

    turns_done: list[float] = field(default_factory=list)  # monotonic times
    first_effect_at: dict[tuple[str, str], float] = field(default_factory=dict)  # wall ms
    # CreateTime of that first event: when the worker's producer took it, inside the
    # transaction (splits a hop into input → decided, and decided → visible).
    first_effect_ts: dict[tuple[str, str], int] = field(default_factory=dict)
    input_ts: dict[tuple[str, str], float] = field(default_factory=dict)  # occurred_at ms
    event_bytes_by_turn: dict[str | None, int] = field(default_factory=lambda: defaultdict(int))
    input_bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    turn_of_input: dict[tuple[str, str], str | None] = field(default_factory=dict)
    events: int = 0


class Client:
    """Drives sessions (closed loop) and observes both topics."""

    def __init__(self, bootstrap: str, names: TopicNames, partitions: int) -> None:
        self.names = names
        self.obs = Observed()
        self.turn_of: dict[str, int] = {}
        self.last_done: dict[str, float] = {}
        self.target_turns: int | None = None
        # Paced mode: a session sends its next message `interval_s` after the previous
        # one (or when its turn completes, if that is later): the offered load is then
        # N / interval_s turns/s, below saturation, which is where latency means anything.
        self.interval_s: float | None = None
        self.next_slot: dict[str, float] = {}
        self._timers: set[asyncio.Task[None]] = set()
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            client_id="bench-client",
        )
        common: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "enable_auto_commit": False,
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            "isolation_level": "read_committed",
        }
        self.events = AIOKafkaConsumer(
            client_id="bench-events", fetch_max_wait_ms=FETCH_WAIT_MS[0], **common
        )
        self.requests = AIOKafkaConsumer(
            client_id="bench-requests",
            fetch_max_wait_ms=REQUESTS_FETCH_WAIT_MS,
            fetch_min_bytes=8 * 1024 * 1024,
            **common,
        )
        self.partitions = partitions
        self._pending: list[Any] = []
        self._stop = asyncio.Event()

    async def start(self) -> None:
        await self.producer.start()
        for consumer, topic in (
            (self.events, self.names.events),
            (self.requests, self.names.requests),
        ):
            await consumer.start()
            tps = [TopicPartition(topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)

    async def stop(self) -> None:
        self._stop.set()
        for task in list(self._timers):
            task.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.producer.stop()
        await self.events.stop()
        await self.requests.stop()

    def schedule_turn(self, session_id: str) -> None:
        """The session's next message: now (closed loop) or at its next slot (paced)."""
        if self.interval_s is None:
            task = asyncio.create_task(self.send_turn(session_id))
        else:
            slot = self.next_slot.get(session_id, time.monotonic())
            self.next_slot[session_id] = max(slot, time.monotonic()) + self.interval_s
            task = asyncio.create_task(self._send_at(slot, session_id))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _send_at(self, at: float, session_id: str) -> None:
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # the pacing schedule, not a synchronisation
        await self.send_turn(session_id)

    async def send_turn(self, session_id: str, *, first: bool = False) -> None:
        if first and self.interval_s is not None:
            self.next_slot[session_id] = time.monotonic() + self.interval_s
        turn = self.turn_of.get(session_id, 0) + 1
        self.turn_of[session_id] = turn
        req = user_message(
            session_id, f"turn {turn}: what is 6*7?", agent="calc" if first else None, turn=turn
        )
        # Not awaited: the client keeps observing while the broker acknowledges.
        self._pending.append(
            await self.producer.send(
                self.names.requests, value=encode_request(req), key=session_id.encode()
            )
        )
        if len(self._pending) > 2000:
            done = [f for f in self._pending if f.done()]
            self._pending = [f for f in self._pending if not f.done()]
            for f in done:
                f.result()

    async def observe_requests(self) -> None:
        while not self._stop.is_set():
            batch = await self.requests.getmany(timeout_ms=50, max_records=20_000)
            for recs in batch.values():
                for rec in recs:
                    req = decode_request(rec.value)
                    key = (req.session_id, req.request_id)
                    self.obs.input_ts[key] = req.occurred_at.timestamp() * 1000.0
                    self.obs.input_bytes[key] = _record_bytes(rec)

    async def observe_events(self) -> None:
        while not self._stop.is_set():
            batch = await self.events.getmany(timeout_ms=50, max_records=20_000)
            now_wall = time.time() * 1000
            now = time.monotonic()
            for recs in batch.values():
                for rec in recs:
                    ev = decode_event(rec.value)
                    self.obs.events += 1
                    self.obs.event_bytes_by_turn[ev.turn_id] += _record_bytes(rec)
                    if ev.causation_id is not None:
                        key = (ev.session_id, ev.causation_id)
                        if key not in self.obs.first_effect_at:
                            self.obs.first_effect_at[key] = now_wall
                            self.obs.first_effect_ts[key] = rec.timestamp
                            self.obs.turn_of_input[key] = ev.turn_id
                    if isinstance(ev.payload, TurnCompleted):
                        self.obs.turns_done.append(now)
                        self.last_done[ev.session_id] = now
                        if self.target_turns is None or ev.payload.turn_no < self.target_turns:
                            self.schedule_turn(ev.session_id)

    def _hops(self, since_wall_ms: float, until_wall_ms: float) -> list[tuple[float, int, float]]:
        """(input produced, its first event produced by the worker, that event seen
        here) for each input produced in the window, in ms."""
        out = []
        for key, seen in self.obs.first_effect_at.items():
            ts = self.obs.input_ts.get(key)
            if ts is not None and since_wall_ms <= ts <= until_wall_ms:
                out.append((ts, self.obs.first_effect_ts[key], seen))
        return out

    def split_ms(
        self, since_wall_ms: float, until_wall_ms: float
    ) -> tuple[list[float], list[float]]:
        """Each hop of the window in two: input produced → its first event produced by
        the worker (fetch, queue, decide), and that → visible here (commit, fetch)."""
        hops = self._hops(since_wall_ms, until_wall_ms)
        return [p - ts for ts, p, _ in hops], [seen - p for _, p, seen in hops]

    def latencies_ms(self, since_wall_ms: float, until_wall_ms: float) -> list[float]:
        return [seen - ts for ts, _, seen in self._hops(since_wall_ms, until_wall_ms)]


async def _with_worker(bootstrap: str, partitions: int, tmp: Path, body: Any) -> Any:
    prefix = f"bench{secrets.token_hex(3)}."
    names = (await ensure_topics(bootstrap, prefix, partitions=partitions)).names
    script = scripted_script(tmp, latency_ms=0)
    env = worker_env(
        bootstrap, prefix, partitions=partitions, script=script, sandbox=tmp, extra=WORKER_ENV
    )
    # BENCH_WORKER_ARGV replaces `-m turnlog worker session`, e.g.
    # "-m cProfile -o w.prof -m turnlog worker session".
    argv = os.environ.get("BENCH_WORKER_ARGV", "-m turnlog worker session").split()
    worker = WorkerProcess("bench", env, tmp / f"worker-{prefix}log", argv=argv).start()
    client = Client(bootstrap, names, partitions)
    try:
        await worker.wait_assigned(at_least=partitions)
        await client.start()
        return await body(client, worker)
    finally:
        await client.stop()
        worker.terminate()
        await delete_topics(bootstrap, prefix)


async def load_run(
    bootstrap: str, partitions: int, n: int, seconds: float, tmp: Path, rate: float | None = None
) -> dict[str, float]:
    """N sessions for `seconds` after warm-up: closed loop (rate None) or paced at
    `rate` turns/s in total."""

    async def body(client: Client, worker: WorkerProcess) -> dict[str, float]:
        client.interval_s = None if rate is None else n / rate
        observers = [
            asyncio.create_task(client.observe_events()),
            asyncio.create_task(client.observe_requests()),
        ]
        try:
            for i in range(n):
                await client.send_turn(f"b{n}-{i:05d}", first=True)
                if rate is not None:
                    await asyncio.sleep(1 / rate)  # spread the first turns like the rest
            warm_deadline = time.monotonic() + 120
            while len(client.obs.turns_done) < n:
                if time.monotonic() > warm_deadline or not worker.alive:
                    raise RuntimeError(f"warm-up did not finish:\n{worker.tail()}")
                await asyncio.sleep(0.05)  # polling the client's own counters
            pids = {"worker": worker.pid, "broker": _broker_pid(), "client": None}
            metrics_url = _metrics_url(worker)
            stages0 = await asyncio.to_thread(_scrape, metrics_url)
            cpu0 = {k: _cpu_s(p) for k, p in pids.items()}
            export0 = _threads_cpu_s(worker.pid)
            t0, w0 = time.monotonic(), time.time() * 1000
            done0 = len(client.obs.turns_done)
            await asyncio.sleep(seconds)  # the measurement window
            t1, w1 = time.monotonic(), time.time() * 1000
            cpu = {k: _cpu_s(p) - cpu0[k] for k, p in pids.items()}
            cpu["threads"] = _threads_cpu_s(worker.pid) - export0
            stages = _stages(stages0, await asyncio.to_thread(_scrape, metrics_url))
            done = len([t for t in client.obs.turns_done[done0:] if t <= t1])
            await asyncio.sleep(0.5)  # let the window's last hops become visible
            lat = client.latencies_ms(w0, w1 - 200)
            decided, visible = client.split_ms(w0, w1 - 200)
            # The window in equal slices, each hop by its input's produce time: whether
            # latency drifts as the sessions grow.
            step = (w1 - w0) / SLICES[0]
            slices = (
                [
                    _pct(client.latencies_ms(w0 + k * step, w0 + (k + 1) * step), 0.50)
                    for k in range(SLICES[0])
                ]
                if SLICES[0] > 1
                else []
            )
            # A sanity check on the worker, not a figure: every session kept moving (when
            # its pace lets it complete a turn within the window at all).
            paced_out = client.interval_s is not None and client.interval_s * 1.5 > seconds
            stalled = 0 if paced_out else sum(1 for t in client.last_done.values() if t < t0)
            return {
                "n": n,
                "rate": rate or 0.0,
                "turns": done,
                "seconds": t1 - t0,
                "turns_s": done / (t1 - t0),
                "hops": len(lat),
                "p50": _pct(lat, 0.50),
                "p99": _pct(lat, 0.99),
                "mean": statistics.fmean(lat) if lat else float("nan"),
                **{f"cpu_{k}": v * 1000 / max(done, 1) for k, v in cpu.items()},
                "load": os.getloadavg()[0],
                "stalled": stalled,
                "slices": slices,
                "decided_p50": _pct(decided, 0.50),
                "decided_p99": _pct(decided, 0.99),
                "visible_p50": _pct(visible, 0.50),
                "visible_p99": _pct(visible, 0.99),
                **stages,
            }
        finally:
            for task in observers:
                task.cancel()
            await asyncio.gather(*observers, return_exceptions=True)

    result: dict[str, float] = await _with_worker(bootstrap, partitions, tmp, body)
    return result


async def bytes_per_turn(bootstrap: str, partitions: int, turns: int, tmp: Path) -> dict[str, Any]:
    async def body(client: Client, worker: WorkerProcess) -> dict[str, Any]:
        client.target_turns = turns
        observers = [
            asyncio.create_task(client.observe_events()),
            asyncio.create_task(client.observe_requests()),
        ]
        try:
            started = time.monotonic()
            await client.send_turn("bytes-session", first=True)
            deadline = started + 900
            while len(client.obs.turns_done) < turns:
                if time.monotonic() > deadline or not worker.alive:
                    raise RuntimeError(f"{turns} turns did not finish:\n{worker.tail()}")
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.5)  # the last inputs' records reach the client
            per_turn: dict[int, int] = defaultdict(int)
            for turn_id, size in client.obs.event_bytes_by_turn.items():
                if turn_id is not None:
                    per_turn[int(turn_id.rsplit(":t", 1)[1])] += size
            for key, size in client.obs.input_bytes.items():
                turn_id = client.obs.turn_of_input.get(key)
                if turn_id is not None:
                    per_turn[int(turn_id.rsplit(":t", 1)[1])] += size
            session_bytes = client.obs.event_bytes_by_turn.get(None, 0)
            # Snapshots of the session (the topic is not compacted yet, so every one
            # written is there), each counted in the turn its seq ends: a turn is the
            # same number of events here (SessionStarted aside).
            records = [
                r
                for r in await read_records(bootstrap, client.names.snapshots)
                if r.key == b"bytes-session"
            ]
            seqs = [decode_snapshot(r.value).payload.seq for r in records]
            per_turn_events = (max(seqs, default=1) - 1) / max(1, turns)
            snaps: dict[int, int] = defaultdict(int)
            for r, seq in zip(records, seqs, strict=True):
                snaps[max(1, round((seq - 1) / per_turn_events))] += _record_bytes(r)
            return {
                "per_turn": dict(per_turn),
                "elapsed": elapsed,
                "outside_turns": session_bytes,
                "snapshots": dict(snaps),
            }
        finally:
            for task in observers:
                task.cancel()
            await asyncio.gather(*observers, return_exceptions=True)

    result: dict[str, Any] = await _with_worker(bootstrap, partitions, tmp, body)
    return result


def _window_mean(per_turn: dict[int, int], upto: int, width: int = 10) -> float:
    values = [per_turn.get(t, 0) for t in range(max(1, upto - width + 1), upto + 1)]
    return statistics.fmean(values) if values else float("nan")


async def tracing_ab(args: argparse.Namespace, bootstrap: str) -> None:
    """Worker CPU per turn with tracing off and on, pairs interleaved in one run."""
    from tests.integration.otlp_receiver import OtlpReceiver

    sizes = [int(x) for x in args.sessions.split(",") if x]
    # 0 is the closed loop here (saturated: the steadiest CPU per turn on a busy machine).
    rates: list[float | None] = [
        float(x) if float(x) else None for x in args.rates.split(",") if x
    ] or [None]
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="turnlog-bench-") as tmpdir,
        OtlpReceiver(keep=False) as sink,
    ):
        tmp = Path(tmpdir)
        on_env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.traces_endpoint,
        }
        sampled = f"on {args.sample_ratio:g}"
        envs = {
            "off": {},
            "on": on_env,
            sampled: {
                **on_env,
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": str(args.sample_ratio),
            },
        }
        modes = list(envs)
        for n in sizes:
            for rate in rates:
                for rep in range(args.repeat):
                    order = modes[rep % 3 :] + modes[: rep % 3]
                    for mode in order:
                        WORKER_ENV.clear()
                        WORKER_ENV.update(envs[mode])
                        before = sink.requests, sink.bytes
                        r = await load_run(bootstrap, args.partitions, n, args.seconds, tmp, rate)
                        r.update(
                            {
                                "tracing": mode,
                                "pair": rep,
                                "exports": sink.requests - before[0],
                                "export_kb": (sink.bytes - before[1]) / 1024,
                            }
                        )
                        rows.append(r)
                        load = "closed loop" if rate is None else f"paced {rate:g} turns/s"
                        print(
                            f"N={n:>5} {load:>20} tracing {mode:>6}: worker CPU "
                            f"{r['cpu_worker']:.2f} ms/turn (other threads than the loop's "
                            f"{r['cpu_threads']:.2f}), {r['turns_s']:.1f} turns/s, "
                            f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms; exported "
                            f"{r['export_kb']:.0f} KB in {int(r['exports'])} requests; "
                            f"load avg {r['load']:.1f}",
                            flush=True,
                        )
    summary = _tracing_summary(rows)
    for line in summary:
        print(line)
    WORKER_ENV.clear()
    if args.write:  # the section's format is bench/tracing.py's: it is not overwritten
        print(f"not written: the {TRACING_SECTION[3:]!r} section is bench/tracing.py --write's")


def _tracing_summary(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    groups: dict[tuple[int, float], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(int(r["n"]), r["rate"] or 0.0)].append(r)
    for (n, rate), runs in groups.items():
        load = "closed loop" if not rate else f"paced {rate:g} turns/s"
        off = [r["cpu_worker"] for r in runs if r["tracing"] == "off"]
        med_off = statistics.median(off)
        groups_of = defaultdict(dict)  # type: ignore[var-annotated]
        for r in runs:
            groups_of[r["pair"]][r["tracing"]] = r
        for mode in dict.fromkeys(r["tracing"] for r in runs):
            if mode == "off":
                continue
            on = [r["cpu_worker"] for r in runs if r["tracing"] == mode]
            per_group = [
                100 * (g[mode]["cpu_worker"] / g["off"]["cpu_worker"] - 1)
                for g in groups_of.values()
                if mode in g and "off" in g
            ]
            tput = [
                100 * (g[mode]["turns_s"] / g["off"]["turns_s"] - 1)
                for g in groups_of.values()
                if mode in g and "off" in g
            ]
            med_on = statistics.median(on)
            out.append(
                f"N = {n}, {load}, tracing {mode}: worker CPU per turn, median of {len(on)} "
                f"runs: {med_on:.2f} ms against {med_off:.2f} ms off, overhead "
                f"{100 * (med_on / med_off - 1):+.1f} % (by repetition: "
                f"{', '.join(f'{x:+.1f} %' for x in per_group)}); turns/s "
                f"{statistics.median(tput):+.1f} % (median)"
            )
    return out


async def main_async(args: argparse.Namespace) -> None:
    from turnlog.settings import load_settings

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or load_settings().kafka_bootstrap_servers
    if args.tracing == "ab":
        await tracing_ab(args, bootstrap)
        return
    if args.tracing == "on":
        from tests.integration.otlp_receiver import OtlpReceiver

        sink = OtlpReceiver(keep=False).__enter__()  # lives as long as the run
        WORKER_ENV.update(
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.traces_endpoint,
            }
        )
    sizes = [int(x) for x in args.sessions.split(",") if x]
    rows = []
    with tempfile.TemporaryDirectory(prefix="turnlog-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for n in sizes:
            rates = (None, *(float(x) for x in args.rates.split(",") if float(x or 0)))
            for rate in (r for r in rates for _ in range(args.repeat)):
                r = await load_run(bootstrap, args.partitions, n, args.seconds, tmp, rate)
                rows.append(r)
                mode = "closed loop" if rate is None else f"paced at {rate:g} turns/s"
                print(
                    f"N={n:>5} {mode:>24}: {r['turns_s']:7.1f} turns/s ({int(r['turns'])} "
                    f"turns in {r['seconds']:.1f} s); per-hop p50 {r['p50']:.1f} ms, "
                    f"p99 {r['p99']:.1f} ms (mean {r['mean']:.1f} ms, {int(r['hops'])} hops)\n"
                    f"{'':32}CPU ms per turn: worker {r['cpu_worker']:.2f}, broker "
                    f"{r['cpu_broker']:.2f}, client {r['cpu_client']:.2f}; "
                    f"load avg {r['load']:.1f}; sessions with no turn in the window: "
                    f"{int(r['stalled'])}",
                    flush=True,
                )
                print(
                    f"{'':32}hop split, p50/p99: input → event produced by the worker "
                    f"{r['decided_p50']:.1f}/{r['decided_p99']:.1f} ms, → visible here "
                    f"{r['visible_p50']:.1f}/{r['visible_p99']:.1f} ms",
                    flush=True,
                )
                if r.get("transactions", 0) > 0:
                    print(
                        f"{'':32}per transaction ({int(r['transactions'])}): decide "
                        f"{r['txn_decide_ms']:.2f} ms, write (records acknowledged) "
                        f"{r['txn_write_ms']:.2f} ms, commit (EndTxn) {r['txn_commit_ms']:.2f} ms",
                        flush=True,
                    )
                if r["slices"]:
                    print(
                        f"{'':32}p50 by slice of the window: "
                        + ", ".join(f"{v:.1f}" for v in r["slices"])
                        + " ms",
                        flush=True,
                    )
        b = None
        if args.bytes_turns:
            b = await bytes_per_turn(bootstrap, args.partitions, args.bytes_turns, tmp)
            per_turn = b["per_turn"]
            print(
                f"one session, {args.bytes_turns} turns back to back in {b['elapsed']:.1f} s "
                f"({args.bytes_turns / b['elapsed']:.1f} turns/s)"
            )
            for t in (10, 100, 1000):
                if t <= args.bytes_turns:
                    print(
                        f"  turn {t:>4}: {per_turn.get(t, 0):>6} bytes "
                        f"(mean of turns {max(1, t - 9)}..{t}: {_window_mean(per_turn, t):.0f})"
                        f"; snapshots, mean of the 100 turns up to it: "
                        f"{_window_mean(b['snapshots'], t, 100):.0f}"
                    )
    if args.write:
        write_section(SECTION, _markdown(args, rows, b))


def _markdown(
    args: argparse.Namespace, rows: list[dict[str, float]], b: dict[str, Any] | None
) -> str:
    cmd = (
        f".venv/bin/python bench/turns.py --sessions {args.sessions} --seconds "
        f"{args.seconds:g} --rates {args.rates} --bytes-turns {args.bytes_turns} "
        f"--partitions {args.partitions} --fetch-wait-ms {args.fetch_wait_ms}"
        + (f" --repeat {args.repeat}" if args.repeat > 1 else "")
    )
    lines = [
        SECTION,
        "",
        f"Command: `{cmd} --write`",
        "",
        (
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
            f"({platform.machine()}, Python {platform.python_version()}), the `turnlog dev` "
            "Kafka on the same machine and shared with other engineers' test runs (the load "
            "average column says how busy it was; figures move with it). One session-worker "
            f"process (`python -m turnlog worker session` subprocess, {args.partitions} partitions), scripted "
            "model at zero "
            "latency, turns of user message → LLM → calculator → LLM → answer (4 inputs, 9 "
            "events)."
        ),
        "",
        (
            "| sessions (N) | offered load | turns/s | per-hop p50 | per-hop p99 | hops | CPU ms/turn "
            "worker / broker / client | load avg |"
        ),
        "|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        mode = "closed loop" if not r["rate"] else f"paced {r['rate']:g} turns/s"
        lines.append(
            f"| {int(r['n'])} | {mode} | {r['turns_s']:.0f} | {r['p50']:.1f} ms | "
            f"{r['p99']:.1f} ms | {int(r['hops'])} | {r['cpu_worker']:.2f} / "
            f"{r['cpu_broker']:.2f} / {r['cpu_client']:.2f} | {r['load']:.1f} |"
        )
    if args.repeat > 1:
        lines += ["", f"Spread over the {args.repeat} runs of each pair:", ""]
        groups: dict[tuple[int, float], list[dict[str, float]]] = defaultdict(list)
        for r in rows:
            groups[(int(r["n"]), r["rate"] or 0.0)].append(r)
        for (n, rate), runs in groups.items():
            mode = "closed loop" if not rate else f"paced {rate:g} turns/s"
            p50s = sorted(r["p50"] for r in runs)
            p99s = sorted(r["p99"] for r in runs)
            lines.append(
                f"- N = {n}, {mode}: p50 {p50s[0]:.1f}–{p50s[-1]:.1f} ms (median "
                f"{statistics.median(p50s):.1f}), p99 {p99s[0]:.1f}–{p99s[-1]:.1f} ms; "
                f"p50 ≤ 25 ms in {sum(x <= 25 for x in p50s)} of {len(runs)} runs, "
                f"p99 ≤ 150 ms in {sum(x <= 150 for x in p99s)} of {len(runs)}."
            )
    lines += [
        "",
        (
            "Targets: ≥ 150 turns/s, p50 ≤ 25 ms and p99 ≤ 150 ms at N = 100. Closed loop: "
            "each session sends its next message the moment its turn completes, so the worker "
            "is saturated and turns/s is its throughput, while the hop latency there is "
            "queueing (N outstanding hops / hops per second). Paced: the N sessions offer a "
            "fixed total load; that latency is the pipeline's (when a session's own turn "
            "takes longer than N/rate seconds it cannot keep the pace, e.g. N = 10 at 100 "
            "turns/s asks each session for 10 turns a second: the achieved turns/s says so). "
            "A hop is input created (its occurred_at) → first event it caused visible "
            "to a read_committed consumer."
        ),
        "",
        (
            "Where the time goes: the worker's CPU per turn falls as batches grow (closed "
            "loop) because a transaction has a fixed cost (3 requests: AddPartitionsToTxn, "
            "Produce, EndTxn, plus the group offset at most once a second); about half of "
            "what is left is the pure core (decide/evolve, building each LLM request and its "
            "digest once, in decide; the effect sends that object) and the scripted provider, "
            "the rest aiokafka and asyncio. At a paced load the three processes together "
            "need most of the two cores, which is what the tail latency reflects."
        ),
    ]
    if b is not None:
        per_turn = b["per_turn"]
        lines += [
            "",
            (
                "Bytes written to Kafka per turn, one session (events + inputs; key + "
                "value + headers):"
            ),
            "",
            "| turn | bytes | mean of the 10 turns up to it |",
            "|---:|---:|---:|",
        ]
        lines[-2:] = [
            (
                "| turn | bytes | mean of the 10 turns up to it "
                "| snapshot bytes per turn (mean of the 100 turns up to it) |"
            ),
            "|---:|---:|---:|---:|",
        ]
        for t in (10, 100, 1000):
            if t <= args.bytes_turns:
                lines.append(
                    f"| {t} | {per_turn.get(t, 0)} | {_window_mean(per_turn, t):.0f} "
                    f"| {_window_mean(b['snapshots'], t, 100):.0f} |"
                )
        lines += [
            "",
            (
                "A snapshot holds the session's state, zlib-compressed: it grows with the "
                "session, so a session is snapshotted again only once it has written "
                "its last snapshot's size in events; compaction keeps the latest one."
            ),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions", default="10,100,1000", help="comma-separated session counts N"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window")
    parser.add_argument(
        "--rates",
        default="50,100",
        help="offered loads (turns/s, all sessions together) of the paced "
        "latency runs, comma-separated; 0 skips them",
    )
    parser.add_argument(
        "--bytes-turns",
        type=int,
        default=1000,
        help="turns of the single-session storage run (0: skip)",
    )
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each (N, load) pair; each is a row (latency varies "
        "from run to run on a shared 2-core machine)",
    )
    parser.add_argument(
        "--slices",
        type=int,
        default=1,
        help="also print the p50 of each of this many equal parts of the window",
    )
    parser.add_argument(
        "--fetch-wait-ms", type=int, default=20, help="the client consumers' fetch.max.wait.ms"
    )
    parser.add_argument(
        "--tracing",
        choices=("off", "on", "ab"),
        default="off",
        help="OpenTelemetry tracing in the worker: off, on (spans exported "
        "to a discarding OTLP receiver here), or ab: pairs of runs off "
        "and on, interleaved, and the overhead",
    )
    parser.add_argument(
        "--sample-ratio",
        type=float,
        default=0.1,
        help="--tracing ab: the trace-id ratio of the sampled arm",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="update the Session worker section of BENCHMARKS.md (not with --tracing ab: "
        "bench/tracing.py writes the Tracing overhead section)",
    )
    args = parser.parse_args()
    FETCH_WAIT_MS[0] = args.fetch_wait_ms
    SLICES[0] = max(1, args.slices)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
