"""Production controls on the live platform: a message over an agent's rate limit is
rejected naming the limit and when to retry, decided from the broker's ingest times
(tests/unit/test_rate_limits.py decides it again from them); a second identical LLM request of an
agent with a response cache is answered from Postgres — no second request reaches the
vendor, the call is recorded cached with cost 0, SQL shows what it saved, and replay
verifies it; the console's HTTP API returns a turn's structured result as JSON (when it
waits for the turn, and on the session); `turnlog topics ensure` sets the requests
topic's retention an operator asks for (read back from the broker), and a worker that
restores a session after every request was deleted from the topic goes on as before —
its state never needs old requests.

Real broker, real Postgres, the real session worker (in this process), the scripted
model of tests/data/controls/script.yaml, and the real anthropic SDK against the fake
Messages API server (tests/fakes/anthropic_server.py), which counts the requests.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import psycopg
import pytest
from aiokafka import TopicPartition
from aiokafka.admin.records_to_delete import RecordsToDelete

from agents.agentfile import registry_from_file
from agents.events import Event, LlmCallCompleted, RequestRejected, SendMessage, TurnCompleted
from agents.providers.anthropic import AnthropicProvider
from agents.providers.scripted import ScriptedProvider
from projections.projector import Projector, ProjectorConfig
from streams.response_cache import PostgresResponseCache
from streams.topics import (
    TopicError,
    TopicNames,
    _admin,
    _topic_configs,
    requests_retention_configs,
)
from tests.fakes.anthropic_server import FAKE_API_KEY, FakeAnthropicServer, FakeMessage, FakeUsage
from tests.integration.test_console_support import csrf_client, start_console
from tests.support.live import PARTITIONS, live_platform, new_session_id, payloads, turnlog_cli
from turnlog.settings import ConfigError, load_settings

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


async def _project(bootstrap: str, database_url: str, names: TopicNames) -> None:
    projector = Projector(
        ProjectorConfig(
            bootstrap=bootstrap,
            database_url=database_url,
            events_topic=names.events,
            checkpoints_topic=None,
            consumer=f"live-controls-{secrets.token_hex(4)}",
            group_id=None,
        )
    )
    await asyncio.wait_for(projector.run(until_caught_up=True), 60)


async def test_an_identical_request_is_answered_from_the_cache_at_no_cost(
    kafka_bootstrap: str,
    names: TopicNames,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TURNLOG_AGENTS", str(DATA / "agents.toml"))
    registry = registry_from_file(DATA / "agents.toml")
    # A question of this run only: the cache table is shared by the run's tests.
    question = f"What is the capital of France? ({secrets.token_hex(4)})"
    first, second = new_session_id("cache-a"), new_session_id("cache-b")
    answer = FakeMessage("Paris.", usage=FakeUsage(input_tokens=40, output_tokens=3))
    with FakeAnthropicServer(api_key=FAKE_API_KEY, default=answer) as server:
        provider = AnthropicProvider(api_key=FAKE_API_KEY, base_url=server.base_url)
        async with (
            provider,
            live_platform(
                kafka_bootstrap, names, registry=registry, provider=provider, sandbox=tmp_path
            ) as live,
        ):
            cache = PostgresResponseCache(database_url)
            live.worker.process.effects.cache = cache
            log = live.log
            for sid in (first, second):
                await live.client.send(sid, SendMessage(question), agent="cached")
                await log.wait_for(sid, lambda evs: payloads(evs, TurnCompleted), f"{sid}'s turn")
            live.worker.assert_alive()
            await cache.close()
        # The vendor saw the question once.
        assert len(server.requests) == 1, server.requests

    (paid,) = payloads(log.events(first), LlmCallCompleted)
    (hit,) = payloads(log.events(second), LlmCallCompleted)
    assert paid.cached_from is None and paid.cost_nanos > 0
    assert (hit.cached_from, hit.cost_nanos, hit.usage.total_tokens) == (paid.call_id, 0, 0)
    assert hit.text == paid.text == "Paris."
    assert cache.stats == {"hits": 1, "misses": 1, "errors": 0}

    # SQL: the hit, what it saved, and the stored answer.
    await _project(kafka_bootstrap, database_url, names)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT cached_from, cost_nanos FROM llm_calls WHERE session_id = %s", (second,)
        ).fetchone()
        assert row == (paid.call_id, 0)
        saved = conn.execute(
            "SELECT saved_nanos, saved_input_tokens FROM cache_savings WHERE session_id = %s",
            (second,),
        ).fetchone()
        assert saved == (paid.cost_nanos, 40)
        stored = conn.execute(
            "SELECT call_id, answer->>'text' FROM response_cache WHERE call_id = %s",
            (paid.call_id,),
        ).fetchone()
        assert stored == (paid.call_id, "Paris.")

    # Replay re-decides the cached call like any recorded answer, without the cache.
    code, out, err = await turnlog_cli(
        kafka_bootstrap, names, "replay", second, "--verify", "--no-timeline", timeout=60
    )
    assert code == 0, out + err
    assert "verify: OK" in out, out


async def test_the_http_api_returns_the_structured_result(
    kafka_bootstrap: str,
    names: TopicNames,
    database_url: str,
    tmp_path: Path,
) -> None:
    registry = registry_from_file(DATA / "agents.toml")
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "TURNLOG_TOPIC_PREFIX": names.requests[: -len("turnlog.requests")],
        "TURNLOG_PARTITIONS": str(PARTITIONS),
        "TURNLOG_AGENTS": str(DATA / "agents.toml"),
    }
    console = await asyncio.to_thread(start_console, env, tmp_path)
    try:
        async with live_platform(
            kafka_bootstrap, names, registry=registry, provider=provider, sandbox=tmp_path
        ) as live:
            api = csrf_client(console.url)
            try:
                # ?wait=turn: the end of the turn, its structured result a JSON value.
                r = await asyncio.to_thread(
                    api.post,
                    "/api/sessions?wait=turn",
                    json={"agent": "extractor", "text": "Ada, 36 years."},
                )
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["status"] == "completed", body
                assert body["structured"] == {"name": "Ada", "age": 36}
                sid = body["session_id"]
                # A turn of an agent without an output_schema has none.
                r = await asyncio.to_thread(
                    api.post,
                    "/api/sessions?wait=turn",
                    json={"agent": "limited", "text": "hello"},
                )
                assert (r.json()["status"], r.json()["structured"]) == ("completed", None)
                await _project(kafka_bootstrap, database_url, names)
                # The session, read from the projections: its structured results.
                r = await asyncio.to_thread(api.get, f"/api/sessions/{sid}")
                assert r.status_code == 200, r.text
                shown = r.json()
                assert shown["result"] == {"name": "Ada", "age": 36}
                assert [s["result"] for s in shown["structured"]] == [{"name": "Ada", "age": 36}]
                # ... and the OpenAPI document says so.
                doc = (await asyncio.to_thread(api.get, "/api/openapi.json")).json()
                post = doc["paths"]["/api/sessions"]["post"]
                wait = next(p for p in post["parameters"] if p["name"] == "wait")
                assert wait["schema"]["enum"] == ["true", "turn"]
                get = doc["paths"]["/api/sessions/{session_id}"]["get"]
                assert "structured" in get["responses"]["200"]["description"]
            finally:
                api.close()
            live.worker.assert_alive()
    finally:
        await asyncio.to_thread(console.stop)


async def _delete_all_requests(bootstrap: str, names: TopicNames) -> int:
    """Delete every record of the requests topic (what retention does to old ones);
    returns how many there were."""
    admin = _admin(bootstrap, 30_000)
    await admin.start()
    try:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(names.requests, p) for p in range(PARTITIONS)]
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
        finally:
            await consumer.stop()
        await admin.delete_records(
            {tp: RecordsToDelete(before_offset=end) for tp, end in ends.items() if end}
        )
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await admin.close()


async def test_the_requests_retention_is_set_by_ensure_and_no_restore_needs_old_requests(
    kafka_bootstrap: str,
    names: TopicNames,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An operator asks for six hours: ensure sets it on the existing topic, with segments
    # small enough for the broker to delete within it.
    monkeypatch.setenv("TURNLOG_REQUESTS_RETENTION_HOURS", "6")
    code, out, err = await turnlog_cli(kafka_bootstrap, names, "topics", "ensure", "--json")
    assert code == 0, out + err
    report = json.loads(out)
    fixed = {(d["topic"], d["setting"]) for d in report["fixed"]}
    assert {(names.requests, "retention.ms"), (names.requests, "segment.ms")} <= fixed, out
    admin = _admin(kafka_bootstrap, 30_000)
    await admin.start()
    try:
        configs = await _topic_configs(admin, [names.requests, names.events])
    finally:
        await admin.close()
    assert configs[names.requests]["retention.ms"] == str(6 * 3_600_000)
    assert configs[names.requests]["segment.ms"] == str(6 * 3_600_000 // 4)
    assert configs[names.requests]["message.timestamp.type"] == "LogAppendTime"
    assert configs[names.events]["retention.ms"] == "-1"  # the log: untouched
    # Below an hour is refused, naming the variable (and by ensure_topics itself).
    monkeypatch.setenv("TURNLOG_REQUESTS_RETENTION_HOURS", "0.1")
    with pytest.raises(ConfigError, match="TURNLOG_REQUESTS_RETENTION_HOURS"):
        load_settings()
    with pytest.raises(TopicError, match="at least 60 minutes"):
        requests_retention_configs(10 * 60_000)

    # A session's first turn; then every request is gone from the topic, as retention
    # would have it; a new worker restores the session and takes its next message.
    registry = registry_from_file(DATA / "agents.toml")
    sid = new_session_id("retained")
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=registry,
        provider=ScriptedProvider.from_file(DATA / "script.yaml"),
        sandbox=tmp_path,
    ) as live:
        await live.client.send(sid, SendMessage("one"), agent="extractor")
        await live.log.wait_for(sid, lambda evs: payloads(evs, TurnCompleted), "turn 1")
    assert await _delete_all_requests(kafka_bootstrap, names) > 0
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=registry,
        provider=ScriptedProvider.from_file(DATA / "script.yaml"),
        sandbox=tmp_path,
    ) as live:
        await live.client.send(sid, SendMessage("two"), agent="extractor")
        await live.log.wait_for(
            sid, lambda evs: len(payloads(evs, TurnCompleted)) == 2, "turn 2", timeout=60
        )
        events = live.log.events(sid)
        assert not payloads(events, RequestRejected), live.log.describe(sid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        live.worker.assert_alive()
