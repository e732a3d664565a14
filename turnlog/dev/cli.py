"""`turnlog dev registry`: a real schema registry for registry mode, on loopback.

    turnlog dev registry up [--port 8081]   start Apicurio Registry in the background
                                            (fetched with Maven the first time); prints
                                            TURNLOG_SCHEMA_REGISTRY_URL
    turnlog dev registry status             what answers on the port `up` used (exit 3: none)
    turnlog dev registry down               stop the one this state dir started
    turnlog dev registry fetch              only download and unpack it (CI's setup)

Registered on `turnlog dev` by `register(app)` (turnlog.cli.EXTENSIONS). The registry
keeps its schemas in memory: `down` (or a restart) forgets them, and turnlog registers
its schemas again the first time it writes a record.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

__all__ = ["register", "registry_app"]

registry_app = typer.Typer(
    help="A real schema registry (Apicurio Registry, Confluent API) on 127.0.0.1.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _status_json(result: object) -> str:
    from turnlog.dev import RegistryStatus

    assert isinstance(result, RegistryStatus)
    return json.dumps(
        {
            "state": result.state,
            "answering": result.answering,
            "url": result.url,
            "port": result.port,
            "pid": result.pid,
            "version": result.version,
            "log": str(result.log),
            "startup_s": None if result.startup_s is None else round(result.startup_s, 3),
        },
        indent=2,
    )


def _echo(result: object, as_json: bool) -> None:
    from turnlog.dev import RegistryStatus

    assert isinstance(result, RegistryStatus)
    typer.echo(_status_json(result) if as_json else "\n".join(result.lines()))


@registry_app.command("up")
def registry_up(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8081,
    timeout: Annotated[float, typer.Option(help="Seconds to wait until it answers.")] = 120.0,
    as_json: JsonOpt = False,
) -> None:
    """Start the registry unless one answers on the port; return once it answers."""
    from turnlog import dev
    from turnlog.dev import _registry
    from turnlog.settings import load_settings

    settings = load_settings()
    if not _registry.app_ready(settings):
        typer.echo(
            f"Fetching Apicurio Registry {_registry.pinned_version()} with Maven "
            "(once; about 150 MB) ...",
            err=True,
        )
    _echo(dev.registry_up(settings, port, timeout=timeout), as_json)


@registry_app.command("status")
def registry_status(
    port: Annotated[
        int | None, typer.Option(help="Port to look at (default: the one `up` used).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What answers: state, pid, version, URL, log. Exit code 3 when none does."""
    from turnlog import dev
    from turnlog.settings import load_settings

    result = dev.registry_status(load_settings(), port)
    _echo(result, as_json)
    if not result.answering:
        raise typer.Exit(3)


@registry_app.command("down")
def registry_down(as_json: JsonOpt = False) -> None:
    """Stop the registry started from this state dir (its schemas are forgotten)."""
    from turnlog import dev
    from turnlog.settings import load_settings

    _echo(dev.registry_down(load_settings()), as_json)


@registry_app.command("fetch")
def registry_fetch(as_json: JsonOpt = False) -> None:
    """Download and unpack the registry with Maven (what `up` does first)."""
    from turnlog import dev
    from turnlog.settings import load_settings

    app = dev.fetch_registry(load_settings())
    typer.echo(json.dumps({"registry_app": str(app)}) if as_json else f"Schema registry in {app}")


def register(app: typer.Typer) -> None:
    """Add `registry` to the `dev` sub-app of the root app."""
    from turnlog.cli import dev_app

    dev_app.add_typer(registry_app, name="registry")
