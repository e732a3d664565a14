"""Scheduled agents at the front door, registered on the root app by `register(app)`.

    turnlog worker scheduler            fire the slots of the schedules (and project them)
    turnlog schedule add ID ...         create or replace a schedule (cron, every, at)
    turnlog schedule list               schedules, their status and next slot (Postgres)
    turnlog schedule runs ID            the slots handled: run session, outcome, cost
    turnlog schedule pause|resume|remove ID

Every printing command takes --json. Rule: commands are thin; records are written by
`turnlog.Client` (to `turnlog.schedules`), read back from the projections.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["build_scheduler_process", "register", "schedule_app", "worker_scheduler"]

schedule_app = typer.Typer(
    help="Scheduled agent runs: cron (with a time zone), intervals, one-shot times.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _settings() -> Any:
    from turnlog.settings import load_settings

    return load_settings()


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# ------------------------------------------------------------------ worker


def build_scheduler_process(
    settings: Any, *, clock: Any = None, client_id: str = "turnlog-scheduler", **options: Any
) -> Any:
    """The process `turnlog worker scheduler` runs, from settings: the topics, the
    database (overlap checks and the schedules projection) and the agent file's
    `[[schedules]]`."""
    from streams.scheduler import system_clock
    from streams.scheduler_app import SchedulerProcess, load_file_schedules
    from streams.topics import topic_names

    return SchedulerProcess(
        bootstrap=settings.kafka_bootstrap_servers,
        topics=topic_names(settings.topic_prefix),
        database_url=settings.database_url,
        file_schedules=load_file_schedules(settings.agents),
        clock=clock or system_clock,
        session_timeout_ms=settings.session_timeout_ms,
        client_id=client_id,
        **options,
    )


def worker_scheduler(
    grace_s: Annotated[
        float,
        typer.Option(
            "--grace-s",
            help="Seconds after its time a slot still counts as on time; older slots "
            "were missed and the catch-up policy decides them.",
            min=1,
        ),
    ] = 60.0,
    clock_file: Annotated[
        Path | None, typer.Option(hidden=True, help="Test seam: read 'now' from this file.")
    ] = None,
    hold_at: Annotated[
        str | None,
        typer.Option(hidden=True, help="Test seam: block at before_commit|after_commit."),
    ] = None,
    hold_marker: Annotated[
        Path | None, typer.Option(hidden=True, help="Test seam: file written when held.")
    ] = None,
    metrics_port: Annotated[
        int,
        typer.Option(
            "--metrics-port",
            help="Port of /metrics, /healthz, /readyz (on TURNLOG_METRICS_HOST, with "
            "TURNLOG_METRICS_TOKEN off the loopback); 0: any free port.",
        ),
    ] = 9466,
) -> None:
    """Run a scheduler until SIGTERM: each slot of each schedule fires exactly once
    (several schedulers split the schedules by partition)."""
    import signal

    from streams.logs import configure_logging
    from streams.scheduler import file_clock

    settings = _settings()
    configure_logging(settings.log_level)
    process = build_scheduler_process(
        settings,
        clock=file_clock(clock_file) if clock_file is not None else None,
        grace=timedelta(seconds=grace_s),
        hold_at=hold_at,
        hold_marker=hold_marker,
    )

    from streams.endpoint import endpoint_config, serving
    from streams.scheduler_app import scheduler_endpoint

    endpoint = scheduler_endpoint(process, endpoint_config(settings, port=metrics_port))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serving(endpoint, process.run(stop))

    asyncio.run(main())


# ------------------------------------------------------------------ schedule commands


def _client() -> Any:
    from turnlog.client import Client

    return Client.from_settings(_settings())


async def _with_client(work: Any) -> Any:
    """`work(client)`; the client connects on its first use, so input that `work`
    refuses (an invalid schedule) is refused without Kafka."""
    import psycopg

    from agents.errors import ContractError

    client = _client()
    try:
        return await work(client)
    except psycopg.errors.UndefinedTable as exc:
        raise ContractError(
            "The database DATABASE_URL names has no schedule tables "
            f"({exc.diag.message_primary}): run `turnlog db migrate`, then a scheduler "
            "(`turnlog worker scheduler` or `turnlog worker all`)."
        ) from exc
    finally:
        await client.close()


def _at(at: str | None, in_: str | None) -> str | datetime | None:
    if in_ is None:
        return at
    from streams.scheduler_plan import parse_duration

    now = datetime.now(UTC).replace(microsecond=0)  # whole seconds: readable slot ids
    return now + timedelta(seconds=parse_duration(in_, where="--in"))


@schedule_app.command("add")
def schedule_add(
    schedule_id: Annotated[str, typer.Argument(help="The schedule's id (letters, digits, _.-).")],
    agent: Annotated[str, typer.Option(help="Agent each run talks to.")],
    message: Annotated[str, typer.Option(help="Message each run sends.")],
    cron: Annotated[str | None, typer.Option(help="Cron expression, e.g. '0 2 * * *'.")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron.")] = "UTC",
    every: Annotated[str | None, typer.Option(help="Interval: 30s, 15m, 2h, 1d.")] = None,
    start_at: Annotated[
        str | None, typer.Option(help="First slot of an interval (ISO-8601).")
    ] = None,
    at: Annotated[str | None, typer.Option(help="One shot at this ISO-8601 time.")] = None,
    in_: Annotated[str | None, typer.Option("--in", help="One shot after this long.")] = None,
    session: Annotated[str, typer.Option(help="'new' (a session per run) or a session id.")] = (
        "new"
    ),
    overlap: Annotated[str, typer.Option(help="skip | queue | cancel.")] = "skip",
    catch_up: Annotated[str, typer.Option(help="once | all | none.")] = "once",
    catch_up_limit: Annotated[int, typer.Option(help="Most missed slots 'all' fires.")] = 10,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create or replace a schedule (one of --cron, --every, --at, --in)."""
    if at is not None and in_ is not None:
        raise typer.BadParameter("give --at or --in, not both", param_hint="--in")

    async def work(client: Any) -> Any:
        return await client.add_schedule(
            schedule_id,
            agent=agent,
            message=message,
            cron=cron,
            timezone=timezone,
            every=every,
            start_at=start_at,
            at=_at(at, in_),
            session=session,
            overlap=overlap,
            catch_up=catch_up,
            catch_up_limit=catch_up_limit,
            paused=paused,
            source="cli",
        )

    record = asyncio.run(_with_client(work))
    from streams.scheduler_plan import ScheduleState, fold, next_slot

    upcoming = next_slot(fold(ScheduleState(schedule_id), record))
    if as_json:
        import dataclasses

        _print_json(
            {
                "schedule_id": schedule_id,
                "definition": dataclasses.asdict(record.payload),
                "next_slot": upcoming,
            }
        )
        return
    typer.echo(
        f"schedule {schedule_id}: defined; next slot "
        f"{upcoming.isoformat() if upcoming else '(none)'}"
    )


def _change(kind: str, schedule_id: str, as_json: bool) -> None:
    async def work(client: Any) -> Any:
        await _check_known(client, schedule_id)
        method = getattr(client, f"{kind}_schedule")
        return await method(schedule_id, by="cli")

    asyncio.run(_with_client(work))
    done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[kind]
    if as_json:
        _print_json({"schedule_id": schedule_id, "status": done})
    else:
        typer.echo(f"schedule {schedule_id}: {done}")


async def _check_known(client: Any, schedule_id: str) -> None:
    """An unknown id is an error (when the projection can say so)."""
    from agents.errors import ContractError, ExternalError

    try:
        rows = await client.query(
            "SELECT status FROM schedules WHERE schedule_id = %s", (schedule_id,)
        )
    except ExternalError:
        return  # Postgres is not there to ask: the record is written regardless
    except Exception:  # no projection tables (not migrated): cannot check
        return
    if not rows:
        raise ContractError(
            f"There is no schedule {schedule_id!r} (see `turnlog schedule list`; a schedule "
            "added a moment ago shows there once a scheduler has projected it)."
        )


@schedule_app.command("pause")
def schedule_pause(schedule_id: str, as_json: JsonOpt = False) -> None:
    """Stop firing a schedule (its slots meanwhile are not caught up)."""
    _change("pause", schedule_id, as_json)


@schedule_app.command("resume")
def schedule_resume(schedule_id: str, as_json: JsonOpt = False) -> None:
    """Fire a paused schedule again, from its first slot after now."""
    _change("resume", schedule_id, as_json)


@schedule_app.command("remove")
def schedule_remove(schedule_id: str, as_json: JsonOpt = False) -> None:
    """Remove a schedule (its runs stay in the projections)."""
    _change("remove", schedule_id, as_json)


_LIST_COLUMNS = ["schedule_id", "agent", "kind", "when", "status", "next_slot", "runs", "skipped"]


@schedule_app.command("list")
def schedule_list(as_json: JsonOpt = False) -> None:
    """Schedules, their status and next slot (from the `schedules` projection)."""
    rows = asyncio.run(_with_client(lambda c: c.schedules()))
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        row["when"] = (row["cron"] and f"{row['cron']} {row['timezone']}") or (
            f"every {row['every_s']}s" if row["every_s"] else f"at {row['at']}"
        )
    _table(rows, _LIST_COLUMNS)


@schedule_app.command("runs")
def schedule_runs(
    schedule_id: str,
    limit: Annotated[int, typer.Option(help="Latest slots shown.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The slots of a schedule the scheduler handled: run session, outcome, cost."""
    rows = asyncio.run(_with_client(lambda c: c.schedule_runs(schedule_id, limit=limit)))
    if as_json:
        _print_json(rows)
        return
    _table(
        rows,
        ["slot", "fired", "session_id", "overlap", "catch_up", "late_ms", "outcome", "cost_usd"],
    )


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        typer.echo("(none)")
        return

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        if isinstance(value, Decimal):
            value = float(value)
        if isinstance(value, float):
            return f"{value:.1f}" if value >= 1 or value == 0 else f"{value:.6f}"
        return str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def register(app: typer.Typer) -> None:
    """Add `schedule ...` and `worker scheduler` to the root app."""
    app.add_typer(schedule_app, name="schedule")
    existing = next(
        (g for g in app.registered_groups if g.name == "worker" and g.typer_instance), None
    )
    if existing is not None and existing.typer_instance is not None:
        existing.typer_instance.command("scheduler")(worker_scheduler)
    else:
        worker = typer.Typer(help="Run workers.", no_args_is_help=True)
        worker.command("scheduler")(worker_scheduler)
        app.add_typer(worker, name="worker")
