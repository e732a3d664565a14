"""`turnlog demo` and `turnlog worker all`.

`turnlog worker all` runs the session worker (with its effect runner and ticker) and the
projector in ONE process, for small setups and the demo. Rule: it only assembles the
workers of streams/ and projections/ — nothing here decides or projects anything — and
it stops both when either stops (or on SIGINT/SIGTERM).

`turnlog demo` is the first command of the README. It brings up the local Kafka and
PostgreSQL if nothing answers (turnlog.dev), creates the topics and tables, starts
`worker all` in-process, and runs one scripted session through the public client:

    1. "what is 17*23?"                 a tool call (calculator)
    2. "list the files here"            an approval (shell): shown, then granted
    3. "research who created Kafka"     a delegation to the researcher agent
    4. design notes pasted              a summarize compaction before the answer

then prints the conversation from the projections, the costs and `audit verify`, and a
checklist of what it saw. Without ANTHROPIC_API_KEY the models are the scripted ones
(examples/demo_agents.toml + examples/demo_session.script.yaml); with it, Claude
(examples/demo_agents.claude.toml). The session's steps live in turnlog._demo_session.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["WorkerAll", "demo_command", "register", "worker_all_command"]


def _examples() -> Path:
    # A checkout (editable install) has examples/ next to the package; an installed
    # package has not (site-packages/examples, if any, is another distribution's), and
    # then the demo takes the copies built into the package.
    beside = Path(__file__).resolve().parents[1] / "examples"
    if (beside / "demo_agents.toml").is_file():
        return beside
    from turnlog.settings import BUILTIN_DIR

    return BUILTIN_DIR


EXAMPLES = _examples()
DEMO_AGENTS = EXAMPLES / "demo_agents.toml"
DEMO_AGENTS_CLAUDE = EXAMPLES / "demo_agents.claude.toml"
DEMO_SCRIPT = EXAMPLES / "demo_session.script.yaml"


class WorkerAll:
    """A session process and a projector sharing one event loop."""

    def __init__(
        self, settings: Any, *, checkpoint_interval: float = 5.0, client_id: str = "turnlog-all"
    ) -> None:
        from projections.projector import Projector, ProjectorConfig
        from streams.topics import topic_names
        from turnlog.wiring import build_session_process

        names = topic_names(settings.topic_prefix)
        self.bootstrap: str = settings.kafka_bootstrap_servers
        self.session = build_session_process(settings, client_id=client_id)
        self.projector = Projector(
            ProjectorConfig(
                bootstrap=settings.kafka_bootstrap_servers,
                database_url=settings.database_url,
                events_topic=names.events,
                checkpoints_topic=names.checkpoints,
                consumer="projector",
                group_id=f"{settings.topic_prefix}turnlog-projector",
                checkpoint_interval=checkpoint_interval,
                fetch_wait_ms=settings.fetch_wait_ms,
            )
        )
        # Scheduled agents (issue 20): the scheduler and its schedules projector.
        from turnlog.cli.schedule import build_scheduler_process

        self.scheduler = build_scheduler_process(settings, client_id=f"{client_id}-scheduler")
        self.groups: tuple[str, ...] = (
            self.session.worker.group_id,
            f"{settings.topic_prefix}turnlog-projector",
            self.scheduler.scheduler.group_id,
        )
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ready(self) -> asyncio.Event:
        """Set once the session worker owns its partitions (requests get answered)."""
        event: asyncio.Event = self.session.worker.assigned_event
        return event

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.session.run(self.stop_event), name="session-worker"),
            asyncio.create_task(self.projector.run(), name="projector"),
            asyncio.create_task(self.scheduler.run(self.stop_event), name="scheduler"),
        ]
        for task in self._tasks:
            task.add_done_callback(lambda _t: self.stop())

    def stop(self) -> None:
        self.stop_event.set()
        self.projector.stop()

    async def wait(self) -> None:
        """Until both workers have stopped; re-raises the first failure."""
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def wait_ready(self, timeout: float) -> None:
        waiter = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait(
            [waiter, *self._tasks], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            await self.wait()  # a worker died: raise its error
            raise TimeoutError(f"The session worker got no partitions within {timeout:g} s.")


async def wait_for_group_coordinators(
    bootstrap: str, groups: Sequence[str], *, timeout_s: float = 60.0
) -> bool:
    """Until the broker names a coordinator for each consumer group in `groups`; True
    once it does, False at the deadline or on an error that is not retriable.

    Why: on a broker that has never served a consumer group (a fresh `turnlog dev up`,
    the README's first `turnlog demo`), the internal offsets topic is created on the
    first lookup, and until it has leaders aiokafka's group coordinator logs every
    retry as `ERROR ... GroupCoordinatorNotAvailableError` — warming up, not failing,
    but a new user reads it as a failure. Asking first, quietly, lets the workers find
    a coordinator at once. Anything else (or a broker that stays unready) is left for
    the workers to meet and report as they always do."""
    from aiokafka.client import (  # type: ignore[import-untyped,unused-ignore]
        AIOKafkaClient,
        ConnectionGroup,
        CoordinationType,
    )
    from aiokafka.errors import (  # type: ignore[import-untyped,unused-ignore]
        KafkaError,
        for_code,
    )
    from aiokafka.protocol.commit import (  # type: ignore[import-untyped,unused-ignore]
        OffsetFetchRequest,
    )

    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id="turnlog-warm-up")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pause = 0.05
    pending = list(groups)
    try:
        await client.bootstrap()
        while pending:
            group = pending[0]
            try:
                node = await client.coordinator_lookup(CoordinationType.GROUP, group)
                # Named is not ready: the coordinator answers COORDINATOR_LOAD_IN_PROGRESS
                # while it loads the group's offsets partition (a consumer would log the
                # coordinator as dead); an offset fetch says when it is done.
                reply = await client.send(
                    node, OffsetFetchRequest(group, None), group=ConnectionGroup.COORDINATION
                )
                code = getattr(reply, "error_code", 0)
                if code:
                    raise for_code(code)()
            except KafkaError as exc:
                if not exc.retriable or loop.time() >= deadline:
                    return False
                await asyncio.sleep(pause)  # the broker creates its offsets topic
                pause = min(pause * 2, 1.0)
                continue
            pending.pop(0)
        return True
    except KafkaError:
        return False
    finally:
        await client.close()


def _install_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)


async def run_worker_all(
    settings: Any,
    *,
    until: Callable[[WorkerAll], Awaitable[None]] | None = None,
    checkpoint_interval: float = 5.0,
    endpoint: bool = False,
    ui: bool = False,
) -> None:
    """Run `worker all` until a signal (or until the coroutine `until(workers)` ends);
    `endpoint`: serve /metrics, /healthz, /readyz (turnlog.observability); `ui`: serve
    the web console on the same loop (console.cli, TURNLOG_UI_*)."""
    from turnlog.observability import worker_all_endpoint

    workers = WorkerAll(settings, checkpoint_interval=checkpoint_interval)
    served = worker_all_endpoint(workers, settings) if endpoint else None
    if served is not None:
        await served.start()
    _install_signals(workers.stop)
    await wait_for_group_coordinators(workers.bootstrap, workers.groups)
    workers.start()
    console = await _start_console(settings) if ui else None
    try:
        if until is not None:
            await workers.wait_ready(120.0)
            await until(workers)
            workers.stop()
        await workers.wait()
    finally:
        workers.stop()
        await asyncio.gather(*workers._tasks, return_exceptions=True)
        if console is not None:
            await console.stop()
        if served is not None:
            await served.stop()


async def _start_console(settings: Any) -> Any:
    """The web console beside the workers, or None (said on stderr) when it cannot
    start: the workers do not depend on it."""
    from agents.errors import TurnlogError
    from turnlog.console.cli import Console
    from turnlog.console.config import load_console_config

    try:
        console = Console(settings, load_console_config())
        await console.start()
    except (OSError, SystemExit, TurnlogError) as exc:
        typer.echo(f"the web console did not start: {exc}", err=True)
        return None
    typer.echo(f"web console: {console.url}", err=True)
    return console


def worker_all_command(
    ui: Annotated[
        bool, typer.Option("--ui", help="Serve the web console too (`turnlog ui`).")
    ] = False,
) -> None:
    """Run the session worker and the projector in one process until SIGTERM (small
    setups; scale out with separate `worker session` / `worker projector` processes)."""
    from streams import telemetry
    from streams.app import tune_gc
    from streams.logs import configure_logging
    from turnlog.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    telemetry.configure_tracing(settings.tracing_enabled, "turnlog-worker-all")
    tune_gc()
    try:
        asyncio.run(run_worker_all(settings, endpoint=True, ui=ui))
    finally:
        telemetry.shutdown_tracing()  # export the spans still buffered


# ------------------------------------------------------------------ demo


def _demo_settings(agents: Path | None) -> tuple[Any, Path, str]:
    """The settings of the demo's workers: the demo's agents, and its script unless a
    provider is configured."""
    from turnlog.settings import load_settings

    settings = load_settings()
    claude = settings.anthropic_api_key is not None and bool(
        settings.anthropic_api_key.get_secret_value()
    )
    path = agents or (DEMO_AGENTS_CLAUDE if claude else DEMO_AGENTS)
    overrides: dict[str, Any] = {"agents": path}
    if "provider" not in settings.model_fields_set:
        overrides["provider"] = f"scripted:{DEMO_SCRIPT}"
    models = "Claude (ANTHROPIC_API_KEY is set)" if claude else "scripted (no API key)"
    return load_settings(**overrides), path, models


def demo_command(
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running", help="Keep the workers running after the demo (Ctrl-C stops)."
        ),
    ] = False,
    agents: Annotated[
        Path | None, typer.Option(help="Agent file (default: the demo's own).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds allowed per turn.")] = 120.0,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="The walkthrough on stderr; the result (session "
            "id, checks, costs, audit) as JSON on stdout.",
        ),
    ] = False,
) -> None:
    """Run the whole thing once: local Kafka + PostgreSQL, topics, tables, workers, and a
    multi-turn agent session with a tool call, an approval, a delegation and a
    compaction; then the conversation, the costs and the audit check."""
    import json

    from streams.logs import configure_logging
    from turnlog._demo_session import DemoFailed, narrate_to_stderr, prepare, run_demo

    if as_json:
        narrate_to_stderr()
    settings, agents_path, models = _demo_settings(agents)
    # The demo prints its own progress; the workers' logs would drown it.
    configure_logging("WARNING" if settings.log_level == "INFO" else settings.log_level, json=False)
    prepare(settings, agents_path, models)
    result: dict[str, Any] = {}

    async def demo(workers: WorkerAll) -> None:
        result.update(await run_demo(settings, workers, timeout=timeout, keep_running=keep_running))

    try:
        asyncio.run(
            run_worker_all(
                settings,
                until=demo,
                checkpoint_interval=1.0,  # so that the audit check has fresh heads to compare
                ui=keep_running,  # what the demo left behind, in the browser
            )
        )
    except DemoFailed as exc:
        typer.echo(f"\ndemo failed: {exc}", err=True)
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": str(exc)}, ensure_ascii=False))
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({"ok": True, **result}, ensure_ascii=False, default=str))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
    existing = next(
        (g for g in app.registered_groups if g.name == "worker" and g.typer_instance), None
    )
    if existing is not None and existing.typer_instance is not None:
        existing.typer_instance.command("all")(worker_all_command)
    else:
        worker = typer.Typer(help="Run workers.", no_args_is_help=True)
        worker.command("all")(worker_all_command)
        app.add_typer(worker, name="worker")
