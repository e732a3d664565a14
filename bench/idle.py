"""What an idle deployment costs: CPU per second of each process while no turn runs.

    .venv/bin/python -m bench.idle [--seconds 30] [--sessions 100] [--partitions 8]
        [--rounds 1] [--py-spy DIR] [--write]

Needs a Kafka broker (KAFKA_BOOTSTRAP_SERVERS, by default the `turnlog dev up` one) and,
for the projector, a Postgres server (DATABASE_URL, by default the `turnlog dev up` one).
Every round creates topics under a fresh prefix and a database, and deletes them afterwards.

A session worker (`python -m turnlog worker session`, the `calc` agent on the scripted
provider at zero latency) and a projector (`python -m turnlog worker projector`) start;
`--sessions` sessions each run one turn (so the worker holds them, as it does between a
user's messages), and once the last turn is projected and five seconds have passed, the
CPU time (user + system, from /proc) each process uses over `--seconds` is the figure:
milliseconds of CPU per second of wall time (10 ms/s is 1 % of a core). The broker's is
printed beside it (the `turnlog dev` broker; its own background work included).

Prints the figures; `--write` also replaces the "Idle cost" section of BENCHMARKS.md.
Nothing here asserts.
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
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._pg import scratch_database
from bench._report import write_section
from bench.turns import _broker_pid, _cpu_s
from streams.topics import delete_topics, ensure_topics
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerProcess,
    scripted_script,
    user_message,
    worker_env,
)

SECTION = "## Idle cost"
# --py-spy: (the py-spy executable, the directory its collapsed stacks go to).
PY_SPY: list[str] = []


async def one_round(
    bootstrap: str, database_url: str, partitions: int, sessions: int, seconds: float, tmp: Path
) -> dict[str, float]:
    from projections.migrate import migrate

    prefix = f"idle{secrets.token_hex(3)}."
    db = f"turnlog_idle_{prefix.strip('.')}"
    db_url = scratch_database(database_url, db)
    await asyncio.to_thread(migrate, db_url)
    names = (await ensure_topics(bootstrap, prefix, partitions=partitions)).names
    env = worker_env(
        bootstrap,
        prefix,
        partitions=partitions,
        script=scripted_script(tmp, latency_ms=0),
        sandbox=tmp,
        extra={"DATABASE_URL": db_url},
    )
    worker = WorkerProcess("worker", env, tmp / f"worker-{prefix}log").start()
    projector = WorkerProcess(
        "projector",
        env,
        tmp / f"projector-{prefix}log",
        argv=["-m", "turnlog", "worker", "projector"],
    ).start()
    try:
        await worker.wait_assigned(at_least=partitions)
        async with (
            RequestSender(bootstrap, names) as send,
            EventLog(bootstrap, names.events) as log,
        ):
            ids = [f"idle-{i:04d}" for i in range(sessions)]
            await send.requests(user_message(s, "what is 6*7?", agent="calc") for s in ids)
            await log.wait_for(
                lambda: all(log.turns_completed(s) >= 1 for s in ids), 120, "every first turn"
            )
        await asyncio.sleep(5.0)  # the projector catches up; the last effects end
        pids = {"worker": worker.pid, "projector": projector.pid, "broker": _broker_pid()}
        cpu0 = {k: _cpu_s(p) for k, p in pids.items()}
        t0 = time.monotonic()
        spies = [
            await asyncio.create_subprocess_exec(
                PY_SPY[0],
                "record",
                "-p",
                str(pid),
                "-d",
                str(int(seconds)),
                "-r",
                "200",
                "--format",
                "raw",
                "-o",
                str(Path(PY_SPY[1]) / f"{name}.txt"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            for name, pid in (("worker", worker.pid), ("projector", projector.pid))
            if PY_SPY
        ]
        await asyncio.sleep(seconds)  # the measurement window
        wall = time.monotonic() - t0
        for spy in spies:
            await spy.wait()
        if not (worker.alive and projector.alive):
            raise RuntimeError(f"a process died:\n{worker.tail()}\n{projector.tail()}")
        used = {k: (_cpu_s(p) - cpu0[k]) * 1000 / wall for k, p in pids.items()}
        worker.terminate()
        projector.terminate()
        # The broker alone: its own background work, the baseline of its figure (once
        # the groups have settled without their members).
        await asyncio.sleep(5.0)
        broker0, t0 = _cpu_s(_broker_pid()), time.monotonic()
        await asyncio.sleep(seconds)
        alone = (_cpu_s(_broker_pid()) - broker0) * 1000 / (time.monotonic() - t0)
        return {**used, "broker_alone": alone}
    finally:
        worker.terminate()
        projector.terminate()
        await delete_topics(bootstrap, prefix)
        scratch_database(database_url, db, drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    ap.add_argument(
        "--py-spy",
        metavar="DIR",
        help="profile the worker and the projector over the window with py-spy (on PATH); "
        "their collapsed stacks go to DIR/worker.txt and DIR/projector.txt",
    )
    args = ap.parse_args()
    if args.py_spy:
        import shutil

        exe = shutil.which("py-spy")
        if exe is None:
            raise SystemExit("--py-spy: no py-spy on PATH (pip install py-spy)")
        PY_SPY[:] = [exe, args.py_spy]
    from turnlog.settings import load_settings

    settings = load_settings()  # KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, or the dev ones
    bootstrap, database_url = settings.kafka_bootstrap_servers, settings.database_url
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            row = asyncio.run(
                one_round(
                    bootstrap, database_url, args.partitions, args.sessions, args.seconds, Path(d)
                )
            )
            rows.append(row)
            print(
                f"round {r + 1}: CPU ms per s — worker {row['worker']:.1f}, "
                f"projector {row['projector']:.1f}, broker {row['broker']:.1f} "
                f"(alone {row['broker_alone']:.1f})",
                flush=True,
            )
    load = os.getloadavg()[0]

    def med(k: str) -> float:
        return statistics.median(r[k] for r in rows)

    command = (
        f"`.venv/bin/python -m bench.idle --seconds {args.seconds:g} --sessions {args.sessions} "
        f"--partitions {args.partitions} --rounds {args.rounds}`"
    )
    body = "\n".join(
        [
            SECTION,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
            f"({platform.machine()}), load average {load:.1f} at the end; command {command}.",
            "",
            f"A session worker holding {args.sessions} sessions over {args.partitions} "
            "partitions and a projector, both caught up, no turn running; CPU time per "
            "second of wall time (10 ms/s is 1 % of one core), median of the rounds.",
            "",
            "| process | CPU ms per s |",
            "|---|---|",
            f"| session worker | {med('worker'):.1f} |",
            f"| projector | {med('projector'):.1f} |",
            f"| broker, serving them | {med('broker'):.1f} |",
            f"| broker, alone (after they stopped) | {med('broker_alone'):.1f} |",
            "",
        ]
    )
    print(body)
    if args.write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
