"""Custom tools named by import path in the agent file, served by a real worker.

The worker is the CLI (`python -m turnlog worker session`, and `worker all`, which
runs the same session process beside a projector) as a subprocess, configured
only through its environment, against the real broker. Its agent `words`
(tests/data/words.toml) lists `examples.custom_tools:word_count`; the scripted model
(tests/data/words.script.yaml) calls `word_count`, and the turn ends with its result.
A path that cannot be imported stops the worker at start-up with a sentence that names
the agent file, the agent, the tool and the import problem.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents.events import ToolCallCompleted, ToolCallRequested, TurnCompleted
from streams.topics import TopicNames, ensure_topics
from tests.integration.test_cli_support import cli
from tests.support.harness import (
    DATA,
    ROOT,
    EventLog,
    RequestSender,
    WorkerGroup,
    WorkerProcess,
    user_message,
    worker_env,
)

PARTITIONS = 2
WORKER_CLI = ("-m", "turnlog", "worker", "session")


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


@pytest.mark.parametrize("command", ["session", "all"])
async def test_a_worker_runs_a_custom_tool_named_by_import_path(
    kafka_bootstrap: str,
    unique_prefix: str,
    names: TopicNames,
    database_url: str,
    tmp_path: Path,
    command: str,
) -> None:
    env = worker_env(
        kafka_bootstrap,
        unique_prefix,
        partitions=PARTITIONS,
        agents=DATA / "words.toml",
        script=DATA / "words.script.yaml",
        sandbox=tmp_path / "sandbox",
        extra={"DATABASE_URL": database_url},  # `worker all` projects too
    )
    async with (
        WorkerGroup(env, tmp_path) as group,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        worker = WorkerProcess(
            "w1", env, tmp_path / "w1.log", argv=("-m", "turnlog", "worker", command)
        )
        group.workers["w1"] = worker
        worker.start()
        await worker.wait_assigned(at_least=PARTITIONS)
        await send.request(user_message("wc-1", "how many words?", agent="words"))
        await log.wait_for(
            lambda: log.turns_completed("wc-1") == 1,
            60,
            "the words turn completed",
            diagnose=lambda: f"{log.summary(['wc-1'])}\n{worker.tail()}",
        )

    requested = [e.payload for e in log.of("wc-1", ToolCallRequested)]
    assert [
        (r.name, json.loads(r.arguments_json))
        for r in requested
        if isinstance(r, ToolCallRequested)
    ] == [("word_count", {"text": "to be or not to be"})]
    results = [e.payload for e in log.of("wc-1", ToolCallCompleted)]
    assert [r.result for r in results if isinstance(r, ToolCallCompleted)] == [
        '{"words": 6, "characters": 18}'
    ]
    assert isinstance(log.of("wc-1")[-1].payload, TurnCompleted)

    # replay --verify loads the agent file as the worker does, custom tool included, and
    # re-decides every recorded input the same way.
    verified = await asyncio.to_thread(cli, env, "replay", "wc-1", "--verify", "--no-timeline")
    assert verified.exit_code == 0, f"{verified.output}\n{verified.exception!r}"
    assert "verify: OK" in verified.output


def test_a_worker_naming_a_tool_it_cannot_import_exits_naming_it(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    agents = tmp_path / "agents.toml"
    agents.write_text(
        (DATA / "words.toml")
        .read_text(encoding="utf-8")
        .replace('"examples.custom_tools:word_count"]', '"examples.custom_tools:wordcount"]'),
        encoding="utf-8",
    )
    env = worker_env(
        kafka_bootstrap,
        unique_prefix,
        agents=agents,
        script=DATA / "words.script.yaml",
        sandbox=tmp_path / "sandbox",
    )
    done = subprocess.run(
        [sys.executable, *WORKER_CLI],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert (
        f"{agents}: agent 'words': tools: the custom tool 'examples.custom_tools:wordcount' "
        "cannot be loaded: 'examples.custom_tools' has no attribute 'wordcount'."
    ) in done.stderr
    assert "Traceback" not in done.stderr
