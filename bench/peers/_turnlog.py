"""turnlog's side of the comparison, on bench/turns.py's machinery (one `turnlog worker
session` subprocess, the calc agent on the scripted provider at zero latency, this
process the client).

What is added here: the turn latency (the client's send of the user message → its
TurnCompleted seen by the client's read_committed consumer), the broker's log segment
bytes (on disk) at the turns of the bytes run, and the rebuild and resume of the
1,000-turn session.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.evolve import evolve
from agents.fold import fold
from agents.snapshots import state_of
from bench import turns
from schemas.codec import decode_event, decode_snapshot
from streams.partitioning import partition_for
from streams.topics import TopicNames, delete_topics, ensure_topics
from tests.support.harness import WorkerProcess, scripted_script, worker_env

ROOT = Path(__file__).resolve().parents[2]
KAFKA_DATA = ROOT / ".turnlog" / "kafka" / "data"
SESSION = "bytes-session"


class TurnClient(turns.Client):
    """bench/turns.py's client, also timing each turn: send of the user message → its
    TurnCompleted seen here (the same span a peer's caller waits for)."""

    # The clients made (a run builds its own) and the sessions each run drives.
    made: ClassVar[list[TurnClient]] = []
    expect_sessions: ClassVar[int] = 1

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        TurnClient.made.append(self)
        self.sent_at: dict[tuple[str, int], float] = {}
        self.turn_ms: list[tuple[float, float]] = []  # (sent, latency ms)
        self.warm_at: float | None = None
        self.answered: set[str] = set()
        self.n_sessions = TurnClient.expect_sessions
        self.on_turn: Any = None  # called with (session, turn) before the next is sent

    async def send_turn(self, session_id: str, *, first: bool = False) -> None:
        self.sent_at[(session_id, self.turn_of.get(session_id, 0) + 1)] = time.monotonic()
        await super().send_turn(session_id, first=first)

    def schedule_turn(self, session_id: str) -> None:
        now = time.monotonic()
        turn = self.turn_of.get(session_id, 0)
        sent = self.sent_at.pop((session_id, turn), None)
        if sent is not None:
            self.turn_ms.append((sent, (now - sent) * 1000))
        self.answered.add(session_id)
        if self.warm_at is None and len(self.answered) >= self.n_sessions:
            self.warm_at = now
        if self.on_turn is not None:
            self.on_turn(session_id, turn)
        super().schedule_turn(session_id)


@contextmanager
def _turn_client() -> Iterator[None]:
    """bench/turns.py's runs build their client from its module's `Client`: this one
    for the duration of a run (nothing in bench/turns.py changes)."""
    plain = turns.Client
    turns.Client = TurnClient  # type: ignore[misc]
    try:
        yield
    finally:
        turns.Client = plain  # type: ignore[misc]


async def load(
    bootstrap: str, n: int, seconds: float, tmp: Path, rate: float | None, partitions: int
) -> dict[str, Any]:
    """bench/turns.load_run (closed loop, or paced at `rate`) plus the turn latency."""
    TurnClient.made.clear()
    TurnClient.expect_sessions = n
    with _turn_client():
        r = await turns.load_run(bootstrap, partitions, n, seconds, tmp, rate)
    client = TurnClient.made[-1]
    # Turns sent once every session had its first answer, and early enough in the run
    # for their answer to count (the run ends 0.5 s after its window).
    last = max(sent for sent, _ in client.turn_ms) - 1.0 if client.turn_ms else 0
    window = [ms for sent, ms in client.turn_ms if (client.warm_at or 0) <= sent <= last]
    return {
        "turns_s": r["turns_s"],
        "turns": r["turns"],
        "turn_p50": turns._pct(window, 0.5),
        "turn_p99": turns._pct(window, 0.99),
        "step_p50": r["p50"],
        "step_p99": r["p99"],
        "decided_p50": r["decided_p50"],
        "visible_p50": r["visible_p50"],
        "decided_p99": r["decided_p99"],
        "visible_p99": r["visible_p99"],
        "txn_decide_ms": r.get("txn_decide_ms", float("nan")),
        "txn_write_ms": r.get("txn_write_ms", float("nan")),
        "txn_commit_ms": r.get("txn_commit_ms", float("nan")),
        "cpu_worker_ms": r["cpu_worker"],
        "cpu_broker_ms": r["cpu_broker"],
        "cpu_client_ms": r["cpu_client"],
        "load": r["load"],
    }


def _segment_bytes(prefix: str, topic: str = "") -> int:
    """Bytes of the log segments (.log files) of this run's topics (or of one of them) in
    the dev broker's data directory: what the broker stores, batch headers and
    transaction markers included."""
    total = 0
    for d in KAFKA_DATA.glob(f"{prefix}{topic}*"):
        for f in d.glob("*.log"):
            try:
                total += f.stat().st_size
            except OSError:
                continue
    return total


async def bytes_and_recovery(
    bootstrap: str, turns_n: int, tmp: Path, partitions: int
) -> dict[str, Any]:
    """One session, `turns_n` turns back to back: bytes per turn (logical: key + value +
    headers of its events and inputs; on disk: the broker's segment bytes), then its
    state rebuilt (fold of its events; latest snapshot + the events after it) and a next
    turn run by a fresh worker."""
    prefix = f"peers{secrets.token_hex(3)}."
    names = (await ensure_topics(bootstrap, prefix, partitions=partitions)).names
    script = scripted_script(tmp, latency_ms=0)
    env = worker_env(bootstrap, prefix, partitions=partitions, script=script, sandbox=tmp)
    wanted = {t for k in (10, 100, 1000) if k <= turns_n for t in (k - 10, k)}
    disk: dict[int, int] = {0: _segment_bytes(prefix)}
    # The snapshots topic's share: it is compacted (only the latest snapshot of a session
    # stays once its segment rolls), so what it holds at a given turn is not for good.
    snaps_disk: dict[int, int] = {0: 0}
    # The requests topic's share: an input queue with a time retention (transient).
    reqs_disk: dict[int, int] = {0: 0}
    out: dict[str, Any] = {}
    try:
        worker = WorkerProcess("peers", env, tmp / f"worker-{prefix}log").start()
        client = TurnClient(bootstrap, names, partitions)
        client.n_sessions = 1

        def sample(_sid: str, turn: int) -> None:
            if turn in wanted:
                disk[turn] = _segment_bytes(prefix)
                snaps_disk[turn] = _segment_bytes(prefix, "turnlog.snapshots")
                reqs_disk[turn] = _segment_bytes(prefix, "turnlog.requests-")

        client.on_turn = sample
        try:
            await worker.wait_assigned(at_least=partitions)
            await client.start()
            client.target_turns = turns_n
            observers = [
                asyncio.create_task(client.observe_events()),
                asyncio.create_task(client.observe_requests()),
            ]
            started = time.monotonic()
            await client.send_turn(SESSION, first=True)
            deadline = started + 1800
            while len(client.obs.turns_done) < turns_n:
                if time.monotonic() > deadline or not worker.alive:
                    raise RuntimeError(f"{turns_n} turns did not finish:\n{worker.tail()}")
                await asyncio.sleep(0.05)  # polling the client's own counter
            out["elapsed_s"] = time.monotonic() - started
            disk[turns_n] = _segment_bytes(prefix)
            snaps_disk[turns_n] = _segment_bytes(prefix, "turnlog.snapshots")
            reqs_disk[turns_n] = _segment_bytes(prefix, "turnlog.requests-")
            await asyncio.sleep(0.5)  # the last inputs' records reach the client
            for task in observers:
                task.cancel()
            await asyncio.gather(*observers, return_exceptions=True)
        finally:
            await client.stop()
            worker.terminate()
        per_turn: dict[int, int] = defaultdict(int)
        for turn_id, size in client.obs.event_bytes_by_turn.items():
            if turn_id is not None:
                per_turn[int(turn_id.rsplit(":t", 1)[1])] += size
        for key, size in client.obs.input_bytes.items():
            turn_id = client.obs.turn_of_input.get(key)
            if turn_id is not None:
                per_turn[int(turn_id.rsplit(":t", 1)[1])] += size
        for k in (10, 100, 1000):
            if k <= turns_n:
                out[f"logical_{k}"] = per_turn.get(k, 0)
                out[f"disk_{k}"] = (disk[k] - disk[k - 10]) / 10
                out[f"disk_snapshots_{k}"] = (snaps_disk[k] - snaps_disk[k - 10]) / 10
                out[f"disk_requests_{k}"] = (reqs_disk[k] - reqs_disk[k - 10]) / 10
        out["total_disk"] = disk[turns_n]
        # The whole run's mean: what a 10-turn window sees depends on where segments
        # and snapshots fall; the peers' on PostgreSQL's 8 KB pages.
        out["disk_all"] = (disk[turns_n] - disk[0]) / turns_n
        out["disk_snapshots_all"] = (snaps_disk[turns_n] - snaps_disk[0]) / turns_n
        out["disk_requests_all"] = (reqs_disk[turns_n] - reqs_disk[0]) / turns_n
        out.update(await _rebuild(bootstrap, names, partitions))
        out.update(await _resume(bootstrap, names, env, tmp, partitions, turns_n))
    finally:
        await delete_topics(bootstrap, prefix)
    return out


async def _read(bootstrap: str, topic: str, partition: int, start: int | None) -> list[Any]:
    """The records of one partition from `start` to its end, through a consumer that is
    connected before the clock starts (as the peers' pools are)."""
    # streams.logread's consumer settings, but a short fetch wait: under read_committed the
    # read ends on a transaction marker that only an (empty) extra fetch steps over, and
    # a log reader's default 500 ms wait there would be counted as rebuild time.
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        client_id="peers-rebuild",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        fetch_max_wait_ms=5,
        auto_offset_reset="earliest",
    )
    await reader.start()
    try:
        tp = TopicPartition(topic, partition)
        reader.assign([tp])
        # Position first: an assignment starts an offset reset of its own, which must not
        # land after ours (as streams.logread does).
        if start is None:
            await reader.seek_to_beginning(tp)
        else:
            reader.seek(tp, start)
        await reader.end_offsets([tp])  # connected, metadata known
        t0 = time.monotonic()
        end = (await reader.end_offsets([tp]))[tp]
        records: list[Any] = []
        while await reader.position(tp) < end:
            batch = await reader.getmany(tp, timeout_ms=500, max_records=10_000)
            records += [r for r in batch.get(tp, ()) if r.offset < end]
        return [time.monotonic() - t0, records]
    finally:
        await reader.stop()


async def _rebuild(bootstrap: str, names: TopicNames, partitions: int) -> dict[str, float]:
    p = partition_for(SESSION, partitions)
    # Fold: every event of the session, decoded and evolved from the initial state.
    read_s, records = await _read(bootstrap, names.events, p, None)
    t0 = time.monotonic()
    state = fold((decode_event(r.value) for r in records if r.key == SESSION.encode()), SESSION)
    fold_ms = (read_s + time.monotonic() - t0) * 1000
    # Snapshot + tail: the latest snapshot of the session, then the events after it.
    read_snap_s, snaps = await _read(bootstrap, names.snapshots, p, None)
    t1 = time.monotonic()
    mine = [r for r in snaps if r.key == SESSION.encode()]
    if not mine:  # a short session may not have been snapshotted yet
        return {"rebuild_fold_ms": fold_ms, "events": float(len(records))}
    latest = decode_snapshot(mine[-1].value)
    base = state_of(latest.payload)
    assert base is not None, "the snapshot's state format is not readable here"
    decode_s = time.monotonic() - t1
    tail_s, tail = await _read(bootstrap, names.events, p, latest.payload.events_offset)
    t2 = time.monotonic()
    snap_state = base
    for r in tail:
        if r.key == SESSION.encode():
            ev = decode_event(r.value)
            if ev.seq > snap_state.last_seq:
                snap_state = evolve(snap_state, ev)
    snapshot_ms = (read_snap_s + decode_s + tail_s + time.monotonic() - t2) * 1000
    assert snap_state.last_seq == state.last_seq, (snap_state.last_seq, state.last_seq)
    return {
        "rebuild_fold_ms": fold_ms,
        "rebuild_snapshot_ms": snapshot_ms,
        "events": float(len(records)),
        "snapshot_records": float(len(snaps)),
        "tail_events": float(len(tail)),
    }


async def _resume(
    bootstrap: str,
    names: TopicNames,
    env: dict[str, str],
    tmp: Path,
    partitions: int,
    turns_n: int,
) -> dict[str, float]:
    """A fresh worker takes the partitions over; then the session's next turn (the
    worker loads the session on demand)."""
    worker = WorkerProcess("peers-resume", env, tmp / "worker-resume.log")
    t0 = time.monotonic()
    worker.start()
    client = TurnClient(bootstrap, names, partitions)
    client.n_sessions = 1
    try:
        await worker.wait_assigned(at_least=partitions)
        t1 = time.monotonic()
        await client.start()
        observer = asyncio.create_task(client.observe_events())
        # The history's TurnCompleted events send nothing (target 0); the next turn is
        # turns_n + 1.
        client.turn_of[SESSION] = turns_n
        client.target_turns = 0
        seen = len(client.obs.turns_done)
        while True:  # the consumer starts at the beginning: let it read the history first
            await asyncio.sleep(0.2)
            if len(client.obs.turns_done) == seen and client.obs.turns_done:
                break
            seen = len(client.obs.turns_done)
        done_before = len(client.obs.turns_done)
        t2 = time.monotonic()
        await client.send_turn(SESSION)
        deadline = t2 + 120
        while len(client.obs.turns_done) <= done_before:
            if time.monotonic() > deadline or not worker.alive:
                raise RuntimeError(f"the resumed turn did not finish:\n{worker.tail()}")
            await asyncio.sleep(0.001)  # polling the client's own counter
        t3 = time.monotonic()
        observer.cancel()
        await asyncio.gather(observer, return_exceptions=True)
    finally:
        await client.stop()
        worker.terminate()
    return {"open_ms": (t1 - t0) * 1000, "resume_turn_ms": (t3 - t2) * 1000}


def pids_note() -> str:
    return f"broker pid {turns._broker_pid()}, client pid {os.getpid()}"
