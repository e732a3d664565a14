"""`turnlog a2a serve` as a user runs it: the real command in a subprocess, its agent
cards over HTTP, and a v0.3 JSON-RPC `message/send` (the method names of the A2A
issue) that reaches the broker. No worker runs, so the task fails at its timeout with a
sentence that names the session: the request went all the way through.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

from streams.topics import ensure_topics
from tests.support.harness import ROOT


@pytest.mark.asyncio(loop_scope="session")
async def test_the_serve_command_serves_cards_and_v0_3_message_send(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TURNLOG_", "ANTHROPIC_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "TURNLOG_TOPIC_PREFIX": unique_prefix,
            "TURNLOG_AGENTS": str(ROOT / "examples" / "agents.toml"),
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "turnlog",
        "a2a",
        "serve",
        "--port",
        "0",
        "--timeout",
        "2",
        env=env,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        said = ""
        async with asyncio.timeout(60):
            while "listening on" not in said:
                line = (await proc.stderr.readline()).decode()
                assert line, f"turnlog a2a serve exited: {said}"
                said += line
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", said).group(1))  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}/agents/assistant/"
        async with httpx.AsyncClient(timeout=30) as http:
            card = (await http.get(f"{base}.well-known/agent-card.json")).json()
            assert card["name"] == "assistant"
            assert card["supportedInterfaces"][0]["url"] == base
            answer = await http.post(
                base,
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "message/send",
                    "params": {
                        "message": {
                            "kind": "message",
                            "messageId": "m-1",
                            "role": "user",
                            "parts": [{"kind": "text", "text": "hello"}],
                        }
                    },
                },
            )
        result = answer.json()["result"]
        assert result["status"]["state"] == "failed"
        reason = result["status"]["message"]["parts"][0]["text"]
        assert f"a2a/assistant/{result['contextId']}" in reason
    finally:
        proc.terminate()
        await proc.wait()
