"""`shell`: run one command, confined to the sandbox directory.

Rule: a command runs under bubblewrap (`agents.tools._confine`): in its own namespaces,
where only the sandbox directory (its cwd and HOME) is writable, the worker's processes
and files are out of sight, there is no network unless `ShellSettings.network`, and the
environment holds only the variables `ShellSettings.env_passthrough` names. bwrap itself
starts with that environment, so no process of the call ever held the worker's
credentials. If bubblewrap is missing or cannot start, the call fails (never runs
unconfined, unless `ShellSettings.allow_unconfined` says so for a development machine).

Without `ShellSettings.use_shell` the command is split with shlex and executed directly:
pipes, `;`, `&&`, redirections and `$(...)` are plain arguments, not shell syntax; the
program name and its options must be written plainly (no quotes or escapes where none is
needed: what a policy rule reads is what runs); the program must be an installed one, not a
file in the sandbox, and may not be an
interpreter or command runner (`sh -c`, `env`, `xargs`, `python3 -c`, ...) unless
`ShellSettings.allowed_interpreters` names it. stdin is closed; there is a deadline; when
it passes — or the call is cancelled — bwrap is killed, and with it every process of the
call's PID namespace, daemonised grandchildren included. Output is capped per stream at
`max_output_bytes`.

This tool's default policy is require_approval (`SHELL_DEFAULT_ACTION`): the core
applies it (`agents.toolspecs.BUILTIN_DEFAULT_ACTIONS`) when no policy rule of the agent
matches a `shell` call and the policy's own default is more permissive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from agents.events import PolicyAction
from agents.tools._confine import (
    bwrap_argv,
    choose_program,
    find_bwrap,
    sandbox_path_variable,
    synthetic_etc,
)
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
_PROBE_S = 10.0
# (bwrap, network, sandbox) combinations that bubblewrap was seen to start with.
_WORKING: set[tuple[str, bool, str]] = set()
# A word that needs no quoting. The program name and such options must be spelled as they
# are read, so that a policy rule reading the command text sees `rm` and `-delete`, not
# `r\m` or `-del''ete`.
_PLAIN = re.compile(r"[\w@%+=:,./-]+", re.ASCII)


def _argv(command: str) -> list[str]:
    if "\x00" in command:
        raise ToolRefused("The command contains a NUL byte.")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ToolRefused(f"The command cannot be parsed: {exc}.") from None
    if not argv:
        raise ToolRefused("The command is empty.")
    raw = command.split()
    if raw[0] != argv[0]:
        raise ToolRefused(
            f"The program name {raw[0]!r} must be written plainly, without quotes or "
            f"escapes (it reads as {argv[0]!r})."
        )
    spelled = set(raw)
    for word in argv[1:]:
        if word.startswith("-") and _PLAIN.fullmatch(word) and word not in spelled:
            raise ToolRefused(
                f"The option {word!r} must be written plainly, without quotes or escapes."
            )
    return argv


def _environment(settings: ShellSettings, home: Path, path: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in settings.env_passthrough if name in os.environ}
    env["PATH"] = path  # the PATH the program was looked up on; it names no secret
    env["HOME"] = str(home)
    return env


async def _probe(bwrap: str, settings: ShellSettings, home: Path, env: dict[str, str]) -> None:
    """Start one empty sandbox (`true`) with the call's options, once per combination
    that works, so that a sandbox that cannot start is reported as that, not as the
    command's failure. Raises ToolFailed naming the cause."""
    key = (bwrap, settings.network, str(home))
    if key in _WORKING:
        return
    true = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"  # noqa: ASYNC240 (one stat, once per process)
    argv = bwrap_argv(bwrap, settings, home, env, {}, [true])
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd="/",
            start_new_session=True,
        )
    except OSError as exc:
        raise _unconfinable(f"could not be started ({exc})") from None
    try:
        async with asyncio.timeout(_PROBE_S):
            _, err = await proc.communicate()
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        raise _unconfinable(f"did not start a sandbox within {_PROBE_S:g}s") from None
    except BaseException:  # cancelled: the probe dies with the call
        _kill_group(proc.pid)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(proc.wait()), _REAP_S)
        raise
    if proc.returncode != 0:
        cause = err.decode("utf-8", errors="replace").strip() or f"exit code {proc.returncode}"
        raise _unconfinable(f"could not create the sandbox: {cause}")
    _WORKING.add(key)


def _unconfinable(cause: str) -> ToolFailed:
    return ToolFailed(
        f"The shell tool runs every command confined by bubblewrap, and bubblewrap {cause}. "
        "The command was not run. The operator must install bubblewrap (Debian package "
        "'bubblewrap') and allow it to create user namespaces; only on a development "
        "machine may ShellSettings.allow_unconfined run commands without it."
    )


async def _spawn(
    command: str, ctx: ToolContext, settings: ShellSettings
) -> tuple[asyncio.subprocess.Process, str]:
    """Start the command (confined unless that is impossible and allowed); returns the
    process and the program's name for messages."""
    sandbox = ctx.settings.sandbox_dir
    sandbox.mkdir(parents=True, exist_ok=True)
    home = Path(os.path.realpath(sandbox))  # noqa: ASYNC240 (one stat per call, before a process spawn)
    path = sandbox_path_variable(settings)
    env = _environment(settings, home, path)
    if settings.use_shell:
        program, argv = "sh", ["/bin/sh", "-c", command]
    else:
        words = _argv(command)
        chosen = choose_program(words[0], settings, home, path)
        program, argv = words[0], [chosen.exec_path, *words[1:]]

    common: dict[str, Any] = {
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.PIPE,
        "env": env,
        "start_new_session": True,  # its own process group, so killpg reaches it
    }
    bwrap = find_bwrap(settings)
    try:
        if bwrap is None:
            raise _unconfinable("is not installed (no 'bwrap' on PATH)")
        await _probe(bwrap, settings, home, env)
    except ToolFailed:
        if not settings.allow_unconfined:
            raise
        return await _exec(argv, program, cwd=home, **common), program

    fds: dict[str, int] = {}
    try:
        for dest, content in synthetic_etc(home).items():
            read, write = os.pipe()
            fds[dest] = read
            try:
                os.write(write, content)  # a few hundred bytes: fits in the pipe's buffer
            finally:
                os.close(write)
        confined = bwrap_argv(bwrap, settings, home, env, fds, argv)
        proc = await _exec(confined, program, cwd=Path("/"), pass_fds=tuple(fds.values()), **common)
    finally:
        for fd in fds.values():
            os.close(fd)
    return proc, program


async def _exec(argv: list[str], program: str, **options: Any) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(*argv, **options)
    except FileNotFoundError:
        raise ToolFailed(f"Command not found: {program!r}.") from None
    except PermissionError:
        raise ToolFailed(f"Permission denied running {program!r}.") from None


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
                "The command line to run, e.g. 'ls -la' or 'grep -rn TODO src'. It is "
                "split like a shell would split words, but pipes, redirections and ';' "
                "are not interpreted, and shells and interpreters are refused."
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
    proc, _ = await _spawn(command, ctx, settings)

    cap = settings.max_output_bytes
    readers = asyncio.gather(_drain(proc.stdout, cap), _drain(proc.stderr, cap))
    timed_out = False
    try:
        try:
            async with asyncio.timeout(limit):
                await proc.wait()
        except TimeoutError:
            timed_out = True
        # Kill what the command left behind (background jobs) so the pipes close: under
        # bwrap they die with the namespace's pid 1 anyway.
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
        head = f"Command timed out after {limit:g}s; it and every process it started were killed."
        return ToolResult(False, "\n".join([head, *body]), error_kind="timeout")
    code = proc.returncode
    head = (
        f"exit code: {code}"
        if code is not None and code >= 0
        else f"killed by signal {-(code or 0)}"
    )
    return ToolResult(
        code == 0, "\n".join([head, *body]), error_kind=None if code == 0 else "failed"
    )
