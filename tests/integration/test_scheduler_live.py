"""The scheduler against the real broker and database, with its clock in the test's hand.

- in process: a slot fires once with its deterministic request id, a paused schedule's
  slots are neither fired nor caught up, a resumed one fires again; the agent file's
  schedules are published; the schedules projection has the runs and the next slot;
- as subprocesses (`turnlog worker scheduler --clock-file`): SIGKILL just before a
  firing's commit (the open transaction is aborted by the next scheduler, which fires
  the slot once) and just after it (the next scheduler does not fire it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.events import Request, ScheduleDefined, ScheduleFired, SendMessage
from schemas.codec import decode_request, decode_schedule_record
from streams.scheduler_app import SchedulerProcess
from streams.topics import TopicNames
from tests.support.harness import (
    WorkerGroup,
    WorkerProcess,
    read_records,
    wait_until,
    worker_env,
)
from turnlog.client import Client

pytestmark = pytest.mark.integration

T0 = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)
TIMEOUT = 60.0


class Clock:
    """The scheduler's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def sid(label: str) -> str:
    return f"{label}-{secrets.token_hex(3)}"


async def committed_requests(bootstrap: str, names: TopicNames) -> list[Request]:
    return [decode_request(r.value) for r in await read_records(bootstrap, names.requests)]


async def firings(
    bootstrap: str, names: TopicNames, *, isolation_level: str = "read_committed"
) -> list[tuple[str, ScheduleFired]]:
    out = []
    for rec in await read_records(bootstrap, names.schedules, isolation_level=isolation_level):
        record = decode_schedule_record(rec.value)
        if isinstance(record.payload, ScheduleFired):
            out.append((record.schedule_id, record.payload))
    return out


def sends_of(requests: list[Request], schedule_id: str) -> list[Request]:
    """The schedule's SendMessages, by slot (runs live on several partitions)."""
    found = [
        r
        for r in requests
        if isinstance(r.payload, SendMessage)
        and r.request_id.startswith(f"schedule:{schedule_id}:")
    ]
    return sorted(found, key=lambda r: r.request_id)


async def wait_sends(bootstrap: str, names: TopicNames, schedule_id: str, n: int) -> Any:
    """The schedule's committed SendMessages once there are `n`. (The commit markers
    reach each partition of a transaction in turn: a requests partition may show a
    commit a moment after the schedules partition does.)"""

    async def check() -> Any:
        found = sends_of(await committed_requests(bootstrap, names), schedule_id)
        return found if len(found) >= n else None

    return await wait_until(check, TIMEOUT, f"{n} SendMessage(s) of {schedule_id} committed")


@contextlib.asynccontextmanager
async def running(process: SchedulerProcess) -> AsyncIterator[SchedulerProcess]:
    stop = asyncio.Event()
    task = asyncio.create_task(process.run(stop))
    ready = asyncio.create_task(process.scheduler.assigned_event.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=TIMEOUT, return_when="FIRST_COMPLETED")
    if task in done:
        task.result()
    assert ready in done, "the scheduler got no partitions"
    try:
        yield process
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def ticked(process: SchedulerProcess) -> None:
    """Until the scheduler has run two full ticks from now (it saw the clock as it is)."""
    start = process.scheduler.stats["ticks"]
    await wait_until(lambda: process.scheduler.stats["ticks"] >= start + 2, TIMEOUT, "two ticks")


async def test_a_slot_fires_once_pause_holds_resume_fires_and_sql_shows_runs(
    kafka_bootstrap: str, names: TopicNames, unique_prefix: str, database_url: str
) -> None:
    clock = Clock(T0)
    every = sid("every")
    from_file = sid("file")
    file_spec = ScheduleDefined(
        agent="calc",
        message="from the file",
        cron="0 3 * * *",
        timezone="Europe/Berlin",
        source="file:agents.toml",
    )
    process = SchedulerProcess(
        bootstrap=kafka_bootstrap,
        topics=names,
        database_url=database_url,
        file_schedules={from_file: file_spec},
        clock=clock,
    )
    async with (
        Client(
            bootstrap_servers=kafka_bootstrap,
            topic_prefix=unique_prefix,
            database_url=database_url,
        ) as client,
        running(process),
    ):
        await client.add_schedule(
            every, agent="calc", message="what is 6*7?", every=60, occurred_at=T0
        )
        await wait_until(lambda: every in process.scheduler.states(), TIMEOUT, "definition read")
        assert from_file in process.scheduler.states(), "the file's schedule is published"

        clock.now = T0 + timedelta(seconds=61)
        await wait_until(lambda: process.scheduler.stats["fired"] >= 1, TIMEOUT, "first slot")
        await ticked(process)
        sends = await wait_sends(kafka_bootstrap, names, every, 1)
        assert [r.request_id for r in sends] == [f"schedule:{every}:20310101T120100Z"]
        assert sends[0].session_id == f"sched-{every}-20310101T120100Z"
        assert sends[0].agent == "calc" and sends[0].payload == SendMessage("what is 6*7?")

        await client.pause_schedule(every, occurred_at=T0 + timedelta(seconds=70))
        await wait_until(lambda: process.scheduler.states()[every].paused, TIMEOUT, "paused")
        clock.now = T0 + timedelta(seconds=125)  # slot 12:02 passes while paused
        await ticked(process)
        await client.resume_schedule(every, occurred_at=T0 + timedelta(seconds=130))
        await wait_until(lambda: not process.scheduler.states()[every].paused, TIMEOUT, "resumed")
        await ticked(process)
        assert process.scheduler.stats["fired"] == 1, "a paused slot is not caught up"

        clock.now = T0 + timedelta(seconds=181)
        await wait_until(
            lambda: process.scheduler.stats["fired"] >= 2, TIMEOUT, "slot after resume"
        )
        sends = await wait_sends(kafka_bootstrap, names, every, 2)
        assert [r.request_id.rsplit(":", 1)[1] for r in sends] == [
            "20310101T120100Z",
            "20310101T120300Z",
        ]

        async def projected() -> Any:
            rows = await client.query(
                "SELECT * FROM schedule_runs WHERE schedule_id = %s ORDER BY slot", (every,)
            )
            return rows if len(rows) == 2 else None

        runs = sorted(
            await wait_until(projected, TIMEOUT, "runs projected"), key=lambda r: r["slot"]
        )
        assert [r["session_id"] for r in runs] == [s.session_id for s in sends]
        assert all(
            r["fired"] and r["overlap"] == "none" and r["catch_up"] == "on_time" for r in runs
        )

        async def schedule_row() -> Any:
            rows = await client.query("SELECT * FROM schedules WHERE schedule_id = %s", (every,))
            return rows[0] if rows and rows[0]["runs"] == 2 else None

        row = await wait_until(schedule_row, TIMEOUT, "schedule row")
        assert row["status"] == "active" and row["kind"] == "interval"
        assert row["next_slot"] == T0 + timedelta(minutes=4)
        outcomes = await client.schedule_runs(every)
        # No session worker runs here: each run's turn is not projected (pending).
        assert [o["outcome"] for o in outcomes] == ["pending", "pending"]
        listed = {r["schedule_id"]: r for r in await client.schedules()}
        assert listed[from_file]["source"] == "file:agents.toml"
        assert listed[from_file]["timezone"] == "Europe/Berlin"

        # The worker's /metrics says the same (streams.endpoint, as `worker scheduler`).
        from streams.endpoint import EndpointConfig
        from streams.scheduler_app import scheduler_endpoint

        endpoint = scheduler_endpoint(process, EndpointConfig(port=0))
        port = await endpoint.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = (await reader.read()).decode()
            writer.close()
        finally:
            await endpoint.stop()
        assert "turnlog_schedule_slots_fired_total 2.0" in body
        assert 'turnlog_schedule_lateness_seconds{quantile="0.5"}' in body


# ------------------------------------------------------------------ SIGKILL around the commit


def scheduler_argv(clock_file: Path, hold: str | None, marker: Path) -> tuple[str, ...]:
    argv = ["-m", "turnlog", "worker", "scheduler", "--clock-file", str(clock_file)]
    argv += ["--metrics-port", "0"]  # a free port each: tests run side by side
    if hold is not None:
        argv += ["--hold-at", hold, "--hold-marker", str(marker)]
    return tuple(argv)


def start_scheduler(group: WorkerGroup, name: str, argv: tuple[str, ...]) -> WorkerProcess:
    worker = WorkerProcess(name, group.env, group.log_dir / f"{name}.log", argv=argv)
    group.workers[name] = worker  # SIGKILLed with the group at the end
    return worker.start()


async def wait_live(worker: WorkerProcess, partitions: int = 4) -> None:
    """Until this start of the scheduler has read all `partitions` (its log says)."""

    def check() -> bool:
        if not worker.alive:
            raise AssertionError(f"scheduler {worker.name} exited:\n{worker.tail()}")
        live = {
            p
            for rec in worker.log_records()
            if rec.get("event") == "scheduler.partition_live"
            for p in rec.get("partitions", ())
        }
        return len(live) >= partitions

    await wait_until(check, TIMEOUT, f"scheduler {worker.name} live", diagnose=worker.tail)


def set_clock(path: Path, now: datetime) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(now.isoformat(), encoding="utf-8")
    tmp.replace(path)  # atomic: the scheduler never reads half a time


@pytest.mark.parametrize("hold", ["before_commit", "after_commit"])
async def test_sigkill_around_a_firing_commit_fires_the_slot_exactly_once(
    kafka_bootstrap: str,
    names: TopicNames,
    unique_prefix: str,
    database_url: str,
    tmp_path: Path,
    hold: str,
) -> None:
    schedule = sid(hold.replace("_", "-"))
    clock_file, marker = tmp_path / "clock", tmp_path / "held"
    set_clock(clock_file, T0)
    env = worker_env(kafka_bootstrap, unique_prefix, extra={"DATABASE_URL": database_url})
    async with (
        WorkerGroup(env, tmp_path) as group,
        Client(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix) as client,
    ):
        # Slots 3 minutes apart: no session worker runs here, so a run's session is never
        # projected, and the overlap check counts it as running for 15 s.
        await client.add_schedule(
            schedule, agent="calc", message="hello", every=180, occurred_at=T0
        )
        first = start_scheduler(group, "s1", scheduler_argv(clock_file, hold, marker))
        await wait_live(first)
        set_clock(clock_file, T0 + timedelta(seconds=181))
        await wait_until(marker.exists, TIMEOUT, f"the scheduler held {hold}", diagnose=first.tail)
        first.kill()  # SIGKILL: no abort, no clean leave

        uncommitted = [
            f
            for s, f in await firings(kafka_bootstrap, names, isolation_level="read_uncommitted")
            if s == schedule
        ]
        assert len(uncommitted) == 1, "the firing was produced before the kill"

        second = start_scheduler(group, "s2", scheduler_argv(clock_file, None, marker))
        await wait_live(second)

        def fired(slot_s: int) -> Callable[[], Any]:
            async def check() -> Any:
                slot = T0 + timedelta(seconds=slot_s)
                got = [f for s, f in await firings(kafka_bootstrap, names) if s == schedule]
                return got if any(f.slot == slot for f in got) else None

            return check

        await wait_until(fired(180), TIMEOUT, "slot 12:03 fired (once)", diagnose=second.tail)
        # The next slot proves the second scheduler runs past the first one's.
        set_clock(clock_file, T0 + timedelta(seconds=361))
        got = await wait_until(fired(360), TIMEOUT, "slot 12:06 fired", diagnose=second.tail)

        assert [f.slot for f in got] == [T0 + timedelta(seconds=180), T0 + timedelta(seconds=360)]
        assert all(f.fired and f.overlap == "none" for f in got)

        sends = await wait_sends(kafka_bootstrap, names, schedule, 2)
        assert [r.request_id.rsplit(":", 1)[1] for r in sends] == [
            "20310101T120300Z",
            "20310101T120600Z",
        ]
        all_sends = [
            decode_request(r.value)
            for r in await read_records(
                kafka_bootstrap, names.requests, isolation_level="read_uncommitted"
            )
        ]
        written = len(sends_of(all_sends, schedule))
        # Before the commit: the killed transaction's copy is in the log, aborted (3 written,
        # 2 committed). After it: nothing was written twice.
        assert written == (3 if hold == "before_commit" else 2)


# ------------------------------------------------------------------ overlap, for real


async def test_overlap_skip_then_cancel_against_a_session_worker_with_outcomes_and_cost(
    kafka_bootstrap: str, names: TopicNames, unique_prefix: str, scratch_database_url: str
) -> None:
    """A run held in its LLM call (a gated provider) is running for the sessions
    projection: the next slot of an overlap=skip schedule is skipped; redefined with
    overlap=cancel, the next slot cancels the held turn and starts a run that, once the
    gate opens, completes; schedule_run_outcomes says so, with the turn's cost."""
    from agents.agentfile import registry_from_file
    from agents.events import TurnCancelled, TurnCompleted
    from agents.providers.scripted import ScriptedProvider
    from projections.migrate import migrate
    from projections.projector import Projector, ProjectorConfig
    from tests.support.harness import DATA
    from tests.support.live import GatedProvider, live_platform

    migrate(scratch_database_url)
    db = scratch_database_url
    provider = GatedProvider(ScriptedProvider.from_file(DATA / "calc.script.yaml"), "HOLD")
    projector = Projector(
        ProjectorConfig(
            bootstrap=kafka_bootstrap,
            database_url=db,
            events_topic=names.events,
            checkpoints_topic=names.checkpoints,
            group_id=f"{unique_prefix}turnlog-projector",
        )
    )
    clock = Clock(T0)
    schedule = sid("overlap")
    process = SchedulerProcess(
        bootstrap=kafka_bootstrap, topics=names, database_url=db, clock=clock
    )
    projecting = asyncio.create_task(projector.run())
    try:
        async with (
            live_platform(
                kafka_bootstrap,
                names,
                registry=registry_from_file(DATA / "agents.toml"),
                provider=provider,
            ) as live,
            Client(
                bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix, database_url=db
            ) as client,
            running(process),
        ):

            async def phase(session_id: str) -> str | None:
                rows = await client.query(
                    "SELECT phase FROM sessions WHERE session_id = %s", (session_id,)
                )
                return rows[0]["phase"] if rows else None

            await client.add_schedule(
                schedule, agent="calc", message="HOLD: what is 6*7?", every=180, occurred_at=T0
            )
            await wait_until(lambda: schedule in process.scheduler.states(), TIMEOUT, "defined")
            clock.now = T0 + timedelta(seconds=181)
            first = f"sched-{schedule}-20310101T120300Z"
            await provider.wait_held(TIMEOUT)

            async def first_in_turn() -> bool:
                return await phase(first) == "awaiting_llm"

            await wait_until(first_in_turn, TIMEOUT, "the first run in its LLM call, projected")

            clock.now = T0 + timedelta(seconds=361)  # the first run still runs: skipped
            await wait_until(lambda: process.scheduler.stats["skipped"] >= 1, TIMEOUT, "skip")

            await client.add_schedule(
                schedule,
                agent="calc",
                message="HOLD: what is 6*7?",
                every=180,
                start_at=T0 + timedelta(seconds=180),
                overlap="cancel",
                occurred_at=T0 + timedelta(seconds=400),
            )
            await wait_until(
                lambda: process.scheduler.states()[schedule].spec.overlap == "cancel",  # type: ignore[union-attr]
                TIMEOUT,
                "redefined",
            )
            clock.now = T0 + timedelta(seconds=541)
            third = f"sched-{schedule}-20310101T120900Z"
            await live.log.wait_for_type(first, TurnCancelled, timeout=TIMEOUT)
            provider.gate.set()  # the third run's LLM call goes through
            await live.log.wait_for_type(third, TurnCompleted, timeout=TIMEOUT)

            async def outcomes() -> Any:
                rows = await client.schedule_runs(schedule)
                done = {r["outcome"] for r in rows}
                return (
                    rows
                    if len(rows) == 3 and "running" not in done and "pending" not in done
                    else None
                )

            rows = sorted(await wait_until(outcomes, TIMEOUT, "outcomes"), key=lambda r: r["slot"])
            assert [(r["overlap"], r["outcome"]) for r in rows] == [
                ("none", "cancelled"),
                ("skipped", "skipped"),
                ("cancelled", "completed"),
            ]
            assert rows[1]["session_id"] is None and rows[2]["session_id"] == third
            assert rows[2]["cost_nanos"] > 0, "the completed run's turn is priced"
    finally:
        projector.stop()
        await asyncio.wait_for(projecting, 30)


# ------------------------------------------------------------------ rebalance


def owned_now(worker: WorkerProcess) -> set[int]:
    """The partitions this start of a scheduler holds now, per its log."""
    owned: set[int] = set()
    for rec in worker.log_records():
        if rec.get("event") == "scheduler.partitions_revoked":
            owned -= set(rec.get("partitions", ()))
        elif rec.get("event") == "scheduler.partition_live":
            owned |= set(rec.get("partitions", ()))
    return owned if worker.alive else set()


async def test_two_schedulers_split_the_work_and_a_sigkill_loses_and_doubles_no_slot(
    kafka_bootstrap: str,
    names: TopicNames,
    unique_prefix: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    clock_file, marker = tmp_path / "clock", tmp_path / "unused"
    set_clock(clock_file, T0)
    env = worker_env(kafka_bootstrap, unique_prefix, extra={"DATABASE_URL": database_url})
    schedules = [sid(f"split{i}") for i in range(8)]
    async with (
        WorkerGroup(env, tmp_path) as group,
        Client(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix) as client,
    ):
        for schedule in schedules:
            await client.add_schedule(
                schedule, agent="calc", message="hi", every=180, occurred_at=T0
            )
        one = start_scheduler(group, "s1", scheduler_argv(clock_file, None, marker))
        two = start_scheduler(group, "s2", scheduler_argv(clock_file, None, marker))

        def split() -> bool:
            a, b = owned_now(one), owned_now(two)
            return bool(a) and bool(b) and not a & b and len(a | b) == 4

        await wait_until(split, TIMEOUT, "both schedulers own partitions", diagnose=group.tails)

        async def slot_fired_by_all(slot_s: int) -> Any:
            slot = T0 + timedelta(seconds=slot_s)
            got = [s for s, f in await firings(kafka_bootstrap, names) if f.slot == slot]
            return got if set(got) >= set(schedules) else None

        set_clock(clock_file, T0 + timedelta(seconds=181))
        await wait_until(lambda: slot_fired_by_all(180), TIMEOUT, "slot 12:03 everywhere")
        one.kill()  # its partitions go to s2 once the group notices (session timeout)
        set_clock(clock_file, T0 + timedelta(seconds=361))
        await wait_until(
            lambda: slot_fired_by_all(360), TIMEOUT, "slot 12:06 everywhere", diagnose=group.tails
        )
        assert len(owned_now(two)) == 4
        fired = [(s, f.slot) for s, f in await firings(kafka_bootstrap, names)]
        assert sorted(fired) == sorted(
            (s, T0 + timedelta(seconds=t)) for s in schedules for t in (180, 360)
        ), "each slot of each schedule handled exactly once"
        history = [
            decode_schedule_record(r.value)
            for r in await read_records(kafka_bootstrap, names.schedule_history)
        ]
        assert sorted((h.schedule_id, h.payload.slot) for h in history) == sorted(fired), (  # type: ignore[union-attr]
            "the history topic has every firing, once"
        )
        for schedule in schedules:
            await wait_sends(kafka_bootstrap, names, schedule, 2)
        committed = await committed_requests(kafka_bootstrap, names)
        sends = [r.request_id for s in schedules for r in sends_of(committed, s)]
        assert len(sends) == len(set(sends)) == 16


async def test_overlap_queue_holds_a_new_session_slot_until_the_previous_run_ends(
    kafka_bootstrap: str, names: TopicNames, unique_prefix: str, scratch_database_url: str
) -> None:
    """overlap=queue with a new session per run: the slot due while the previous run is
    in its LLM call waits (nothing recorded), and fires once that run has ended."""
    from agents.agentfile import registry_from_file
    from agents.events import TurnCompleted
    from agents.providers.scripted import ScriptedProvider
    from projections.migrate import migrate
    from projections.projector import Projector, ProjectorConfig
    from tests.support.harness import DATA
    from tests.support.live import GatedProvider, live_platform

    migrate(scratch_database_url)
    db = scratch_database_url
    provider = GatedProvider(ScriptedProvider.from_file(DATA / "calc.script.yaml"), "HOLD")
    projector = Projector(
        ProjectorConfig(
            bootstrap=kafka_bootstrap,
            database_url=db,
            events_topic=names.events,
            checkpoints_topic=names.checkpoints,
            group_id=f"{unique_prefix}turnlog-projector",
        )
    )
    clock = Clock(T0)
    schedule = sid("queue")
    process = SchedulerProcess(
        bootstrap=kafka_bootstrap, topics=names, database_url=db, clock=clock
    )
    projecting = asyncio.create_task(projector.run())
    try:
        async with (
            live_platform(
                kafka_bootstrap,
                names,
                registry=registry_from_file(DATA / "agents.toml"),
                provider=provider,
            ) as live,
            Client(
                bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix, database_url=db
            ) as client,
            running(process),
        ):
            await client.add_schedule(
                schedule,
                agent="calc",
                message="HOLD: what is 6*7?",
                every=180,
                overlap="queue",
                occurred_at=T0,
            )
            await wait_until(lambda: schedule in process.scheduler.states(), TIMEOUT, "defined")
            clock.now = T0 + timedelta(seconds=181)
            first = f"sched-{schedule}-20310101T120300Z"
            await provider.wait_held(TIMEOUT)

            async def first_in_turn() -> bool:
                rows = await client.query(
                    "SELECT phase FROM sessions WHERE session_id = %s", (first,)
                )
                return bool(rows) and rows[0]["phase"] == "awaiting_llm"

            await wait_until(first_in_turn, TIMEOUT, "the first run in its LLM call, projected")
            clock.now = T0 + timedelta(seconds=361)
            await ticked(process)
            await ticked(process)  # the slot is due, and waits: nothing recorded
            assert process.scheduler.stats["fired"] == 1
            assert process.scheduler.stats["skipped"] == 0

            provider.gate.set()  # the first run answers and ends
            await live.log.wait_for_type(first, TurnCompleted, timeout=TIMEOUT)

            def second_fired() -> bool:
                # A waiting slot is looked at again a second later (scheduler time), so
                # time must pass: until the projector has seen the first run end.
                clock.now += timedelta(seconds=1)
                return process.scheduler.stats["fired"] >= 2

            await wait_until(second_fired, TIMEOUT, "the queued slot fired", interval_s=0.5)
            got = sorted(
                (f for s, f in await firings(kafka_bootstrap, names) if s == schedule),
                key=lambda f: f.slot,
            )
            assert [(f.slot, f.fired, f.overlap) for f in got] == [
                (T0 + timedelta(seconds=180), True, "none"),
                (T0 + timedelta(seconds=360), True, "queued"),
            ]
            assert got[1].previous_session_id == first
    finally:
        projector.stop()
        await asyncio.wait_for(projecting, 30)


async def test_catch_up_after_downtime_is_decided_and_recorded_per_firing(
    kafka_bootstrap: str, names: TopicNames, unique_prefix: str
) -> None:
    """No scheduler runs for ten slots: the next one fires the backlog as each
    schedule's catch-up policy says (once: the latest; all: the latest `limit`; none:
    only a slot still on time), each firing recording the policy and the slots it did
    not fire."""
    clock = Clock(T0)
    policies = {sid(f"cu-{p}"): p for p in ("once", "all", "none")}
    async with Client(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix) as client:
        for schedule, policy in policies.items():
            await client.add_schedule(
                schedule,
                agent="calc",
                message="catch up",
                every=60,
                catch_up=policy,
                catch_up_limit=3,
                occurred_at=T0,
            )
    clock.now = T0 + timedelta(minutes=10, seconds=90)  # slots 12:01..12:11 missed
    process = SchedulerProcess(
        bootstrap=kafka_bootstrap, topics=names, database_url=None, clock=clock
    )
    async with running(process):
        await wait_until(
            lambda: process.scheduler.stats["fired"] + process.scheduler.stats["skipped"] >= 5,
            TIMEOUT,
            "the backlog decided",
        )
        await ticked(process)
    got = {s: sorted((f for n, f in await firings(kafka_bootstrap, names) if n == s),
                     key=lambda f: f.slot) for s in policies}  # fmt: skip
    by_policy = {policies[s]: [(f.slot - T0, f.fired, f.catch_up, f.missed) for f in fs]
                 for s, fs in got.items()}  # fmt: skip
    minute = timedelta(minutes=1)
    assert by_policy["once"] == [(11 * minute, True, "once", 10)]
    assert by_policy["all"] == [
        (9 * minute, True, "all", 8),
        (10 * minute, True, "all", 0),
        (11 * minute, True, "all", 0),
    ]
    # none: the backlog is dropped; the latest slot, 30 s old, is still on time and fires.
    assert by_policy["none"] == [(11 * minute, True, "none", 10)]
