"""Process wiring for `turnlog worker scheduler` (and the scheduler of `worker all`).

Rule of this module: it only assembles and supervises — the scheduler (streams.scheduler)
fires, the schedules projector (streams.scheduler_projection) writes Postgres; both stop
when either fails or the stop event is set. Configuration comes typed from the front
door (turnlog.cli.schedule); nothing here reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from agents.events import ScheduleDefined
from streams.endpoint import Endpoint, EndpointConfig
from streams.scheduler import Clock, PostgresRunProbe, Scheduler, system_clock
from streams.scheduler_plan import DEFAULT_GRACE, ScheduleError, file_schedules
from streams.scheduler_projection import ScheduleProjector
from streams.topics import TopicNames

__all__ = ["SchedulerProcess", "load_file_schedules", "scheduler_endpoint"]


def load_file_schedules(path: str | Path) -> dict[str, ScheduleDefined]:
    """The `[[schedules]]` of the agent file at `path` (none when it has no such
    section); ScheduleError naming the file, schedule and field when one is invalid."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScheduleError(f"{p}: cannot read the agent file: {exc}") from exc
    data: Any
    try:
        if p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ScheduleError(f"{p}: not a valid agent file: {exc}") from exc
    if not isinstance(data, Mapping):
        return {}
    return file_schedules(data, str(p))


class SchedulerProcess:
    """A scheduler and (with a database) the schedules projector on one event loop."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: TopicNames,
        database_url: str | None,
        file_schedules: Mapping[str, ScheduleDefined] | None = None,
        clock: Clock = system_clock,
        grace: timedelta = DEFAULT_GRACE,
        session_timeout_ms: int = 6000,
        project: bool = True,
        client_id: str = "turnlog-scheduler",
        **scheduler_options: Any,
    ) -> None:
        self.scheduler = Scheduler(
            bootstrap=bootstrap,
            topics=topics,
            clock=clock,
            probe=PostgresRunProbe(database_url) if database_url else None,
            file_schedules=file_schedules,
            grace=grace,
            session_timeout_ms=session_timeout_ms,
            client_id=client_id,
            **scheduler_options,
        )
        self.projector = (
            ScheduleProjector(
                bootstrap,
                (topics.schedules, topics.schedule_history),
                database_url,
                client_id=f"{client_id}-projector",
            )
            if project and database_url
            else None
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set (or either part fails: its error is raised)."""
        await self.scheduler.start()
        tasks = [asyncio.create_task(self.scheduler.run(stop), name="scheduler")]
        if self.projector is not None:
            tasks.append(asyncio.create_task(self.projector.run(stop), name="schedule-projector"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            await self.scheduler.stop()


class _SchedulerCollector:
    """The scheduler's counters and gauges, read when Prometheus scrapes."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.scheduler.stats
        yield CounterMetricFamily(
            "turnlog_schedule_slots_fired", "Slots that started a run.", value=stats["fired"]
        )
        yield CounterMetricFamily(
            "turnlog_schedule_slots_skipped",
            "Slots recorded without a run (overlap skip, catch-up none).",
            value=stats["skipped"],
        )
        yield CounterMetricFamily(
            "turnlog_scheduler_transactions", "Firing transactions committed.",
            value=stats["transactions"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "turnlog_scheduler_schedules", "Schedules this scheduler holds.",
            value=self.scheduler.schedule_count(),
        )  # fmt: skip
        recent = sorted(list(self.scheduler.lateness_ms)[-1000:])
        if recent:
            late = GaugeMetricFamily(
                "turnlog_schedule_lateness_seconds",
                "Slot to committed firing, over the last 1,000 fired slots.",
                labels=["quantile"],
            )
            for q in (0.5, 0.99):
                index = min(len(recent) - 1, int(q * len(recent)))
                late.add_metric([str(q)], recent[index] / 1000)
            yield late
        yield GaugeMetricFamily(
            "turnlog_scheduler_partitions", "Partitions of turnlog.schedules it owns.",
            value=len(self.scheduler.owned_partitions()),
        )  # fmt: skip


def scheduler_endpoint(process: SchedulerProcess, config: EndpointConfig) -> Endpoint:
    """/metrics, /healthz and /readyz of a scheduler process (ready once it has read
    the partitions the group gave it)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(_SchedulerCollector(process.scheduler))

    def ready() -> tuple[bool, str]:
        owned = process.scheduler.owned_partitions()
        if process.scheduler.assigned_event.is_set():
            return True, f"owns partitions {sorted(owned)}"
        return False, "waiting for partitions of the schedules topic"

    return Endpoint(config, registry, ready=ready, name="scheduler")
