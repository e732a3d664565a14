"""Tracing overhead: the session worker's CPU per turn with tracing off and on, A/B.

    .venv/bin/python bench/tracing.py [--sessions 400] [--rates 0,50] [--seconds 10]
        [--rounds 3] [--partitions 8] [--sample-ratio 0.1] [--env KEY=VALUE ...] [--write]

Each run is bench/turns.py's load run (one `python -m turnlog worker session` process,
the calc turn on the scripted provider at zero latency, N sessions; rate 0 is the closed
loop, saturated, else paced at that many turns/s in total) with one of three worker
environments: off; on (OTEL_TRACES_EXPORTER=otlp, every turn traced); and on with the
trace-id ratio sampler at --sample-ratio (OTEL_TRACES_SAMPLER=traceidratio: that share
of the turns traced, each whole, in every process). For each (N, load) the three run in
rounds, interleaved, the order rotating by round, so that the drift of a shared machine
falls on all three. `--env` adds variables to both tracing arms (e.g.
OTEL_BSP_SCHEDULE_DELAY=10000 to try the batch processor's settings).

The primary figure is the worker process's CPU per completed turn (user + system, from
/proc, over the measurement window), not turns/s: the machine is shared. The OTLP sink
(bench/_otlp_sink.py) runs in a process of its own and counts and discards what it is
sent; its CPU is printed apart. Overhead is each round's tracing arm against the same
round's off arm; the summary gives the median and the spread over the rounds.
`--write` replaces the "Tracing overhead" section of BENCHMARKS.md. Nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import turns
from bench._report import write_section

SECTION = "## Tracing overhead"


class Sink:
    """bench/_otlp_sink.py as a subprocess."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "_otlp_sink.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("the OTLP sink did not start")
        self.port = int(line)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
            out: dict[str, int] = json.loads(r.read())
        return out

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from turnlog.settings import load_settings

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or load_settings().kafka_bootstrap_servers
    sizes = [int(x) for x in args.sessions.split(",") if x]
    rates = [float(x) for x in args.rates.split(",") if x] or [0.0]
    extra = dict(kv.split("=", 1) for kv in args.env)
    sink = Sink()
    on = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.endpoint,
        **extra,
    }
    sampled = f"on {args.sample_ratio:g}"
    envs: dict[str, dict[str, str]] = {
        "off": {},
        "on": on,
        sampled: {
            **on,
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(args.sample_ratio),
        },
    }
    modes = list(envs)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="turnlog-bench-") as tmpdir:
            for n in sizes:
                for rate in rates:
                    for rnd in range(args.rounds):
                        for mode in modes[rnd % 3 :] + modes[: rnd % 3]:
                            turns.WORKER_ENV.clear()
                            turns.WORKER_ENV.update(envs[mode])
                            before = sink.stats()
                            cpu0 = turns._cpu_s(sink.proc.pid)
                            try:
                                r: dict[str, Any] = await turns.load_run(
                                    bootstrap,
                                    args.partitions,
                                    n,
                                    args.seconds,
                                    Path(tmpdir),
                                    rate or None,
                                )
                            except (RuntimeError, AssertionError) as exc:  # a run that failed
                                print(f"round {rnd} {mode}: run failed: {exc}"[:300], flush=True)
                                continue
                            after = sink.stats()
                            sink_cpu = turns._cpu_s(sink.proc.pid) - cpu0
                            r.update(
                                tracing=mode,
                                round=rnd,
                                export_kb=(after["bytes"] - before["bytes"]) / 1024,
                                exports=after["requests"] - before["requests"],
                                cpu_sink=sink_cpu * 1000 / max(r["turns"], 1),
                            )
                            rows.append(r)
                            print(_row_text(r), flush=True)
    finally:
        turns.WORKER_ENV.clear()
        sink.close()
    return rows


def _load(rate: float) -> str:
    return "closed loop" if not rate else f"paced {rate:g} turns/s"


def _row_text(r: dict[str, Any]) -> str:
    return (
        f"N={int(r['n'])} {_load(r['rate']):>18} round {r['round']} tracing {r['tracing']:>6}: "
        f"worker CPU {r['cpu_worker']:.3f} ms/turn (threads other than the loop's "
        f"{r['cpu_threads']:.3f}), {r['turns_s']:.1f} turns/s, hop p50 {r['p50']:.1f} ms, "
        f"p99 {r['p99']:.1f} ms; exported {r['export_kb']:.0f} KB in {r['exports']} posts, "
        f"sink CPU {r['cpu_sink']:.3f} ms/turn; load avg {r['load']:.1f}"
    )


def summary(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    groups: dict[tuple[int, float], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(int(r["n"]), r["rate"])].append(r)
    for (n, rate), runs in groups.items():
        by_round: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        for r in runs:
            by_round[r["round"]][r["tracing"]] = r
        off = [r["cpu_worker"] for r in runs if r["tracing"] == "off"]
        for mode in dict.fromkeys(r["tracing"] for r in runs):
            if mode == "off":
                continue
            pairs = [g for g in by_round.values() if mode in g and "off" in g]
            pct = [100 * (g[mode]["cpu_worker"] / g["off"]["cpu_worker"] - 1) for g in pairs]
            threads = [g[mode]["cpu_threads"] for g in pairs]
            on = [g[mode]["cpu_worker"] for g in pairs]
            if not pct:
                continue
            out.append(
                f"N = {n}, {_load(rate)}, tracing {mode}: worker CPU per turn {statistics.median(on):.3f} "
                f"ms against {statistics.median(off):.3f} ms off (medians of {len(pct)} rounds); "
                f"overhead by round {', '.join(f'{x:+.1f} %' for x in pct)}: median "
                f"{statistics.median(pct):+.1f} %, spread {min(pct):+.1f} to {max(pct):+.1f} %; "
                f"the exporter's thread {statistics.median(threads):.3f} ms/turn"
            )
    return out


def markdown(args: argparse.Namespace, rows: list[dict[str, Any]], lines: list[str]) -> str:
    env = "".join(f" --env {kv}" for kv in args.env)
    cmd = (
        f".venv/bin/python bench/tracing.py --sessions {args.sessions} --rates {args.rates} "
        f"--seconds {args.seconds:g} --rounds {args.rounds} --partitions {args.partitions} "
        f"--sample-ratio {args.sample_ratio:g}{env} --write"
    )
    out = [
        SECTION,
        "",
        f"Command: `{cmd}`",
        "",
        (
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
            f"({platform.machine()}, Python {platform.python_version()}), the `turnlog dev` "
            "Kafka on the same machine, shared with other engineers' work (load average "
            "column). One session-worker process, the calc turn of the Session worker "
            "section (4 inputs, 9 events; 7 spans per traced turn: 4 inputs, 2 LLM calls, "
            "1 tool call). Tracing on: OTEL_TRACES_EXPORTER=otlp, the SDK's sampler, batch "
            "span processor and OTLP/HTTP exporter, spans built by streams/_spans.py and "
            "encoded by streams/_otlp.py, posted to a sink in a process of its own that "
            "discards them (its CPU is not the worker's). Rounds of three runs, interleaved "
            "(the order rotates by round): off; on, every turn traced; on <ratio>, "
            "OTEL_TRACES_SAMPLER=traceidratio. The figure is the worker's CPU per turn "
            "(/proc), each round's tracing arm against its off arm."
        ),
        "",
        (
            "| N | load | round | tracing | worker CPU ms/turn | exporter thread ms/turn | "
            "turns/s | hop p50 | hop p99 | exported | sink CPU ms/turn | load avg |"
        ),
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {int(r['n'])} | {_load(r['rate'])} | {r['round']} | {r['tracing']} | "
            f"{r['cpu_worker']:.3f} | {r['cpu_threads']:.3f} | {r['turns_s']:.0f} | "
            f"{r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['export_kb']:.0f} KB | "
            f"{r['cpu_sink']:.3f} | {r['load']:.1f} |"
        )
    out += ["", *[f"- {line}" for line in lines], ""]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="400", help="comma-separated session counts N")
    parser.add_argument("--rates", default="0,50", help="offered loads, turns/s; 0: closed loop")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three arms")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--sample-ratio", type=float, default=0.1)
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for both tracing arms"
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    lines = summary(rows)
    for line in lines:
        print(line)
    if args.write:
        write_section(SECTION, markdown(args, rows, lines))


if __name__ == "__main__":
    main()
