"""Soak: many agent sessions while every worker kind is SIGKILLed at random moments, the
broker and PostgreSQL restart once each and junk inputs are mixed in; then the invariants,
each with its figure and PASS/FAIL (exit code 1 if any fails).

    .venv/bin/python bench/soak.py [--sessions 200] [--minutes 3] [--turns 20] [--seed 1]
        [--kill-interval 8] [--session-workers 3] [--projectors 2] [--partitions 8]
        [--session-timeout-ms 6000]
        [--junk-interval 2] [--no-broker-restart] [--no-postgres-restart]
        [--drain-timeout 300] [--stall-timeout 120] [--infra own|dev] [--keep] [--write]

Infrastructure (bench/_soak_infra.py): `--infra own` (default) starts a private Kafka
broker and PostgreSQL server with turnlog.dev's code on a state dir of their own and free
loopback ports, so the restarts disturb nobody else's runs; `--infra dev` uses the
`turnlog dev` infrastructure (started if not running, as the tests' conftest does) and
restarts THAT broker and server (only if they were started from this state dir; else the
restart is skipped, and said so). Either way the run has its own topic prefix and its own
database, deleted at the end unless --keep (which also keeps the private servers and the
worker logs; when an invariant fails, the worker logs, the sandbox and copies of the
broker's and the server's logs are kept anyway, in the work dir printed at the end).

The platform: `--session-workers` `turnlog worker session` and `--projectors`
`turnlog worker projector` subprocesses (tests/support/harness.WorkerProcess).
Agent `soaker` on the scripted provider (20 ms per call): each user message gets one
calculator call and one shell call of a NON-idempotent command, `mktemp -p marks
<session>-t<turn>.XXXXXX`, confined by bubblewrap: every run leaves a file in the sandbox,
so executions are counted where they land (tests/integration/test_rebalance_effects.py).
`on_unknown_outcome = "fail"`: a call whose outcome became unknown fails by name.

Timeline, over `--minutes`: every session runs its turns back to back (closed loop, up to
`--turns`); every `--kill-interval` s (±50 %) a random worker, session worker or
projector (each kind at least once), is SIGKILLed and started again 0-3 s later; at 40 %
of the window the broker is stopped and started on the same data dir and port; at 65 %
PostgreSQL is stopped (`pg_ctl stop -m fast`) for 5 s; every `--junk-interval` s (±50 %)
1-3 junk inputs: undecodable bytes (random, behind the Avro magic, a truncated valid
request), a message with U+0000, an oversized message (1.1-3.5 MB, over the text limit).
A worker that exits without being killed is noted with the line of its log that says
why and started again. Then no more kills or new turns: once every turn ended and the
workers committed every input (or no event came for `--stall-timeout` s: the partitions
with unfinished turns are named), the projectors catch up and stop, and the checks run
(bench/_soak_checks.py):

  every turn sent ended; inputs lost (0); duplicate or missing seqs (0); LLM calls
  completed more than once (0); turn costs == sum of their calls; tool executions per
  recorded shell call (1.00 unless outcomes became unknown, never a run twice); DLQ
  records == undecodable junk sent; NUL and oversized junk rejected; every event
  projected once; projections equal a clean rebuild (every projection table); the audit
  chain verifies (one row per event); running workers that exited by themselves (0);
  workers (re)started during an outage that exited instead of waiting for it (0).
The summary also gives the rebalances of the session workers' group (from the broker's
log): a few per kill; hundreds mean the group did not settle.

Prints the timeline and the figures; `--write` also replaces the "Soak" section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg
import yaml
from _soak_checks import Check, RequestRecord, check_all  # bench/ is on sys.path
from _soak_fleet import AGENT, Fleet, JunkSender, Run
from _soak_infra import Infra, start_infra
from aiokafka.errors import KafkaError

from agents.errors import DecodeError
from agents.events import TurnCompleted
from projections.audit import read_checkpoints, verify_audit_log
from projections.migrate import migrate
from projections.projector import ProjectorConfig
from projections.rebuild import rebuild, table_checksums
from projections.store import PROJECTION_TABLES
from schemas.codec import decode_event, decode_request
from streams.partitioning import partition_for
from streams.topics import TopicNames, delete_topics, ensure_topics
from tests.conftest import create_database, drop_database
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    group_caught_up,
    read_records,
    user_message,
    wait_until,
    worker_env,
)
from tests.support.projections import role_url

SECTION = "## Soak"

_AGENTS = f"""
[agents.{AGENT}]
description = "Each message: a calculator call and a non-idempotent shell command."
model = "scripted-small"
system_prompt = "You are the soak agent. Calculate, and leave one mark per message."
tools = ["calculator", "shell"]
max_iterations = 4
max_tokens = 256

[agents.{AGENT}.budget]
turn_usd = 1.0

[agents.{AGENT}.compaction]
strategy = "sliding_window"
trigger_ratio = 0.5
target_ratio = 0.25
keep_last = 8

[agents.{AGENT}.deadlines]
llm_s = 60
tool_s = 20
on_unknown_outcome = "fail"

[agents.{AGENT}.policy]
default = "allow"

# A rule, not the default: the shell's own default (require_approval) yields only to one.
[[agents.{AGENT}.policy.rules]]
name = "marks-run"
tool = "shell"
action = "allow"
"""

_SCRIPT = {
    "defaults": {"latency_ms": 20, "chunks": 2},
    "rules": [
        {
            "name": "work",
            "when": {"last": "user"},
            "respond": {
                "text": "Calculating and marking.",
                # The user text is "<session>-t<turn>": one file per run of the command.
                "tool_calls": [
                    {"name": "calculator", "arguments": {"expression": "6*7"}},
                    {"name": "shell", "arguments": {"command": "mktemp -p marks {{user}}.XXXXXX"}},
                ],
                "usage": {"input_tokens": 120, "output_tokens": 12},
            },
        },
        {
            "name": "answer",
            "when": {"last": "tool_result"},
            "respond": {
                "text": "Done: {{tool_result}}",
                "usage": {"input_tokens": 140, "output_tokens": 8, "cache_read_tokens": 100},
            },
        },
    ],
    "otherwise": {"text": "?"},
}


# --------------------------------------------------------------------------- phases


async def drive(
    args: argparse.Namespace,
    names: TopicNames,
    log: EventLog,
    send: RequestSender,
    sessions: list[str],
    run: Run,
    deadline: float,
    stop: asyncio.Event,
) -> None:
    """Each session's next turn as soon as its previous one ended (closed loop), until
    `--turns` or the deadline; keeps reading the log until `stop`."""
    while not stop.is_set():
        await log.poll(50)
        if time.monotonic() >= deadline:
            continue
        ready = [
            s
            for s in sessions
            if run.turns_sent.get(s, 0) < args.turns
            and log.turns_ended(s) >= run.turns_sent.get(s, 0)
        ]
        if not ready:
            continue
        batch = []
        for s in ready:
            turn = run.turns_sent.get(s, 0) + 1
            batch.append(
                user_message(s, f"{s}-t{turn}", agent=AGENT if turn == 1 else None, turn=turn)
            )
        try:
            await asyncio.wait_for(send.requests(batch), 30)
        except (KafkaError, TimeoutError) as exc:
            # Re-sent next round under the same request ids: a copy that did land is
            # rejected as a duplicate, which the checks account for.
            run.send_errors += 1
            if run.send_errors <= 3 or run.send_errors % 20 == 0:
                run.note(f"sending {len(batch)} turns failed ({type(exc).__name__}); retrying")
            continue
        for r in batch:
            run.turns_sent[r.session_id] = run.turns_sent.get(r.session_id, 0) + 1


async def chaos(
    args: argparse.Namespace,
    infra: Infra,
    fleet: Fleet,
    junk: JunkSender,
    rng: random.Random,
    run: Run,
    window: float,
) -> None:
    """Kills, the two restarts and the junk, on their schedules, until the window ends."""
    t0 = time.monotonic()
    next_kill = t0 + args.kill_interval * rng.uniform(0.3, 1.0)
    next_junk = t0 + args.junk_interval * rng.uniform(0.5, 1.5)
    restarts: dict[str, float] = {}
    if not args.no_broker_restart:
        if infra.can_restart_broker():
            restarts["broker"] = t0 + 0.40 * window
        else:
            run.note("broker restart SKIPPED: the broker was not started from this state dir")
    if not args.no_postgres_restart:
        if infra.can_restart_postgres():
            restarts["postgres"] = t0 + 0.65 * window
        else:
            run.note("PostgreSQL restart SKIPPED: the server was not started from this state dir")
    first_kinds = ["session", "projector"]
    rng.shuffle(first_kinds)
    background: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    async def broker() -> None:
        run.note("broker: stopping (SIGTERM), then starting on the same data dir and port")
        run.outages["broker"] = [time.monotonic(), float("inf")]
        run.broker_down_s = await asyncio.to_thread(infra.restart_broker)
        run.outages["broker"][1] = time.monotonic()
        run.note(f"broker: answering again after {run.broker_down_s:.1f} s")

    async def postgres() -> None:
        run.note("PostgreSQL: pg_ctl stop -m fast; down for 5 s")
        run.outages["PostgreSQL"] = [time.monotonic(), float("inf")]
        run.postgres_down_s = await asyncio.to_thread(infra.restart_postgres, 5.0)
        run.outages["PostgreSQL"][1] = time.monotonic()
        run.note(f"PostgreSQL: started again after {run.postgres_down_s:.1f} s")

    while time.monotonic() - t0 < window:
        now = time.monotonic()
        fleet.supervise()
        if now >= next_kill:
            next_kill = now + args.kill_interval * rng.uniform(0.5, 1.5)
            kind = (
                first_kinds.pop()
                if first_kinds
                else rng.choices(("session", "projector"), weights=(2, 1))[0]
            )
            alive = [w for w in fleet.of(kind) if w.alive and w.name not in fleet.down]
            if alive:
                spawn(fleet.kill(rng.choice(alive), rng.uniform(0, 3)))
        if now >= next_junk:
            next_junk = now + args.junk_interval * rng.uniform(0.5, 1.5)
            spawn(junk.send_some())
        for what, at in list(restarts.items()):
            if now >= at:
                del restarts[what]
                spawn(broker() if what == "broker" else postgres())
        await asyncio.sleep(0.2)  # the schedule's tick, not a synchronisation
    if background:
        run.note(f"window over: waiting for {len(background)} restart(s) in progress")
        await asyncio.gather(*background)
    fleet.supervise()


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


async def projection_checks(
    infra: Infra,
    names: TopicNames,
    admin_url: str,
    app_url: str,
    total_events: int,
    fleet: Fleet,
    run: Run,
) -> list[Check]:
    """Wait for the projectors to reach every event, stop them, then: the audit chain,
    and every projection table against a clean rebuild."""

    def counted() -> bool:
        try:
            projected = _count(app_url, "SELECT count(*) FROM events")
            parked = _count(app_url, "SELECT count(*) FROM projection_quarantine")
        except psycopg.Error:
            return False
        return projected + parked >= total_events

    async def caught_up() -> bool:
        fleet.supervise()
        return await asyncio.to_thread(counted)

    began = time.monotonic()
    caught = True
    try:
        await wait_until(caught_up, 300, "the projectors reached every event", interval_s=0.5)
    except AssertionError as exc:
        caught = False
        run.note(str(exc))
    run.note(f"projectors caught up in {time.monotonic() - began:.1f} s; stopping them")
    await fleet.stop("projector")
    projected = _count(app_url, "SELECT count(*) FROM events")
    quarantined = _count(app_url, "SELECT count(*) FROM projection_quarantine")
    stopped = _count(
        app_url, "SELECT count(*) FROM projector_offsets WHERE stopped_reason IS NOT NULL"
    )
    projected_check = Check(
        "every event projected once",
        f"{projected} rows in events == {total_events} distinct (session, seq) on the topic; "
        f"quarantined "
        f"{quarantined}; stopped partitions {stopped}",
        caught and projected == total_events and quarantined == 0 and stopped == 0,
    )

    checkpoints = await read_checkpoints(infra.bootstrap, names.checkpoints)
    report = await asyncio.to_thread(verify_audit_log, admin_url, checkpoints)
    audit = Check(
        "audit chain verifies",
        f"{'ok' if report.ok else 'BROKEN'}: {report.rows} rows for {total_events} events, "
        f"{report.checkpoints_matched} of {len(checkpoints)} published checkpoints matched",
        report.ok
        and report.rows == total_events
        and report.checkpoints_matched == len(checkpoints),
        [str(report.broken)] if report.broken else [],
    )

    incremental = await asyncio.to_thread(table_checksums, app_url, PROJECTION_TABLES)
    config = ProjectorConfig(
        infra.bootstrap, app_url, names.events, names.checkpoints, group_id=None
    )
    began = time.monotonic()
    rebuilt = await rebuild(config)
    differ = [t for t in PROJECTION_TABLES if incremental.get(t) != rebuilt.checksums.get(t)]
    rows = sum(n for n, _ in incremental.values())
    tables = Check(
        "projections equal a clean rebuild",
        f"{len(PROJECTION_TABLES) - len(differ)} of {len(PROJECTION_TABLES)} tables equal "
        f"({rows} rows; rebuild replayed {rebuilt.events_replayed} events in "
        f"{time.monotonic() - began:.1f} s)",
        not differ,
        [
            f"{t}: incremental {incremental.get(t)} != rebuild {rebuilt.checksums.get(t)}"
            for t in differ
        ],
    )
    return [projected_check, tables, audit]


# --------------------------------------------------------------------------- main


async def soak(args: argparse.Namespace, infra: Infra, workdir: Path, run: Run) -> list[Check]:
    rng = random.Random(args.seed)
    prefix = f"soak{secrets.token_hex(3)}."
    db_name = f"turnlog_soak_{secrets.token_hex(4)}"
    names = (await ensure_topics(infra.bootstrap, prefix, partitions=args.partitions)).names
    admin_url = await asyncio.to_thread(create_database, infra.server_url, db_name)
    try:
        await asyncio.to_thread(migrate, admin_url)
        app_url = await asyncio.to_thread(role_url, admin_url)
        print(f"topics {prefix}*, database {db_name}, work dir {workdir}", flush=True)
        return await _soak(args, infra, workdir, run, rng, names, admin_url, app_url)
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                await delete_topics(infra.bootstrap, prefix)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(drop_database, infra.server_url, db_name)


async def _soak(
    args: argparse.Namespace,
    infra: Infra,
    workdir: Path,
    run: Run,
    rng: random.Random,
    names: TopicNames,
    admin_url: str,
    app_url: str,
) -> list[Check]:
    sandbox = workdir / "sandbox"
    (sandbox / "marks").mkdir(parents=True)
    agents = workdir / "agents.toml"
    agents.write_text(_AGENTS, encoding="utf-8")
    script = workdir / "soak.script.yaml"
    script.write_text(yaml.safe_dump(_SCRIPT, sort_keys=False), encoding="utf-8")
    env = worker_env(
        infra.bootstrap,
        names.requests[: -len("turnlog.requests")],
        partitions=args.partitions,
        agents=agents,
        script=script,
        sandbox=sandbox,
        session_timeout_ms=args.session_timeout_ms,
    )
    env.pop("DATABASE_URL", None)  # session workers and their tools never see it
    projector_env = {**env, "DATABASE_URL": app_url}
    sessions = [f"soak-{i:04d}" for i in range(args.sessions)]
    window = args.minutes * 60
    group_id = names.requests[: -len("turnlog.requests")] + "turnlog-session"

    async with (
        WorkerGroup(env, workdir / "logs") as group,
        RequestSender(infra.bootstrap, names) as send,
        EventLog(infra.bootstrap, names.events) as log,
        JunkSender(infra.bootstrap, names, sessions, rng, run) as junk,
    ):
        fleet = Fleet(group, env, projector_env, args.session_workers, args.projectors, run)
        fleet.start_all()
        await fleet.of("session")[0].wait_assigned(timeout_s=120)
        run.started = time.monotonic()
        run.note(
            f"{args.session_workers} session workers and {args.projectors} projectors "
            f"up; {args.sessions} sessions start"
        )
        deadline = time.monotonic() + window
        stop_driving = asyncio.Event()
        driver = asyncio.create_task(
            drive(args, names, log, send, sessions, run, deadline, stop_driving)
        )

        async def progress() -> None:
            while True:
                await asyncio.sleep(15)  # a progress line's period
                done = sum(1 for e in log.events if isinstance(e.payload, TurnCompleted))
                run.note(
                    f"progress: {sum(run.turns_sent.values())} turns sent, {done} "
                    f"completed, {len(log.events)} events, {len(run.junk)} junk, "
                    f"kills {dict(run.kills)}"
                )

        reporter = asyncio.create_task(progress())
        try:
            await chaos(args, infra, fleet, junk, rng, run, window)
            run.note("window over: no more kills or new turns; draining")
            drain_began = time.monotonic()

            progress_at = [time.monotonic(), len(log.events)]

            def drained() -> bool:
                fleet.supervise()
                if driver.done():
                    driver.result()
                if len(log.events) != progress_at[1]:
                    progress_at[:] = [time.monotonic(), len(log.events)]
                elif time.monotonic() - progress_at[0] > args.stall_timeout:
                    raise AssertionError(f"no new event for {args.stall_timeout:g} s")
                return all(log.turns_ended(s) >= n for s, n in run.turns_sent.items())

            try:
                await wait_until(
                    drained,
                    args.drain_timeout,
                    "every turn sent ended",
                    interval_s=0.5,
                    diagnose=lambda: log.summary(
                        [s for s, n in run.turns_sent.items() if log.turns_ended(s) < n]
                    ),
                )
                await wait_until(
                    lambda: group_caught_up(infra.bootstrap, group_id, names.requests),
                    120,
                    "the session workers committed every input",
                    interval_s=0.5,
                )
            except AssertionError as exc:
                stuck = sorted(
                    {
                        partition_for(s, args.partitions)
                        for s, n in run.turns_sent.items()
                        if log.turns_ended(s) < n
                    }
                )
                run.note(f"DRAIN INCOMPLETE: {exc}; partitions with unfinished turns: {stuck}")
            run.drain_s = time.monotonic() - drain_began
            run.note(f"drained in {run.drain_s:.1f} s")
        finally:
            stop_driving.set()
            reporter.cancel()
            await asyncio.gather(driver, reporter, return_exceptions=True)

        event_records = await read_records(infra.bootstrap, names.events)
        events = [decode_event(r.value) for r in event_records]
        positions = [(r.partition, r.offset) for r in event_records]
        records = []
        for rec in await read_records(infra.bootstrap, names.requests):
            try:
                request = decode_request(rec.value)
            except DecodeError:
                request = None
            records.append(RequestRecord(rec.partition, rec.offset, request))
        dlq = await read_records(infra.bootstrap, names.dlq)
        checks = check_all(
            events=events,
            positions=positions,
            records=records,
            dlq=dlq,
            requests_topic=names.requests,
            junk=run.junk,
            turns_sent=run.turns_sent,
            marks=sandbox / "marks",
        )
        # The projection holds each (session, seq) once, whatever the log holds twice.
        distinct = len({(e.session_id, e.seq) for e in events})
        checks += await projection_checks(infra, names, admin_url, app_url, distinct, fleet, run)
        await fleet.stop("session")
        run.rebalances = await asyncio.to_thread(infra.group_rebalances, group_id)
        checks.append(
            Check(
                "running workers that exited by themselves",
                str(len(run.unexpected)),
                not run.unexpected,
                run.unexpected[:10],
            )
        )
        checks.append(
            Check(
                "workers started during an outage wait for it (no exit)",
                f"{len(run.outage_exits)} exits of workers (re)started while the broker or "
                "PostgreSQL was down",
                not run.outage_exits,
                run.outage_exits[:10],
            )
        )
        return checks


def _print(args: argparse.Namespace, run: Run, checks: list[Check], infra: Infra) -> None:
    def secs(value: float | None) -> str:
        return "none" if value is None else f"{value:.1f} s"

    print(
        f"\nsoak: {args.sessions} sessions, {sum(run.turns_sent.values())} turns sent, "
        f"{args.minutes:g} min window + {run.drain_s:.0f} s drain; SIGKILLs: "
        f"{dict(sorted(run.kills.items()))}; broker restart: "
        f"{secs(run.broker_down_s)}; "
        f"PostgreSQL restart: "
        f"{secs(run.postgres_down_s)}; "
        f"junk: {dict(sorted(Counter(j.kind for j in run.junk).items()))}; "
        f"rebalances of the session workers' group (broker log): "
        f"{'?' if run.rebalances is None else run.rebalances}"
    )
    for check in checks:
        print(check.line())
        for line in check.detail:
            print(f"         {line}")
    failed = [c.name for c in checks if not c.ok]
    print(
        f"\n{'FAIL: ' + ', '.join(failed) if failed else 'PASS'} "
        f"({len(checks) - len(failed)} of {len(checks)} invariants hold)"
    )


def _command(args: argparse.Namespace) -> str:
    parts = [
        ".venv/bin/python bench/soak.py",
        f"--sessions {args.sessions}",
        f"--minutes {args.minutes:g}",
        f"--turns {args.turns}",
        f"--seed {args.seed}",
        f"--kill-interval {args.kill_interval:g}",
    ]
    parts += [f"--session-timeout-ms {args.session_timeout_ms}"] * (args.session_timeout_ms != 6000)
    parts += ["--no-broker-restart"] * args.no_broker_restart
    parts += ["--no-postgres-restart"] * args.no_postgres_restart
    parts += [f"--infra {args.infra}"] * (args.infra != "own")
    return " ".join(parts)


def _write(args: argparse.Namespace, run: Run, checks: list[Check]) -> None:
    lines = [
        SECTION,
        "",
        f"Command: `{_command(args)} --write`",
        "",
        (
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
            f"({platform.machine()}, Python {platform.python_version()}); "
            f"{args.session_workers} session workers, {args.projectors} projectors, "
            f"{args.partitions} partitions. SIGKILLs {dict(sorted(run.kills.items()))}, "
            f"junk {dict(sorted(Counter(j.kind for j in run.junk).items()))}."
        ),
        "",
        "| invariant | figure | |",
        "|---|---|---|",
    ]
    lines += [f"| {c.name} | {c.figure} | {'PASS' if c.ok else 'FAIL'} |" for c in checks]
    markdown = "\n".join(lines) + "\n"
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(lambda _m: markdown + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + markdown
    path.write_text(text, encoding="utf-8")
    print(f"wrote the '{SECTION[3:]}' section of {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument(
        "--minutes",
        type=float,
        default=3.0,
        help="the chaos window (the drain and the checks come after)",
    )
    parser.add_argument(
        "--turns",
        type=int,
        default=20,
        help="turns per session at most (fewer when the window ends first)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kill-interval", type=float, default=8.0, help="mean seconds between two SIGKILLs"
    )
    parser.add_argument(
        "--junk-interval",
        type=float,
        default=2.0,
        help="mean seconds between two bursts of 1-3 junk inputs",
    )
    parser.add_argument("--session-workers", type=int, default=3)
    parser.add_argument("--projectors", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=6000,
        help="the session workers' TURNLOG_SESSION_TIMEOUT_MS (default: the "
        "product's; the tests use 3000)",
    )
    parser.add_argument("--no-broker-restart", action="store_true")
    parser.add_argument("--no-postgres-restart", action="store_true")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait after the window for every turn to end",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=120.0,
        help="stop draining when no event came for this long",
    )
    parser.add_argument(
        "--infra",
        choices=("own", "dev"),
        default="own",
        help="own: a private broker and server (default); dev: the "
        "`turnlog dev` ones, restarted too",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the topics, the database, the worker logs (and, with "
        "--infra own, the private servers)",
    )
    parser.add_argument(
        "--write", action="store_true", help="replace the Soak section of BENCHMARKS.md"
    )
    args = parser.parse_args()

    run = Run()
    print(f"soak: {_command(args)}", flush=True)
    began = time.monotonic()
    infra = start_infra(args.infra)
    print(f"infrastructure up in {time.monotonic() - began:.1f} s: {infra.describe()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="turnlog-soak-"))
    checks: list[Check] = []
    # SIGTERM ends the run like Ctrl-C, so the cleanup below still runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        checks = asyncio.run(soak(args, infra, workdir, run))
    finally:
        passed = bool(checks) and all(c.ok for c in checks)
        if not passed:
            infra.save_logs(workdir / "infra")  # the broker's and the server's logs
        infra.close(keep=args.keep)
        if passed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"worker logs, the sandbox and the servers' logs kept in {workdir}")
            if args.keep and infra.mode == "own":
                print(
                    f"private servers kept: TURNLOG_STATE_DIR={infra.settings.state_dir} "
                    f"TURNLOG_DEV_KAFKA_CONTROLLER_PORT="
                    f"{infra.settings.dev_kafka_controller_port} "
                    f"TURNLOG_DEV_KAFKA_PORT={infra.settings.dev_kafka_port} "
                    f"TURNLOG_DEV_POSTGRES_PORT={infra.settings.dev_postgres_port} "
                    f"(stop with `turnlog dev down` and those variables)"
                )
    _print(args, run, checks, infra)
    if args.write:
        _write(args, run, checks)
    sys.exit(0 if all(c.ok for c in checks) else 1)


if __name__ == "__main__":
    main()
