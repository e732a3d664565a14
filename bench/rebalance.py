"""Effects and ownership: side effects per call in a rebalance storm, and takeover time.

    .venv/bin/python bench/rebalance.py [--sessions 200] [--turns 4] [--changes 20]
        [--storms sigterm,sigkill] [--takeovers 5] [--timeouts 6000,3000] [--write]

Needs a Kafka broker (KAFKA_BOOTSTRAP_SERVERS, by default the `turnlog dev up` one) and
bubblewrap (the shell tool). Every run creates topics under a fresh prefix and deletes
them afterwards.

1. Rebalance storm (tests/integration/storm.py): `--sessions` sessions of `--turns`
   turns each run a shell command that is not idempotent while session workers join
   and leave every 1-2 s, `--changes` times at most: once with SIGTERM (plain
   rebalances), once with SIGKILL (crashes). Each run of the command leaves a file in the sandbox: tool executions per
   recorded call are counted there. Also: calls run twice, calls ended as "outcome
   unknown", and how many assignments resumed partitions in place.
2. Takeover: two workers with session timeout T; SIGKILL the owner of partition 0 and
   at that instant send the first message of a new session on partition 0; the time
   until its first event is visible. `--takeovers` kills per T, the T values interleaved.

Prints the figures; `--write` also replaces the "Effects and ownership" section of
BENCHMARKS.md. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import write_section
from streams.partitioning import partition_for
from streams.topics import delete_topics, ensure_topics
from tests.integration.storm import storm
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    WorkerProcess,
    scripted_script,
    user_message,
    wait_until,
    worker_env,
)

SECTION = "## Effects and ownership"
PARTITIONS = 4


async def storm_run(
    bootstrap: str, args: argparse.Namespace, tmp: Path, kill: bool
) -> dict[str, Any]:
    prefix = f"bench{secrets.token_hex(3)}."
    names = (await ensure_topics(bootstrap, prefix, partitions=PARTITIONS)).names
    try:
        r = await storm(
            bootstrap,
            names,
            prefix,
            tmp,
            sessions=args.sessions,
            turns=args.turns,
            max_changes=args.changes,
            kill=kill,
            seed=args.seed,
        )
    finally:
        await delete_topics(bootstrap, prefix)
    calls = len(r.calls)
    runs = sum(r.runs.values())
    unknown = sum(1 for e in r.failed.values() if "unknown" in e)
    figures: dict[str, Any] = {
        "calls": calls,
        "runs": runs,
        "per_call": runs / calls if calls else 0.0,
        "twice": len(r.twice),
        "unknown": unknown,
        "changes": r.changes,
        "kept": r.kept,
        "seconds": r.seconds,
        "signal": "SIGKILL" if kill else "SIGTERM",
    }
    print(
        f"storm ({figures['signal']}): {r.changes} group changes "
        f"in {r.seconds:.0f} s, {calls} recorded shell calls, {runs} executions "
        f"({figures['per_call']:.2f} per call), {len(r.twice)} run twice, {unknown} ended "
        f"as outcome unknown, {r.kept} assignments resumed partitions in place"
    )
    return figures


async def takeover_runs(
    bootstrap: str, args: argparse.Namespace, tmp: Path
) -> dict[int, list[float]]:
    timeouts = [int(t) for t in args.timeouts.split(",")]
    out: dict[int, list[float]] = {t: [] for t in timeouts}
    script = scripted_script(tmp, latency_ms=0)
    for round_ in range(args.takeovers):
        for timeout in timeouts:  # interleaved: the machine's noise hits both alike
            prefix = f"bench{secrets.token_hex(3)}."
            names = (await ensure_topics(bootstrap, prefix, partitions=PARTITIONS)).names
            env = worker_env(
                bootstrap, prefix, script=script, sandbox=tmp, session_timeout_ms=timeout
            )
            try:
                async with (
                    WorkerGroup(env, tmp / f"t{round_}-{timeout}") as group,
                    RequestSender(bootstrap, names) as send,
                    EventLog(bootstrap, names.events) as log,
                ):
                    a, b = group.start("a"), group.start("b")

                    def shared(a: WorkerProcess = a, b: WorkerProcess = b) -> bool:
                        mine, theirs = a.owned_partitions(), b.owned_partitions()
                        return bool(mine and theirs) and len(mine | theirs) == PARTITIONS

                    await wait_until(
                        shared, 60, "two workers share the partitions", diagnose=group.tails
                    )
                    owner = a if 0 in a.owned_partitions() else b
                    session = next(
                        f"k{round_}-{i}"
                        for i in range(10_000)
                        if partition_for(f"k{round_}-{i}", PARTITIONS) == 0
                    )
                    owner.kill()
                    killed = time.monotonic()
                    await send.request(user_message(session, "what is 6*7?", agent="calc"))
                    await log.wait_for(
                        lambda s=session: bool(log.of(s)),
                        120,
                        "the first event after the takeover",
                        diagnose=group.tails,
                    )
                    first = log.seen_at[
                        next(i for i, e in enumerate(log.events) if e.session_id == session)
                    ]
                    out[timeout].append(first - killed)
                    print(
                        f"  takeover, session timeout {timeout} ms: "
                        f"{first - killed:.2f} s from SIGKILL to the first event"
                    )
            finally:
                await delete_topics(bootstrap, prefix)
    return out


def _markdown(
    args: argparse.Namespace, storms: list[dict[str, Any]], takeovers: dict[int, list[float]]
) -> str:
    cmd = " ".join(["bench/rebalance.py", *sys.argv[1:]]).replace(" --write", "")
    lines = [
        SECTION,
        "",
        (
            f"Command: `.venv/bin/python {cmd} --write` ({platform.node() or 'this machine'}, "
            f"{time.strftime('%Y-%m-%d')}; broker and workers on the same 2-core machine)."
        ),
        "",
    ]
    if storms:
        lines += [
            (
                f"**Rebalance storm** (workers joining and leaving every 1-2 s; {args.sessions} "
                f"sessions x {args.turns} turns, each turn one call of a shell command that is "
                "not idempotent, its runs counted as files in the sandbox):"
            ),
            "",
            (
                "| workers leave by | group changes | recorded calls | executions | per call "
                "| run twice | outcome unknown | assignments that kept partitions |"
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            (
                f"| {s['signal']} | {s['changes']:.0f} in {s['seconds']:.0f} s | {s['calls']:.0f} "
                f"| {s['runs']:.0f} | **{s['per_call']:.2f}** | {s['twice']:.0f} "
                f"| {s['unknown']:.0f} | {s['kept']:.0f} |"
            )
            for s in storms
        ]
        lines += [
            "",
            (
                "A call whose worker was SIGKILLed mid-call may or may not have run; it is never "
                'run again: at its deadline it fails as "outcome unknown" (the storm\'s agent '
                'says `on_unknown_outcome = "fail"`; the default asks a human). So with '
                "SIGKILL, executions per recorded call can be below 1.00, never above."
            ),
            "",
        ]
    if takeovers:
        lines += [
            (
                "**Takeover**: SIGKILL of the owner of a partition (2 workers, 4 partitions, "
                "small history) to the first event of a new session on that partition:"
            ),
            "",
            "| session timeout | runs | median | min | max |",
            "|---|---|---|---|---|",
        ]
        for timeout, values in takeovers.items():
            if values:
                lines.append(
                    f"| {timeout} ms | {len(values)} | {statistics.median(values):.2f} s "
                    f"| {min(values):.2f} s | {max(values):.2f} s |"
                )
        lines += [
            "",
            (
                "The takeover is the consumer-group session timeout plus about half a second "
                "(rebalance, fencing, restore). turnlog keeps 6000 ms by default: it is the "
                "broker's default `group.min.session.timeout.ms` (a lower value is refused by a "
                "stock broker), and a shorter timeout turns a CPU or GC stall into a takeover. "
                "Where the broker allows it, `TURNLOG_SESSION_TIMEOUT_MS=3000` halves the dark "
                "time after a crash. A clean stop (SIGTERM) does not wait for it: the worker "
                "leaves the group and its partitions move at once."
            ),
            "",
        ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    import os

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    with tempfile.TemporaryDirectory(prefix="turnlog-rebalance-") as tmp:
        storms = [
            await storm_run(bootstrap, args, Path(tmp) / f"storm-{kind}", kind == "sigkill")
            for kind in (args.storms.split(",") if args.sessions else ())
        ]
        takeovers = await takeover_runs(bootstrap, args, Path(tmp)) if args.takeovers else {}
    for timeout, values in takeovers.items():
        if values:
            print(
                f"takeover at session timeout {timeout} ms: median "
                f"{statistics.median(values):.2f} s over {len(values)} kills "
                f"(min {min(values):.2f}, max {max(values):.2f})"
            )
    if args.write:
        write_section(SECTION, _markdown(args, storms, takeovers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=200, help="storm sessions (0: skip)")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--changes", type=int, default=20, help="group changes at most")
    parser.add_argument(
        "--storms",
        default="sigterm,sigkill",
        help="how storm workers leave: sigterm, sigkill or both",
    )
    parser.add_argument("--seed", type=int, default=1207)
    parser.add_argument("--takeovers", type=int, default=5, help="kills per session timeout")
    parser.add_argument("--timeouts", default="6000,3000", help="session timeouts (ms)")
    parser.add_argument(
        "--write",
        action="store_true",
        help="update the Effects and ownership section of BENCHMARKS.md",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
