"""The soak's moving parts: what happened (Run), the worker processes it kills and
restarts (Fleet), and the junk it mixes into the requests topic (JunkSender).

Rule: workers are the integration harness's WorkerProcess subprocesses in one
WorkerGroup (every one SIGKILLed by pid when the soak ends); a worker that exits without
being killed is noted with the line of its log that says why, and started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Self

from _soak_checks import UNDECODABLE, Junk  # bench/ is on sys.path
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from agents.errors import DecodeError
from schemas.codec import decode_request, encode_request
from streams.topics import TopicNames
from tests.support.harness import WorkerGroup, WorkerProcess, user_message

__all__ = ["AGENT", "Fleet", "JunkSender", "Run"]

AGENT = "soaker"
MiB = 1024 * 1024


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
    rebalances: int | None = None  # of the session workers' group, per the broker's log

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

    def __init__(
        self,
        group: WorkerGroup,
        session_env: dict[str, str],
        projector_env: dict[str, str],
        n_session: int,
        n_projector: int,
        run: Run,
    ) -> None:
        self.group, self.run = group, run
        self.kind: dict[str, str] = {}
        for i in range(1, n_session + 1):
            self._add(
                f"session-{i}", "session", session_env, ("-m", "turnlog", "worker", "session")
            )
        for i in range(1, n_projector + 1):
            self._add(
                f"projector-{i}",
                "projector",
                projector_env,
                (
                    "-m",
                    "turnlog",
                    "worker",
                    "projector",
                    "--session-timeout-ms",
                    "6000",
                    "--checkpoint-interval",
                    "1",
                    "--max-records",
                    "2000",
                ),
            )
        self.down: set[str] = set()  # killed by us, restart pending
        self.started_at: dict[str, float] = {}

    def start(self, name: str) -> None:
        self.started_at[name] = time.monotonic()
        self.group.start(name)

    def _add(self, name: str, kind: str, env: dict[str, str], argv: tuple[str, ...]) -> None:
        self.group.workers[name] = WorkerProcess(
            name, env, self.group.log_dir / f"{name}.log", argv=argv
        )
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
            if (
                outage is None
                and self.run.outages
                and ("Unable to bootstrap" in why or "cannot reach Postgres" in why)
            ):
                # It was still starting (slowly, on a busy machine) when the server went.
                outage = "broker" if "bootstrap" in why else "PostgreSQL"
            if outage is not None:
                self.run.outage_exits.append(
                    f"{name}, started while {outage} was down, exited with code {code}: {why}"
                )
                self.run.note(
                    f"EXIT of {name} started during the {outage} outage (code "
                    f"{code}): {why}; restarted"
                )
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

    def __init__(
        self, bootstrap: str, names: TopicNames, sessions: list[str], rng: random.Random, run: Run
    ) -> None:
        self.names, self.sessions, self.rng, self.run = names, sessions, rng, run
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=8 * MiB,
            client_id="turnlog-soak-junk",
            request_timeout_ms=20000,
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
        text = (
            f"what is 6*7?\x00 junk {i}"
            if kind == "nul_text"
            else "x" * rng.randint(int(1.1 * MiB), int(3.5 * MiB))
        )
        req = user_message(
            session, text, agent=None if session == real else AGENT, request_id=f"junk-{i}"
        )
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
            self.run.junk.append(
                Junk(kind, meta.partition, meta.offset, session, request_id, len(value))
            )
