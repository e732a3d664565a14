"""bench/turns.py for two revisions of turnlog, interleaved in one run (A/B).

    .venv/bin/python bench/turns_ab.py --base REV [--repeat 3] [--sessions 100,1000]
        [--rates 50] [--seconds 10] [--write]

Each revision runs from a git worktree of its own (its bench/turns.py, its client and its
worker, as its users would run them: two revisions need not read each other's newest
records), on the same broker, one after the other: A, B, B, A, A, B... so the drift of a
shared machine falls on both. Prints, per (N, load), the median over the repetitions of
turns/s and per-hop p50/p99 for each revision, and the ratio B/A; `--write` replaces the
"Session worker A/B" section of BENCHMARKS.md. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import write_section

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(
    r"N=\s*(?P<n>\d+)\s+(?P<load>closed loop|paced at \d+ turns/s):\s+(?P<tps>[\d.]+) turns/s"
    r".*?p50 (?P<p50>[\d.]+) ms, p99 (?P<p99>[\d.]+) ms"
)
# The line after each run: the worker's CPU per turn (from /proc: robust to the load of a
# shared machine, where turns/s and latency are not).
CPU = re.compile(r"CPU ms per turn: worker (?P<worker>[\d.]+)")


def worktree(rev: str, into: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), rev],
        check=True,
        capture_output=True,
    )
    return into


def run(tree: Path, args: argparse.Namespace) -> dict[tuple[int, str], tuple[float, ...]]:
    out = subprocess.run(
        [
            sys.executable,
            str(tree / "bench" / "turns.py"),
            "--sessions",
            args.sessions,
            "--rates",
            args.rates,
            "--seconds",
            str(args.seconds),
            "--bytes-turns",
            "10",
        ],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for m in LINE.finditer(out):
        cpu = CPU.search(out, m.end())
        worker = float(cpu["worker"]) if cpu is not None else float("nan")
        found[(int(m["n"]), m["load"])] = (
            float(m["tps"]),
            float(m["p50"]),
            float(m["p99"]),
            worker,
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="revision A (e.g. the previous main)")
    parser.add_argument("--head", default="HEAD", help="revision B")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sessions", default="100,1000")
    parser.add_argument("--rates", default="50")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="turnlog-ab-") as tmp:
        trees = {
            "A": worktree(args.base, Path(tmp) / "a"),
            "B": worktree(args.head, Path(tmp) / "b"),
        }
        try:
            results: dict[str, list[dict[tuple[int, str], tuple[float, ...]]]] = {"A": [], "B": []}
            for i in range(args.repeat):
                order = ("A", "B") if i % 2 == 0 else ("B", "A")
                for arm in order:
                    results[arm].append(run(trees[arm], args))
                    print(f"rep {i + 1} {arm} done", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                    capture_output=True,
                )
    keys = sorted(set(results["A"][0]) & set(results["B"][0]))
    lines = [
        f"A = {args.base}, B = {args.head}; {args.repeat} repetitions each, interleaved "
        f"(A B, B A, ...); medians; {args.seconds:g} s windows.",
        "",
        "| N | load | turns/s A | turns/s B | B/A | worker CPU ms/turn A / B | B/A "
        "| hop p50 A / B (ms) | hop p99 A / B (ms) |",
        "|---:|---|---:|---:|---:|---|---:|---|---|",
    ]
    for key in keys:
        a = [statistics.median(r[key][i] for r in results["A"]) for i in range(4)]
        b = [statistics.median(r[key][i] for r in results["B"]) for i in range(4)]
        lines.append(
            f"| {key[0]} | {key[1]} | {a[0]:.1f} | {b[0]:.1f} | {b[0] / a[0]:.2f} | "
            f"{a[3]:.2f} / {b[3]:.2f} | {b[3] / a[3]:.2f} | "
            f"{a[1]:.1f} / {b[1]:.1f} | {a[2]:.1f} / {b[2]:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.write:
        command = ".venv/bin/python bench/turns_ab.py " + " ".join(sys.argv[1:])
        write_section(
            "## Session worker A/B",
            f"## Session worker A/B\n\n`{command}`\n\n"
            f"bench/turns.py of each revision, run from a worktree of it (client and "
            f"worker of the same revision), on the same broker.\n\n{text}\n",
        )


if __name__ == "__main__":
    main()
