"""Tracing's own CPU per turn, measured in one process: the hooks the worker calls.

    .venv/bin/python bench/tracing_hooks.py [--turns 4000] [--repeat 5] [--sample-ratio 0.1]
        [--base REV] [--write]

What the session worker and its effect runner call per calc turn (4 inputs, 9 events,
3 effects), in their order, with nothing else around them: for each input the header
parsing, `input_traceparent`, the traceparent and headers of each event, the commit
hook; for each effect `effect_started`, `effect_ended` and the report's headers. Then the
batch processor is flushed, so that the exporter's thread encodes and posts every span
(to bench/_otlp_sink.py, in a process of its own), and the process's CPU time (all its
threads) is divided by the turns. Each mode runs in a fresh subprocess (tracing is
configured once per process): off, on (every turn traced), on <ratio> (traceidratio).
The difference on − off is what tracing adds to a turn, free of the machine's load and
of batch sizes, which move the end-to-end figure of bench/tracing.py. The records,
requests and events are stand-ins with the attributes the hooks read. `--base REV` runs
the same children on a git worktree of REV too, interleaved (before / after a change);
`--write` replaces the "Tracing overhead: the hooks alone" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Tracing overhead: the hooks alone"


def _turn_inputs(i: int) -> list[tuple[Any, Any, list[Any], Any]]:
    """(record, request, events, effect it starts or None) for the 4 inputs of turn i."""
    from agents.records import Usage

    sid = f"b400-{i % 400:05d}"
    turn = f"{sid}:t{i}"
    usage = Usage(input_tokens=120, output_tokens=30)

    def ev(seq: int, name: str) -> Any:
        return NS(
            seq=seq,
            turn_id=turn,
            session_id=sid,
            event_id=f"{sid}:{i * 9 + seq}",
            payload=type(name, (), {})(),
        )

    def effect(kind: str, n: int) -> Any:
        return NS(
            kind=kind,
            session_id=sid,
            effect_id=f"{sid}/{kind}/{i * 9 + n}",
            attempt=1,
            model="claude-sonnet-4-5",
            tool_name="calculator",
            agent="calc",
            child_session_id=None,
        )

    llm1, tool, llm2 = effect("llm_call", 3), effect("tool_call", 5), effect("llm_call", 7)
    completed = type("CompleteLlmCall", (), {})
    steps = [
        ("SendMessage", ["TurnStarted", "MessageAdded", "LlmCallRequested"], llm1),
        ("CompleteLlmCall", ["LlmCallCompleted", "ToolCallRequested"], tool),
        ("CompleteToolCall", ["ToolCallCompleted", "LlmCallRequested"], llm2),
        ("CompleteLlmCall", ["LlmCallCompleted", "TurnCompleted"], None),
    ]
    out = []
    seq = 0
    for n, (kind, names, eff) in enumerate(steps):
        events = []
        for name in names:
            seq += 1
            events.append(ev(seq, name))
        req = NS(session_id=sid, request_id=f"{sid}:r{i}:{n}", payload=type(kind, (), {})())
        rec = NS(partition=i % 8, offset=i * 4 + n, headers=None)
        out.append((rec, req, events, eff))
    for _rec, _req, _events, eff in out:
        if eff is not None and eff.kind == "llm_call":
            eff.result = completed()
            eff.result.usage = usage
            eff.result.model = eff.model
            eff.result.stop_reason = "end_turn"
        elif eff is not None:
            eff.result = type("CompleteToolCall", (), {})()
    return out


def child(turns: int) -> dict[str, float]:
    from streams import telemetry
    from streams.tracing import child_traceparent, get_traceparent, headers_with, new_traceparent

    enabled = telemetry.configure_tracing(bool(os.environ.get("OTEL_TRACES_EXPORTER")), "bench")
    stats: dict[str, int] = {}
    telemetry.register_sink(stats, NS(committed=lambda entries, s: None, restored=None))
    work = [_turn_inputs(i) for i in range(turns)]
    t0, main0 = time.process_time(), time.thread_time()
    for inputs in work:
        header = headers_with(new_traceparent())  # the client's
        for rec, req, events, eff in inputs:
            rec.headers = header
            telemetry.batch_begin(stats)
            parent = telemetry.input_traceparent(
                rec, req, events, get_traceparent(rec.headers)
            ) or child_traceparent(None, req.request_id)
            for e in events:
                event_tp = child_traceparent(parent, e.event_id)
                headers_with(event_tp, event_type=type(e.payload).__name__)
            telemetry.batch_committed()
            if eff is not None:
                tp = telemetry.effect_started(eff, event_tp)
                telemetry.effect_ended(tp, eff, eff.result)
                header = headers_with(child_traceparent(tp, req.request_id + "x"))
    main = time.thread_time() - main0
    if enabled:
        telemetry.shutdown_tracing()  # the exporter's thread encodes and posts the rest
    cpu = time.process_time() - t0
    return {"us_per_turn": cpu * 1e6 / turns, "loop_us_per_turn": main * 1e6 / turns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sample-ratio", type=float, default=0.1)
    parser.add_argument("--base", help="also measure this git revision (a worktree of it)")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the tree whose code to run
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, args.child)
        print(json.dumps(child(args.turns)))
        return
    sys.path.insert(0, str(ROOT))
    from bench.tracing import Sink

    trees = {"this tree": str(ROOT)}
    worktree = None
    if args.base:
        worktree = tempfile.mkdtemp(prefix="turnlog-base-")
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", worktree, args.base],
            check=True,
            capture_output=True,
        )
        trees = {args.base: worktree, **trees}

    sink = Sink()
    on = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.endpoint}
    sampled = f"on {args.sample_ratio:g}"
    envs = {
        "off": {},
        "on": on,
        sampled: {
            **on,
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": str(args.sample_ratio),
        },
    }
    results = {(tree, mode): [] for tree in trees for mode in envs}  # type: ignore[var-annotated]
    loop = {(tree, mode): [] for tree in trees for mode in envs}  # type: ignore[var-annotated]
    try:
        for rnd in range(args.repeat):
            modes = list(envs)
            for tree, where in trees.items():
                for mode in modes[rnd % 3 :] + modes[: rnd % 3]:
                    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", where, "--turns", str(args.turns)],
                        env={**env, **envs[mode]},
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    got = json.loads(out.stdout.strip().splitlines()[-1])
                    results[tree, mode].append(got["us_per_turn"])
                    loop[tree, mode].append(got["loop_us_per_turn"])
                    print(
                        f"round {rnd} {tree} {mode:>6}: {got['us_per_turn']:.1f} µs CPU per "
                        f"turn, of which the calling thread {got['loop_us_per_turn']:.1f}",
                        flush=True,
                    )
    finally:
        sink.close()
        if worktree is not None:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", worktree], check=False
            )
    lines = []
    for tree in trees:
        off = statistics.median(results[tree, "off"])
        off_loop = statistics.median(loop[tree, "off"])
        lines.append(
            f"{tree}, off: the hook calls take {off:.1f} µs CPU per turn (median of {args.repeat})"
        )
        for mode in modes[1:]:
            added = [v - off for v in results[tree, mode]]
            on_loop = statistics.median(loop[tree, mode]) - off_loop
            lines.append(
                f"{tree}, {mode}: tracing adds {statistics.median(added):.1f} µs CPU per turn "
                f"(median of {args.repeat}; spread {min(added):.1f} to {max(added):.1f}), "
                f"{on_loop:.1f} of them on the calling thread (the event loop's), the rest on "
                "the exporter's"
            )
    for line in lines:
        print(line)
    if args.write:
        from bench._report import write_section

        cmd = (
            f".venv/bin/python bench/tracing_hooks.py --turns {args.turns} --repeat "
            f"{args.repeat} --sample-ratio {args.sample_ratio:g}"
            + (f" --base {args.base}" if args.base else "")
            + " --write"
        )
        text = [
            SECTION,
            "",
            f"Command: `{cmd}`",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, load "
            f"average {os.getloadavg()[0]:.1f} at the end (the machine is shared). What the "
            "worker's tracing hooks cost per calc turn, called in one process with nothing "
            "around them, CPU time of the whole process (the exporter's thread included, its "
            "batches flushed to a sink in another process) over "
            f"{args.turns} turns; each (revision, mode) in a fresh process, interleaved by "
            "round. Off is the cost of the hooks with tracing off (the derived traceparents "
            "and headers every record gets); each mode's figure is what it adds to that.",
            "",
            *[f"- {line}" for line in lines],
        ]
        write_section(SECTION, "\n".join(text) + "\n")


if __name__ == "__main__":
    main()
