"""Producing a request from ANY Kafka producer: examples/produce_plain.py, which uses only
fastavro, aiokafka and the .avsc files, produces a user message in a subprocess that
loads no turnlog module at all — and the session worker runs the turn to completion."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from agents.events import SessionStarted, TurnCompleted, UserMessageReceived
from streams.topics import ensure_topics
from tests.integration.test_cli_support import DEMO_AGENTS, DEMO_SCRIPT
from tests.support.harness import (
    ROOT,
    EventLog,
    InProcessWorker,
    scripted_script,
)

OURS = ("agents", "schemas", "streams", "projections", "turnlog", "tests")

# Run the example as a script, then report which top-level modules it loaded.
PROBE = f"""
import json, runpy, sys
sys.argv = ["produce_plain.py", *sys.argv[1:]]
runpy.run_path({str(ROOT / "examples" / "produce_plain.py")!r}, run_name="__main__")
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


async def test_a_request_produced_with_only_fastavro_and_aiokafka_completes_a_turn(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=4)).names
    script = scripted_script(tmp_path, latency_ms=0, source=DEMO_SCRIPT)
    session = "s-plain-producer"
    async with (
        InProcessWorker(
            kafka_bootstrap, names, agents=DEMO_AGENTS, script=script, sandbox=tmp_path
        ),
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            PROBE,
            "what is 17*23?",
            "--bootstrap",
            kafka_bootstrap,
            "--topic",
            names.requests,
            "--session",
            session,
            "--agent",
            "assistant",
            "--request-id",
            "plain-1",
            cwd=tmp_path,  # not the repository: nothing of turnlog is importable by path
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        printed, modules = out.decode().strip().splitlines()
        assert printed == session
        assert not set(json.loads(modules)) & set(OURS), json.loads(modules)
        assert {"fastavro", "aiokafka"} <= set(json.loads(modules))

        await log.wait_for(
            lambda: any(isinstance(e.payload, TurnCompleted) for e in log.of(session)),
            60,
            "the turn completed",
            diagnose=log.summary,
        )

    events = log.of(session)
    assert isinstance(events[0].payload, SessionStarted)
    assert events[0].payload.agent == "assistant"
    assert events[0].causation_id == "plain-1"
    user = next(e.payload for e in events if isinstance(e.payload, UserMessageReceived))
    assert user.text == "what is 17*23?"
    done = events[-1].payload
    assert isinstance(done, TurnCompleted)
    answer = next(e.payload for e in events if e.seq == done.answer_seq)
    assert getattr(answer, "text", "") == "17 × 23 = 391."
