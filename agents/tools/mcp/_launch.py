"""How a worker reaches an MCP server: a confined stdio process, or streamable HTTP.

Rule: a stdio server never runs in the worker's world. It runs under bubblewrap with the
shell tool's confinement (`agents.tools._confine.bwrap_argv`: fresh namespaces, no
network unless the server's `network`, the host's processes and files out of sight),
with its own writable directory as cwd and HOME, the directories its program needs
bound read-only (the program's virtualenv, the server's `read_only` paths), and an
environment holding only PATH, HOME, LANG and the variables the agent file names in
`env`. Those values reach bwrap through its environment, never its command line
(`/proc/<pid>/cmdline` is readable by every local user). When bubblewrap is missing or
cannot start, the server does not start (unless `ShellSettings.allow_unconfined`, for a
development machine: it then runs with the same scrubbed environment, unconfined).

An HTTP server gets the headers the agent file names (`headers_env`,
`bearer_token_env`), their values read from the worker's environment here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import httpx2
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from agents.definitions import McpServer
from agents.tools._confine import (
    SYSTEM_DIRS,
    bwrap_argv,
    find_bwrap,
    sandbox_path_variable,
    synthetic_etc,
)
from agents.tools.context import ShellSettings

__all__ = ["McpUnavailable", "open_transport", "server_environment"]


class McpUnavailable(Exception):
    """The server cannot be reached or started; the message says why and what to fix."""


def _secret(server: str, name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise McpUnavailable(
            f"MCP server {server!r} needs the environment variable {name} (named in the "
            "agent file), which is not set in the worker's environment."
        )
    return value


def server_environment(server: str, config: McpServer, home: Path, path: str) -> dict[str, str]:
    """The whole environment of a stdio server: no variable of the worker but these."""
    env = {"PATH": path, "HOME": str(home), "LANG": os.environ.get("LANG", "C.UTF-8")}
    for name in config.env:
        env[name] = _secret(server, name)
    return env


def _program(server: str, word: str) -> Path:
    # On PATH, else beside this interpreter: a server installed in the worker's own
    # virtualenv (`mcp-server-time`) is found when the worker was started by path.
    found = (
        (shutil.which(word) or shutil.which(word, path=os.path.dirname(sys.executable)))
        if "/" not in word
        else word
    )
    if found is None or not os.access(found, os.X_OK):
        raise McpUnavailable(f"MCP server {server!r}: the command {word!r} was not found.")
    return Path(os.path.abspath(found))


def _in_system(path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(os.path.realpath(d)) for d in SYSTEM_DIRS if os.path.isdir(d))


def _program_root(program: Path) -> Path | None:
    """What must be visible for `program` to run, when it is not a system program: the
    virtualenv it is installed in (a console script), else its own directory."""
    if _in_system(program):
        return None
    for parent in program.parents:
        if (parent / "pyvenv.cfg").is_file():
            return parent
    return program.parent


def _read_only(server: str, config: McpServer, program: Path) -> list[Path]:
    paths: list[Path] = []
    root = _program_root(program)
    if root is not None:
        paths.append(root)
    for entry in config.read_only:
        p = Path(entry).expanduser().absolute()
        if not p.exists():
            raise McpUnavailable(
                f"MCP server {server!r}: read_only path {entry!r} does not exist ({p})."
            )
        paths.append(p)
    # A virtualenv's interpreter is a symlink into its base installation.
    if root is not None and (root / "pyvenv.cfg").is_file():
        for line in (root / "pyvenv.cfg").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            base = Path(value.strip()).parent
            if key.strip() == "home" and base.is_dir() and not _in_system(base):
                paths.append(base)
    return paths


def _confined_parameters(
    server: str, config: McpServer, home: Path, shell: ShellSettings
) -> StdioServerParameters:
    program = _program(server, config.command[0])
    extra = _read_only(server, config, program)
    system_path = sandbox_path_variable(shell)
    root = _program_root(program)
    path = f"{program.parent}{os.pathsep}{system_path}" if root is not None else system_path
    env = server_environment(server, config, home, path)
    bwrap = find_bwrap(shell)
    command = [str(program), *config.command[1:]]
    if bwrap is None:
        if not shell.allow_unconfined:
            raise McpUnavailable(
                f"MCP server {server!r} was not started: stdio servers run confined by "
                "bubblewrap, and 'bwrap' is not installed (Debian package 'bubblewrap'); "
                "only a development machine may set ShellSettings.allow_unconfined."
            )
        return StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=home)
    settings = shell.model_copy(update={"network": config.network})
    argv = bwrap_argv(bwrap, settings, home, {}, {}, command)
    # The environment goes to bwrap itself (not --setenv on its command line).
    argv.remove("--clearenv")
    binds: list[str] = []
    for p in extra:
        binds += ["--ro-bind", str(p), str(p)]
    etc = home.parent / ".etc"
    etc.mkdir(parents=True, exist_ok=True)
    for dest, content in synthetic_etc(home).items():
        file = etc / Path(dest).name
        file.write_bytes(content)
        binds += ["--ro-bind", str(file), dest]
    at = argv.index("--remount-ro")
    argv[at:at] = binds
    return StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd="/")


def _headers(server: str, config: McpServer) -> dict[str, str]:
    headers: dict[str, str] = {}
    for entry in config.headers_env:
        header, _, name = entry.partition("=")
        headers[header] = _secret(server, name)
    if config.bearer_token_env is not None:
        headers["Authorization"] = f"Bearer {_secret(server, config.bearer_token_env)}"
    return headers


@contextlib.asynccontextmanager
async def open_transport(
    server: str, config: McpServer, home: Path, shell: ShellSettings, errlog: TextIO
) -> AsyncIterator[tuple[Any, Any]]:
    """(read stream, write stream) of a connection to `server`; McpUnavailable when it
    cannot be started (the message names the cause)."""
    if config.url is not None:
        client = httpx2.AsyncClient(
            headers=_headers(server, config), timeout=httpx2.Timeout(30.0, read=300.0)
        )
        async with client, streamable_http_client(config.url, http_client=client) as streams:
            yield streams[0], streams[1]
        return
    home.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once per connection)
    params = _confined_parameters(server, config, home, shell)
    try:
        transport = stdio_client(params, errlog=errlog)
        streams = await transport.__aenter__()
    except OSError as exc:
        raise McpUnavailable(f"MCP server {server!r} could not be started: {exc}") from exc
    try:
        yield streams[0], streams[1]
    except BaseException as exc:
        if not await transport.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await transport.__aexit__(None, None, None)
