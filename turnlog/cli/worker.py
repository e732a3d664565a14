"""`turnlog worker session`: the session worker as a command (also what
`python -m turnlog worker session` runs: the tests' and benchmarks' worker processes)."""

from __future__ import annotations

import asyncio

import typer

__all__ = ["register"]


def worker_session() -> None:
    """Run a session worker (requests -> FSM -> events, plus effects) until SIGTERM."""
    from streams import telemetry
    from streams.app import run_session_process, tune_gc
    from streams.endpoint import endpoint_config, serving
    from streams.logs import configure_logging
    from streams.metrics import session_endpoint
    from turnlog.settings import load_settings
    from turnlog.wiring import build_session_process

    settings = load_settings()
    configure_logging(settings.log_level)
    telemetry.configure_tracing(settings.tracing_enabled, "turnlog-session-worker")
    process = build_session_process(settings)
    endpoint = session_endpoint(process, endpoint_config(settings))
    tune_gc()
    try:
        asyncio.run(serving(endpoint, run_session_process(process)))
    finally:
        telemetry.shutdown_tracing()  # export the spans still buffered


def register(app: typer.Typer) -> None:
    existing = next(
        (g for g in app.registered_groups if g.name == "worker" and g.typer_instance), None
    )
    if existing is not None and existing.typer_instance is not None:
        existing.typer_instance.command("session")(worker_session)
        return
    worker = typer.Typer(help="Run workers.", no_args_is_help=True)
    worker.command("session")(worker_session)
    app.add_typer(worker, name="worker")
