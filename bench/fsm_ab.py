"""bench/fsm.py for two revisions of turnlog, interleaved in one run (A/B).

    .venv/bin/python bench/fsm_ab.py --base REV [--head REV] [--rounds 5] [--repeat 3]
        [--instructions]

Each revision runs from a git worktree of its own (its own bench/fsm.py and core), one
after the other: A B, B A, A B, ... so the drift of a shared machine falls on both. Prints
the median over the rounds of each figure (events/s per CPU-second) for each revision,
the ratio B/A, and the load average after each round.

`--instructions` also counts the instructions each revision executes for the same work
under valgrind (callgrind's Ir; PYTHONHASHSEED=0), which the load of a shared machine
does not change: the decide part is the run of `session_log(2,000 events)` minus the
imports, evolve one fold of the 10,000-event log, decode + evolve one fold from its
Avro bytes (each the difference between a run that does the work and one that does
not). Slow (minutes per revision). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"^\s+(?P<label>\S.*?)\s{2,}(?P<rate>[\d,]+) events/s", re.MULTILINE)

# Runs inside a revision's worktree (its bench/ on sys.path): the work whose
# instructions are counted, or none of it (`k` = 0) for the baseline.
DRIVER = """
import pickle, sys
sys.path.insert(0, "bench")
mode, path, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode in ("gen", "decide"):
    import fsm
    reg = fsm.registry()
    if mode == "gen":
        log, _ = fsm.session_log(10_000, reg)
        with open(path, "wb") as f:
            pickle.dump(log, f)
    elif k:
        fsm.session_log(k, reg)
    raise SystemExit
from agents.fold import fold
from schemas.codec import decode_event, encode_event
with open(path, "rb") as f:
    log = pickle.load(f)
sid = log[0].session_id
if mode == "evolve":
    for _ in range(k):
        fold(log, sid)
else:
    blobs = [encode_event(e) for e in log]
    for _ in range(k):
        fold(map(decode_event, blobs), sid)
"""


def worktree(rev: str, into: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), rev],
        check=True,
        capture_output=True,
    )
    (into / ".venv").symlink_to(ROOT / ".venv")
    return into


def figures(tree: Path, repeat: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(tree / "bench" / "fsm.py"), "--repeat", str(repeat)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {m["label"]: float(m["rate"].replace(",", "")) for m in FIGURE.finditer(out)}


def instructions(tree: Path, mode: str, path: Path, k: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            DRIVER,
            mode,
            str(path),
            str(k),
        ],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"},
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise SystemExit(f"valgrind gave no instruction count:\n{out[-2000:]}")
    return int(found.group(1))


def counted(tree: Path, scratch: Path) -> dict[str, float]:
    """Instructions per event of each part, for the revision in `tree`."""
    log = scratch / f"{tree.name}.pkl"
    subprocess.run(
        [sys.executable, "-c", DRIVER, "gen", str(log), "0"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        check=True,
    )
    decide = instructions(tree, "decide", log, 2_000) - instructions(tree, "decide", log, 0)
    evolve = instructions(tree, "evolve", log, 1) - instructions(tree, "evolve", log, 0)
    decode = instructions(tree, "decode", log, 1) - instructions(tree, "decode", log, 0)
    # decide: a 2,000-event session (its text generation included, the same for both);
    # the folds: the 10,000-event log (10,001 events).
    return {
        "evolve (fold from scratch)": evolve / 10_001,
        "decode + evolve": decode / 10_001,
        "decide (producing the log)": decide / 2_000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--instructions", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fsm-ab-") as tmp:
        scratch = Path(tmp)
        trees = {"A": worktree(args.base, scratch / "a"), "B": worktree(args.head, scratch / "b")}
        try:
            runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
            loads = []
            for r in range(args.rounds):
                for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
                    runs[side].append(figures(trees[side], args.repeat))
                loads.append(os.getloadavg()[0])
            print(
                f"A = {args.base}, B = {args.head}; {args.rounds} rounds of --repeat {args.repeat}"
            )
            print("load average (1 min) after each round: " + ", ".join(f"{x:.1f}" for x in loads))
            print(f"  {'median events/s':<30} {'A':>10} {'B':>10}   B/A")
            for label in runs["A"][0]:
                a = statistics.median(run[label] for run in runs["A"])
                b = statistics.median(run[label] for run in runs["B"])
                print(f"  {label:<30} {a:>10,.0f} {b:>10,.0f}  {b / a:5.2f}")
            if args.instructions:
                counts = {side: counted(tree, scratch) for side, tree in trees.items()}
                print(f"  {'instructions per event':<30} {'A':>10} {'B':>10}   A/B")
                for label, a in counts["A"].items():
                    b = counts["B"][label]
                    print(f"  {label:<30} {a:>10,.0f} {b:>10,.0f}  {a / b:5.2f}")
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                    capture_output=True,
                )


if __name__ == "__main__":
    main()
