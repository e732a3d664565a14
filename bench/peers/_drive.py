"""The measurements every peer shares, run inside the peer's own virtual environment.

Nothing here imports the project (the peer venvs hold the peer, psycopg and the standard
library only): a peer module (peer_langgraph.py, peer_dbos.py) defines a `Peer` and calls
`main(peer_factory)`, which runs one mode and prints one JSON object on its last line.

Modes (argv):
    load URL --sessions N --seconds S [--rate R]   closed loop (no --rate) or paced
    bytes URL --turns T                            one session, T turns, sizes sampled
    recover URL --turns T                          a fresh process: rebuild and resume

A turn is the caller's message → LLM → calculator → LLM → the answer visible to the
caller. Turn latency: from the call that sends the message to the answer returned to
the caller. Step latency: the turn cut at the moments the peer's LLM and tool functions
return (4 steps: send → LLM, LLM → tool, tool → LLM, LLM → the caller has the answer);
each step holds the peer's persistence of the previous one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import psycopg

# The scripted model: the same answers as tests/data/calc.script.yaml gives turnlog's
# `calc` agent, and the calculator's result for its one expression.
FIRST_TEXT = "Let me calculate that."
EXPRESSION = "6*7"


def answer_text(tool_result: str) -> str:
    return f"The answer is {tool_result}."


def calculate(expression: str) -> str:
    """The calculator tool: a product or a sum of integers (all the scripted model asks)."""
    for op, fn in (("*", lambda a, b: a * b), ("+", lambda a, b: a + b)):
        if op in expression:
            a, b = expression.split(op, 1)
            return str(fn(int(a), int(b)))
    return str(int(expression))


def user_text(turn: int) -> str:
    return f"turn {turn}: what is 6*7?"


class Peer(Protocol):
    # Step marks: the peer's LLM and tool functions append time.monotonic() here.
    marks: dict[str, list[float]]

    async def open(self, url: str) -> None: ...
    async def close(self) -> None: ...
    async def start(self, sid: str) -> None: ...
    async def turn(self, sid: str, n: int) -> None: ...
    async def rebuild(self, sid: str, turns: int) -> int: ...


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


class BackendCpu(threading.Thread):
    """CPU of the PostgreSQL backends serving this database (the server runs on this
    machine): their pids from pg_stat_activity every 0.2 s, their ticks from /proc."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.last: dict[int, int] = {}
        self.base: dict[int, int] = {}
        self.done = threading.Event()

    def mark(self) -> None:
        """Start of the window: what the backends used before it does not count."""
        self._poll_once(self._conn)
        self.base = dict(self.last)

    def seconds(self) -> float:
        self._poll_once(self._conn)
        used = sum(t - self.base.get(pid, 0) for pid, t in self.last.items())
        return used / os.sysconf("SC_CLK_TCK")

    def _poll_once(self, conn: Any) -> None:
        with self._lock:
            pids = [
                p
                for (p,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            ]
            for pid in pids:
                ticks = _ticks(pid)
                if ticks:
                    self.last[pid] = ticks

    def start(self) -> None:
        self._lock = threading.Lock()
        self._conn = psycopg.connect(self.url, autocommit=True)
        super().start()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self._poll_once(self._conn)


async def run_load(
    peer: Peer, url: str, n: int, seconds: float, rate: float | None
) -> dict[str, Any]:
    await peer.open(url)
    sids = [f"s{i:04d}" for i in range(n)]
    for sid in sids:
        await peer.start(sid)
    interval = None if rate is None else n / rate
    # (session, sent, answered, step marks)
    done: list[tuple[str, float, float, list[float]]] = []
    stop = asyncio.Event()
    warm = asyncio.Event()
    answered: set[str] = set()

    async def session(sid: str, offset: float) -> None:
        turn = 0
        slot = time.monotonic() + offset
        while not stop.is_set():
            if interval is not None:
                delay = slot - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # the pacing schedule
                slot = max(slot, time.monotonic()) + interval
            turn += 1
            t0 = time.monotonic()
            peer.marks[sid] = [t0]
            await peer.turn(sid, turn)
            t1 = time.monotonic()
            done.append((sid, t0, t1, [*peer.marks[sid], t1]))
            answered.add(sid)
            if len(answered) == n:
                warm.set()

    # Warm-up: every session completes a first turn before the window opens.
    tasks = [
        asyncio.create_task(session(sid, 0.0 if rate is None else i / rate))
        for i, sid in enumerate(sids)
    ]
    await asyncio.wait_for(warm.wait(), 300)
    backends = BackendCpu(url)
    backends.start()
    backends.mark()
    cpu0 = sum(os.times()[:2])
    t0 = time.monotonic()
    first = len(done)
    await asyncio.sleep(seconds)  # the measurement window
    t1 = time.monotonic()
    cpu_peer = sum(os.times()[:2]) - cpu0
    cpu_pg = backends.seconds()
    window = [d for d in done[first:] if d[2] <= t1]
    stop.set()
    await asyncio.wait(tasks, timeout=60)
    for task in tasks:
        task.cancel()
    backends.done.set()
    await peer.close()
    started_in = [d for d in done if t0 <= d[1] <= t1 - 0.2]
    turn_ms = [(b - a) * 1000 for _, a, b, _ in started_in]
    step_ms = [(m[i + 1] - m[i]) * 1000 for _, _, _, m in started_in for i in range(len(m) - 1)]
    turns = max(len(window), 1)
    return {
        "turns_s": len(window) / (t1 - t0),
        "turns": len(window),
        "turn_p50": _pct(turn_ms, 0.5),
        "turn_p99": _pct(turn_ms, 0.99),
        "step_p50": _pct(step_ms, 0.5),
        "step_p99": _pct(step_ms, 0.99),
        "steps_per_turn": statistics.fmean(len(m) - 1 for _, _, _, m in started_in)
        if started_in
        else 0,
        "cpu_peer_ms": cpu_peer * 1000 / turns,
        "cpu_pg_ms": cpu_pg * 1000 / turns,
        "load": os.getloadavg()[0],
    }


def _logical_expr(data_type: str, column: str) -> str:
    col = '"' + column.replace('"', '""') + '"'
    if data_type in ("bytea", "text", "character varying", "character"):
        return f"octet_length({col})"
    if data_type in ("json", "jsonb"):
        return f"octet_length({col}::text)"
    return f"pg_column_size({col})"


def sizes(conn: Any) -> tuple[int, int]:
    """(logical bytes, on-disk bytes) of every table the peer made in this database:
    logical = the length of each stored value (text and bytea uncompressed, JSON as
    text, other columns their stored size); on disk = pg_total_relation_size (heap,
    TOAST, indexes)."""
    tables = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
        "('pg_catalog', 'information_schema')"
    ).fetchall()
    logical = disk = 0
    for schema, table in tables:
        cols = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        ).fetchall()
        qualified = f'"{schema}"."{table}"'
        expr = " + ".join(f"coalesce({_logical_expr(t, c)}, 0)" for c, t in cols) or "0"
        logical += int(
            conn.execute(f"SELECT coalesce(sum({expr}), 0) FROM {qualified}").fetchone()[0]
        )
        disk += int(conn.execute(f"SELECT pg_total_relation_size('{qualified}')").fetchone()[0])
    return logical, disk


async def run_bytes(peer: Peer, url: str, turns: int) -> dict[str, Any]:
    await peer.open(url)
    sid = "bytes-session"
    await peer.start(sid)
    wanted = {t for k in (10, 100, 1000) if k <= turns for t in (k - 10, k - 1, k)}
    sampled: dict[int, tuple[int, int]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        if 0 in wanted:
            sampled[0] = sizes(conn)
        started = time.monotonic()
        for t in range(1, turns + 1):
            peer.marks[sid] = []
            await peer.turn(sid, t)
            if t in wanted:
                sampled[t] = sizes(conn)
        elapsed = time.monotonic() - started
    await peer.close()
    out: dict[str, Any] = {"elapsed_s": elapsed, "turns": turns}
    for k in (10, 100, 1000):
        if k <= turns:
            out[f"logical_{k}"] = sampled[k][0] - sampled[k - 1][0]
            out[f"disk_{k}"] = (sampled[k][1] - sampled[k - 10][1]) / 10
    out["total_logical"], out["total_disk"] = sampled[max(sampled)]
    if 0 in sampled:  # the whole run's mean (a 10-turn window sees whole 8 KB pages)
        out["disk_all"] = (sampled[turns][1] - sampled[0][1]) / turns
    return out


async def run_recover(peer: Peer, url: str, turns: int) -> dict[str, Any]:
    """A process that did not run the session: open the peer, rebuild the session's
    state (the peer's own way), then run its next turn."""
    t0 = time.monotonic()
    await peer.open(url)
    t1 = time.monotonic()
    size = await peer.rebuild("bytes-session", turns)
    t2 = time.monotonic()
    peer.marks["bytes-session"] = []
    await peer.turn("bytes-session", turns + 1)
    t3 = time.monotonic()
    await peer.close()
    return {
        "open_ms": (t1 - t0) * 1000,
        "rebuild_ms": (t2 - t1) * 1000,
        "resume_turn_ms": (t3 - t2) * 1000,
        "state_messages": size,
        "load": os.getloadavg()[0],
    }


def main(factory: Callable[[argparse.Namespace], Peer]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("load", "bytes", "recover"))
    parser.add_argument("url")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--durability", default="sync")
    args = parser.parse_args()
    peer = factory(args)
    if args.mode == "load":
        coro = run_load(peer, args.url, args.sessions, args.seconds, args.rate or None)
    elif args.mode == "bytes":
        coro = run_bytes(peer, args.url, args.turns)
    else:
        coro = run_recover(peer, args.url, args.turns)
    result = asyncio.run(coro)
    print(json.dumps(result), flush=True)
