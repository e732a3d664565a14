"""`turnlog a2a serve`: every agent of the agent file as an A2A agent over HTTP.

Rule: the front door reads the settings (Kafka, topic prefix, agent file) and the
token once and hands them down; see `turnlog.a2a.server` for the mapping and exposure.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

__all__ = ["a2a_app", "register"]

a2a_app = typer.Typer(help="Serve turnlog's agents over A2A (Agent2Agent).", no_args_is_help=True)


@a2a_app.command("serve")
def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to bind; not loopback needs TURNLOG_A2A_TOKEN(_FILE).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (0: any free port, printed).")] = 8790,
    public_url: Annotated[
        str | None,
        typer.Option(help="The URL callers reach this server at (for the agent cards)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds a task waits for its turn.")] = 600.0,
) -> None:
    """Serve each agent of TURNLOG_AGENTS at /agents/<name>/ (agent card, message/send,
    message/stream, tasks/get, tasks/cancel); a context is a session, a task a turn."""
    from agents.agentfile import load_definitions
    from agents.errors import ContractError
    from turnlog.a2a.server import A2A_TOKEN_ENV, is_loopback, token_from_env
    from turnlog.settings import load_settings

    settings = load_settings()
    token = token_from_env()
    if token is None and not is_loopback(host):
        raise ContractError(
            f"turnlog a2a serve binds {host}, which is not a loopback address: set "
            f"{A2A_TOKEN_ENV} (or {A2A_TOKEN_ENV}_FILE) to the bearer token callers must send."
        )
    definitions, _ = load_definitions(settings.agents)
    asyncio.run(_serve(settings, definitions, host, port, public_url, token, timeout))


async def _serve(
    settings: Any,
    definitions: Any,
    host: str,
    port: int,
    public_url: str | None,
    token: str | None,
    timeout_s: float,
) -> None:
    import socket

    import uvicorn

    from turnlog.a2a.server import build_app
    from turnlog.client import Client

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections queue from now on: the address printed below works
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    base = public_url or f"http://{shown}:{bound}"
    client = Client.from_settings(settings, client_id="turnlog-a2a")
    app = build_app(
        client,
        definitions,
        base_url=base,
        token=token,
        timeout_s=timeout_s,
        on_startup=[client.start],
        on_shutdown=[client.close],
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    for d in definitions:
        typer.echo(f"a2a: agent {d.name} at {base}/agents/{d.name}/", err=True)
    typer.echo(f"a2a: listening on {shown}:{bound}", err=True)
    await server.serve(sockets=[sock])


def register(app: typer.Typer) -> None:
    app.add_typer(a2a_app, name="a2a")
