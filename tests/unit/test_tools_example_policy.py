"""The example agents' shell deny rule does what its name says: `no-destructive-shell`
denies `rm` by any path and `find` that deletes or runs a command; and the spellings that
would slip past a rule reading the command text (quotes, escapes, a shell or a command
runner in front) are refused by the shell tool itself, before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.agentfile import registry_from_file
from agents.policy import Policy
from agents.tools import ShellSettings, ToolContext, ToolSettings, builtin_registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("examples/agents.toml", "examples/demo_agents.toml", "examples/demo_agents.claude.toml")

DESTRUCTIVE = [
    "rm -rf build",
    "rm x",
    "/bin/rm -f x",
    "/usr/bin/rm -rf /",
    "./rm x",
    "../../usr/bin/rm x",
    "  rm x",
    "rmdir d",
    "unlink f",
    "shred -u f",
    "dd if=/dev/zero of=f",
    "truncate -s 0 f",
    "mkfs.ext4 /dev/sda1",
    "shutdown -h now",
    "find . -delete",
    "find . -name '*.tmp' -delete",
    "/usr/bin/find /tmp -type f -delete",
    "find . -exec rm {} ;",
    "find -exec rm -rf {} +",
    "find . -execdir rm {} ;",
    "find . -ok rm {} ;",
    "find . -fprint out.txt",
    # with ShellSettings.use_shell (sh -c), chained or substituted
    "echo hi; rm -rf x",
    "true && /bin/rm x",
    "ls | xargs rm",
    "sudo -n rm x",
    "timeout 5 nice -n 5 /bin/rm x",
    "xargs -0 find -delete",
    "echo $(rm x)",
    "echo `rm x`",
    "ls\nrm x",
]
HARMLESS = [
    "ls -la",
    "grep -rn rm src",
    "echo rm",
    "cat rm.txt",
    "find . -name '*.py'",
    "find . -executable",
    "ls /tmp/rmdir-notes",
    "git diff",
]


def assistant_policy(path: str) -> Policy:
    return registry_from_file(ROOT / path).get("assistant").policy


@pytest.mark.parametrize("path", EXAMPLES)
@pytest.mark.parametrize("command", DESTRUCTIVE)
def test_destructive_commands_are_denied(path: str, command: str) -> None:
    decision = assistant_policy(path).evaluate("shell", {"command": command})
    assert (decision.action, decision.rule) == ("deny", "no-destructive-shell"), command


@pytest.mark.parametrize("path", EXAMPLES)
@pytest.mark.parametrize("command", HARMLESS)
def test_other_commands_still_go_to_approval(path: str, command: str) -> None:
    decision = assistant_policy(path).evaluate("shell", {"command": command})
    assert (decision.action, decision.rule) == ("require_approval", "shell-needs-approval")


# Spellings a regex on the command text cannot see as `rm` / `-delete` (the first six),
# and programs that run another command; the tool refuses each before anything runs.
DODGES = [
    ('"rm" -rf x', "must be written plainly"),
    ("r\\m -rf x", "must be written plainly"),
    ("''rm x", "must be written plainly"),
    ("find . -del''ete", "must be written plainly"),
    ('find . "-delete"', "must be written plainly"),
    ("find . -ex\\ec rm {} ;", "must be written plainly"),
    ("sh -c 'rm -rf x'", "runs other commands"),
    ("/bin/sh -c 'rm x'", "runs other commands"),
    ("bash -c 'rm x'", "runs other commands"),
    ("env rm x", "runs other commands"),
    ("xargs rm", "runs other commands"),
    ("nice rm x", "runs other commands"),
    ("timeout 5 rm x", "runs other commands"),
    ("busybox rm x", "runs other commands"),
    ("python3 -c 'import shutil; shutil.rmtree(\"x\")'", "runs other commands"),
    ("perl -e 'unlink \"x\"'", "runs other commands"),
    ("awk 'BEGIN{system(\"rm x\")}'", "runs other commands"),
]


@pytest.mark.parametrize(("command", "says"), DODGES)
async def test_spellings_that_dodge_the_rule_are_refused_by_the_tool(
    tmp_path: Path, command: str, says: str
) -> None:
    (tmp_path / "x").write_text("keep me")
    ctx = ToolContext("s", "c", ToolSettings(sandbox_dir=tmp_path, shell=ShellSettings()))
    result = await builtin_registry().execute("shell", json.dumps({"command": command}), ctx)
    assert (result.ok, result.error_kind) == (False, "refused"), result.content
    assert says in result.content
    assert (tmp_path / "x").read_text() == "keep me"
