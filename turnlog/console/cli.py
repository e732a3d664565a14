"""`turnlog ui`: serve the web console and the HTTP API (uvicorn, one process).

Rule: this is the console's front door — it reads the settings (Kafka, Postgres, topic
prefix) and the console's own variables (console.config) once and hands typed values
down. `serve()` is also what `turnlog worker all --ui` and `turnlog demo --keep-running`
run beside their workers, on the same event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from turnlog.console.config import ConsoleConfig, load_console_config

__all__ = ["Console", "register", "ui_command"]


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server without its signal capture: the caller owns the signals
        (Ctrl-C stops `turnlog ui`; in `worker all` it stops the workers too)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


class Console:
    """A console app on a uvicorn server; `start()` binds and returns once serving."""

    def __init__(self, settings: Any, config: ConsoleConfig, *, log_level: str = "warning") -> None:
        import uvicorn

        from turnlog.console.app import create_app
        from turnlog.console.backend import Backend

        self.config = config
        backend = Backend(
            settings.kafka_bootstrap_servers,
            settings.database_url,
            settings.topic_prefix,
            max_text_bytes=settings.max_text_bytes,
        )
        self.app = create_app(config, backend)
        self.backend = backend
        self.server = _server_class()(
            uvicorn.Config(
                self.app,
                host=config.host,
                port=config.port,
                log_level=log_level,
                access_log=False,
                lifespan="on",
                # The console's followers are long-lived streams: let a stop end them.
                timeout_graceful_shutdown=3,
                h11_max_incomplete_event_size=64 * 1024,
            )
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        for server in getattr(self.server, "servers", ()):
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(), name="console")
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start
                raise RuntimeError("The console stopped before it started serving.")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task


def _port_free(host: str, port: int) -> bool:
    if port == 0:
        return True
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ui_command(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default TURNLOG_UI_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default TURNLOG_UI_PORT, 8700; 0: any free).")
    ] = None,
    tokens_file: Annotated[
        str | None,
        typer.Option(
            help="File of 'name:token' lines: who may sign in (default "
            "TURNLOG_UI_TOKENS_FILE / TURNLOG_UI_TOKENS)."
        ),
    ] = None,
) -> None:
    """Serve the web console and the HTTP API (loopback by default; bound elsewhere it
    needs TURNLOG_UI_TOKENS or TURNLOG_UI_TOKENS_FILE)."""
    from streams.logs import configure_logging
    from turnlog.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    config = load_console_config(host=host, port=port, tokens_file=tokens_file)
    if not _port_free(config.host, config.port):
        raise typer.BadParameter(
            f"{config.host}:{config.port} is in use (TURNLOG_UI_PORT / --port).",
            param_hint="--port",
        )

    async def run() -> None:
        console = Console(settings, config, log_level="info")
        await console.start()
        auth = "tokens required" if config.auth_required else "no sign-in (loopback)"
        typer.echo(f"turnlog console on {console.url} ({auth}); Ctrl-C stops")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiter = asyncio.create_task(stop.wait())
        assert console._task is not None
        await asyncio.wait([waiter, console._task], return_when=asyncio.FIRST_COMPLETED)
        await console.stop()

    asyncio.run(run())


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
