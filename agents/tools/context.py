"""What a tool call knows about the world: `ToolContext` and the `ToolSettings` in it.

Rule: a tool reads its limits and permissions from the context it is handed, never from
globals or the environment, so one process can run tools for many agents with different
sandboxes and allow-lists, and a test can build any configuration in one line.

Settings validate when they are built (a malformed host pattern fails there, not on the
first call), and are frozen: a tool cannot widen its own permissions.

The context also carries the IO a tool cannot do without but a test must control: the
clock (`current_time`) and the name resolver (`http_get`, which connects only to the
addresses this resolver returned and it checked).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.tools._hosts import parse_host_pattern

__all__ = [
    "FileLimits",
    "HttpLimits",
    "Resolver",
    "ShellSettings",
    "ToolContext",
    "ToolSettings",
    "system_resolve",
    "utc_now",
]


class FileLimits(BaseModel):
    """Size limits of `read_file` / `write_file`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_read_bytes: int = Field(default=256 * 1024, ge=1)
    max_write_bytes: int = Field(default=1024 * 1024, ge=1)


class HttpLimits(BaseModel):
    """Limits of `http_get`. `timeout_s` bounds connect, each read and the whole fetch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(default=512 * 1024, ge=1)
    timeout_s: float = Field(default=15.0, gt=0)
    max_redirects: int = Field(default=5, ge=0, le=20)
    user_agent: str = "turnlog-http-get/1"


class ShellSettings(BaseModel):
    """How `shell` runs commands (see `agents.tools._confine` for the confinement).

    `use_shell=False` (the default) splits the command with shlex and execs it directly,
    so the model cannot chain commands with `;`, `|` or `$(...)`; the program may not be an
    interpreter or a command runner (`sh`, `bash`, `env`, `xargs`, `python`, ...) unless
    `allowed_interpreters` names it. `use_shell=True` runs the line with `/bin/sh -c`
    (still confined): every command of the line runs, and policy rules on the command
    text are then only a best effort, and `allowed_commands` is not checked. When set,
    `allowed_commands` must name the program a command runs, by name or path (`/bin/rm` is
    `rm`; a symlink made in the sandbox is the program it leads to).

    Every command runs under bubblewrap: only the sandbox directory is writable, the host's
    processes, home directories and secrets are not there, and there is no network unless
    `network` is set. When bubblewrap is missing or cannot create its namespaces the call
    fails, unless `allow_unconfined` is set (development machines only: the command then
    runs with the worker's view of the file system, processes and network).
    `env_passthrough` names the only variables of this process the command inherits: the
    worker's environment may hold credentials (ANTHROPIC_API_KEY, DATABASE_URL).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    use_shell: bool = False
    timeout_s: float = Field(default=30.0, gt=0)
    max_output_bytes: int = Field(default=64 * 1024, ge=1)
    env_passthrough: tuple[str, ...] = ("PATH", "LANG", "LC_ALL", "TZ")
    allowed_commands: tuple[str, ...] | None = Field(
        default=None,
        description="When set, the program a command runs must be one of these (name or path).",
    )
    allowed_interpreters: tuple[str, ...] = Field(
        default=(),
        description=(
            "Interpreters and command runners (sh, python3, env, xargs, ...) that may be "
            "the program of a command; none by default."
        ),
    )
    network: bool = Field(
        default=False, description="Let commands use the host's network (none by default)."
    )
    allow_unconfined: bool = Field(
        default=False,
        description=(
            "Run commands unconfined when bubblewrap is missing or cannot start; for "
            "development machines only."
        ),
    )
    bwrap_path: Path | None = Field(
        default=None, description="The bubblewrap executable; `bwrap` on PATH when unset."
    )


class ToolSettings(BaseModel):
    """Permissions and limits of the built-in tools.

    `allowed_hosts` entries are an exact host (`api.example.com`, `127.0.0.1`, `[::1]`)
    or `*.suffix` (any subdomain of suffix, not suffix itself), optionally with `:port`.
    An empty list allows no host at all.

    A name on the list is fetched only while it resolves to public addresses: loopback,
    private, link-local (cloud metadata) and other internal addresses are refused unless
    an entry names the address itself (`10.0.0.7`, `10.0.0.7:8080`) or
    `allow_private_addresses` is set, which lets every allowed name reach any address.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sandbox_dir: Path = Path(".turnlog/sandbox")
    allowed_hosts: tuple[str, ...] = ()
    allow_private_addresses: bool = False
    files: FileLimits = FileLimits()
    http: HttpLimits = HttpLimits()
    shell: ShellSettings = ShellSettings()

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            parse_host_pattern(pattern)  # raises ValueError with the reason
        return value


def utc_now() -> datetime:
    return datetime.now(UTC)


Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) -> the host's addresses as text, in the order to try them; raises
OSError (socket.gaierror) when the name does not resolve."""


async def system_resolve(host: str, port: int) -> Sequence[str]:
    """The system resolver (getaddrinfo, so /etc/hosts counts), one entry per address."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class ToolContext:
    """One tool call's context: who asked (`session_id`, `call_id`) and under which
    settings. `clock` is read only by `current_time`, `resolve` only by `http_get`;
    tests replace them.

    `idempotency_key` names the call's *intention*: the effect id the session log gave
    it, the same for every attempt to run it (a re-issue after a crash or a partition
    move). A tool that changes something elsewhere passes it on so the other side can
    do the change once (`http_get` sends it as the `Idempotency-Key` header). It
    defaults to `call_id`.
    """

    session_id: str
    call_id: str
    settings: ToolSettings = field(default_factory=ToolSettings)
    clock: Callable[[], datetime] = utc_now
    resolve: Resolver = system_resolve
    idempotency_key: str = ""

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key", self.call_id)
