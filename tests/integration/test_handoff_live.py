"""Handoff on the live platform, then `turnlog replay --verify`.

The front desk hands the conversation to the quick researcher (a `handoff` tool call):
AgentHandedOff is in the log, the next LLM call and every later event are the
researcher's, the researcher saw the whole conversation, the projection shows the
session under its new agent, and `turnlog replay --verify` re-decides every input of the
session — across the change of agent — and finds the log it would write.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import psycopg
import pytest

from agents.agentfile import registry_from_file
from agents.events import AgentHandedOff, LlmCallRequested, SendMessage, TurnCompleted
from agents.providers.scripted import ScriptedProvider
from projections.projector import Projector, ProjectorConfig
from streams.topics import TopicNames
from tests.support.live import live_platform, new_session_id, turnlog_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "orchestration"


async def test_handoff_moves_the_session_and_replay_verify_agrees(
    kafka_bootstrap: str,
    names: TopicNames,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNLOG_AGENTS", str(DATA / "agents.toml"))
    registry = registry_from_file(DATA / "agents.toml")
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    async with live_platform(
        kafka_bootstrap, names, registry=registry, provider=provider, sandbox=tmp_path
    ) as live:
        session = new_session_id("desk")
        await live.client.send(session, SendMessage("Moons of Mars, please."), agent="front")
        done = await live.log.wait_for_type(session, TurnCompleted)
        events = live.log.events(session)

    moved = [e for e in events if isinstance(e.payload, AgentHandedOff)]
    assert len(moved) == 1
    handed = moved[0].payload
    assert (handed.from_agent, handed.to_agent) == ("front", "quick")
    assert handed.note == "Asks about the moons of Mars."
    after = [e for e in events if e.seq > moved[0].seq]
    assert after and {e.agent for e in after} == {"quick"}
    calls = [e.payload for e in events if isinstance(e.payload, LlmCallRequested)]
    assert len(calls) == 2
    answer = next(e.payload for e in events if e.seq == done.answer_seq)
    assert answer.text == "quick: Mars has 2 moons."  # type: ignore[union-attr]

    code, out, err = await turnlog_cli(
        kafka_bootstrap, names, "replay", session, "--verify", "--no-timeline", timeout=60
    )
    assert code == 0, out + err
    assert "verify: OK" in out and "2 LLM request(s) rebuilt with the recorded digest" in out, out

    projector = Projector(
        ProjectorConfig(
            bootstrap=kafka_bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            consumer=f"live-handoff-{secrets.token_hex(4)}",
            group_id=None,
        )
    )
    await asyncio.wait_for(projector.run(until_caught_up=True), 60)
    with psycopg.connect(database_url) as conn:
        agent, definition = conn.execute(
            "SELECT agent, definition_hash FROM sessions WHERE session_id = %s", (session,)
        ).fetchone() or (None, None)
        kinds = [
            r[0]
            for r in conn.execute(
                "SELECT event_type FROM events WHERE session_id = %s ORDER BY seq", (session,)
            ).fetchall()
        ]
        call = conn.execute(
            "SELECT name, arguments_json, status FROM tool_calls WHERE session_id = %s",
            (session,),
        ).fetchone()
    assert (agent, definition) == ("quick", handed.to_hash)
    assert "AgentHandedOff" in kinds
    assert call is not None and call[0] == "handoff" and call[2] == "completed"
    assert json.loads(call[1])["agent"] == "quick"
