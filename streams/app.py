"""Process wiring for `turnlog worker session`: session worker + effect runner + ticker.

Rule of this module: it only assembles and supervises; the logic lives in
session_worker (transactions), effects (IO) and the pure core.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError

from agents.effects import DEFAULT_INLINE_LLM_MS
from agents.events import Request, Tick
from agents.providers.base import Provider
from agents.registry import AgentRegistry
from agents.tools import ToolSettings
from agents.tools.registry import ToolRegistry
from streams._agents import load_versions, publish_versions
from streams.effects import EffectRunner
from streams.logs import get_logger
from streams.session_worker import SessionWorker
from streams.topics import DEFAULT_FETCH_WAIT_MS, DEFAULT_MAX_REQUEST_BYTES, TopicNames

__all__ = ["GC_THRESHOLD", "SessionProcess", "run_session_process", "tune_gc"]

# The collector's thresholds for a worker process (Python's default: 700, 10, 10).
GC_THRESHOLD = (10_000, 20, 20)


def tune_gc() -> None:
    """Call once a worker process has imported and built everything, before it runs.

    Everything alive at that point lives as long as the process: modules, classes, the
    agent registry. `gc.freeze()` takes those objects out of every later collection.
    The young generation's threshold goes up, because a worker allocates millions of
    short-lived containers and reference counting frees almost all of them anyway.
    `bench/turns.py` at N = 100, closed loop, measured two things:
    - Before: a full collection of 35–55 ms ran every half second or so, and the
      collector took 10–15 % of the worker's time.
    - After: collection took 2–4 %, and throughput rose 7–10 %.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


async def _nothing() -> None:
    return None


class SessionProcess:
    """One session-worker process: owns partitions, runs their effects, ticks deadlines."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: TopicNames,
        partitions: int,
        registry: AgentRegistry,
        provider: Provider,
        tools: ToolRegistry,
        tool_context: ToolSettings | None = None,
        tick_interval_s: float = 1.0,
        drain_s: float = 8.0,
        session_timeout_ms: int = 6000,
        max_sessions: int = 10_000,
        group_commit_s: float = 1.0,
        metrics_interval_s: float = 30.0,
        client_id: str = "turnlog-session",
        max_request_bytes: int | None = None,
        inline_llm_ms: float = DEFAULT_INLINE_LLM_MS,
        fetch_wait_ms: int = DEFAULT_FETCH_WAIT_MS,
    ) -> None:
        self.effects = EffectRunner(
            bootstrap=bootstrap,
            topics=topics,
            partitions=partitions,
            registry=registry,
            provider=provider,
            tools=tools,
            tool_context=tool_context,
            inline_llm_ms=inline_llm_ms,
        )
        self.worker = SessionWorker(
            bootstrap=bootstrap,
            topics=topics,
            partitions=partitions,
            registry=registry,
            effect_sync=self.effects.sync,
            effect_drop=self.effects.drop,
            effect_release=self.effects.release,
            inline=self.effects,
            session_timeout_ms=session_timeout_ms,
            max_sessions=max_sessions,
            group_commit_s=group_commit_s,
            client_id=client_id,
            max_request_bytes=(
                DEFAULT_MAX_REQUEST_BYTES if max_request_bytes is None else max_request_bytes
            ),
            fetch_wait_ms=fetch_wait_ms,
        )
        self.tick_interval_s = tick_interval_s
        self.metrics_interval_s = metrics_interval_s
        self.drain_s = drain_s
        self._versions_read_at = 0.0
        # Jobs run beside the worker while it runs: `job(stop)` (MCP re-discovery).
        self.background: list[Any] = []
        self._log = get_logger(component="session-process")

    async def run(self, stop: asyncio.Event) -> None:
        if not await self._start(stop):
            return
        loops = [
            asyncio.create_task(self._tick_loop(stop)),
            asyncio.create_task(self._metrics_loop(stop)),
            *(asyncio.create_task(job(stop)) for job in self.background),
        ]
        try:
            await self.worker.run(stop)
            # A clean stop (not a crash): decide nothing more, and let the effects in
            # flight finish while the partitions are still ours, so no call is left with
            # an unknown outcome.
            await self.worker.suspend_all()
            left = await self.effects.drain(self.drain_s)
            if left:
                self._log.warning("effects.abandoned", in_flight=left)
        finally:
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(BaseException):
                    await task
            await self.worker.stop()
            await self.effects.stop()

    async def _start(self, stop: asyncio.Event) -> bool:
        """Connect, waiting for the broker with a growing pause if it is not there yet (a
        worker started during a broker outage waits instead of exiting). False when
        `stop` came first."""
        pause = 0.5
        for start, undo in (
            (self.effects.start, self.effects.stop),
            (self._versions, _nothing),
            (self.worker.start, self.worker.stop),
        ):
            while True:
                try:
                    await start()
                    break
                except (KafkaError, OSError) as exc:
                    with contextlib.suppress(Exception):
                        await undo()
                    self._log.warning("kafka.unreachable", error=repr(exc), retry_in_s=pause)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), pause)
                    if stop.is_set():
                        return False
                    pause = min(pause * 2, 15.0)
        return True

    async def _versions(self) -> None:
        """Publish the agent versions this worker serves on turnlog.agents, and serve
        every version found there too (sessions pinned to them keep deciding with them)."""
        registry = self.worker.registry
        if not hasattr(registry, "with_versions"):
            return  # a test's stand-in registry
        topic = self.worker.topics.agents
        await publish_versions(self.worker.bootstrap, topic, registry)
        await self._load_versions()
        self.worker.refresh_versions = self._refresh_versions

    async def _load_versions(self) -> None:
        registry = self.worker.registry
        older = await load_versions(self.worker.bootstrap, self.worker.topics.agents, log=self._log)
        served = registry.with_versions(older)
        self.worker.registry = self.effects.registry = served
        shared = getattr(self.worker, "_shared", None)
        if shared is not None:
            shared.registry = served
        self._versions_read_at = time.monotonic()
        self._log.info(
            "agents.versions", served=len(registry.names()), known=len(served.versions())
        )

    async def _refresh_versions(self) -> None:
        # At most every few seconds: a session pinned to a version nobody publishes
        # would otherwise read the topic on every input.
        if time.monotonic() - self._versions_read_at >= 5.0:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await self._load_versions()

    async def _metrics_loop(self, stop: asyncio.Event) -> None:
        """One `worker.metrics` log line per interval: throughput counters (since the
        previous line), effects in flight and effect latency percentiles."""
        before = {**self.worker.stats, **self.effects.stats}
        while not stop.is_set():
            await asyncio.sleep(self.metrics_interval_s)
            now = {**self.worker.stats, **self.effects.stats}
            latencies = sorted(self.effects.take_latencies())

            def pct(q: float, values: list[float] = latencies) -> float | None:
                return (
                    round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None
                )

            self._log.info(
                "worker.metrics",
                interval_s=self.metrics_interval_s,
                partitions=sorted(self.worker.owned_partitions()),
                sessions=len(self.worker.sessions()),
                effects_in_flight=self.effects.in_flight,
                effect_latency_ms_p50=pct(0.5),
                effect_latency_ms_p99=pct(0.99),
                **{name: now[name] - before.get(name, 0) for name in now},
            )
            before = now

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        """Deadlines are data in the state; time reaches the pure core only as Tick
        requests, so replay sees exactly the ticks the live run saw. Each pass costs the
        sessions that are due (the worker's deadline index), not every session held."""
        ticked: dict[str, datetime] = {}
        while not stop.is_set():
            await asyncio.sleep(self.tick_interval_s)
            now = datetime.now(UTC)
            due_now = self.worker.due(now)
            # Remember only what is still due: one tick per deadline is enough (the core
            # re-arms it), and the memory stays that of the due sessions.
            ticked = {sid: due for sid, due in due_now if ticked.get(sid) == due}
            for session_id, due in due_now:
                if ticked.get(session_id) == due:
                    continue
                ticked[session_id] = due
                request = Request(
                    request_id=f"tick:{session_id}:{int(now.timestamp() * 1000)}",
                    session_id=session_id,
                    occurred_at=now,
                    payload=Tick(),
                )
                with contextlib.suppress(Exception):
                    await self.effects.send_request(request)


async def run_session_process(process: SessionProcess) -> None:
    """Run until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await process.run(stop)
