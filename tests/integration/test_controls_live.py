"""Production controls on the live platform: a message over an agent's rate limit is
rejected naming the limit and when to retry, decided from the broker's ingest times (so
`turnlog replay --verify` re-decides the same).

Real broker, real Postgres, the real session worker (in this process), the scripted
model of tests/data/controls/script.yaml.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.agentfile import registry_from_file
from agents.events import Event, RequestRejected, SendMessage, TurnCompleted
from agents.providers.scripted import ScriptedProvider
from streams.topics import TopicNames
from tests.support.live import live_platform, new_session_id, payloads, turnlog_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "controls"


async def test_a_message_over_the_rate_limit_is_rejected_naming_the_limit(
    kafka_bootstrap: str,
    names: TopicNames,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNLOG_AGENTS", str(DATA / "agents.toml"))
    registry = registry_from_file(DATA / "agents.toml")
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    sid = new_session_id("limited")
    async with live_platform(
        kafka_bootstrap, names, registry=registry, provider=provider, sandbox=tmp_path
    ) as live:
        log = live.log
        # requests_per_minute = 2: two messages are taken, the third within the minute
        # is not (whether it would start a turn or queue behind one).
        for n, text in enumerate(("one", "two"), start=1):
            await live.client.send(sid, SendMessage(text), agent="limited")

            def turns_done(evs: list[Event], n: int = n) -> bool:
                return len(payloads(evs, TurnCompleted)) == n

            await log.wait_for(sid, turns_done, f"turn {n}")
        third = await live.client.send(sid, SendMessage("three"), agent="limited")
        rejected = await log.wait_for(
            sid, lambda evs: payloads(evs, RequestRejected), "the third message's rejection"
        )
        assert [r.request_id for r in rejected] == [third.request_id]
        reason = rejected[0].reason
        assert "rate_limit.requests_per_minute exceeded: 2 messages" in reason, reason
        assert "limit is 2 per minute per session; retry after" in reason, reason
        assert len(payloads(log.events(sid), TurnCompleted)) == 2
        live.worker.assert_alive()

    # The verdict is the core's, from the ingest times in the log: replay agrees.
    code, out, err = await turnlog_cli(
        kafka_bootstrap, names, "replay", sid, "--verify", "--no-timeline", timeout=60
    )
    assert code == 0, out + err
    assert "verify: OK" in out, out
