"""Guardrails and structured output on the live platform: a secret a redact rule removes
never reaches the session log, the snapshots, the deltas or any projection table (input:
the user's key; output: a key the model leaks); a blocked input fails its turn without
being recorded; a structured answer lands in SQL as jsonb after one corrective attempt.

Real broker, real Postgres, the real session worker (in this process) and the real
projector, the scripted model of tests/data/guardrails/script.yaml.

(The requests topic is the clients' and the effect runner's input: it holds the user's
message as sent, and the model's answer as the provider gave it, before the core judged
either. What the guard removes is kept out of everything written after that judgement.)
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import sql

from agents.agentfile import registry_from_file
from agents.events import (
    GuardrailTripped,
    LlmCallCompleted,
    SendMessage,
    StructuredOutputAccepted,
    StructuredOutputInvalid,
    TurnCompleted,
    TurnFailed,
    UserMessageReceived,
)
from agents.providers.scripted import ScriptedProvider
from projections.projector import Projector, ProjectorConfig
from streams.topics import TopicNames
from tests.support.live import live_platform, new_session_id, payloads, turnlog_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "guardrails"
LEAKED = "sk-live-SCRIPTEDVAULTKEY42"  # what the scripted model says (script.yaml)


async def _topic_values(bootstrap: str, topic: str) -> list[bytes]:
    """Every committed record value of `topic`, from the beginning to its end now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        assert parts, f"topic {topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values: list[bytes] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            values += [r.value for records in batch.values() for r in records if r.value]
        return values
    finally:
        await consumer.stop()


def _tables_containing(database_url: str, needle: str) -> list[str]:
    """Every table of the database (the projections, the audit log, all) whose rows, as
    text, contain `needle`."""
    with psycopg.connect(database_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        assert {"events", "entries", "llm_calls", "guardrail_trips"} <= set(tables)
        found = []
        for t in tables:
            query = sql.SQL("SELECT count(*) FROM {} r WHERE strpos(r::text, %s) > 0").format(
                sql.Identifier(t)
            )
            row = conn.execute(query, (needle,)).fetchone()
            if row and row[0]:
                found.append(t)
        return found


async def _project(bootstrap: str, database_url: str, names: TopicNames) -> None:
    projector = Projector(
        ProjectorConfig(
            bootstrap=bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            consumer=f"live-guardrails-{secrets.token_hex(4)}",
            group_id=None,
        )
    )
    await asyncio.wait_for(projector.run(until_caught_up=True), 60)


async def test_redacted_secrets_never_reach_the_log_or_sql_and_blocks_and_structure_hold(
    kafka_bootstrap: str,
    names: TopicNames,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNLOG_AGENTS", str(DATA / "agents.toml"))
    secret = f"sk-live-{secrets.token_hex(12)}"
    registry = registry_from_file(DATA / "agents.toml")
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    guarded, blocked, extracted = (new_session_id(n) for n in ("guard", "block", "extract"))
    # The answers' deltas are checked below: the calls stream (a call run inline does not).
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=registry,
        provider=provider,
        sandbox=tmp_path,
        inline_llm_ms=0,
    ) as live:
        log = live.log
        await live.client.send(
            guarded, SendMessage(f"Store my key {secret} please."), agent="guarded"
        )
        await live.client.send(blocked, SendMessage("Now DROP TABLE users;"), agent="guarded")
        await live.client.send(extracted, SendMessage("Ada, 36 years."), agent="extractor")
        for sid in (guarded, blocked, extracted):
            await log.wait_for(
                sid,
                lambda evs: payloads(evs, TurnCompleted) or payloads(evs, TurnFailed),
                f"the end of {sid}'s turn",
            )

        # Redacted input and output: recorded redacted, each trip an event.
        events = log.events(guarded)
        assert payloads(events, TurnCompleted), log.describe(guarded)
        user = payloads(events, UserMessageReceived)[0]
        assert user.text == "Store my key [REDACTED] please."
        answers = payloads(events, LlmCallCompleted)
        assert [a.text for a in answers] == ["Noted. The vault key is [REDACTED], keep it safe."]
        trips = payloads(events, GuardrailTripped)
        assert [(t.rule, t.on, t.action) for t in trips] == [
            ("no-keys-in", "input", "redact"),
            ("no-keys-out", "output", "redact"),
        ]

        # A blocked input: the turn fails, the message is not recorded.
        events = log.events(blocked)
        failed = payloads(events, TurnFailed)
        assert [f.error_type for f in failed] == ["GuardrailBlocked"], log.describe(blocked)
        assert "'no-drop'" in failed[0].reason
        assert not payloads(events, UserMessageReceived)
        assert not payloads(events, LlmCallCompleted)

        # A structured answer after one corrective attempt.
        events = log.events(extracted)
        assert payloads(events, TurnCompleted), log.describe(extracted)
        invalid = payloads(events, StructuredOutputInvalid)
        assert [(i.attempt, "not JSON" in i.error) for i in invalid] == [(1, True)]
        accepted = payloads(events, StructuredOutputAccepted)
        assert [json.loads(a.result) for a in accepted] == [{"name": "Ada", "age": 36}]

        # The CLI (through the Python client's Outcome) returns the structured answer.
        code, out, err = await turnlog_cli(
            kafka_bootstrap,
            names,
            "send",
            "--json",
            "--follow",
            "--agent",
            "extractor",
            "Ada, 36 years.",
        )
        assert code == 0, out + err
        outcome = json.loads(out.strip().splitlines()[-1])
        assert outcome["status"] == "completed", out
        assert outcome["structured"] == {"name": "Ada", "age": 36}

        # A blocked input through the CLI: a failed turn (exit code 3), the rule named.
        code, out, err = await turnlog_cli(
            kafka_bootstrap,
            names,
            "send",
            "--json",
            "--follow",
            "--agent",
            "guarded",
            "drop table x",
        )
        outcome = json.loads(out.strip().splitlines()[-1])
        assert (code, outcome["status"], outcome["structured"]) == (3, "failed", None), out + err
        assert "'no-drop'" in outcome["reason"]
        live.worker.assert_alive()

    # Replay re-decides every input (the raw answers included) and finds the same log:
    # redaction and the corrective attempt are decisions of the core, not of the worker.
    for sid, calls in ((guarded, 1), (extracted, 2)):
        code, out, err = await turnlog_cli(
            kafka_bootstrap, names, "replay", sid, "--verify", "--no-timeline", timeout=60
        )
        assert code == 0, out + err
        assert "verify: OK" in out, out
        assert f"{calls} LLM request(s) rebuilt with the recorded digest" in out, out

    # Nothing the guards removed in any topic written after the core's judgement.
    for topic in (names.events, names.snapshots, names.deltas, names.dlq):
        values = await _topic_values(kafka_bootstrap, topic)
        for needle in (secret, LEAKED, "DROP TABLE users"):
            assert not [v for v in values if needle.encode() in v], f"{needle} in {topic}"
    assert [v for v in await _topic_values(kafka_bootstrap, names.events) if b"[REDACTED]" in v]
    # A streamed chunk may split a secret: an agent with output guardrails streams nothing
    # (its answer is checked first), the one without does.
    deltas = await _topic_values(kafka_bootstrap, names.deltas)
    assert not [v for v in deltas if guarded.encode() in v]
    assert [v for v in deltas if extracted.encode() in v]

    # ... nor in any table, once the projector has caught up.
    await _project(kafka_bootstrap, database_url, names)
    for needle in (secret, LEAKED, "DROP TABLE users"):
        assert _tables_containing(database_url, needle) == [], needle
    with psycopg.connect(database_url) as conn:
        trip_rows = conn.execute(
            "SELECT session_id, rule, action, stage FROM guardrail_trips "
            "WHERE session_id = ANY(%s) ORDER BY session_id, seq",
            ([guarded, blocked],),
        ).fetchall()
        assert sorted(trip_rows) == sorted(
            [
                (guarded, "no-keys-in", "redact", "input"),
                (guarded, "no-keys-out", "redact", "output"),
                (blocked, "no-drop", "block", "input"),
            ]
        )
        rows = conn.execute(
            "SELECT valid, attempt, result, error IS NOT NULL FROM structured_outputs "
            "WHERE session_id = %s ORDER BY seq",
            (extracted,),
        ).fetchall()
        assert rows == [(False, 1, None, True), (True, None, {"name": "Ada", "age": 36}, False)]
        typed = conn.execute(
            "SELECT result->>'name', (result->>'age')::int FROM structured_outputs "
            "WHERE session_id = %s AND valid",
            (extracted,),
        ).fetchone()
        assert typed == ("Ada", 36)
        status = conn.execute(
            "SELECT turns_failed FROM sessions WHERE session_id = %s", (blocked,)
        ).fetchone()
        assert status == (1,)
