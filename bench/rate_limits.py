"""Rate limiter benchmark: the core's cost of a rate-limit verdict, per message.

    .venv/bin/python bench/rate_limits.py [--repeat 7] [--number 20000]

The limiter is two pure functions of the session's window (agents.ratelimit):
`check_rate` (the verdict on one more message: what decide pays per SendMessage of an
agent with a limit) and `record_rate` (what evolve pays per accepted message and per
completed LLM call, for every session). Their cost grows with the window: a session
that took 1,000 requests in its last minute (1,000 requests/minute; a session takes one
message at a time, so a higher rate is many sessions, each with its own window) holds
1,000 message entries plus its calls. Per window size: the median over `--repeat` runs
of `--number` calls (µs per call). Nothing here does IO or asserts; the figures go to
BENCHMARKS.md ("Rate limits") by hand.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.ratelimit import RateLimit, check_rate, record_rate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def window(messages: int) -> tuple[tuple[int, int, int], ...]:
    """`messages` messages spread over the last minute, each followed by an LLM call."""
    w: tuple[tuple[int, int, int], ...] = ()
    step = 59.0 / max(messages, 1)
    for i in range(messages):
        at = T0 + timedelta(seconds=i * step)
        w = record_rate(w, at, 1, 0)
        w = record_rate(w, at + timedelta(milliseconds=1), 0, 500)
    return w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    now = T0 + timedelta(seconds=59.5)
    print(f"{'window (messages/min)':>22} {'check_rate µs':>14} {'record_rate µs':>15}")
    for messages in (1, 10, 100, 1000):
        w = window(messages)
        limit = RateLimit(requests_per_minute=messages + 1, tokens_per_minute=10**9)

        def check(w: tuple[tuple[int, int, int], ...] = w, limit: RateLimit = limit) -> None:
            check_rate(limit, w, now)

        def record(w: tuple[tuple[int, int, int], ...] = w) -> None:
            record_rate(w, now, 1, 0)

        timings = []
        for fn in (check, record):
            runs = timeit.repeat(fn, repeat=args.repeat, number=args.number)
            timings.append(statistics.median(runs) / args.number * 1e6)
        print(f"{messages:>22} {timings[0]:>14.2f} {timings[1]:>15.2f}")


if __name__ == "__main__":
    main()
