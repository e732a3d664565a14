"""The `turnlog` command: one typer app with a sub-app per area.

    turnlog dev up|down|status|fetch|logs   local Kafka + PostgreSQL (turnlog.dev)
    turnlog topics ensure|names             topics with explicit configs (streams.topics)
    turnlog db migrate|status               SQL migrations (projections.migrate)
    turnlog settings                        the effective settings, secrets masked

The other areas are modules of this package — worker (`turnlog worker session`),
projections (`worker projector`, `projections`, `audit`, `costs`...), session (`send`,
`approve`, `cancel`, `sessions`...), replay, schedule — plus the demo, the A2A server
and the console. They register their commands explicitly: every module listed in
EXTENSIONS defines `register(app: typer.Typer) -> None` and gets the root app at
start-up (a missing module or `register` fails the start), e.g. turnlog/cli/worker.py:

    def register(app: typer.Typer) -> None:
        worker = typer.Typer(help="Run workers.")
        worker.command("session")(worker_session)
        app.add_typer(worker, name="worker")

Errors of ours (TurnlogError) end the command with the message on stderr and exit code 1,
no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import sys
from typing import Annotated

import typer

from agents.errors import TurnlogError
from turnlog.settings import Settings, load_settings

__all__ = ["EXTENSIONS", "app", "load_extensions", "main"]

EXTENSIONS: tuple[str, ...] = (
    "turnlog.cli.worker",
    "turnlog.cli.projections",
    "turnlog.demo",
    "turnlog.cli.session",
    "turnlog.cli.replay",
    "turnlog.a2a.cli",
    "turnlog.cli.schedule",
    "turnlog.cli.batch",
    "turnlog.cli.budgets",
    "turnlog.console.cli",
    "turnlog.dev.cli",
)

app = typer.Typer(
    name="turnlog",
    help="Event-sourced LLM agents on Kafka and Postgres.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dev_app = typer.Typer(help="Local Kafka + PostgreSQL without Docker.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics of turnlog.", no_args_is_help=True)
db_app = typer.Typer(help="PostgreSQL schema of the projections.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")


def _settings() -> Settings:
    return load_settings()


def _err(message: str) -> None:
    typer.echo(message, err=True)


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# --- dev -------------------------------------------------------------------------------


@dev_app.command("up")
def dev_up(
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for each service.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start Kafka and PostgreSQL (idempotent); return once both answer."""
    from turnlog import dev

    result = dev.ensure_up(_settings(), timeout=timeout)
    if as_json:
        _print_json(
            {
                **_status_dict(result),
                "started": list(result.started),
                "elapsed_s": round(result.elapsed, 3),
            }
        )
        return
    what = ", ".join(result.started) if result.started else "nothing (already running)"
    typer.echo(f"started {what} in {result.elapsed:.1f}s")
    typer.echo("\n".join(result.lines()))


@dev_app.command("status")
def dev_status(as_json: JsonOpt = False) -> None:
    """Show what runs: pids, ports, versions, logs. Exit code 3 when not both answer."""
    from turnlog import dev

    result = dev.status(_settings())
    if as_json:
        typer.echo(json.dumps(_status_dict(result), indent=2))
    else:
        typer.echo("\n".join(result.lines()))
    if not result.up:
        raise typer.Exit(3)


def _status_dict(result: object) -> dict[str, object]:
    from turnlog.dev import DevStatus

    assert isinstance(result, DevStatus)
    return {
        "up": result.up,
        "state_dir": str(result.state_dir),
        "kafka_bootstrap": result.kafka_bootstrap,
        "database_url": result.database_url,
        **{
            svc.name: {
                "state": svc.state,
                "pid": svc.pid,
                "port": svc.port,
                "version": svc.version,
                "log": str(svc.log) if svc.log else None,
            }
            for svc in (result.kafka, result.postgres)
        },
    }


@dev_app.command("down")
def dev_down(as_json: JsonOpt = False) -> None:
    """Stop the Kafka broker and PostgreSQL started from this state dir; data is kept."""
    from turnlog import dev

    result = dev.down(_settings())
    if as_json:
        _print_json(_status_dict(result))
    else:
        typer.echo("\n".join(result.lines()))


@dev_app.command("fetch")
def dev_fetch(as_json: JsonOpt = False) -> None:
    """Download the Kafka jars with Maven (what `up` does first); offline afterwards."""
    from turnlog import dev

    libs = dev.fetch_kafka_jars(_settings())
    if as_json:
        _print_json({"kafka_jars": str(libs)})
    else:
        typer.echo(f"Kafka jars in {libs}")


@dev_app.command(
    "kafka-cli",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def dev_kafka_cli(
    ctx: typer.Context,
    tool: Annotated[str, typer.Argument(help="kafka-topics, kafka-consumer-groups, ...")],
) -> None:
    """Run one of Kafka's CLI tools against KAFKA_BOOTSTRAP_SERVERS (arguments passed on,
    e.g. `turnlog dev kafka-cli kafka-consumer-groups --list`); exits with its code."""
    from turnlog import dev

    raise typer.Exit(dev.kafka_cli(_settings(), tool, list(ctx.args)))


@dev_app.command("logs")
def dev_logs(
    service: Annotated[str, typer.Argument(help="kafka or postgres")],
    lines: Annotated[int, typer.Option("-n", "--lines")] = 60,
    as_json: JsonOpt = False,
) -> None:
    """Print the tail of a service's log."""
    from turnlog.dev import _kafka, _postgres

    settings = _settings()
    if service == "kafka":
        tail = _kafka.log_tail(settings, lines)
    elif service == "postgres":
        tail = _postgres.log_tail(settings, lines)
    else:
        raise typer.BadParameter("expected kafka or postgres", param_hint="SERVICE")
    if as_json:
        _print_json({"service": service, "lines": tail.splitlines()})
    else:
        typer.echo(tail)


# --- topics ----------------------------------------------------------------------------


@topics_app.command("ensure")
def topics_ensure(
    partitions: Annotated[
        int | None, typer.Option(help="Default: TURNLOG_PARTITIONS.", min=1)
    ] = None,
    prefix: Annotated[str | None, typer.Option(help="Default: TURNLOG_TOPIC_PREFIX.")] = None,
    fix_configs: Annotated[
        bool, typer.Option("--fix-configs", help="Set drifted configs back (not partitions).")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Exit with code 2 on any drift.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create missing topics with their configs; report existing ones that differ."""
    from streams.topics import ensure_topics

    settings = _settings()
    report = asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap_servers,
            settings.topic_prefix if prefix is None else prefix,
            partitions or settings.partitions,
            replication_factor=settings.replication_factor,
            fix_configs=fix_configs,
            requests_retention_ms=(
                None
                if settings.requests_retention_hours is None
                else round(settings.requests_retention_hours * 3_600_000)
            ),
        )
    )
    if as_json:
        _print_json(
            {
                "topics": dataclasses.asdict(report.names),
                "created": report.created,
                "unchanged": report.unchanged,
                "fixed": [dataclasses.asdict(d) for d in report.fixed],
                "drift": [dataclasses.asdict(d) for d in report.drift],
                "ok": report.ok,
            }
        )
    else:
        typer.echo("\n".join(report.lines()))
    if report.drift:
        _err(f"{len(report.drift)} setting(s) differ from the expected ones (see DRIFT).")
        if strict:
            raise typer.Exit(2)


@topics_app.command("names")
def topics_names(
    prefix: Annotated[str | None, typer.Option(help="Default: TURNLOG_TOPIC_PREFIX.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the topic names for the configured prefix."""
    from streams.topics import topic_names

    settings = _settings()
    names = dataclasses.asdict(topic_names(settings.topic_prefix if prefix is None else prefix))
    if as_json:
        _print_json(names)
        return
    for key, name in names.items():
        typer.echo(f"{key:<12} {name}")


# --- db --------------------------------------------------------------------------------


@db_app.command("migrate")
def db_migrate(as_json: JsonOpt = False) -> None:
    """Apply the pending SQL migrations (idempotent)."""
    from projections.migrate import migrate

    applied = migrate(_settings().database_url)
    if as_json:
        _print_json({"applied": list(applied)})
    else:
        typer.echo("\n".join(f"applied {name}" for name in applied) or "nothing to apply")


@db_app.command("status")
def db_status(as_json: JsonOpt = False) -> None:
    """List the migrations: applied, pending, or changed since applied."""
    from projections.migrate import applied_migrations, discover

    applied = applied_migrations(_settings().database_url)
    rows = []
    for migration in discover():
        checksum = applied.get(migration.name)
        state = (
            "pending"
            if checksum is None
            else "applied"
            if checksum == migration.checksum
            else "CHANGED"
        )
        rows.append({"name": migration.name, "state": state})
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        typer.echo(f"{row['state']:<8} {row['name']}")


# --- misc ------------------------------------------------------------------------------


@app.command("settings")
def show_settings(as_json: JsonOpt = False) -> None:
    """Print the effective settings by environment variable (secrets masked)."""
    shown = _settings().redacted()
    if as_json:
        _print_json(shown)
        return
    for name, value in shown.items():
        typer.echo(f"{name}={'' if value is None else value}")


_loaded = False


def load_extensions() -> None:
    """Let every module in EXTENSIONS add its commands to `app` (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module_name in EXTENSIONS:
        # Every listed module exists and registers: a missing one is a packaging bug,
        # said at once rather than a command silently gone.
        importlib.import_module(module_name).register(app)


def _install_wire_format() -> None:
    """The codec reads and writes the framing the settings name (turnlog.wire); invalid
    settings are left for the command to report when it reads them."""
    from turnlog import wire
    from turnlog.settings import ConfigError

    try:
        settings = load_settings()
    except ConfigError:
        return
    wire.install(settings)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    load_extensions()
    try:
        _install_wire_format()
        app(args=argv)
    except TurnlogError as exc:
        _err(f"turnlog: {exc}")
        sys.exit(1)
