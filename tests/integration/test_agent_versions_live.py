"""Agent versions on the real broker: editing the agent file and restarting the worker does
not change a session already in flight; `turnlog upgrade` moves it, recorded; replay
--verify follows the session's real history.

The worker is a subprocess configured by its environment (TURNLOG_AGENTS); the first
runs on tests/data/agents.toml, the second on a copy whose `calc` system prompt changed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agents.agentfile import registry_from_file
from agents.definitions import definition_hash
from agents.events import AgentVersionChanged, LlmCallRequested, SessionStarted
from streams.topics import ensure_topics
from tests.support.harness import (
    DATA,
    ROOT,
    EventLog,
    RequestSender,
    WorkerGroup,
    user_message,
    worker_env,
)

PARTITIONS = 2


async def turnlog(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The real CLI as a subprocess with `env` (this test runs in an event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "turnlog",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def _prompt_hashes(log: EventLog, session: str) -> list[str]:
    return [
        e.payload.system_prompt_hash
        for e in log.of(session, LlmCallRequested)
        if isinstance(e.payload, LlmCallRequested) and e.payload.purpose == "turn"
    ]


async def test_a_changed_agent_file_does_not_change_a_session_in_flight_until_upgraded(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names
    v1_file = DATA / "agents.toml"
    v2_file = tmp_path / "agents.toml"
    v2_file.write_text(
        v1_file.read_text().replace(
            "You are a calculator assistant.", "You are a calculator assistant, version two.", 1
        )
    )
    v1 = registry_from_file(v1_file).info("calc")
    v2 = registry_from_file(v2_file).info("calc")
    assert v1.system_prompt_hash != v2.system_prompt_hash

    script = DATA / "calc.script.yaml"
    env1 = worker_env(
        kafka_bootstrap,
        unique_prefix,
        partitions=PARTITIONS,
        agents=v1_file,
        script=script,
        sandbox=tmp_path / "sandbox",
    )
    env2 = {**env1, "TURNLOG_AGENTS": str(v2_file)}
    session = "ver-1"
    async with (
        WorkerGroup(env1, tmp_path) as group,
        RequestSender(kafka_bootstrap, names) as send,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        first = group.start("v1")
        await first.wait_assigned(at_least=PARTITIONS)
        await send.request(user_message(session, "what is 2+2?", agent="calc"))
        await log.wait_for(
            lambda: log.turns_completed(session) == 1, 60, "turn 1", diagnose=lambda: first.tail()
        )
        assert first.terminate() == 0

        # The file changed and a new worker serves it: the session keeps its version.
        group.env = env2
        second = group.start("v2")
        await second.wait_assigned(at_least=PARTITIONS)
        await send.request(user_message(session, "what is 3+3?", turn=2))
        await log.wait_for(
            lambda: log.turns_completed(session) == 2, 60, "turn 2", diagnose=lambda: second.tail()
        )
        assert set(_prompt_hashes(log, session)) == {v1.system_prompt_hash}
        assert not log.of(session, AgentVersionChanged)

        # Verify against the new file's worker setup: the session's own version decides.
        code, out = await turnlog(env2, "replay", session, "--verify", "--no-timeline")
        assert code == 0 and "verify: OK" in out, out

        # An explicit upgrade moves it, recorded; the next turn runs on version two.
        code, out = await turnlog(env2, "upgrade", session, "--timeout", "60")
        assert code == 0, out
        await log.wait_for(lambda: bool(log.of(session, AgentVersionChanged)), 30, "upgrade")
        await send.request(user_message(session, "what is 4+4?", turn=3))
        await log.wait_for(
            lambda: log.turns_completed(session) == 3, 60, "turn 3", diagnose=lambda: second.tail()
        )

    (changed,) = [e.payload for e in log.of(session, AgentVersionChanged)]
    assert isinstance(changed, AgentVersionChanged)
    assert (changed.from_hash, changed.to_hash, changed.reason) == (
        definition_hash(v1.definition),
        definition_hash(v2.definition),
        "upgrade",
    )
    started = log.of(session, SessionStarted)[0].payload
    assert isinstance(started, SessionStarted)
    assert started.definition_hash == definition_hash(v1.definition)
    assert _prompt_hashes(log, session)[-1] == v2.system_prompt_hash
    code, out = await turnlog(env2, "replay", session, "--verify", "--no-timeline")
    assert code == 0 and "verify: OK" in out, out


async def test_the_projector_copies_published_versions_into_agent_versions(
    kafka_bootstrap: str, unique_prefix: str, scratch_database_url: str
) -> None:
    import psycopg

    from projections.agent_versions import agents_topic_for, refresh_agent_versions
    from projections.migrate import migrate
    from streams._agents import publish_versions

    names = (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names
    assert agents_topic_for(names.events) == names.agents
    migrate(scratch_database_url)
    registry = registry_from_file(DATA / "agents.toml")
    # Two workers start with the same file: each version is stored once.
    for _ in range(2):
        await publish_versions(kafka_bootstrap, names.agents, registry)
    assert await refresh_agent_versions(kafka_bootstrap, names.agents, scratch_database_url) == len(
        registry.names()
    )
    await refresh_agent_versions(kafka_bootstrap, names.agents, scratch_database_url)
    with psycopg.connect(scratch_database_url) as conn:
        rows = conn.execute(
            "SELECT agent, definition_hash, definition->>'system_prompt' FROM agent_versions "
            "ORDER BY agent"
        ).fetchall()
    assert [(a, h) for a, h, _ in rows] == sorted(
        (n, registry.info(n).definition_hash) for n in registry.names()
    )
    assert rows[[a for a, _, _ in rows].index("calc")][2] == registry.get("calc").system_prompt
