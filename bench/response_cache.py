"""Response cache benchmark: what a lookup costs an LLM call of an agent with a cache.

    .venv/bin/python bench/response_cache.py [--rows 10000] [--lookups 2000]

Needs a Postgres superuser URL (DATABASE_URL, by default the `turnlog dev up` one). It
creates its own database, migrates it, fills table response_cache with `--rows` answers
(~1 KB each) and times `--lookups` lookups through `streams.response_cache.
PostgresResponseCache` — the store the effect runner uses, one connection, sequential:
misses (a key that is not there: what every call of a caching agent pays before it asks
the model), hits, and expired entries (present but older than the TTL: a miss too), then
the write after a miss. Prints the median, p90 and p99 in µs; the database is dropped
afterwards. Nothing here asserts; the figures go to BENCHMARKS.md ("Response cache") by
hand, with the machine's load.
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
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.events import Usage
from agents.response_cache import cache_key
from bench._pg import scratch_database
from projections.migrate import migrate
from streams.response_cache import PostgresResponseCache
from turnlog.settings import load_settings


def _fill(url: str, rows: int) -> list[str]:
    answer = {"model": "claude-haiku-4-5", "text": "x" * 1000, "stop_reason": "end_turn"}
    keys = [cache_key("claude-haiku-4-5", f"digest-{i}") for i in range(rows)]
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY response_cache (cache_key, model, request_digest, answer, session_id, "
            "call_id) FROM STDIN"
        ) as copy:
            for i, key in enumerate(keys):
                copy.write_row(
                    (key, "claude-haiku-4-5", f"digest-{i}", Jsonb(answer), "s", f"s/llm/{i}")
                )
        # Every tenth one is an hour old: expired for a 5-minute TTL.
        conn.execute(
            "UPDATE response_cache SET created_at = now() - interval '1 hour' "
            "WHERE right(call_id, 1) = '0'"
        )
        conn.execute("ANALYZE response_cache")
    return keys


def _stats(samples: list[float]) -> str:
    us = sorted(s * 1e6 for s in samples)

    def p(q: float) -> float:
        return us[min(len(us) - 1, int(q * len(us)))]

    return f"median {statistics.median(us):7.0f} µs · p90 {p(0.9):7.0f} µs · p99 {p(0.99):7.0f} µs"


async def _run(url: str, keys: list[str], lookups: int) -> None:
    cache = PostgresResponseCache(url)
    await cache.lookup("warm-up", 300)  # the connection is opened here, not timed
    fresh = [k for i, k in enumerate(keys) if i % 10 != 0]
    expired = [k for i, k in enumerate(keys) if i % 10 == 0]
    cases = {
        "miss (absent key)": [cache_key("m", secrets.token_hex(8)) for _ in range(lookups)],
        "hit": [fresh[i % len(fresh)] for i in range(lookups)],
        "miss (expired entry)": [expired[i % len(expired)] for i in range(lookups)],
    }
    for name, batch in cases.items():
        samples = []
        for key in batch:
            t = time.perf_counter()
            await cache.lookup(key, 300)
            samples.append(time.perf_counter() - t)
        print(f"lookup, {name:22s} {_stats(samples)}")
    samples = []
    answer = {"model": "m", "text": "y" * 1000, "stop_reason": "end_turn"}
    for i in range(lookups):
        t = time.perf_counter()
        await cache.store(
            cache_key("m", f"new-{i}"),
            model="m",
            request_digest=f"new-{i}",
            answer=answer,
            session_id="s",
            call_id=f"s/llm/{i}",
            usage=Usage(100, 10),
        )
        samples.append(time.perf_counter() - t)
    print(f"store after a miss        {_stats(samples)}")
    print(f"errors: {cache.stats['errors']}")
    await cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    args = parser.parse_args()
    admin_url = os.environ.get("DATABASE_URL") or load_settings().database_url
    name = f"turnlog_bench_cache_{secrets.token_hex(3)}"
    url = scratch_database(admin_url, name)
    try:
        migrate(url)
        keys = _fill(url, args.rows)
        print(f"response_cache: {args.rows} rows of ~1 KB answers; {args.lookups} per case")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        asyncio.run(_run(url, keys, args.lookups))
    finally:
        scratch_database(admin_url, name, drop=True)


if __name__ == "__main__":
    main()
