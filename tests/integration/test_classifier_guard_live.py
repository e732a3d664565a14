"""The classifier guardrail on the live platform: the cheap check decides without a call,
an inconclusive message or answer is judged by a guard call that the effect runner
executes like any LLM call, its verdict blocks the turn or warns, replay rebuilds every
guard request with its recorded digest, and SQL shows the guard calls and the trips.

Real broker, real Postgres, the real session worker (in this process) and the real
projector, the scripted model of tests/data/classifier_guard/script.yaml (it answers the
classifiers by matching their prompts).
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import psycopg
import pytest

from agents.agentfile import registry_from_file
from agents.events import (
    GuardrailTripped,
    LlmCallCompleted,
    LlmCallRequested,
    SendMessage,
    TurnCompleted,
    TurnFailed,
)
from agents.providers.scripted import ScriptedProvider
from projections.projector import Projector, ProjectorConfig
from streams.topics import TopicNames
from tests.support.live import live_platform, new_session_id, payloads, turnlog_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "classifier_guard"


async def test_a_classifier_guard_blocks_allows_and_warns_and_replays(
    kafka_bootstrap: str,
    names: TopicNames,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNLOG_AGENTS", str(DATA / "agents.toml"))
    registry = registry_from_file(DATA / "agents.toml")
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    egg, cars, coin, soup = (new_session_id(n) for n in ("egg", "cars", "coin", "soup"))
    messages = {
        egg: "How long do I boil an egg?",  # inconclusive: the classifier allows it
        cars: "Tell me about cars.",  # inconclusive: the classifier blocks it
        coin: "Is bitcoin a good buy?",  # block_if: blocked without a call
        soup: "A recipe for soup?",  # allow_if: no call; the answer is rude: a warning
    }
    async with live_platform(
        kafka_bootstrap, names, registry=registry, provider=provider, sandbox=tmp_path
    ) as live:
        log = live.log
        for sid, text in messages.items():
            await live.client.send(sid, SendMessage(text), agent="cook")
        for sid in messages:
            await log.wait_for(
                sid,
                lambda evs: payloads(evs, TurnCompleted) or payloads(evs, TurnFailed),
                f"the end of {sid}'s turn",
            )

        def purposes(sid: str) -> list[str]:
            return [r.purpose for r in payloads(log.events(sid), LlmCallRequested)]

        def trips(sid: str) -> list[tuple[str, str, str, str]]:
            return [
                (t.rule, t.kind, t.action, t.on)
                for t in payloads(log.events(sid), GuardrailTripped)
            ]

        # Allowed: the scope guard's call, the turn's call, the tone guard's call.
        assert payloads(log.events(egg), TurnCompleted), log.describe(egg)
        assert purposes(egg) == ["guard", "turn", "guard"]
        guard_answers = [
            c.text for c in payloads(log.events(egg), LlmCallCompleted) if c.discarded == "guard"
        ]
        assert guard_answers == ["ALLOW", "ALLOW"]
        assert trips(egg) == []

        # Blocked by the classifier: the turn fails before the turn's call.
        failed = payloads(log.events(cars), TurnFailed)
        assert [f.error_type for f in failed] == ["GuardrailBlocked"], log.describe(cars)
        assert "'scope' (classifier) blocked the user's message" in failed[0].reason
        assert purposes(cars) == ["guard"]
        assert trips(cars) == [("scope", "classifier", "block", "input")]

        # Blocked by the cheap check: no call at all.
        failed = payloads(log.events(coin), TurnFailed)
        assert [f.error_type for f in failed] == ["GuardrailBlocked"], log.describe(coin)
        assert purposes(coin) == []

        # Passed by the cheap check; the answer's classifier warns, the turn completes.
        assert payloads(log.events(soup), TurnCompleted), log.describe(soup)
        assert purposes(soup) == ["turn", "guard"]
        assert trips(soup) == [("tone", "classifier", "warn", "output")]
        live.worker.assert_alive()

    # Replay re-decides every input and rebuilds every request, the guard calls' included.
    for sid, calls in ((egg, 3), (soup, 2)):
        code, out, err = await turnlog_cli(
            kafka_bootstrap, names, "replay", sid, "--verify", "--no-timeline", timeout=60
        )
        assert code == 0, out + err
        assert "verify: OK" in out, out
        assert f"{calls} LLM request(s) rebuilt with the recorded digest" in out, out

    projector = Projector(
        ProjectorConfig(
            bootstrap=kafka_bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            consumer=f"live-classifier-{secrets.token_hex(4)}",
            group_id=None,
        )
    )
    await asyncio.wait_for(projector.run(until_caught_up=True), 60)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT purpose, status, discarded, cost_nanos > 0 FROM llm_calls "
            "WHERE session_id = %s ORDER BY requested_seq",
            (egg,),
        ).fetchall()
        assert rows == [
            ("guard", "completed", "guard", True),
            ("turn", "completed", None, True),
            ("guard", "completed", "guard", True),
        ]
        trip_rows = conn.execute(
            "SELECT session_id, rule, kind, action, stage FROM guardrail_trips "
            "WHERE session_id = ANY(%s)",
            ([cars, coin, soup],),
        ).fetchall()
        assert sorted(trip_rows) == sorted(
            [
                (cars, "scope", "classifier", "block", "input"),
                (coin, "scope", "classifier", "block", "input"),
                (soup, "tone", "classifier", "warn", "output"),
            ]
        )
