"""turnlog against LangGraph (Postgres checkpointer) and DBOS on the same agent loop.

    .venv/bin/python -m bench.peers [--peers turnlog,langgraph-sync,langgraph-async,dbos]
        [--rounds 3] [--sessions 100] [--seconds 15] [--rates 10,50] [--bytes-turns 1000]
        [--parts load,bytes] [--write]

Needs `turnlog dev up` (Kafka 127.0.0.1:9092 and PostgreSQL 127.0.0.1:55432; or
KAFKA_BOOTSTRAP_SERVERS and a superuser DATABASE_URL). The peers run in virtual
environments of their own that this script makes under bench/peers/.venvs/ (pinned
versions below; their dependencies are not the project's), each against a scratch
database of its own on the same PostgreSQL, dropped afterwards. turnlog runs on
bench/turns.py's machinery: one `turnlog worker session` subprocess, fresh topics.

The loop, in every peer: per turn, the caller's message → LLM → calculator → LLM → the
answer; the model is scripted at zero latency (the same texts as tests/data/calc.script.yaml,
the same tool call and tool result "42").

- load: N sessions (--sessions), closed loop (each sends its next message when its
  answer arrives: throughput and CPU per turn) and paced at each --rates (turns/s offered
  by all N together: turn and step latency), for --seconds after every session's first
  turn, --rounds times, the peers interleaved (the order rotates by round);
- bytes: one session, --bytes-turns turns back to back; logical bytes stored for turn
  10/100/1,000 and on-disk bytes (mean of the 10 turns up to it); then, in a process that
  did not run it, the session's state rebuilt and its next turn run (resume).

Prints one table (the median of the rounds, their range in brackets, the load average
with each figure); --write replaces the "Against the peers" section of BENCHMARKS.md.
Nothing here asserts. Temporal is not in the comparison: see TEMPORAL below.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import psycopg
from psycopg import sql

from bench._report import write_section
from bench.peers import _turnlog

SECTION = "## Against the peers"
VENVS = HERE / ".venvs"
# The versions measured; a venv is rebuilt when its list changes.
REQUIREMENTS = {
    "langgraph": [
        "langgraph==1.2.24",
        "langgraph-checkpoint-postgres==3.2.0",
        "psycopg[binary]==3.3.9",
        "psycopg-pool==3.3.3",
    ],
    "dbos": ["dbos==3.4.0", "psycopg[binary]==3.3.9"],
}
# peer name → (venv, script, extra argv)
PEERS: dict[str, tuple[str, str, list[str]] | None] = {
    "turnlog": None,
    "langgraph-sync": ("langgraph", "peer_langgraph.py", ["--durability", "sync"]),
    "langgraph-async": ("langgraph", "peer_langgraph.py", ["--durability", "async"]),
    "dbos": ("dbos", "peer_dbos.py", []),
}
TEMPORAL = (
    "Temporal is not measured. Its dev server ships in the `temporal` CLI; built from the Go "
    "module proxy (go 1.26.8): `go install github.com/temporalio/cli/cmd/temporal@latest` "
    "(v1.9.1) is refused because the module's go.mod has replace directives, and "
    "`go build ./cmd/temporal` inside the downloaded module fails because one of them "
    "points at ./cliext, a nested module that the module zip does not hold. Building the "
    "server alone (go.temporal.io/server) would also need its SQL schema tool and a "
    "configuration: left for later."
)
NOT_EQUIVALENT = [
    "Durability: turnlog commits each step's events in a Kafka transaction (acks=all) on a "
    "single broker (replication factor 1; Kafka leaves fsync to the OS); LangGraph `sync` "
    "writes each step's checkpoint before the next step runs, `async` while it runs (a "
    "crash can lose the last steps); DBOS writes each step's output before the workflow "
    "goes on. The dev PostgreSQL runs with fsync=off: no peer pays for an fsync.",
    "What is stored: turnlog appends events (each content once, the LLM context by "
    "reference) and inputs, plus a snapshot now and then; LangGraph stores a checkpoint per "
    "step, with a new version of the whole message list whenever it changes (it grows "
    "with the session); DBOS stores each step's output, the messages sent to the workflow "
    "and its events — the conversation itself lives in the workflow's memory and is "
    "rebuilt by re-running the workflow.",
    "What a turn does: turnlog's worker also checks budgets (reserving tokens and USD "
    "before each call), policy and deadlines, builds each LLM request with sliding-window "
    "compaction and records its digest; the peers' nodes call the scripted model directly. "
    "turnlog's Postgres projections are not running here (the projector would add its "
    "CPU and its tables).",
    "Processes: turnlog is a worker, a broker and the client (three processes, so a "
    "hop crosses the network twice); each peer is one process running the engine and "
    "the caller, plus PostgreSQL's backends.",
    "Steps: turnlog's is a hop, an input produced → the first event it caused visible "
    "to the client's read_committed consumer; a peer's is the time between consecutive "
    "step functions returning in its process (send → LLM, LLM → tool, tool → LLM, LLM → "
    "the caller has the answer), each holding the persistence of the step before. With "
    "the scripted model at zero latency a turn is one hop for turnlog: its LLM calls "
    "run inline (TURNLOG_INLINE_LLM_MS: a model that answers the worker in under 5 ms) "
    "and the calculator is an inline tool, so the message, both answers, the tool's "
    "result and the turn's end are one transaction, durable together at the turn's end "
    "(a worker's first call of the model, which times it, is an effect of its own: "
    "three hops); the peers persist each step before the next one starts. A crash "
    "mid-turn costs turnlog the turn's calls again (the model called anew, the lost "
    "call's cost unrecorded) and a peer only the step it was in; nothing of the turn is "
    "lost or doubled in either.",
    "CPU: the broker is shared with other work on this machine (its figure includes it); "
    "PostgreSQL's is that of the backends serving the peer's database only (not the "
    "WAL writer or checkpointer).",
    "Rebuild: turnlog reads the session's events from the broker and folds them (or "
    "its latest snapshot and the events after it); LangGraph loads the latest checkpoint "
    "(`aget_state`); DBOS recovers the workflow at launch by re-running it over its "
    "recorded steps. Resume: a fresh process (worker; graph; DBOS after recovery) runs "
    "the session's next turn.",
]


def ensure_venv(name: str) -> Path:
    """The peer's virtual environment, made (or remade) when its requirements changed."""
    venv = VENVS / name
    wanted = "\n".join(REQUIREMENTS[name]) + "\n"
    marker = venv / "bench-requirements.txt"
    python = venv / "bin" / "python"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"making {venv} ({', '.join(REQUIREMENTS[name])})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS[name]], check=True)
    marker.write_text(wanted)
    return python


class Scratch:
    """A database of its own on the shared PostgreSQL, dropped afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"peers_{secrets.token_hex(4)}"
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.name

    def __enter__(self) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        return self.url

    def __exit__(self, *_: object) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )


def run_peer(peer: str, mode: str, url: str, argv: list[str], log: Path) -> dict[str, Any]:
    spec = PEERS[peer]
    assert spec is not None
    venv, script, extra = spec
    python = ensure_venv(venv)
    cmd = [str(python), str(HERE / script), mode, url, *extra, *argv]
    with log.open("ab") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, timeout=3600)
    lines = proc.stdout.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{peer} {mode} exited with {proc.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def load_round(
    args: argparse.Namespace, peers: list[str], rnd: int, bootstrap: str, admin_url: str, tmp: Path
) -> list[dict[str, Any]]:
    rows = []
    loads: list[float | None] = [None, *(float(x) for x in args.rates.split(",") if x)]
    order = peers[rnd % len(peers) :] + peers[: rnd % len(peers)]
    for rate in loads:
        for peer in order:
            if peer == "turnlog":
                r = await _turnlog.load(
                    bootstrap, args.sessions, args.seconds, tmp, rate, args.partitions
                )
                r["cpu_total_ms"] = r["cpu_worker_ms"] + r["cpu_broker_ms"] + r["cpu_client_ms"]
            else:
                argv = ["--sessions", str(args.sessions), "--seconds", str(args.seconds)]
                argv += ["--rate", str(rate)] if rate else []
                with Scratch(admin_url) as url:
                    r = run_peer(peer, "load", url, argv, tmp / f"{peer}.log")
                r["cpu_total_ms"] = r["cpu_peer_ms"] + r["cpu_pg_ms"]
            r.update({"peer": peer, "rate": rate or 0.0, "round": rnd})
            rows.append(r)
            mode = "closed loop" if rate is None else f"paced {rate:g} turns/s"
            print(
                f"round {rnd + 1} {peer:>16} {mode:>20}: {r['turns_s']:6.1f} turns/s; turn "
                f"p50/p99 {r['turn_p50']:.1f}/{r['turn_p99']:.1f} ms; step p50/p99 "
                f"{r['step_p50']:.1f}/{r['step_p99']:.1f} ms; CPU/turn {r['cpu_total_ms']:.1f} "
                f"ms; load {r['load']:.1f}",
                flush=True,
            )
    return rows


async def bytes_runs(
    args: argparse.Namespace, peers: list[str], bootstrap: str, admin_url: str, tmp: Path
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for peer in peers:
        if peer == "langgraph-async":
            continue  # the same tables as sync: what differs is when they are written
        t0 = time.monotonic()
        if peer == "turnlog":
            r = await _turnlog.bytes_and_recovery(bootstrap, args.bytes_turns, tmp, args.partitions)
            r["load"] = os.getloadavg()[0]
        else:
            argv = ["--turns", str(args.bytes_turns)]
            with Scratch(admin_url) as url:
                r = run_peer(peer, "bytes", url, argv, tmp / f"{peer}.log")
                r.update(run_peer(peer, "recover", url, argv, tmp / f"{peer}.log"))
        out[peer] = r
        print(
            f"{peer:>16} bytes/recovery ({time.monotonic() - t0:.0f} s): "
            + ", ".join(f"{k} {v:.0f}" for k, v in r.items() if isinstance(v, int | float)),
            flush=True,
        )
    return out


def _fmt(values: list[float], unit: str = "", digits: int = 1) -> str:
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}{unit}"
    return f"{med:.{digits}f}{unit} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def table(
    args: argparse.Namespace,
    peers: list[str],
    rows: list[dict[str, Any]],
    stored: dict[str, dict[str, Any]],
) -> list[str]:
    """The comparison as Markdown table lines: one row per figure, one column per peer."""
    by: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(r["peer"], r["rate"])].append(r)

    def cell(peer: str, rate: float, *keys: str, unit: str = " ms", digits: int = 1) -> str:
        runs = by.get((peer, rate), [])
        if not runs:
            return "—"
        parts = [_fmt([r[k] for r in runs], "", digits) for k in keys]
        lo, hi = min(r["load"] for r in runs), max(r["load"] for r in runs)
        load = f"{lo:.1f}" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}–{hi:.1f}"
        return " / ".join(parts) + unit + f" (load {load})"

    lines = [
        "| figure | " + " | ".join(peers) + " |",
        "|---|" + "---|" * len(peers),
        f"| closed-loop turns/s, N = {args.sessions} | "
        + " | ".join(cell(p, 0.0, "turns_s", unit="", digits=0) for p in peers)
        + " |",
        "| CPU ms per closed-loop turn, all processes | "
        + " | ".join(cell(p, 0.0, "cpu_total_ms") for p in peers)
        + " |",
        "| … by process: turnlog worker / broker / client; peer process / its PG backends | "
        + " | ".join(
            cell(p, 0.0, "cpu_worker_ms", "cpu_broker_ms", "cpu_client_ms")
            if p == "turnlog"
            else cell(p, 0.0, "cpu_peer_ms", "cpu_pg_ms")
            for p in peers
        )
        + " |",
    ]
    for rate in sorted({r["rate"] for r in rows if r["rate"]}):
        lines += [
            f"| turn latency p50 / p99 at {rate:g} turns/s offered | "
            + " | ".join(cell(p, rate, "turn_p50", "turn_p99") for p in peers)
            + " |",
            f"| step latency p50 / p99 at {rate:g} turns/s (turnlog: per hop) | "
            + " | ".join(cell(p, rate, "step_p50", "step_p99") for p in peers)
            + " |",
            f"| achieved turns/s at {rate:g} offered | "
            + " | ".join(cell(p, rate, "turns_s", unit="", digits=1) for p in peers)
            + " |",
        ]
        if "turnlog" in peers:
            lines.append(
                f"| turnlog hop split at {rate:g} turns/s, p50 / p99: input → event "
                "produced by the worker; → visible to the client | "
                + " | ".join(
                    cell(p, rate, "decided_p50", "decided_p99")
                    + "; "
                    + cell(p, rate, "visible_p50", "visible_p99")
                    if p == "turnlog"
                    else ""
                    for p in peers
                )
                + " |"
            )
            lines.append(
                f"| turnlog per transaction at {rate:g} turns/s, mean: decide / write (records "
                "acknowledged) / commit (EndTxn) | "
                + " | ".join(
                    cell(p, rate, "txn_decide_ms", "txn_write_ms", "txn_commit_ms", digits=2)
                    if p == "turnlog"
                    else ""
                    for p in peers
                )
                + " |"
            )

    def stored_cell(peer: str, key: str, unit: str = "", digits: int = 0) -> str:
        if peer == "langgraph-async":
            peer = "langgraph-sync"
        r = stored.get(peer)
        if r is None or key not in r:
            return "—"
        return f"{r[key]:,.{digits}f}{unit}"

    for k in (10, 100, 1000):
        if k <= args.bytes_turns and stored:
            lines += [
                f"| bytes stored for turn {k:,} of one session, logical | "
                + " | ".join(stored_cell(p, f"logical_{k}") for p in peers)
                + " |",
                f"| bytes on disk per turn, mean of turns {k - 9:,}–{k:,} (turnlog: of "
                "which the compacted snapshots topic, before compaction; the requests "
                "topic, transient) | "
                + " | ".join(
                    stored_cell(p, f"disk_{k}")
                    + (
                        f" ({stored_cell(p, f'disk_snapshots_{k}')}; "
                        f"{stored_cell(p, f'disk_requests_{k}')})"
                        if p == "turnlog"
                        else ""
                    )
                    for p in peers
                )
                + " |",
            ]
    if stored:
        n = args.bytes_turns
        lines += [
            f"| bytes on disk per turn, mean of all {n:,} turns (turnlog: of which the "
            "snapshots topic; the requests topic) | "
            + " | ".join(
                stored_cell(p, "disk_all")
                + (
                    f" ({stored_cell(p, 'disk_snapshots_all')}; "
                    f"{stored_cell(p, 'disk_requests_all')})"
                    if p == "turnlog"
                    else ""
                )
                for p in peers
            )
            + " |",
        ]
        lines += [
            f"| rebuild the state of the {n:,}-turn session | "
            + " | ".join(
                (
                    f"{stored_cell(p, 'rebuild_fold_ms', ' ms')} fold, "
                    f"{stored_cell(p, 'rebuild_snapshot_ms', ' ms')} snapshot + tail"
                )
                if p == "turnlog"
                else stored_cell(p, "rebuild_ms", " ms")
                for p in peers
            )
            + " |",
            "| resume: its next turn, in a process that did not run it | "
            + " | ".join(stored_cell(p, "resume_turn_ms", " ms", 1) for p in peers)
            + " |",
            "| … the process opening first (worker start to partitions owned; pool and "
            "setup; DBOS launch) | "
            + " | ".join(stored_cell(p, "open_ms", " ms") for p in peers)
            + " |",
            f"| load average during the {n:,}-turn run | "
            + " | ".join(stored_cell(p, "load", "", 1) for p in peers)
            + " |",
        ]
    return lines


def markdown(args: argparse.Namespace, command: str, lines: list[str]) -> str:
    return (
        "\n".join(
            [
                SECTION,
                "",
                f"Command: `{command}`",
                "",
                (
                    f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
                    f"({platform.machine()}, Python {platform.python_version()}), the `turnlog dev` "
                    "Kafka broker (long-running, shared with other engineers' work) and "
                    "PostgreSQL 15 (fsync off) on the same machine. Peers: "
                    + ", ".join(" ".join(v) for v in REQUIREMENTS.values())
                    + f". {args.rounds} interleaved round(s); cells are the median of the "
                    "rounds with their range in brackets and the 1-minute load average of the "
                    "runs (the machine is shared: figures move with it)."
                ),
                "",
                *lines,
                "",
                "Where the loops are not equivalent:",
                "",
                *[f"- {x}" for x in NOT_EQUIVALENT],
                f"- {TEMPORAL}",
            ]
        )
        + "\n"
    )


async def main_async(args: argparse.Namespace) -> None:
    from turnlog.settings import load_settings

    settings = load_settings()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or settings.kafka_bootstrap_servers
    admin_url = os.environ.get("DATABASE_URL") or settings.database_url
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise SystemExit(f"--peers: unknown {unknown}; known: {', '.join(PEERS)}")
    parts = set(args.parts.split(","))
    for peer in peers:
        spec = PEERS[peer]
        if spec is not None:
            ensure_venv(spec[0])
    rows: list[dict[str, Any]] = []
    stored: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="turnlog-peers-") as tmpdir:
        tmp = Path(tmpdir)
        if "load" in parts:
            for rnd in range(args.rounds):
                rows += await load_round(args, peers, rnd, bootstrap, admin_url, tmp)
        if "bytes" in parts and args.bytes_turns:
            stored = await bytes_runs(args, peers, bootstrap, admin_url, tmp)
    lines = table(args, peers, rows, stored)
    print()
    print("\n".join(lines))
    print("\nWhere the loops are not equivalent:")
    for x in [*NOT_EQUIVALENT, TEMPORAL]:
        print(f"- {x}")
    command = " ".join(["python -m bench.peers", *sys.argv[1:]])
    if args.write:
        write_section(SECTION, markdown(args, f".venv/bin/{command}", lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the load runs")
    parser.add_argument("--sessions", type=int, default=100, help="concurrent sessions N")
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window")
    parser.add_argument(
        "--rates", default="10,50", help="paced loads, turns/s offered by all N together"
    )
    parser.add_argument(
        "--bytes-turns", type=int, default=1000, help="turns of the single-session run (0: skip)"
    )
    parser.add_argument("--parts", default="load,bytes", help="load, bytes (and recovery)")
    parser.add_argument("--partitions", type=int, default=8, help="turnlog's partitions")
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
