"""Restore: partition takeover time and worker memory against the history in a partition.

    .venv/bin/python bench/restore.py [--sizes 10000,100000,1000000] [--turns 10]
        [--live 0.01] [--rss-sessions 100000] [--rss-turns 1] [--tick-sessions 100000]
        [--cases a,b] [--revs worktree|REV,REV...] [--write]

Needs a Kafka broker (KAFKA_BOOTSTRAP_SERVERS, by default the `turnlog dev up` one).
Every history goes to topics under a fresh prefix (1 partition), deleted afterwards.

History (bench/_history.py): sessions of the `calc` agent of about `--turns` turns
(9 events a turn), `--live` of them live (a turn in progress: user message received,
LLM call requested, no outcome; these turns are the newest in the partition). Real
events, decided by the real core, encoded with the real codec, produced to partition 0
of the events topic in large batches; a sample of sessions is checked against the core.
Each history is written once per worker (`--revs`) and case:

- (a) no snapshots: the snapshots topic is empty, so a worker folds the partition from
  offset 0 (what the worker did before it read snapshots);
- (b) snapshots: what a worker would have left in the compacted `turnlog.snapshots` —
  each session's state after its last completed turn (`snapshot_of`, stamped with the
  offset that turn started at), then the partition's RestorePoint at the first event
  of the earliest open turn. A worker that reads snapshots restores from there; one
  that does not behaves as in (a).

Takeover: the first message of a new session waits in the requests topic (as inputs
wait while a partition changes hands; sent after the assignment instead, it would add
this client's polling to the figure); one worker subprocess (`python -m turnlog worker session`, the
calc agent on the scripted provider) starts and gets the partition. Measured: `restore_ms` of its `partitions.assigned` log line; the
time from its `partitions.restoring` line to that session's first event being visible
on the events topic (the takeover: assignment to the first decided input), and from
the process start; its RSS (VmRSS) once that event is visible, and its peak (VmHWM).
The runs of a history go worker by worker, (a) then (b); the next history runs them in
the reverse order, so the machine's drift hits every worker and case alike.

Memory: the same with `--rss-sessions` sessions of `--rss-turns` turns, 1 % live.

Tick (in a subprocess running the same worker code): the session process's tick loop
(streams.app.SessionProcess._tick_loop, one pass) over `--tick-sessions` session
states in memory of which 10 are due; CPU time of the pass, median of 5.

`--revs` names the workers to compare (each history is written once per worker and
case): git revisions, each run (takeovers and tick) from `git archive REV`, so an
uncommitted change does not decide what is measured, or `worktree`. Prints the
figures; `--write` also replaces the "Restore" section of BENCHMARKS.md. Nothing here
asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # a tick subprocess has the worker's tree before ROOT
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import _history
from bench._report import write_section
from streams.logs import configure_logging
from streams.topics import TopicNames, delete_topics, ensure_topics
from tests.support.harness import (
    RequestSender,
    WorkerProcess,
    scripted_script,
    user_message,
    wait_until,
    worker_env,
)

SECTION = "## Restore"
CASES = {"a": "no snapshots", "b": "snapshots"}
WORKTREE = "worktree"
CODE = ("agents", "schemas", "streams", "turnlog")  # what a worker runs
MiB = 1024 * 1024


# --------------------------------------------------------------------------- writing


async def produce(
    bootstrap: str,
    topics: Iterable[str],
    records: Iterable[tuple[bytes, bytes, list[tuple[str, bytes]]]],
) -> int:
    """Every record to partition 0 of each topic, in order, in batches of about 1 MiB
    (plain producer: offsets are 0, 1, 2, ... with no transaction markers)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=50,
        max_batch_size=MiB,
        max_request_size=4 * MiB,
        client_id="turnlog-bench-history",
    )
    await producer.start()
    names = list(topics)
    try:
        batches = {t: producer.create_batch() for t in names}
        pending: list[asyncio.Future[Any]] = []
        n = 0
        for key, value, headers in records:
            for topic in names:
                if (
                    batches[topic].append(key=key, value=value, timestamp=None, headers=headers)
                    is None
                ):
                    pending.append(await producer.send_batch(batches[topic], topic, partition=0))
                    batches[topic] = producer.create_batch()
                    batches[topic].append(key=key, value=value, timestamp=None, headers=headers)
            n += 1
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending.clear()
        for topic in names:
            if batches[topic].record_count():
                pending.append(await producer.send_batch(batches[topic], topic, partition=0))
        await asyncio.gather(*pending)
        return n
    finally:
        await producer.stop()


def _with_headers(
    pairs: Iterator[tuple[bytes, bytes]],
) -> Iterator[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    for key, value in pairs:
        yield key, value, []


# --------------------------------------------------------------------------- the worker


class Tree:
    """Where the worker's code comes from: the working tree, or `git archive REV`."""

    def __init__(self, rev: str, tmp: Path) -> None:
        self.rev = None if rev == WORKTREE else rev
        self.path = ROOT
        if self.rev is not None:
            self.path = tmp / f"tree-{secrets.token_hex(3)}"
            self.path.mkdir()
            archive = subprocess.run(
                ["git", "archive", self.rev], cwd=ROOT, check=True, capture_output=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(self.path)], input=archive, check=True)
        # Named by the last commit that changed the worker's code, not by the revision.
        head = subprocess.run(
            ["git", "log", "-1", "--format=%h", self.rev or "HEAD", "--", *CODE],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = (
            self.rev is None
            and subprocess.run(
                ["git", "status", "--porcelain", "--", *CODE],
                cwd=ROOT,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        self.describe = f"{head}{' + uncommitted changes' if dirty else ''}"

    def argv(self, *args: str) -> tuple[str, ...]:
        # -P: not the working directory first on sys.path, PYTHONPATH decides.
        return ("-P", *args) if self.rev is not None else args

    def env(self, env: dict[str, str]) -> dict[str, str]:
        if self.rev is None:
            return env
        return {**env, "PYTHONPATH": os.pathsep.join([str(self.path), str(ROOT)])}


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def _log_time(rec: dict[str, Any]) -> float:
    return datetime.fromisoformat(rec["timestamp"]).timestamp()


async def takeover(
    bootstrap: str, names: TopicNames, prefix: str, tree: Tree, tmp: Path, end: int, label: str
) -> dict[str, Any]:
    """One worker takes partition 0 over with a new session's first message waiting."""
    probe = f"probe-{secrets.token_hex(3)}"
    async with RequestSender(bootstrap, names) as send:
        await send.request(user_message(probe, "what is 6*7?", agent="calc"))
    env = tree.env(
        worker_env(
            bootstrap,
            prefix,
            partitions=1,
            script=scripted_script(tmp, latency_ms=0),
            session_timeout_ms=6000,
        )
    )
    worker = WorkerProcess(
        label, env, tmp / f"{label}.log", argv=tree.argv("-m", "turnlog", "worker", "session")
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=5,
        client_id="turnlog-bench-tail",
    )
    await consumer.start()
    try:
        tp = TopicPartition(names.events, 0)
        consumer.assign([tp])
        consumer.seek(tp, end)
        started = time.time()
        worker.start()
        seen: float | None = None
        deadline = time.monotonic() + 900
        while seen is None:
            if not worker.alive:
                raise AssertionError(f"the worker exited:\n{worker.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no event of {probe} within 900 s:\n{worker.tail()}")
            batch = await consumer.getmany(tp, timeout_ms=200, max_records=10_000)
            now = time.time()
            if any(rec.key == probe.encode() for rec in batch.get(tp, ())):
                seen = now
        rss, hwm = _rss_kib(worker.pid)
        records = await wait_until(
            lambda: [
                r
                for r in worker.log_records()
                if r.get("event") == "partitions.assigned" and r.get("partitions")
            ],
            30,
            "partitions.assigned",
            diagnose=worker.tail,
        )
        assigned = records[0]
        restoring = next(
            r
            for r in worker.log_records()
            if r.get("event") == "partitions.restoring" and r.get("partitions")
        )
        unreadable = sum(
            int(r.get("sessions", 0))
            for r in worker.log_records()
            if r.get("event") == "restore.snapshots_unreadable"
        )
    finally:
        worker.kill()
        await consumer.stop()
    return {
        "restore_ms": float(assigned.get("restore_ms", 0.0)),
        "sessions": int(assigned.get("sessions") or 0),
        "takeover_s": seen - _log_time(restoring),
        "start_s": seen - started,
        "rss_mb": rss / 1024,
        "hwm_mb": hwm / 1024,
        "unreadable": unreadable,
    }


# --------------------------------------------------------------------------- one history


async def run_history(
    bootstrap: str,
    args: argparse.Namespace,
    trees: list[Tree],
    tmp: Path,
    *,
    name: str,
    events: int | None = None,
    sessions: int | None = None,
    turns: int,
    flip: bool,
) -> list[dict[str, Any]]:
    """One history, written once per (worker, case), and one takeover of each copy."""
    now = datetime.now(UTC)
    start = now - timedelta(hours=6)
    idle, live = await _history.templates(turns, start, now)
    plan = _history.history(
        events=events, sessions=sessions, live_fraction=args.live, idle=idle, live=live
    )
    samples = sorted({0, 1, plan.n_sessions // 2, plan.n_sessions - 1})
    print(f"{name}: {await _history.check_rekeying(plan, samples, start, now)}")
    cases = [c for c in args.cases.split(",") if c in CASES]
    runs = [(tree, case) for tree in trees for case in cases]
    if flip:  # interleaved: the machine's drift hits every run alike
        runs.reverse()
    prefixes = [f"bench{secrets.token_hex(3)}." for _ in runs]
    names = [(await ensure_topics(bootstrap, p, partitions=1)).names for p in prefixes]
    rows = []
    try:
        t0 = time.monotonic()
        n = await produce(bootstrap, [nm.events for nm in names], plan.records())
        wrote = time.monotonic() - t0
        snaps = 0
        with_snapshots = [
            nm.snapshots for nm, (_, case) in zip(names, runs, strict=True) if case == "b"
        ]
        if with_snapshots:
            snaps = await produce(bootstrap, with_snapshots, _with_headers(plan.snapshots(now)))
        print(
            f"{name}: {n:,} events of {plan.n_sessions:,} sessions ({plan.n_live:,} live) "
            f"written to {len(runs)} topics in {wrote:.1f} s; {snaps:,} snapshot records; "
            f"open turns from offset {plan.first_open_at:,}"
        )
        for k, ((tree, case), prefix, nm) in enumerate(zip(runs, prefixes, names, strict=True)):
            r = await takeover(bootstrap, nm, prefix, tree, tmp, n, f"{name}-{k}-{case}")
            r.update(
                name=name,
                case=case,
                worker=tree.describe,
                events=n,
                n_sessions=plan.n_sessions,
                live=plan.n_live,
                snapshots=snaps if case == "b" else 0,
            )
            rows.append(r)
            print(
                f"  worker {tree.describe}, ({case}) {CASES[case]}: restore_ms "
                f"{r['restore_ms']:,.0f}, takeover {r['takeover_s']:.2f} s (from process "
                f"start {r['start_s']:.2f} s), {r['sessions']} sessions in memory, RSS "
                f"{r['rss_mb']:.0f} MB (peak {r['hwm_mb']:.0f} MB)"
                + (f", {r['unreadable']} snapshots unreadable" if r["unreadable"] else "")
            )
    finally:
        for p in prefixes:
            await delete_topics(bootstrap, p)
    return rows


# --------------------------------------------------------------------------- tick


async def tick_pass(sessions: int, due: int) -> dict[str, Any]:
    """CPU of one pass of the session process's tick loop over `sessions` states, `due`
    of them with an effect deadline passed (1 % live, the rest idle)."""
    from streams.app import SessionProcess

    now = datetime.now(UTC)
    idle, _ = await _history.templates(3, now - timedelta(hours=1), now)
    _, overdue = await _history.templates(3, now - timedelta(hours=1), now - timedelta(hours=1))
    _, later = await _history.templates(3, now - timedelta(hours=1), now)
    n_live = max(due, sessions // 100)
    states: dict[str, Any] = {}
    for i in range(sessions):
        sid = _history.session_id(i)
        if i < due:
            tpl = overdue[i % len(overdue)]
        elif i < n_live:
            tpl = later[i % len(later)]
        else:
            tpl = idle[i % len(idle)]
        states[sid] = tpl.state._replace(session_id=sid)

    try:  # a worker with a deadline index hands the ticker only what is due
        from agents.effects import next_deadline
        from streams._deadlines import DeadlineIndex
    except ImportError:
        index = None
    else:
        index = DeadlineIndex()
        for sid, state in states.items():
            index.set(sid, next_deadline(state))

    class _Stub:
        def __init__(self) -> None:
            self.tick_interval_s = 0.0
            self.sent = 0
            self.stop = asyncio.Event()
            self.worker = self
            self.effects = self

        def sessions(self) -> dict[str, Any]:
            self.stop.set()  # one pass
            return states

        def due(self, now: datetime) -> list[tuple[str, datetime]]:
            self.stop.set()  # one pass
            assert index is not None
            return index.due(now)

        async def send_request(self, request: Any, **_: Any) -> None:
            self.sent += 1

    cpu, sent = [], 0
    for _ in range(5):
        stub = _Stub()
        t0 = time.process_time()
        await SessionProcess._tick_loop(stub, stub.stop)  # type: ignore[arg-type]
        cpu.append((time.process_time() - t0) * 1000)
        sent = stub.sent
    return {"cpu_ms": statistics.median(cpu), "sent": sent, "sessions": sessions, "due": due}


def tick_in(tree: Tree, sessions: int) -> dict[str, Any]:
    """`tick_pass` in a subprocess that imports the worker's tree."""
    proc = subprocess.run(
        [
            sys.executable,
            *tree.argv(str(Path(__file__)), "--tick-only", "--tick-sessions", str(sessions)),
        ],
        check=False,
        cwd=ROOT,
        env=tree.env(dict(os.environ)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


# --------------------------------------------------------------------------- report


def _markdown(
    args: argparse.Namespace,
    trees: list[Tree],
    rows: list[dict[str, Any]],
    ticks: dict[str, dict[str, Any]],
) -> str:
    cmd = " ".join(["bench/restore.py", *sys.argv[1:]]).replace(" --write", "")
    workers = ", ".join(f"`{t.describe}`" for t in trees)
    lines = [
        SECTION,
        "",
        (
            f"Command: `.venv/bin/python {cmd} --write` ({platform.node() or 'this machine'}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; worker {workers}; broker, "
            "worker and this client on the same 2-core machine)."
        ),
        "",
        (
            f"One partition; sessions of the `calc` agent of about {args.turns} turns (9 events "
            f"a turn; the memory run: {args.rss_turns}), {args.live:.0%} of them live (a turn in "
            "progress: the newest entries of the partition). Real events of the real core, "
            "re-keyed per session and checked against the core on samples (bench/_history.py). "
            "(a) no snapshots: the snapshots topic is empty; (b) snapshots: each session's "
            "latest snapshot and the partition's restore point, as a worker leaves them. "
            "Takeover: from the worker's `partitions.restoring` log line to the first event of "
            "a new session whose message was waiting (from the process start in the next "
            "column); sessions in memory as its `partitions.assigned` line says; RSS once that "
            "event is visible, peak in brackets. A worker that does not read snapshots "
            "restores (b) as it restores (a): its two rows differ only by the machine's "
            "noise."
        ),
        "",
        (
            "| history | sessions (live) | worker | case | restore_ms | takeover "
            "| from process start | sessions in memory | RSS (peak) |"
        ),
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['events']:,} events | {r['n_sessions']:,} ({r['live']:,}) | `{r['worker']}` "
            f"| ({r['case']}) {CASES[r['case']]} | {r['restore_ms']:,.0f} ms "
            f"| **{r['takeover_s']:.2f} s** | {r['start_s']:.2f} s | {r['sessions']:,} "
            f"| {r['rss_mb']:.0f} MB ({r['hwm_mb']:.0f} MB) |"
        )
    lines.append("")
    for worker, tick in ticks.items():
        if "error" in tick:
            lines += [f"Tick, worker `{worker}`: not measured ({tick['error']}).", ""]
        else:
            lines += [
                (
                    f"Tick, worker `{worker}`: one pass of the session process's tick loop with "
                    f"{tick['sessions']:,} sessions in memory, {tick['due']} due ({tick['sent']} "
                    f"Ticks sent): **{tick['cpu_ms']:.2f} ms** of CPU (median of 5)."
                ),
                "",
            ]
    lines += [_reading(rows), ""]
    return "\n".join(lines)


def _reading(rows: list[dict[str, Any]]) -> str:
    """Per worker and case: takeover at the smallest and the largest history, and RSS
    of the memory run."""
    parts = []
    keys = list(dict.fromkeys((r["worker"], r["case"]) for r in rows))
    for worker, case in keys:
        mine = [r for r in rows if (r["worker"], r["case"]) == (worker, case)]
        takeovers = sorted(
            (r for r in mine if r["name"].startswith("takeover")), key=lambda r: r["events"]
        )
        memory = [r for r in mine if r["name"].startswith("memory")]
        bits = []
        if len(takeovers) >= 2:
            lo, hi = takeovers[0], takeovers[-1]
            bits.append(
                f"takeover {lo['takeover_s']:.2f} s at {lo['events']:,} events, "
                f"{hi['takeover_s']:.2f} s at {hi['events']:,} "
                f"({hi['takeover_s'] / max(lo['takeover_s'], 1e-9):.1f}x)"
            )
        for r in memory:
            bits.append(f"{r['rss_mb']:.0f} MB with {r['n_sessions']:,} sessions")
        if bits:
            parts.append(f"worker {worker} ({case}): " + ", ".join(bits))
    return ("Reading: " + "; ".join(parts) + ".") if parts else ""


# --------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> None:
    configure_logging("WARNING")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="turnlog-restore-") as tmp_dir:
        tmp = Path(tmp_dir)
        # Two names of one commit are one worker.
        trees = list(
            {
                t.describe: t for t in (Tree(rev, tmp) for rev in args.revs.split(",") if rev)
            }.values()
        )
        print("workers: " + ", ".join(t.describe for t in trees))
        sizes = [int(s) for s in args.sizes.split(",") if s]
        for k, size in enumerate(sizes):
            rows += await run_history(
                bootstrap,
                args,
                trees,
                tmp,
                name=f"takeover-{size}",
                events=size,
                turns=args.turns,
                flip=k % 2 == 1,
            )
        if args.rss_sessions:
            rows += await run_history(
                bootstrap,
                args,
                trees,
                tmp,
                name=f"memory-{args.rss_sessions}",
                sessions=args.rss_sessions,
                turns=args.rss_turns,
                flip=len(sizes) % 2 == 1,
            )
        ticks = {t.describe: tick_in(t, args.tick_sessions) for t in trees if args.tick_sessions}
    for worker, tick in ticks.items():
        print(f"tick, worker {worker}: {tick}")
    print(_reading(rows))
    if args.write:
        write_section(SECTION, _markdown(args, trees, rows, ticks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="events of history in the partition, one takeover each",
    )
    parser.add_argument("--turns", type=int, default=10, help="turns a session, about")
    parser.add_argument("--live", type=float, default=0.01, help="fraction of live sessions")
    parser.add_argument(
        "--rss-sessions", type=int, default=100_000, help="sessions of the memory run (0: skip)"
    )
    parser.add_argument("--rss-turns", type=int, default=1, help="turns a session there")
    parser.add_argument(
        "--tick-sessions",
        type=int,
        default=100_000,
        help="sessions in memory for the tick (0: skip)",
    )
    parser.add_argument("--cases", default="a,b", help="a (no snapshots), b (snapshots)")
    parser.add_argument(
        "--revs",
        default=WORKTREE,
        help="workers to compare: git revisions, each run from `git archive "
        f"REV`, or {WORKTREE!r} (the working tree)",
    )
    parser.add_argument("--tick-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--write", action="store_true", help="update the Restore section of BENCHMARKS.md"
    )
    args = parser.parse_args()
    if args.tick_only:
        configure_logging("WARNING")
        print(json.dumps(asyncio.run(tick_pass(args.tick_sessions, 10))))
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
