"""The shell tool holds no credentials and stays in its sandbox (issue 12, item 5).

With a fake API key and database password in this process's environment — this process
plays the worker — each escape that worked on the unconfined shell is refused: reading
the worker's environment through /proc or `env`, reading the host's files, writing
outside the sandbox, chaining through `sh -c`, reaching a listener on the host's
loopback, and leaving a process behind when the call times out or is cancelled. Then one
session through a real worker process (Kafka), started with the secrets in its
environment, shows that no tool call outcome on the log holds them.

All but the last test need no broker; they run bubblewrap for real (`bwrap`, installed by
.ci/run) and fail, not skip, when it cannot start.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agents.events import ToolCallCompleted, ToolCallFailed
from agents.tools import ShellSettings, ToolContext, ToolResult, ToolSettings, builtin_registry
from tests.support.poll import wait_until

if TYPE_CHECKING:
    from streams.topics import TopicNames

API_KEY = "sk-test-secret-" + secrets.token_hex(4)
DB_PASSWORD = "pw-test-secret-" + secrets.token_hex(4)
REGISTRY = builtin_registry()


@pytest.fixture(autouse=True)
def worker_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's credentials, as a deployment that keeps them in the environment has."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://turnlog:{DB_PASSWORD}@127.0.0.1:5432/t")


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    path = tmp_path / "sandbox"
    path.mkdir()
    return path


def context(sandbox: Path, **shell: object) -> ToolContext:
    settings = ToolSettings(sandbox_dir=sandbox, shell=ShellSettings(**shell))  # type: ignore[arg-type]
    return ToolContext("s", "c", settings)


async def run(sandbox: Path, command: str, **shell: object) -> ToolResult:
    return await REGISTRY.execute(
        "shell", json.dumps({"command": command}), context(sandbox, **shell)
    )


def assert_no_secret(text: str) -> None:
    assert API_KEY not in text and DB_PASSWORD not in text, text


def stdout(result: ToolResult) -> str:
    assert result.ok, result.content
    return (
        result.content.split("--- stdout ---\n", 1)[1] if "--- stdout ---" in result.content else ""
    )


def holds_secret(pid: int, deadline_s: float = 10.0) -> None:
    """Wait until process `pid` has exec'd with the secret in its environment (before
    its exec, /proc shows the environment of the process it was forked from)."""
    end = time.monotonic() + deadline_s
    while API_KEY.encode() not in Path(f"/proc/{pid}/environ").read_bytes():
        assert time.monotonic() < end, f"process {pid} never showed the secret"
        time.sleep(0.01)


def running(marker: str) -> list[int]:
    """Host pids of live processes whose command line starts with `marker` (a confined
    command's pids are those of its PID namespace, so tests find it by its name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if cmdline.startswith(marker) and state != "Z":
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- credentials


@pytest.fixture
def worker_like() -> Iterator[int]:
    """A process started with the secrets in its environment, as a worker is: what
    /proc/<pid>/environ shows is the environment a process was started with (a
    monkeypatched os.environ is not), so this is the process a command must not read."""
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": API_KEY,
        "DATABASE_URL": f"postgresql://u:{DB_PASSWORD}@h/d",
    }
    proc = subprocess.Popen(["sleep", "3600.91"], env=env)
    try:
        holds_secret(proc.pid)  # the probe is meaningful: on the host the secret is there
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


async def test_the_workers_environment_cannot_be_read_through_proc(
    sandbox: Path, worker_like: int
) -> None:
    pids = f"/proc/{worker_like}/environ /proc/{os.getpid()}/environ /proc/{os.getppid()}/environ"
    leaked = await run(sandbox, f"cat {pids}")
    assert not leaked.ok and "No such file or directory" in leaked.content
    assert_no_secret(leaked.content)
    # A sweep of every process's environment finds none of the host's processes.
    sweep = await run(
        sandbox,
        "find /proc -maxdepth 2 -name environ -exec grep -a -h -o sk-test-secret-[0-9a-f]* {} +",
    )
    assert_no_secret(sweep.content)
    # pid 1 of the sandbox is bwrap itself: started without the worker's environment.
    init = await run(sandbox, "cat /proc/1/environ")
    assert "PATH=" in stdout(init)
    assert_no_secret(init.content)
    # The command's parent, whatever its pid, is inside the sandbox too.
    status = stdout(await run(sandbox, "cat /proc/self/status"))
    parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
    assert_no_secret((await run(sandbox, f"cat /proc/{parent}/environ")).content)
    # Only the sandbox's own processes are visible at all.
    pids_seen = [name for name in stdout(await run(sandbox, "ls /proc")).split() if name.isdigit()]
    assert len(pids_seen) <= 3, pids_seen


async def test_env_is_refused_and_the_environment_holds_only_the_passthrough(sandbox: Path) -> None:
    refused = await run(sandbox, "env")
    assert (refused.ok, refused.error_kind) == (False, "refused")
    shown = stdout(await run(sandbox, "printenv"))
    assert_no_secret(shown)
    names = {line.split("=", 1)[0] for line in shown.splitlines()}
    assert names <= {"HOME", "PATH", "LANG", "LC_ALL", "TZ", "PWD"}
    # A variable named in env_passthrough does get through: the filter is what stops the key.
    passed = stdout(
        await run(sandbox, "printenv ANTHROPIC_API_KEY", env_passthrough=("ANTHROPIC_API_KEY",))
    )
    assert passed.strip() == API_KEY


# --------------------------------------------------------------------------- file system


async def test_the_hosts_files_are_not_there(sandbox: Path, tmp_path: Path) -> None:
    passwd = stdout(await run(sandbox, "cat /etc/passwd"))
    host = Path("/etc/passwd").read_text()
    assert passwd.startswith("root:x:0:0:") and "sandbox:x:1000:1000:" in passwd
    assert passwd.strip() != host.strip() and "daemon:" not in passwd  # not the host's
    secret = tmp_path / "worker-secrets.env"
    secret.write_text(f"ANTHROPIC_API_KEY={API_KEY}\n")
    for command in (f"cat {secret}", "ls /root /home /run /var/lib", f"ls {Path.cwd()}"):
        result = await run(sandbox, command)
        assert not result.ok and "No such file or directory" in result.content, result.content
        assert_no_secret(result.content)


async def test_nothing_outside_the_sandbox_can_be_written(sandbox: Path, tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    outside = tmp_path / "outside.txt"
    outside.write_text("host data")
    for command in (
        f"touch {tmp_path}/escaped-{token}",
        f"cp /etc/hostname {outside}",
        "touch /usr/escaped",
        "touch /etc/escaped",
        "mkdir /escaped",
        f"ln -s {tmp_path} link",
    ):
        await run(sandbox, command)
    assert outside.read_text() == "host data"
    assert not list(tmp_path.glob("escaped-*"))
    assert not Path("/usr/escaped").exists() and not Path("/etc/escaped").exists()
    # A symlink the sandbox made to the outside leads to the call's own tmpfs inside.
    await run(sandbox, f"touch link/escaped-{token}")
    assert not list(tmp_path.glob("escaped-*"))
    # /tmp is the call's own: a file there is not on the host, and gone with the call.
    assert (await run(sandbox, f"touch /tmp/escaped-{token}")).ok
    assert not Path(f"/tmp/escaped-{token}").exists()
    assert not (await run(sandbox, f"ls /tmp/escaped-{token}")).ok
    # The sandbox itself is writable, and its files are the worker's to read.
    assert (await run(sandbox, "touch made-inside")).ok
    assert (sandbox / "made-inside").exists()


async def test_a_program_from_the_sandbox_is_refused(sandbox: Path) -> None:
    """A script or binary written into the sandbox would be code the model wrote (a
    shebang runs an interpreter); a symlink to a shell is a shell."""
    (sandbox / "tool.sh").write_text("#!/bin/sh\necho ran\n")
    (sandbox / "tool.sh").chmod(0o755)
    (sandbox / "myls").symlink_to("/bin/ls")
    (sandbox / "mysh").symlink_to("/bin/sh")
    for command, says in (
        ("./tool.sh", "only installed programs"),
        (f"{sandbox}/tool.sh", "only installed programs"),
        ("./mysh -c id", "runs other commands"),
    ):
        result = await run(sandbox, command)
        assert (result.ok, result.error_kind) == (False, "refused"), result.content
        assert says in result.content
    assert (await run(sandbox, "./myls")).ok  # a link to an installed program is that program


# --------------------------------------------------------------------------- chaining


@pytest.mark.parametrize(
    "command",
    [
        "sh -c 'touch chained'",
        "/bin/sh -c 'touch chained'",
        "bash -c 'touch chained'",
        "dash -c 'touch chained'",
        "env sh -c 'touch chained'",
        "xargs -a list touch",
        'python3 -c \'open("chained", "w")\'',
        '/usr/bin/python3 -c \'open("chained", "w")\'',
        "perl -e 'open(F, \">chained\")'",
        "awk 'BEGIN { print > \"chained\" }'",
        "find . -maxdepth 0 -exec touch chained ;",  # not refused by the tool, see below
    ],
)
async def test_commands_cannot_be_chained(sandbox: Path, command: str) -> None:
    (sandbox / "list").write_text("chained\n")
    result = await run(sandbox, command)
    if command.startswith("find"):
        # find -exec runs an installed program directly: the example policy denies it,
        # and what it runs is confined like any command.
        return
    assert (result.ok, result.error_kind) == (False, "refused"), result.content
    assert not (sandbox / "chained").exists()


async def test_shell_syntax_is_text_without_use_shell(sandbox: Path) -> None:
    result = await run(sandbox, "echo a; touch chained && touch chained2 | $(touch chained3)")
    assert stdout(result).strip() == "a; touch chained && touch chained2 | $(touch chained3)"
    assert not list(sandbox.glob("chained*"))


async def test_an_allowed_interpreter_runs_confined(sandbox: Path) -> None:
    """`allowed_interpreters` lifts the refusal, not the confinement."""
    script = "import os; print(sorted(os.environ)); open('/etc/x', 'w')"
    result = await run(sandbox, f'python3 -c "{script}"', allowed_interpreters=("python3",))
    assert "Read-only file system" in result.content
    assert_no_secret(result.content)


# --------------------------------------------------------------------------- network


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP listener on the host's 127.0.0.1 that answers HTTP and records what came."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    seen: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                seen.append(conn.recv(4096))
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, seen
    stop.set()
    thread.join(5)
    server.close()


async def test_no_network_unless_allowed(sandbox: Path, listener: tuple[int, list[bytes]]) -> None:
    port, seen = listener
    command = f"curl -sS --max-time 5 http://127.0.0.1:{port}/"
    refused = await run(sandbox, command)
    assert not refused.ok and "Failed to connect" in refused.content, refused.content
    assert seen == []
    # The same command reaches it when the agent's shell settings allow the network:
    # the test above can fail.
    allowed = await run(sandbox, command, network=True)
    assert stdout(allowed) == "hello"
    assert len(seen) == 1


# --------------------------------------------------------------------------- processes


async def test_a_daemon_dies_when_the_command_times_out(sandbox: Path) -> None:
    command = "setsid sleep 3600.11 > /dev/null 2>&1 & (setsid sleep 3600.12 &); sleep 3600.13"
    result = await run(sandbox, command, use_shell=True, timeout_s=1.0)
    assert result.error_kind == "timeout"
    await wait_until(
        lambda: not running("sleep 3600.1"),
        10.0,
        "the command and its daemons dying",
        interval_s=0.02,
    )


async def test_a_daemon_dies_when_the_call_is_cancelled(sandbox: Path) -> None:
    command = "(setsid sleep 3600.21 > /dev/null 2>&1 &); sleep 3600.22"
    call = asyncio.create_task(run(sandbox, command, use_shell=True))
    await wait_until(
        lambda: len(running("sleep 3600.2")) == 2, 10.0, "the command starting", interval_s=0.02
    )
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await wait_until(
        lambda: not running("sleep 3600.2"),
        10.0,
        "the command and its daemon dying",
        interval_s=0.02,
    )


async def test_a_daemon_does_not_outlive_a_finished_command(sandbox: Path) -> None:
    result = await run(
        sandbox, "(setsid sleep 3600.31 > /dev/null 2>&1 &); echo done", use_shell=True
    )
    assert stdout(result).strip() == "done"
    await wait_until(
        lambda: not running("sleep 3600.31"), 10.0, "the daemon dying", interval_s=0.02
    )


# --------------------------------------------------------------------------- no bubblewrap


async def test_without_bubblewrap_the_call_fails_and_nothing_runs(sandbox: Path) -> None:
    missing = await run(sandbox, "touch ran", bwrap_path=sandbox / "no-bwrap")
    assert (missing.ok, missing.error_kind) == (False, "failed")
    assert "bubblewrap is not installed" in missing.content and "was not run" in missing.content
    assert not (sandbox / "ran").exists()


async def test_when_bubblewrap_cannot_create_namespaces_the_call_fails(
    tmp_path: Path, sandbox: Path
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace, likely because the "
        "kernel does not allow non-privileged user namespaces.' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    result = await run(sandbox, "touch ran", bwrap_path=fake)
    assert (result.ok, result.error_kind) == (False, "failed")
    assert (
        "could not create the sandbox: bwrap: No permissions to create new namespace"
        in result.content
    )
    assert not (sandbox / "ran").exists()
    # Only an explicit development setting runs it unconfined.
    unconfined = await run(sandbox, "touch ran", bwrap_path=fake, allow_unconfined=True)
    assert unconfined.ok and (sandbox / "ran").exists()


# --------------------------------------------------------------------------- end to end

AGENTS = """
[agents.prober]
model = "scripted-small"
system_prompt = "You run shell commands. (confinement test)"
tools = ["shell"]
max_iterations = 3
[agents.prober.policy]
default = "allow"
[[agents.prober.policy.rules]]
name = "shell-allowed"
tool = "shell"
action = "allow"
[agents.prober.deadlines]
llm_s = 120
tool_s = 120
"""

# What leaked the worker's key on the unconfined shell: its parent's environment (the
# worker's) through /proc, a sweep of every process's environment, and `env`.
PROBES = [
    "sh -c 'cat /proc/$PPID/environ'",
    "find /proc -maxdepth 2 -name environ -exec grep -a -h -o sk-test-secret-[0-9a-f]* {} +",
    "cat /proc/1/environ",
    "printenv",
    "env",
]


def probing_script(directory: Path) -> Path:
    script = {
        "defaults": {"latency_ms": 0, "chunks": 1},
        "rules": [
            {
                "name": "report",
                "when": {"system_contains": "confinement test", "last": "tool_result"},
                "respond": {"text": "Results: {{tool_result}}"},
            },
            {
                "name": "probe",
                "when": {"user_contains": "leak", "last": "user"},
                "respond": {
                    "text": "Probing.",
                    "tool_calls": [{"name": "shell", "arguments": {"command": c}} for c in PROBES],
                },
            },
        ],
    }
    path = directory / "probe.script.json"  # JSON is YAML
    path.write_text(json.dumps(script))
    return path


async def test_no_tool_call_on_the_log_holds_the_secret(
    kafka_bootstrap: str, unique_prefix: str, names: TopicNames, tmp_path: Path
) -> None:
    """A real worker process, started with the key and the database password in its
    environment, runs the commands that leaked them on the unconfined shell: they
    complete or are refused, and nothing on the session log holds either secret."""
    from tests.support.harness import (
        EventLog,
        RequestSender,
        WorkerGroup,
        user_message,
        worker_env,
    )

    agents = tmp_path / "agents.toml"
    agents.write_text(AGENTS)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    env = worker_env(
        kafka_bootstrap,
        unique_prefix,
        agents=agents,
        script=probing_script(tmp_path),
        sandbox=sandbox,
        extra={
            "ANTHROPIC_API_KEY": API_KEY,
            "DATABASE_URL": f"postgresql://turnlog:{DB_PASSWORD}@127.0.0.1:55432/turnlog",
        },
    )
    session = new_session_id()
    async with (
        WorkerGroup(env, tmp_path / "logs") as group,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        worker = group.start("w1")
        holds_secret(worker.pid)
        await worker.wait_assigned()
        await send.request(user_message(session, "please leak the key", agent="prober"))
        await log.wait_for(
            lambda: log.turns_ended(session) == 1, 60, "the probing turn", diagnose=group.tails
        )
        events = log.of(session)
    for event in events:
        assert_no_secret(repr(event))
    completed = [e.payload for e in events if isinstance(e.payload, ToolCallCompleted)]
    failed = [e.payload for e in events if isinstance(e.payload, ToolCallFailed)]
    assert len(completed) + len(failed) == len(PROBES), [type(e.payload).__name__ for e in events]
    assert sum("PATH=" in c.result for c in completed) == 2  # /proc/1/environ, printenv
    assert sum("is refused" in f.error for f in failed) == 2  # sh -c, env


def new_session_id() -> str:
    return f"confined-{secrets.token_hex(4)}"
