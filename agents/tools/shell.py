"""`shell`: run one command in the sandbox directory.

Rule: a command runs as its own process group, in the sandbox directory, with only the
environment variables `ShellSettings.env_passthrough` names (HOME is the sandbox), stdin
closed, and a deadline; when the deadline passes — or the call is cancelled — the whole
process group is killed, so nothing it started outlives the call. Without
`ShellSettings.use_shell` the command is split with shlex and executed directly: pipes,
`;`, `&&`, redirections and `$(...)` are plain arguments, not shell syntax. Output is
capped per stream at `max_output_bytes`.

This tool's default policy is require_approval (`SHELL_DEFAULT_ACTION`): the core
applies it (`agents.toolspecs.BUILTIN_DEFAULT_ACTIONS`) when no policy rule of the agent
matches a `shell` call and the policy's own default is more permissive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from pathlib import Path
from typing import Annotated

from pydantic import Field

from agents.events import PolicyAction
from agents.tools.context import ShellSettings, ToolContext
from agents.tools.errors import ToolFailed, ToolRefused
from agents.tools.tool import ToolResult

__all__ = ["SHELL_DEFAULT_ACTION", "SHELL_TOOL_TIMEOUT_S", "shell"]

SHELL_DEFAULT_ACTION = PolicyAction.REQUIRE_APPROVAL
# The registry's outer bound; the command's own deadline (ShellSettings.timeout_s) is
# normally shorter, so the model gets the partial output with the timeout message.
SHELL_TOOL_TIMEOUT_S = 600.0
_CHUNK = 64 * 1024
_REAP_S = 5.0  # how long a cancelled call waits for its killed processes to be reaped


def _argv(command: str, settings: ShellSettings) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ToolRefused(f"The command cannot be parsed: {exc}.") from None
    if not argv:
        raise ToolRefused("The command is empty.")
    allowed = settings.allowed_commands
    if allowed is not None and argv[0] not in allowed:
        raise ToolRefused(
            f"The command {argv[0]!r} is not allowed; allowed commands: "
            + (", ".join(allowed) or "none")
            + "."
        )
    return argv


def _environment(settings: ShellSettings, home: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in settings.env_passthrough if name in os.environ}
    env["HOME"] = str(home)
    return env


async def _drain(stream: asyncio.StreamReader | None, limit: int) -> tuple[bytes, int]:
    """Read a pipe to its end, keeping the first `limit` bytes; returns (kept, total).
    Reading on past the limit keeps the process from blocking on a full pipe."""
    if stream is None:
        return b"", 0
    kept = bytearray()
    total = 0
    while chunk := await stream.read(_CHUNK):
        total += len(chunk)
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept), total


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _section(name: str, data: bytes, total: int) -> list[str]:
    if total == 0:
        return []
    lines = [f"--- {name} ---", data.decode("utf-8", errors="replace").rstrip("\n")]
    if total > len(data):
        lines.append(f"[{name} truncated: {total - len(data)} more bytes not shown]")
    return lines


async def shell(
    ctx: ToolContext,
    command: Annotated[
        str,
        Field(
            description=(
                "The command line to run, e.g. 'ls -la' or 'python3 script.py'. It is "
                "split like a shell would split words, but pipes, redirections and ';' "
                "are not interpreted."
            ),
            min_length=1,
            max_length=8192,
        ),
    ],
    timeout_s: Annotated[
        float | None,
        Field(description="Seconds to let the command run (capped by the operator).", gt=0),
    ] = None,
) -> ToolResult:
    """Run a command in the sandbox directory and return its exit code, stdout and
    stderr. Commands that run past their time limit are killed."""
    settings = ctx.settings.shell
    limit = settings.timeout_s if timeout_s is None else min(timeout_s, settings.timeout_s)
    cwd = ctx.settings.sandbox_dir
    cwd.mkdir(parents=True, exist_ok=True)
    common = {
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.PIPE,
        "cwd": cwd,
        "env": _environment(settings, cwd.resolve()),
        "start_new_session": True,  # its own process group, so killpg reaches children
    }
    argv = None if settings.use_shell else _argv(command, settings)
    program = argv[0] if argv else command
    try:
        if argv is None:
            proc = await asyncio.create_subprocess_shell(command, **common)  # type: ignore[arg-type]
        else:
            proc = await asyncio.create_subprocess_exec(*argv, **common)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise ToolFailed(f"Command not found: {program!r}.") from None
    except PermissionError:
        raise ToolFailed(f"Permission denied running {program!r}.") from None

    cap = settings.max_output_bytes
    readers = asyncio.gather(_drain(proc.stdout, cap), _drain(proc.stderr, cap))
    timed_out = False
    try:
        try:
            async with asyncio.timeout(limit):
                await proc.wait()
        except TimeoutError:
            timed_out = True
        # Kill what the command left behind (background jobs) so the pipes close.
        _kill_group(proc.pid)
        await proc.wait()
        (out, out_total), (err, err_total) = await readers
    except BaseException:
        # Cancelled from outside (the registry's timeout, a cancelled turn): the processes
        # die with the call and are reaped, so no pipe or transport stays open.
        _kill_group(proc.pid)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(asyncio.gather(proc.wait(), readers)), _REAP_S)
        raise

    body = _section("stdout", out, out_total) + _section("stderr", err, err_total)
    if timed_out:
        head = f"Command timed out after {limit:g}s; its process group was killed."
        return ToolResult(False, "\n".join([head, *body]), error_kind="timeout")
    code = proc.returncode
    head = f"exit code: {code}" if code is not None and code >= 0 else f"killed by signal {-(code or 0)}"
    return ToolResult(code == 0, "\n".join([head, *body]), error_kind=None if code == 0 else "failed")
