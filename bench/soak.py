"""Soak: many agent sessions while every worker kind is SIGKILLed at random moments, the
broker and PostgreSQL restart once each and junk inputs are mixed in; then the invariants,
each with its figure and PASS/FAIL (exit code 1 if any fails).

    .venv/bin/python bench/soak.py [--sessions 200] [--minutes 3] [--turns 20] [--seed 1]
        [--kill-interval 8] [--session-workers 3] [--projectors 2] [--partitions 8]
        [--junk-interval 2] [--no-broker-restart] [--no-postgres-restart]
        [--infra own|dev] [--keep] [--write]

Infrastructure (bench/_soak_infra.py): `--infra own` (default) starts a private Kafka
broker and PostgreSQL server with turnlog.dev's code on a state dir of their own and free
loopback ports, so the restarts disturb nobody else's runs; `--infra dev` uses the
`turnlog dev` infrastructure (started if not running, as the tests' conftest does) and
restarts THAT broker and server. Either way the run has its own topic prefix and its own
database, deleted at the end unless --keep (which also keeps the private servers and the
worker logs; logs are kept anyway when an invariant fails).

The platform: `--session-workers` `turnlog worker session` and `--projectors`
`turnlog worker projector` subprocesses (tests/integration/worker_harness.WorkerProcess).
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
Then no more kills or new turns: once every turn ended and the workers committed every
input, the projectors catch up and stop, and the checks run (bench/_soak_checks.py):

  every turn sent ended; inputs lost (0); duplicate or missing seqs (0); LLM calls
  completed more than once (0); turn costs == sum of their calls; tool executions per
  recorded shell call (1.00 unless outcomes became unknown, never a run twice); DLQ
  records == undecodable junk sent; NUL and oversized junk rejected; workers that exited
  by themselves (0); projections equal a clean rebuild (every projection table); the
  audit chain verifies (one row per event).

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg
import yaml
from _soak_checks import UNDECODABLE, Check, Junk, RequestRecord, check_all  # bench/ is on sys.path
from _soak_infra import Infra, start_infra
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from agents.errors import DecodeError
from agents.events import TurnCompleted
from projections.audit import read_checkpoints, verify_audit_log
from projections.migrate import migrate
from projections.projector import ProjectorConfig
from projections.rebuild import rebuild, table_checksums
from projections.store import PROJECTION_TABLES
from projections.testing import role_url
from schemas.codec import decode_event, decode_request, encode_request
from streams.topics import TopicNames, delete_topics, ensure_topics
from tests.conftest import create_database, drop_database
from tests.integration.worker_harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    WorkerProcess,
    group_caught_up,
    read_records,
    user_message,
    wait_until,
    worker_env,
)

SECTION = "## Soak"
AGENT = "soaker"
MiB = 1024 * 1024

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
            "respond": {"text": "Done: {{tool_result}}",
                        "usage": {"input_tokens": 140, "output_tokens": 8,
                                  "cache_read_tokens": 100}},
        },
    ],
    "otherwise": {"text": "?"},
}


@dataclass
class Run:
    """What happened: the timeline and the counters the report prints."""

    started: float = field(default_factory=time.monotonic)
    timeline: list[str] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)  # exits of running workers
    outage_exits: list[str] = field(default_factory=list)  # started in an outage, exited
    outages: dict[str, list[float]] = field(default_factory=dict)  # what: [began, ended]
    junk: list[Junk] = field(default_factory=list)
    junk_failed: int = 0
    turns_sent: dict[str, int] = field(default_factory=dict)
    send_errors: int = 0
    broker_down_s: float | None = None
    postgres_down_s: float | None = None
    drain_s: float = 0.0

    def t(self) -> float:
        return time.monotonic() - self.started

    def in_outage(self, at: float) -> str | None:
        """The outage (broker, PostgreSQL) going on at monotonic time `at`, if any."""
        for what, (began, ended) in self.outages.items():
            # A worker started just before needs a few seconds to reach the server.
            if began - 5.0 <= at <= ended:
                return what
        return None

    def note(self, what: str) -> None:
        line = f"  {self.t():7.1f}s  {what}"
        self.timeline.append(line)
        print(line, flush=True)


# --------------------------------------------------------------------------- workers


class Fleet:
    """The session workers and projectors, in one WorkerGroup (all SIGKILLed at exit).
    A worker found dead that we did not kill is an unexpected exit: noted, restarted."""

    def __init__(self, group: WorkerGroup, session_env: dict[str, str],
                 projector_env: dict[str, str], n_session: int, n_projector: int,
                 run: Run) -> None:
        self.group, self.run = group, run
        self.kind: dict[str, str] = {}
        for i in range(1, n_session + 1):
            self._add(f"session-{i}", "session", session_env,
                      ("-m", "turnlog", "worker", "session"))
        for i in range(1, n_projector + 1):
            self._add(f"projector-{i}", "projector", projector_env,
                      ("-m", "turnlog", "worker", "projector", "--session-timeout-ms", "6000",
                       "--checkpoint-interval", "1", "--max-records", "2000"))
        self.down: set[str] = set()  # killed by us, restart pending
        self.started_at: dict[str, float] = {}

    def start(self, name: str) -> None:
        self.started_at[name] = time.monotonic()
        self.group.start(name)

    def _add(self, name: str, kind: str, env: dict[str, str], argv: tuple[str, ...]) -> None:
        self.group.workers[name] = WorkerProcess(name, env, self.group.log_dir / f"{name}.log",
                                                 argv=argv)
        self.kind[name] = kind

    def of(self, kind: str) -> list[WorkerProcess]:
        return [w for n, w in self.group.workers.items() if self.kind[n] == kind]

    def start_all(self) -> None:
        for name in self.group.workers:
            self.start(name)

    async def kill(self, worker: WorkerProcess, restart_after: float) -> None:
        self.down.add(worker.name)
        await asyncio.to_thread(worker.kill)
        self.run.kills[self.kind[worker.name]] += 1
        self.run.note(f"SIGKILL {worker.name} (restart in {restart_after:.1f} s)")
        await asyncio.sleep(restart_after)  # the outage, not a synchronisation
        self.start(worker.name)
        self.down.discard(worker.name)

    def supervise(self) -> None:
        for name, worker in self.group.workers.items():
            if name in self.down or worker.alive or worker.proc is None:
                continue
            code = worker.proc.returncode
            why = _last_error(worker.log_text(this_start=True))
            outage = self.run.in_outage(self.started_at.get(name, 0.0))
            if outage is not None:
                self.run.outage_exits.append(
                    f"{name}, started while {outage} was down, exited with code {code}: {why}")
                self.run.note(f"EXIT of {name} started during the {outage} outage (code "
                              f"{code}): {why}; restarted")
            else:
                self.run.unexpected.append(f"{name} exited with code {code}: {why}")
                self.run.note(f"UNEXPECTED EXIT of {name} (code {code}): {why}; restarted")
            self.start(name)

    async def stop(self, kind: str) -> None:
        """SIGTERM (a clean stop) for every worker of `kind`."""
        workers = [w for w in self.of(kind) if w.alive]
        await asyncio.gather(*(asyncio.to_thread(w.terminate, 30.0) for w in workers))


def _last_error(log: str) -> str:
    """The line of a dead worker's log that says why it exited: its CLI error message or
    its traceback's exception, else its last error-level JSON line, else its last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("turnlog:") or re.match(r"^[\w.]+(Error|Exception)\b:", line):
            return line[:300]
    for line in reversed(lines):
        if line.startswith("{") and '"error"' in line:
            return line[:300]
    return lines[-1][:300] if lines else "(empty log)"


# --------------------------------------------------------------------------- junk


class JunkSender:
    """Produces junk with a producer sized for the requests topic (4 MiB) and records
    where each landed (partition, offset)."""

    def __init__(self, bootstrap: str, names: TopicNames, sessions: list[str],
                 rng: random.Random, run: Run) -> None:
        self.names, self.sessions, self.rng, self.run = names, sessions, rng, run
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
            max_request_size=8 * MiB, client_id="turnlog-soak-junk", request_timeout_ms=20000,
        )
        self.n = 0

    async def __aenter__(self) -> Self:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    def _make(self) -> tuple[str, bytes, bytes, str | None, str | None]:
        """(kind, key, value, session id, request id) of the next junk input."""
        rng, i = self.rng, self.n
        real = rng.choice(self.sessions)
        kind = rng.choices(
            ("random_bytes", "magic_bytes", "truncated", "nul_text", "oversized"),
            weights=(2, 2, 2, 3, 1),
        )[0]
        if kind in UNDECODABLE:
            if kind == "truncated":
                valid = encode_request(user_message(real, f"{real} junk {i}", turn=10_000 + i))
                value = valid[: rng.randint(1, len(valid) - 1)]
            else:
                value = rng.randbytes(rng.randint(0, 300))
                value = b"\xc3\x01" + value if kind == "magic_bytes" else value
            with contextlib.suppress(DecodeError):
                decode_request(value)
                value = b"\xc3\x01"  # decoded by a fluke: send the bare magic instead
            return kind, real.encode(), value, None, None
        # Half to a live session (between or during its turns), half to a new one.
        session = real if rng.random() < 0.5 else f"junk-{kind}-{i}"
        text = (f"what is 6*7?\x00 junk {i}" if kind == "nul_text"
                else "x" * rng.randint(int(1.1 * MiB), int(3.5 * MiB)))
        req = user_message(session, text, agent=None if session == real else AGENT,
                           request_id=f"junk-{i}")
        return kind, session.encode(), encode_request(req), session, req.request_id

    async def send_some(self) -> None:
        for _ in range(self.rng.randint(1, 3)):
            self.n += 1
            kind, key, value, session, request_id = self._make()
            try:
                meta = await (await self.producer.send(self.names.requests, value=value, key=key))
            except KafkaError as exc:
                self.run.junk_failed += 1
                self.run.note(f"junk {kind} not sent ({type(exc).__name__}); not counted")
                continue
            self.run.junk.append(Junk(kind, meta.partition, meta.offset, session, request_id,
                                      len(value)))


# --------------------------------------------------------------------------- phases


async def drive(args: argparse.Namespace, names: TopicNames, log: EventLog,
                send: RequestSender, sessions: list[str], run: Run, deadline: float,
                stop: asyncio.Event) -> None:
    """Each session's next turn as soon as its previous one ended (closed loop), until
    `--turns` or the deadline; keeps reading the log until `stop`."""
    while not stop.is_set():
        await log.poll(50)
        if time.monotonic() >= deadline:
            continue
        ready = [s for s in sessions if run.turns_sent.get(s, 0) < args.turns
                 and log.turns_ended(s) >= run.turns_sent.get(s, 0)]
        if not ready:
            continue
        batch = []
        for s in ready:
            turn = run.turns_sent.get(s, 0) + 1
            batch.append(user_message(s, f"{s}-t{turn}", agent=AGENT if turn == 1 else None,
                                      turn=turn))
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


async def chaos(args: argparse.Namespace, infra: Infra, fleet: Fleet, junk: JunkSender,
                rng: random.Random, run: Run, window: float) -> None:
    """Kills, the two restarts and the junk, on their schedules, until the window ends."""
    t0 = time.monotonic()
    next_kill = t0 + args.kill_interval * rng.uniform(0.3, 1.0)
    next_junk = t0 + args.junk_interval * rng.uniform(0.5, 1.5)
    restarts: dict[str, float] = {}
    if not args.no_broker_restart:
        restarts["broker"] = t0 + 0.40 * window
    if not args.no_postgres_restart:
        restarts["postgres"] = t0 + 0.65 * window
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
            kind = first_kinds.pop() if first_kinds else rng.choices(
                ("session", "projector"), weights=(2, 1))[0]
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


async def projection_checks(infra: Infra, names: TopicNames, admin_url: str, app_url: str,
                            total_events: int, fleet: Fleet, run: Run) -> list[Check]:
    """Wait for the projectors to reach every event, stop them, then: the audit chain,
    and every projection table against a clean rebuild."""

    def caught_up() -> bool:
        fleet.supervise()
        try:
            projected = _count(app_url, "SELECT count(*) FROM events")
            parked = _count(app_url, "SELECT count(*) FROM projection_quarantine")
        except psycopg.Error:
            return False
        return projected + parked >= total_events

    began = time.monotonic()
    caught = True
    try:
        await wait_until(lambda: asyncio.to_thread(caught_up), 300,
                         "the projectors reached every event", interval_s=0.5)
    except AssertionError as exc:
        caught = False
        run.note(str(exc))
    run.note(f"projectors caught up in {time.monotonic() - began:.1f} s; stopping them")
    await fleet.stop("projector")
    projected = _count(app_url, "SELECT count(*) FROM events")
    quarantined = _count(app_url, "SELECT count(*) FROM projection_quarantine")
    stopped = _count(app_url, "SELECT count(*) FROM projector_offsets "
                              "WHERE stopped_reason IS NOT NULL")
    projected_check = Check(
        "every event projected once",
        f"{projected} rows in events == {total_events} distinct (session, seq) on the topic; "
        f"quarantined "
        f"{quarantined}; stopped partitions {stopped}",
        caught and projected == total_events and quarantined == 0 and stopped == 0)

    checkpoints = await read_checkpoints(infra.bootstrap, names.checkpoints)
    report = await asyncio.to_thread(verify_audit_log, admin_url, checkpoints)
    audit = Check(
        "audit chain verifies",
        f"{'ok' if report.ok else 'BROKEN'}: {report.rows} rows for {total_events} events, "
        f"{report.checkpoints_matched} of {len(checkpoints)} published checkpoints matched",
        report.ok and report.rows == total_events and report.checkpoints_matched == len(checkpoints),
        [str(report.broken)] if report.broken else [])

    incremental = await asyncio.to_thread(table_checksums, app_url, PROJECTION_TABLES)
    config = ProjectorConfig(infra.bootstrap, app_url, names.events, names.checkpoints,
                             group_id=None)
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
        [f"{t}: incremental {incremental.get(t)} != rebuild {rebuilt.checksums.get(t)}"
         for t in differ])
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


async def _soak(args: argparse.Namespace, infra: Infra, workdir: Path, run: Run,
                rng: random.Random, names: TopicNames, admin_url: str,
                app_url: str) -> list[Check]:
    sandbox = workdir / "sandbox"
    (sandbox / "marks").mkdir(parents=True)
    agents = workdir / "agents.toml"
    agents.write_text(_AGENTS, encoding="utf-8")
    script = workdir / "soak.script.yaml"
    script.write_text(yaml.safe_dump(_SCRIPT, sort_keys=False), encoding="utf-8")
    env = worker_env(infra.bootstrap, names.requests[: -len("turnlog.requests")],
                     partitions=args.partitions, agents=agents, script=script,
                     sandbox=sandbox, session_timeout_ms=3000)
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
        run.note(f"{args.session_workers} session workers and {args.projectors} projectors "
                 f"up; {args.sessions} sessions start")
        deadline = time.monotonic() + window
        stop_driving = asyncio.Event()
        driver = asyncio.create_task(
            drive(args, names, log, send, sessions, run, deadline, stop_driving))

        async def progress() -> None:
            while True:
                await asyncio.sleep(15)  # a progress line's period
                done = sum(1 for e in log.events if isinstance(e.payload, TurnCompleted))
                run.note(f"progress: {sum(run.turns_sent.values())} turns sent, {done} "
                         f"completed, {len(log.events)} events, {len(run.junk)} junk, "
                         f"kills {dict(run.kills)}")

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
                await wait_until(drained, args.drain_timeout, "every turn sent ended",
                                 interval_s=0.5, diagnose=lambda: log.summary(
                                     [s for s, n in run.turns_sent.items()
                                      if log.turns_ended(s) < n]))
                await wait_until(lambda: group_caught_up(infra.bootstrap, group_id,
                                                         names.requests),
                                 120, "the session workers committed every input",
                                 interval_s=0.5)
            except AssertionError as exc:
                run.note(f"DRAIN INCOMPLETE: {exc}")
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
        checks = check_all(events=events, positions=positions, records=records, dlq=dlq,
                           requests_topic=names.requests, junk=run.junk,
                           turns_sent=run.turns_sent, marks=sandbox / "marks")
        # The projection holds each (session, seq) once, whatever the log holds twice.
        distinct = len({(e.session_id, e.seq) for e in events})
        checks += await projection_checks(infra, names, admin_url, app_url, distinct,
                                          fleet, run)
        await fleet.stop("session")
        checks.append(Check("running workers that exited by themselves",
                            str(len(run.unexpected)), not run.unexpected, run.unexpected[:10]))
        checks.append(Check(
            "workers started during an outage wait for it (no exit)",
            f"{len(run.outage_exits)} exits of workers (re)started while the broker or "
            "PostgreSQL was down", not run.outage_exits, run.outage_exits[:10]))
        return checks


def _print(args: argparse.Namespace, run: Run, checks: list[Check], infra: Infra) -> None:
    def secs(value: float | None) -> str:
        return "none" if value is None else f"{value:.1f} s"

    print(f"\nsoak: {args.sessions} sessions, {sum(run.turns_sent.values())} turns sent, "
          f"{args.minutes:g} min window + {run.drain_s:.0f} s drain; SIGKILLs: "
          f"{dict(sorted(run.kills.items()))}; broker restart: "
          f"{secs(run.broker_down_s)}; "
          f"PostgreSQL restart: "
          f"{secs(run.postgres_down_s)}; "
          f"junk: {dict(sorted(Counter(j.kind for j in run.junk).items()))}")
    for check in checks:
        print(check.line())
        for line in check.detail:
            print(f"         {line}")
    failed = [c.name for c in checks if not c.ok]
    print(f"\n{'FAIL: ' + ', '.join(failed) if failed else 'PASS'} "
          f"({len(checks) - len(failed)} of {len(checks)} invariants hold)")


def _command(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python bench/soak.py", f"--sessions {args.sessions}",
             f"--minutes {args.minutes:g}", f"--turns {args.turns}", f"--seed {args.seed}",
             f"--kill-interval {args.kill_interval:g}"]
    parts += ["--no-broker-restart"] * args.no_broker_restart
    parts += ["--no-postgres-restart"] * args.no_postgres_restart
    parts += [f"--infra {args.infra}"] * (args.infra != "own")
    return " ".join(parts)


def _write(args: argparse.Namespace, run: Run, checks: list[Check]) -> None:
    lines = [SECTION, "", f"Command: `{_command(args)} --write`", "",
             (f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
              f"({platform.machine()}, Python {platform.python_version()}); "
              f"{args.session_workers} session workers, {args.projectors} projectors, "
              f"{args.partitions} partitions. SIGKILLs {dict(sorted(run.kills.items()))}, "
              f"junk {dict(sorted(Counter(j.kind for j in run.junk).items()))}."), "",
             "| invariant | figure | |", "|---|---|---|"]
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
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="the chaos window (the drain and the checks come after)")
    parser.add_argument("--turns", type=int, default=20,
                        help="turns per session at most (fewer when the window ends first)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-interval", type=float, default=8.0,
                        help="mean seconds between two SIGKILLs")
    parser.add_argument("--junk-interval", type=float, default=2.0,
                        help="mean seconds between two bursts of 1-3 junk inputs")
    parser.add_argument("--session-workers", type=int, default=3)
    parser.add_argument("--projectors", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--no-broker-restart", action="store_true")
    parser.add_argument("--no-postgres-restart", action="store_true")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="seconds to wait after the window for every turn to end")
    parser.add_argument("--stall-timeout", type=float, default=120.0,
                        help="stop draining when no event came for this long")
    parser.add_argument("--infra", choices=("own", "dev"), default="own",
                        help="own: a private broker and server (default); dev: the "
                             "`turnlog dev` ones, restarted too")
    parser.add_argument("--keep", action="store_true",
                        help="keep the topics, the database, the worker logs (and, with "
                             "--infra own, the private servers)")
    parser.add_argument("--write", action="store_true",
                        help="replace the Soak section of BENCHMARKS.md")
    args = parser.parse_args()

    run = Run()
    print(f"soak: {_command(args)}", flush=True)
    began = time.monotonic()
    infra = start_infra(args.infra)
    print(f"infrastructure up in {time.monotonic() - began:.1f} s: {infra.describe()}",
          flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="turnlog-soak-"))
    checks: list[Check] = []
    # SIGTERM ends the run like Ctrl-C, so the cleanup below still runs.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        checks = asyncio.run(soak(args, infra, workdir, run))
    finally:
        infra.close(keep=args.keep)
        passed = bool(checks) and all(c.ok for c in checks)
        if passed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"worker logs and the sandbox kept in {workdir}")
            if args.keep and infra.mode == "own":
                print(f"private servers kept: TURNLOG_STATE_DIR={infra.settings.state_dir} "
                      f"TURNLOG_DEV_KAFKA_CONTROLLER_PORT="
                      f"{infra.settings.dev_kafka_controller_port} "
                      f"TURNLOG_DEV_KAFKA_PORT={infra.settings.dev_kafka_port} "
                      f"TURNLOG_DEV_POSTGRES_PORT={infra.settings.dev_postgres_port} "
                      f"(stop with `turnlog dev down` and those variables)")
    _print(args, run, checks, infra)
    if args.write:
        _write(args, run, checks)
    sys.exit(0 if all(c.ok for c in checks) else 1)


if __name__ == "__main__":
    main()
