"""The MCP servers of a worker: one connection per server, discovery and tool calls.

Rule: a connection is opened when first needed and kept for the worker's life (a stdio
server is one process, not one per call); a connection that broke is opened again by
the next call. A call is sent once: a connection that breaks during it makes it a failed
call saying the outcome is unknown (the core decides about re-running it, from the
tool's `idempotent`), never a silent re-send. Every call carries the effect id as
`_meta["io.turnlog/idempotency-key"]`. Nothing here raises for what a server or a model
can cause: each call ends as a `ToolResult`.

A server's `notifications/tools/list_changed` sets `changed` (the worker then discovers
again; see `streams.mcp`), and so does connecting again to a server that went away.

Each connection lives in a task of its own (the SDK's transports are anyio context
managers, which must be left by the task that entered them); calls from effect tasks go
through its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import mcp_types as types
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from agents.definitions import McpServer
from agents.tools.context import ShellSettings, ToolContext, ToolSettings
from agents.tools.mcp._content import render_result
from agents.tools.mcp._launch import McpUnavailable, open_transport
from agents.tools.tool import ToolResult

__all__ = [
    "IDEMPOTENCY_META_KEY",
    "Discovered",
    "McpHub",
    "McpUnavailable",
    "discover_blocking",
]

IDEMPOTENCY_META_KEY = "io.turnlog/idempotency-key"
_CONNECT_S = 30.0


@dataclass(frozen=True, slots=True)
class Discovered:
    """What one server offered when asked (`error` set, `tools` empty: it could not be
    asked)."""

    server: str
    tools: tuple[types.Tool, ...] = ()
    error: str | None = None


class _Connection:
    def __init__(
        self,
        name: str,
        config: McpServer,
        home: Path,
        shell: ShellSettings,
        errlog: TextIO,
        changed: asyncio.Event,
    ) -> None:
        self.name = name
        self.config = config
        self.home = home
        self.shell = shell
        self.errlog = errlog
        self.changed = changed
        self.session: ClientSession | None = None
        self.error: BaseException | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.session is not None and self._task is not None and not self._task.done()

    async def open(self) -> ClientSession:
        self._task = asyncio.create_task(self._run(), name=f"mcp:{self.name}")
        try:
            async with asyncio.timeout(_CONNECT_S):
                await self._ready.wait()
        except TimeoutError:
            await self.close()
            raise McpUnavailable(
                f"MCP server {self.name!r} did not answer its initialization within "
                f"{_CONNECT_S:g}s."
            ) from None
        if self.session is None:
            err = self.error
            if isinstance(err, McpUnavailable):
                raise err
            raise McpUnavailable(
                f"MCP server {self.name!r} could not be reached: {_describe(err)}"
            ) from err
        return self.session

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.changed.set()

    async def _run(self) -> None:
        try:
            async with (
                open_transport(self.name, self.config, self.home, self.shell, self.errlog) as (
                    read,
                    write,
                ),
                ClientSession(read, write, message_handler=self._on_message) as session,
            ):
                await session.initialize()
                self.session = session
                self._ready.set()
                await self._closing.wait()
        except BaseException as exc:
            self.error = exc
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.session = None
            self._ready.set()

    async def close(self) -> None:
        self._closing.set()
        task = self._task
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(10.0):
                    await asyncio.shield(task)
            except (TimeoutError, Exception):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "the connection closed"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class McpHub:
    """The MCP servers declared by a worker's agents, by name."""

    def __init__(
        self,
        servers: Mapping[str, McpServer],
        *,
        settings: ToolSettings | None = None,
        home: Path | None = None,
    ) -> None:
        self.servers = dict(servers)
        self.settings = settings
        self._home = home
        self.changed = asyncio.Event()
        self._connections: dict[str, _Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._errlog: TextIO | None = None
        self._opened: set[str] = set()  # servers connected at least once
        self.stats = {"calls": 0, "connects": 0, "failed": 0}

    def _server_home(self, name: str, settings: ToolSettings | None) -> Path:
        if self._home is not None:
            return self._home / name
        chosen = settings or self.settings or ToolSettings()
        # Beside the shell tool's sandbox, not in it: a command the model runs there must
        # not plant files (a usercustomize.py) in the HOME of a server holding secrets.
        return Path(os.path.abspath(chosen.sandbox_dir)).parent / "mcp" / name

    def _log_file(self, name: str, home: Path) -> TextIO:
        # The servers' stderr, kept out of the worker's own log stream.
        if self._errlog is None:
            home.parent.mkdir(parents=True, exist_ok=True)
            self._errlog = open(home.parent / "servers.log", "a", encoding="utf-8")  # noqa: SIM115
        return self._errlog

    async def session(self, name: str, settings: ToolSettings | None = None) -> ClientSession:
        """The live session of server `name`, connecting (again) when needed."""
        config = self.servers.get(name)
        if config is None:
            raise McpUnavailable(f"No MCP server named {name!r} is declared.")
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            conn = self._connections.get(name)
            if conn is not None and conn.alive:
                assert conn.session is not None
                return conn.session
            if conn is not None:
                await conn.close()
            chosen = settings or self.settings or ToolSettings()
            home = self._server_home(name, chosen)
            conn = _Connection(
                name, config, home, chosen.shell, self._log_file(name, home), self.changed
            )
            self._connections[name] = conn
            self.stats["connects"] += 1
            session = await conn.open()
            if name in self._opened:
                # Connected again (the server restarted, or came back): its tools may
                # differ from what the worker offers, so discover now, not at the
                # next scheduled pass.
                self.changed.set()
            self._opened.add(name)
            return session

    async def _drop(self, name: str, session: ClientSession) -> None:
        conn = self._connections.get(name)
        if conn is not None and conn.session is session:
            del self._connections[name]
            await conn.close()

    async def list_tools(self, name: str) -> Discovered:
        """The tools server `name` offers now (every page)."""
        try:
            session = await self.session(name)
            tools: list[types.Tool] = []
            cursor: str | None = None
            while True:
                params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await session.list_tools(params=params)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        except McpUnavailable as exc:
            return Discovered(name, error=str(exc))
        except Exception as exc:  # a server that answers badly is unavailable
            conn = self._connections.get(name)
            if conn is not None and conn.session is not None:
                await self._drop(name, conn.session)  # the next use connects again
            return Discovered(name, error=f"tools/list failed: {_describe(exc)}")
        return Discovered(name, tuple(tools))

    async def discover(self) -> dict[str, Discovered]:
        """Every server's tools, asked concurrently."""
        names = sorted(self.servers)
        found = await asyncio.gather(*(self.list_tools(n) for n in names))
        return dict(zip(names, found, strict=True))

    async def call(
        self, name: str, tool: str, arguments: dict[str, Any], ctx: ToolContext
    ) -> ToolResult:
        """One tools/call; a ToolResult whatever happens (cancellation propagates)."""
        started = time.perf_counter()
        self.stats["calls"] += 1

        def done(ok: bool, text: str, kind: Any = None) -> ToolResult:
            if not ok:
                self.stats["failed"] += 1
            return ToolResult(ok, text, int((time.perf_counter() - started) * 1000), kind)

        try:
            session = await self.session(name, ctx.settings)
        except McpUnavailable as exc:
            return done(False, f"{exc} The tool {tool!r} was not called.", "failed")
        try:
            # The key is ours (an open map); the literal is IDEMPOTENCY_META_KEY.
            meta: types.RequestParamsMeta = {"io.turnlog/idempotency-key": ctx.idempotency_key}  # type: ignore[typeddict-unknown-key]
            result = await session.call_tool(tool, arguments, meta=meta)
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:  # the server went away mid-call
                await self._drop(name, session)
                return done(
                    False,
                    f"The connection to MCP server {name!r} closed during the call of "
                    f"{tool!r}; whether the tool ran is unknown.",
                    "exception",
                )
            # The server answered with a protocol error.
            return done(False, f"MCP server {name!r} refused the call of {tool!r}: {exc}", "failed")
        except Exception as exc:
            await self._drop(name, session)
            return done(
                False,
                f"The connection to MCP server {name!r} broke during the call of {tool!r} "
                f"({_describe(exc)}); whether the tool ran is unknown.",
                "exception",
            )
        if not isinstance(result, types.CallToolResult):
            return done(
                False, f"MCP server {name!r} answered {tool!r} with no tool result.", "failed"
            )
        ok, text = render_result(result)
        return done(ok, text, None if ok else "failed")

    async def aclose(self) -> None:
        """Close every connection (stdio servers stop)."""
        conns = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None


def discover_blocking(
    servers: Mapping[str, McpServer], *, timeout_s: float = 60.0
) -> dict[str, Discovered]:
    """Discover `servers` from synchronous code (loading an agent file): in a thread of
    its own with its own event loop and temporary connections, closed afterwards; each
    stdio server gets a throwaway directory."""
    if not servers:
        return {}

    async def run(home: Path) -> dict[str, Discovered]:
        hub = McpHub(servers, home=home)
        try:
            async with asyncio.timeout(timeout_s):
                return await hub.discover()
        except TimeoutError:
            return {n: Discovered(n, error=f"discovery took over {timeout_s:g}s") for n in servers}
        finally:
            await hub.aclose()

    result: dict[str, Discovered] = {}

    def target(home: str) -> None:
        result.update(asyncio.run(run(Path(home))))

    with tempfile.TemporaryDirectory(prefix="turnlog-mcp-") as home:
        thread = threading.Thread(target=target, args=(home,), name="mcp-discovery")
        thread.start()
        thread.join()
    return result
