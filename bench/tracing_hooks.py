"""Tracing's own CPU per turn, measured in one process: the hooks the worker calls.

    .venv/bin/python bench/tracing_hooks.py [--turns 4000] [--repeat 5] [--blocks 3]
        [--sample-ratio 0.1] [--base REV] [--write]

What the session worker and its effect runner call per calc turn (4 inputs, 9 events,
3 effects), in their order, with nothing else around them: for each input the header
parsing, `input_traceparent`, the traceparent and headers of each event, the commit
hook; for each effect `effect_started`, `effect_ended` and the report's headers. At the
end of a block of turns tracing is shut down, so that the exporter's thread encodes and
posts every span (to bench/_otlp_sink.py, in a process of its own), and the process's
CPU time (all its threads) is divided by the turns. Modes: off, on (every turn traced),
on <ratio> (traceidratio). Each process runs `--blocks` blocks of every mode,
interleaved, tracing configured afresh for each block, and keeps each mode's best
block: the difference on − off, within one process, is what tracing adds to a turn,
free of the machine's load spikes and of batch sizes, which move the end-to-end figure
of bench/tracing.py. The records, requests and events are stand-ins with the attributes
the hooks read. `--base REV` runs the same processes on a git worktree of REV too,
alternating (before / after a change); `--write` replaces the "Tracing overhead: the
hooks alone" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
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


_KINDS: dict[str, type] = {}


def _kind(name: str) -> type:
    """A stand-in payload class named `name`: one per name, as the contract's are."""
    kind = _KINDS.get(name)
    if kind is None:
        kind = _KINDS[name] = type(name, (), {})
    return kind


def _turn_inputs(i: int) -> list[tuple[Any, Any, list[Any], Any]]:
    """(record, request, events, effect it starts or None) for the 4 inputs of turn i."""
    from agents.records import EffectKind, Usage
    from agents.requests import CompleteLlmCall, CompleteToolCall

    sid = f"b400-{i % 400:05d}"
    turn = f"{sid}:t{i}"
    usage = Usage(input_tokens=120, output_tokens=30)

    def ev(seq: int, name: str) -> Any:
        return NS(
            seq=seq,
            turn_id=turn,
            session_id=sid,
            event_id=f"{sid}:{i * 9 + seq}",
            payload=_kind(name)(),
        )

    def effect(kind: EffectKind, n: int) -> Any:
        return NS(
            kind=kind,
            session_id=sid,
            effect_id=f"{sid}/{kind.value}/{i * 9 + n}",
            attempt=1,
            model="claude-sonnet-4-5",
            tool_name="calculator",
            agent="calc",
            child_session_id=None,
        )

    llm1, tool, llm2 = (
        effect(EffectKind.LLM_CALL, 3),
        effect(EffectKind.TOOL_CALL, 5),
        effect(EffectKind.LLM_CALL, 7),
    )
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
        req = NS(session_id=sid, request_id=f"{sid}:r{i}:{n}", payload=_kind(kind)())
        rec = NS(partition=i % 8, offset=i * 4 + n, headers=None)
        out.append((rec, req, events, eff))
    for _rec, _req, _events, eff in out:  # the outcomes, as the contract has them
        if eff is not None and eff.kind is EffectKind.LLM_CALL:
            eff.result = CompleteLlmCall(
                call_id=eff.effect_id, model=eff.model, text="4", usage=usage
            )
        elif eff is not None:
            eff.result = CompleteToolCall(call_id=eff.effect_id, result="4")
    return out


def _block(turns: int, first: int) -> tuple[float, float]:
    """(CPU of the process, CPU of this thread) per turn, in µs, of `turns` calc turns
    through the hooks, tracing as configured, its exporter flushed at the end."""
    from streams import telemetry
    from streams._headers import event_headers
    from streams.tracing import child_traceparent, get_traceparent, headers_with, new_traceparent

    stats: dict[str, int] = {}
    traces: dict[str, str | None] = {}  # the session worker's: effects start from these
    telemetry.register_sink(stats, NS(committed=lambda entries, s: None, restored=None))
    work = [_turn_inputs(i) for i in range(first, first + turns)]
    gc.collect()
    gc.freeze()  # the stand-ins are not the hooks' garbage to scan
    t0, main0 = time.process_time(), time.thread_time()
    for inputs in work:
        header = headers_with(new_traceparent())  # the client's
        for rec, req, events, eff in inputs:
            rec.headers = header
            telemetry.batch_begin(stats)
            parent = telemetry.input_traceparent(
                rec, req, events, get_traceparent(rec.headers)
            ) or child_traceparent(None, req.request_id)
            for e in events:  # as streams._partition writes them
                event_tp = child_traceparent(parent, e.event_id)
                event_headers(event_tp, first_of_input=e is events[0])
                traces[req.session_id] = event_tp
            telemetry.batch_committed()
            if eff is not None:
                tp = telemetry.effect_started(eff, event_tp)
                telemetry.effect_ended(tp, eff, eff.result)
                header = headers_with(child_traceparent(tp, req.request_id + "x"))
    main = time.thread_time() - main0
    telemetry.shutdown_tracing()  # the exporter's thread encodes and posts the rest
    cpu = time.process_time() - t0
    telemetry.unregister_sink(stats)
    gc.unfreeze()
    return cpu * 1e6 / turns, main * 1e6 / turns


def child(turns: int, blocks: int, envs: dict[str, dict[str, str]]) -> dict[str, list[float]]:
    """Each mode's best block of `blocks` (process CPU, this thread's CPU), µs per turn;
    the modes' blocks interleaved, tracing configured afresh for each."""
    from streams import telemetry

    best: dict[str, list[float]] = {}
    first = 0
    for block in range(blocks):
        modes = list(envs)
        for mode in modes[block % len(modes) :] + modes[: block % len(modes)]:
            for key in [k for k in os.environ if k.startswith("OTEL_")]:
                del os.environ[key]
            os.environ.update(envs[mode])
            telemetry.configure_tracing(bool(envs[mode]), "bench")
            cpu, main = _block(turns, first)
            first += turns
            got = best.setdefault(mode, [cpu, main])
            got[:] = [min(got[0], cpu), min(got[1], main)]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5, help="processes per revision")
    parser.add_argument("--blocks", type=int, default=3, help="blocks per mode and process")
    parser.add_argument("--sample-ratio", type=float, default=0.1)
    parser.add_argument("--base", help="also measure this git revision (a worktree of it)")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # the tree whose code to run
    parser.add_argument("--envs", help=argparse.SUPPRESS)  # mode -> its OTEL_* variables
    args = parser.parse_args()
    if args.child:
        sys.path.insert(0, args.child)
        print(json.dumps(child(args.turns, args.blocks, json.loads(args.envs))))
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
    modes = list(envs)
    # (tree, mode) -> per process: (process CPU, loop CPU) µs per turn, its best block
    results: dict[tuple[str, str], list[list[float]]] = {
        (tree, mode): [] for tree in trees for mode in envs
    }
    try:
        for rnd in range(args.repeat):
            for tree, where in trees.items():
                env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        where,
                        "--turns",
                        str(args.turns),
                        "--blocks",
                        str(args.blocks),
                        "--envs",
                        json.dumps(envs),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                got = json.loads(out.stdout.strip().splitlines()[-1])
                for mode in modes:
                    results[tree, mode].append(got[mode])
                print(
                    f"round {rnd} {tree}: "
                    + ", ".join(
                        f"{mode} {got[mode][0]:.1f} µs CPU per turn (loop {got[mode][1]:.1f})"
                        for mode in modes
                    ),
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
        offs = results[tree, "off"]
        off = statistics.median(r[0] for r in offs)
        lines.append(
            f"{tree}, off: the hook calls take {off:.1f} µs CPU per turn (median of "
            f"{args.repeat} processes; spread {min(r[0] for r in offs):.1f} to "
            f"{max(r[0] for r in offs):.1f})"
        )
        for mode in modes[1:]:
            # each process's mode against the same process's off
            added = [r[0] - o[0] for r, o in zip(results[tree, mode], offs, strict=True)]
            on_loop = [r[1] - o[1] for r, o in zip(results[tree, mode], offs, strict=True)]
            lines.append(
                f"{tree}, {mode}: tracing adds {statistics.median(added):.1f} µs CPU per turn "
                f"(median of {args.repeat}; spread {min(added):.1f} to {max(added):.1f}), "
                f"{statistics.median(on_loop):.1f} of them on the calling thread (the event "
                "loop's), the rest on the exporter's"
            )
    for line in lines:
        print(line)
    if args.write:
        from bench._report import write_section

        cmd = (
            f".venv/bin/python bench/tracing_hooks.py --turns {args.turns} --repeat "
            f"{args.repeat} --blocks {args.blocks} --sample-ratio {args.sample_ratio:g}"
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
            f"batches flushed to a sink in another process) over blocks of {args.turns} turns. "
            f"Each process runs {args.blocks} blocks of each mode, interleaved, tracing "
            "configured afresh for each block, and keeps each mode's best block (the one a "
            "load spike of the shared machine touched least); "
            f"{args.repeat} processes per revision, the revisions alternating. Off is the "
            "cost of the hooks with tracing off (the derived traceparents and headers every "
            "record gets); each mode's figure is what it adds to that, in the same process.",
            "",
            *[f"- {line}" for line in lines],
        ]
        write_section(SECTION, "\n".join(text) + "\n")


if __name__ == "__main__":
    main()
