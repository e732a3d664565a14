"""`shell`: no shell syntax by default, confined cwd and environment, killed on timeout.
(The confinement's escapes, one by one, are in tests/integration/test_tool_confinement.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from agents.tools import (
    BUILTIN_TOOLS,
    ShellSettings,
    ToolContext,
    ToolRegistry,
    ToolResult,
    ToolSettings,
    as_tool,
    builtin_registry,
)

REGISTRY = builtin_registry()


def ctx_for(sandbox: Path, **shell: object) -> ToolContext:
    settings = ToolSettings(sandbox_dir=sandbox, shell=ShellSettings(**shell))  # type: ignore[arg-type]
    return ToolContext("s", "c", settings)


async def run(
    sandbox: Path, command: str, registry: ToolRegistry = REGISTRY, **shell: object
) -> ToolResult:
    return await registry.execute(
        "shell", json.dumps({"command": command}), ctx_for(sandbox, **shell)
    )


def running(marker: str) -> list[int]:
    """Host pids of live (not zombie) processes whose command line holds `marker`: a
    confined command's own pids are those of its PID namespace, so tests find it by
    name."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


async def wait_for(condition: object, what: str, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > end:
            pytest.fail(f"{what} did not happen within {deadline_s}s")
        await asyncio.sleep(0.02)


async def wait_for_file(path: Path) -> str:
    await wait_for(lambda: path.exists() and path.read_text().strip(), f"{path} being written")
    return path.read_text().strip()


async def test_runs_in_the_sandbox_and_reports_exit_code_and_output(tmp_path: Path) -> None:
    result = await run(tmp_path, "pwd")
    assert result == ToolResult(
        True, f"exit code: 0\n--- stdout ---\n{tmp_path}", result.latency_ms
    )


async def test_shell_syntax_is_not_interpreted_by_default(tmp_path: Path) -> None:
    result = await run(tmp_path, "echo 'a b'; echo $HOME | rm -rf / && $(reboot)")
    assert result.content == (
        "exit code: 0\n--- stdout ---\na b; echo $HOME | rm -rf / && $(reboot)"
    )


async def test_use_shell_interprets_pipes(tmp_path: Path) -> None:
    result = await run(tmp_path, "printf 'b\\na\\n' | sort | head -1", use_shell=True)
    assert result.content == "exit code: 0\n--- stdout ---\na"


async def test_environment_holds_only_the_passthrough_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("TZ", "UTC")
    result = await run(tmp_path, "printenv")
    lines = set(result.content.split("\n--- stdout ---\n")[1].splitlines())
    assert f"HOME={tmp_path}" in lines and "TZ=UTC" in lines
    allowed = {"HOME", "PATH", "LANG", "LC_ALL", "TZ", "PWD"}  # bwrap sets PWD
    assert {line.split("=", 1)[0] for line in lines} <= allowed
    assert "sk-secret" not in result.content


async def test_nonzero_exit_and_stderr_are_reported_as_failure(tmp_path: Path) -> None:
    result = await run(tmp_path, "ls does-not-exist")
    assert (result.ok, result.error_kind) == (False, "failed")
    assert result.content.startswith("exit code: 2\n--- stderr ---\nls: ")


async def test_command_not_found_and_unparseable_commands(tmp_path: Path) -> None:
    missing = await run(tmp_path, "no-such-command-xyz --help")
    assert missing.content == "Command not found: 'no-such-command-xyz'."
    unparsed = await run(tmp_path, "echo 'unterminated")
    assert unparsed.content == "The command cannot be parsed: No closing quotation."


async def test_allowed_commands_restrict_the_program(tmp_path: Path) -> None:
    result = await run(tmp_path, "rm -rf x", allowed_commands=("ls", "cat"))
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.content == "The command 'rm' is not allowed; allowed commands: ls, cat."
    assert (await run(tmp_path, "ls", allowed_commands=("ls",))).ok


async def test_output_is_truncated_per_stream(tmp_path: Path) -> None:
    result = await run(tmp_path, "head -c 5000 /dev/zero", max_output_bytes=100)
    assert result.content.endswith("[stdout truncated: 4900 more bytes not shown]")


async def test_timeout_kills_the_command_and_what_it_started(tmp_path: Path) -> None:
    # The command leaves a grandchild behind; both must die when the deadline passes.
    script = "sleep 60.101 & echo started; sleep 60.102"
    result = await run(tmp_path, script, timeout_s=0.5, use_shell=True)
    assert (result.ok, result.error_kind) == (False, "timeout")
    assert result.content == (
        "Command timed out after 0.5s; it and every process it started were killed.\n"
        "--- stdout ---\nstarted"
    )
    await wait_for(lambda: not running("sleep 60.10"), "the command and its child dying")


async def test_background_jobs_do_not_outlive_a_finished_command(tmp_path: Path) -> None:
    script = "sleep 60.201 > /dev/null 2>&1 & echo $! > bg.pid"
    result = await run(tmp_path, script, use_shell=True)
    assert result.ok
    await wait_for_file(tmp_path / "bg.pid")
    await wait_for(lambda: not running("sleep 60.201"), "the background job dying")


async def test_cancellation_by_the_registry_timeout_kills_the_command(tmp_path: Path) -> None:
    # The registry's bound (0.3s) is shorter than the command's own (30s): the call is
    # cancelled from outside and must still take its processes down.
    registry = ToolRegistry([as_tool(BUILTIN_TOOLS["shell"], timeout_s=0.3)])
    command = "echo $$ > sh.pid; sleep 60.301"
    result = await run(tmp_path, command, registry=registry, use_shell=True)
    assert result.content == "Tool 'shell' timed out after 0.3s and was stopped."
    await wait_for_file(tmp_path / "sh.pid")
    await wait_for(lambda: not running("sleep 60.301"), "the command dying")


async def test_model_may_ask_for_less_time_but_not_more(tmp_path: Path) -> None:
    args = json.dumps({"command": "sleep 5", "timeout_s": 0.2})
    result = await REGISTRY.execute("shell", args, ctx_for(tmp_path, timeout_s=30))
    assert result.content.startswith("Command timed out after 0.2s")
    args = json.dumps({"command": "sleep 5", "timeout_s": 3600})
    result = await REGISTRY.execute("shell", args, ctx_for(tmp_path, timeout_s=0.2))
    assert result.content.startswith("Command timed out after 0.2s")


def test_shell_defaults_to_require_approval() -> None:
    assert BUILTIN_TOOLS["shell"].default_action == "require_approval"


async def test_allowed_commands_match_the_program_by_name_and_resolved_path(tmp_path: Path) -> None:
    """`/bin/rm` is `rm`; a link the model made in the sandbox is the program it leads
    to, not the name it was given."""
    only_ls = {"allowed_commands": ("ls",)}
    refused = await run(tmp_path, "/bin/rm -f x", **only_ls)
    assert refused.content == "The command '/bin/rm' is not allowed; allowed commands: ls."
    assert (await run(tmp_path, "/usr/bin/ls", **only_ls)).ok
    assert (await run(tmp_path, "ls", allowed_commands=("/usr/bin/ls",))).ok
    (tmp_path / "ls").symlink_to("/bin/rm")
    (tmp_path / "x").write_text("keep")
    disguised = await run(tmp_path, "./ls x", **only_ls)
    assert (disguised.ok, disguised.error_kind) == (False, "refused")
    assert (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "command",
    [
        "sh -c id",
        "/bin/sh -c id",
        "bash -c id",
        "env id",
        "xargs id",
        "python3 -c 1",
        "/usr/bin/python3 -c 1",
        "perl -e 1",
        "awk 1",
        "busybox id",
        "timeout 5 id",
    ],
)
async def test_interpreters_and_command_runners_are_refused(tmp_path: Path, command: str) -> None:
    result = await run(tmp_path, command)
    assert (result.ok, result.error_kind) == (False, "refused")
    assert "runs other commands or code" in result.content


async def test_allowed_interpreters_lift_the_refusal_by_name(tmp_path: Path) -> None:
    assert (await run(tmp_path, "python3 -c 1", allowed_interpreters=("python3",))).ok
    # A link in the sandbox is the interpreter it leads to (python3.x), not the allowed name.
    (tmp_path / "python3").symlink_to("/usr/bin/python3")
    linked = await run(tmp_path, "./python3 -c 1", allowed_interpreters=("python3",))
    assert (linked.ok, linked.error_kind) == (False, "refused")


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("'ls' -la", "The program name \"'ls'\" must be written plainly"),
        ("l\\s", "must be written plainly"),
        ("ls '-la'", "The option '-la' must be written plainly"),
        ("echo\x00 x", "NUL byte"),
    ],
)
async def test_the_program_and_options_are_written_plainly(
    tmp_path: Path, command: str, says: str
) -> None:
    result = await run(tmp_path, command)
    assert (result.ok, result.error_kind) == (False, "refused")
    assert says in result.content
    assert (await run(tmp_path, "echo 'needs quoting' \"-x y\"")).ok  # quoting that is needed
