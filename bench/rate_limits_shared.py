"""Shared rate limits benchmark: what an admission costs (streams.admission), paced.

    .venv/bin/python bench/rate_limits_shared.py [--rate 1000] [--seconds 5] [--rounds 3]

A message of an agent with a shared rate limit (per agent / per client) waits for an
admission: one Postgres transaction in the effect runner's process (advisory lock on the
key, the stored answer if any, the window's count, the insert) plus one more hop through
the requests topic (not measured here: see the README). This drives
`PostgresAdmissions.admit` — the store the effect runner uses, its pool of 4
connections — paced at `--rate` admissions/s for `--seconds`, and measures per
admission: CPU of this process (the effect runner's share), CPU of the Postgres backends
serving the pool (read from /proc: the server must run on this machine, as `turnlog dev
up`'s does), and latency p50/p99 from the scheduled start (queueing included). Cases,
interleaved over `--rounds` rounds:

- no limit: the same paced loop with nothing to ask (what a message of an agent without
  a shared limit pays in the runner: nothing) — the baseline the others are read against;
- one key: every admission on one limit key (`per = "agent"`: serialised by its lock),
  all admitted;
- 100 keys: spread over 100 keys (`per = "client"`, 100 clients), all admitted;
- at the limit: one key whose limit is spent: every admission is limited (the retry-after
  query and the stored rejection).

Needs a Postgres superuser URL (DATABASE_URL, by default the `turnlog dev up` one): it
creates its own database, migrates it and drops it afterwards. Nothing here asserts; the
figures go to BENCHMARKS.md ("Rate limits") by hand, with the machine's load.
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

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.events import AdmissionRequested
from bench._pg import scratch_database
from projections.migrate import migrate
from streams.admission import APPLICATION_NAME, PostgresAdmissions
from turnlog.settings import load_settings

_TICK = os.sysconf("SC_CLK_TCK")


def _backend_cpu_s(url: str) -> float:
    """CPU seconds so far of the Postgres backends the store's pool holds."""
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (APPLICATION_NAME,),
            ).fetchall()
        ]
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def _load() -> float:
    return os.getloadavg()[0]


async def _run(
    store: PostgresAdmissions | None, case: str, rate: float, seconds: float, url: str
) -> dict[str, float]:
    n = int(rate * seconds)
    latencies: list[float] = []
    run = secrets.token_hex(3)
    limit = 1 if case == "at the limit" else 10**9

    def request(i: int) -> AdmissionRequested:
        key = {
            "one key": f"agent:bench-{run}",
            "at the limit": f"agent:spent-{run}",
        }.get(case, f"client:bench-{run}-{i % 100}")
        return AdmissionRequested(
            admission_id=f"{run}-{i}",
            key=key,
            text="",
            window_ms=60_000,
            requests_per_minute=limit,
        )

    async def one(i: int, due: float) -> None:
        if store is not None:
            await store.admit("bench", request(i))
        latencies.append(time.perf_counter() - due)

    if store is not None:  # warm the pool (connections opened) outside the measure
        await asyncio.gather(*(store.admit("bench", request(-k - 1)) for k in range(8)))
    backend0 = _backend_cpu_s(url) if store is not None else 0.0
    cpu0, load0 = time.process_time(), _load()
    t0 = time.perf_counter()
    tasks = []
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    backend = (_backend_cpu_s(url) - backend0) if store is not None else 0.0
    lat = sorted(latencies)
    return {
        "achieved": n / wall,
        "cpu_us": cpu / n * 1e6,
        "backend_us": backend / n * 1e6,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
        "load": (load0 + _load()) / 2,
    }


async def main_async(args: argparse.Namespace) -> None:
    admin = os.environ.get("DATABASE_URL") or load_settings().database_url
    name = f"turnlog_bench_admissions_{secrets.token_hex(3)}"
    url = scratch_database(admin, name)
    cases = ("no limit", "one key", "100 keys", "at the limit")
    results: dict[str, list[dict[str, float]]] = {c: [] for c in cases}
    try:
        migrate(url)
        store = PostgresAdmissions(url)
        for _ in range(args.rounds):
            for case in cases:
                s = None if case == "no limit" else store
                results[case].append(await _run(s, case, args.rate, args.seconds, url))
        await store.close()
    finally:
        scratch_database(admin, name, drop=True)
    base = statistics.median(r["cpu_us"] for r in results["no limit"])
    print(
        f"paced at {args.rate:g} admissions/s for {args.seconds:g} s, {args.rounds} "
        f"interleaved round(s); medians (range)"
    )
    print(
        "| case | achieved /s | runner CPU µs per admission (minus no limit) | "
        "Postgres backend CPU µs | latency p50 / p99 ms | load |"
    )
    print("|---|---|---|---|---|---|")

    def cell(case: str, key: str, fmt: str = "{:.1f}", minus: float = 0.0) -> str:
        values = [r[key] - minus for r in results[case]]
        med = statistics.median(values)
        return f"{fmt.format(med)} [{fmt.format(min(values))}–{fmt.format(max(values))}]"

    for case in cases:
        minus = 0.0 if case == "no limit" else base
        print(
            f"| {case} | {cell(case, 'achieved', '{:.0f}')} | {cell(case, 'cpu_us', minus=minus)} "
            f"| {cell(case, 'backend_us')} | {cell(case, 'p50_ms', '{:.2f}')} / "
            f"{cell(case, 'p99_ms', '{:.2f}')} | {cell(case, 'load')} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
