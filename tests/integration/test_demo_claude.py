"""`turnlog demo` with ANTHROPIC_API_KEY set: the same session on Claude models, through
the real anthropic SDK, which talks HTTP to the fake Messages API server of tests/fakes
(the SDK is never mocked). The fake answers like a tool-using model would: the test
checks that the demo picks the Claude agent file, runs to the end with every step, and
that every LLM call went to Claude (none to the scripted model) with the key never
printed."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fakes.anthropic_server import (
    FAKE_API_KEY,
    FakeAnthropicServer,
    FakeMessage,
    FakeToolUse,
    RecordedRequest,
)
from tests.support.harness import ROOT


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]


def claude_like(request: RecordedRequest) -> FakeMessage:
    """What a tool-using model would answer to the demo's requests."""
    body = request.body
    system = " ".join(_texts(body.get("system") or ""))
    last = body["messages"][-1]
    results = [
        b
        for b in last["content"]
        if isinstance(last["content"], list)
        and isinstance(b, dict)
        and b.get("type") == "tool_result"
    ]
    if "summary" in system.lower() or "compress" in system.lower():
        return FakeMessage("The user asked for arithmetic, a file listing and research.")
    if results:
        content = results[-1].get("content")
        text = " ".join(_texts(content)) if not isinstance(content, str) else content
        return FakeMessage(f"Here is the result: {text[:200]}")
    said = " ".join(_texts(last["content"])).lower()
    if "find out who created apache kafka" in said:
        return FakeMessage("Jay Kreps, Neha Narkhede and Jun Rao created Kafka at LinkedIn.")
    if "17*23" in said:
        return FakeMessage("", tool_uses=[FakeToolUse("calculator", {"expression": "17*23"})])
    if "list the files" in said:
        return FakeMessage("", tool_uses=[FakeToolUse("shell", {"command": "ls"})])
    if "research" in said:
        return FakeMessage(
            "",
            tool_uses=[
                FakeToolUse(
                    "delegate",
                    {
                        "agent": "researcher",
                        "task": "Find out who created Apache Kafka, in one sentence.",
                    },
                )
            ],
        )
    return FakeMessage("Noted; I will keep these design notes in mind.")


def test_demo_with_an_api_key_runs_on_claude_models(
    kafka_bootstrap: str, database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    with FakeAnthropicServer(api_key=FAKE_API_KEY) as server:
        server.respond_with(claude_like)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TURNLOG_"))}
        env |= server.env() | {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DATABASE_URL": database_url,
            "TURNLOG_TOPIC_PREFIX": f"{topic_prefix}claude{secrets.token_hex(2)}.",
            "TURNLOG_PARTITIONS": "4",
            "TURNLOG_SANDBOX_DIR": str(tmp_path),
        }
        done = subprocess.run(
            [sys.executable, "-m", "turnlog", "demo"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        models = {r.model for r in server.requests}

    assert "demo_agents.claude.toml" in out and "models: Claude" in out
    assert "✗" not in out
    for seen in (
        "✓ tool call (calculator)",
        "✓ approval (shell), shown then granted",
        "✓ delegation to the researcher",
        "✓ context compaction",
    ):
        assert seen in out
    assert models == {"claude-haiku-4-5"}
    assert re.search(r"← claude-haiku-4-5 answered in \d+ ms", out)
    assert FAKE_API_KEY not in out
