"""Per-client budgets on the live platform: real broker, real Postgres, the session
worker (in this process), the projector and the budget watcher (streams.budgets), the
scripted model of tests/data/budgets (every answer costs 150,000 nano-dollars).

A named client (`[clients.<name>]`, 200,000 a day) whose two sessions spend 300,000, and
an unnamed one under the default (`[clients."*"]`, 100,000 a day) whose one session
spends 150,000: the watcher sums each client's sessions (sessions.client) from the
projections, alerts at the named client's threshold once (a budget_alerts row of scope
client), and sends EnforceBudget to exactly those clients' sessions — a session of
another agent-mate without a client is left alone; the sessions then refuse new
messages naming the client's budget.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from agents.agentfile import registry_from_file
from agents.events import BudgetLimitReached, RequestRejected, SendMessage, TurnCompleted
from agents.providers.scripted import ScriptedProvider
from streams.budgets import BudgetWatcher, WatchConfig, load_scopes
from streams.topics import TopicNames
from tests.support.live import live_platform, new_session_id, project_to_end

DATA = Path(__file__).resolve().parents[1] / "data" / "budgets"


async def _project(bootstrap: str, database_url: str, names: TopicNames, consumer: str) -> None:
    await project_to_end(bootstrap, database_url, names.events, consumer)


async def test_a_client_budget_is_enforced_on_the_clients_sessions(
    kafka_bootstrap: str, names: TopicNames, database_url: str, tmp_path: Path
) -> None:
    alice, bob = f"alice-{secrets.token_hex(3)}", f"bob-{secrets.token_hex(3)}"
    agents = tmp_path / "agents.toml"
    agents.write_text(
        f"""
[clients."{alice}"]
day_usd = 0.0002          # 200,000 nano-dollars a UTC day, every session alice starts
alert_at = [0.5]
[clients."*"]
day_usd = 0.0001          # any other client: 100,000 each

[agents.cmetered]
model = "scripted-small"
system_prompt = "You answer briefly. (live client budgets test)"
max_tokens = 64
""",
        encoding="utf-8",
    )
    registry = registry_from_file(agents)
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    watcher = BudgetWatcher(
        WatchConfig(kafka_bootstrap, database_url, names.requests, interval_s=0.5),
        load_scopes(agents, registry),
    )
    assert {(s.kind, s.key, s.limit) for s in watcher.scopes} == {
        ("client", alice, 200_000),
        ("client", "*", 100_000),
    }
    plan = [(new_session_id("ca"), alice), (new_session_id("cb"), alice)]
    plan += [(new_session_id("cc"), bob), (new_session_id("cn"), None)]
    async with live_platform(
        kafka_bootstrap, names, registry=registry, provider=provider, sandbox=tmp_path
    ) as live:
        log = live.log
        await watcher.start()
        try:
            for sid, client in plan:
                req = live.client.request(sid, SendMessage("question"), agent="cmetered")
                await live.client.send_request(replace(req, client=client))
            for sid, _ in plan:
                await log.wait_for_type(sid, TurnCompleted)
            await _project(kafka_bootstrap, database_url, names, f"cb-{secrets.token_hex(3)}")
            enforced = await watcher.poll()
            limited = [sid for sid, client in plan if client is not None]
            assert sorted(enforced) == sorted(limited)
            for sid in limited:
                reached = await log.wait_for_type(sid, BudgetLimitReached)
                assert reached.scope == "client"
            await live.client.send(plan[0][0], SendMessage("one more"))
            rejected = await log.wait_for_type(plan[0][0], RequestRejected)
            day = datetime.now(UTC).date().isoformat()
            assert f"The client budget of {alice!r} for {day} is spent" in rejected.reason
            assert "300000 of its limit of 200000" in rejected.reason
            # Projected, polled again: nothing sent twice, the client-less session untouched.
            await _project(kafka_bootstrap, database_url, names, f"cb-{secrets.token_hex(3)}")
            assert await watcher.poll() == []
            assert not log.of_type(plan[3][0], BudgetLimitReached)
            live.worker.assert_alive()
        finally:
            await watcher.stop()
    with psycopg.connect(database_url) as conn:
        alerts = conn.execute(
            "SELECT scope_key, threshold FROM budget_alerts WHERE scope = 'client' "
            "AND scope_key = ANY(%s) ORDER BY scope_key",
            ([alice, bob],),
        ).fetchall()
        blocked = conn.execute(
            "SELECT session_id, scope_key FROM budget_limits WHERE scope = 'client' "
            "AND scope_key = ANY(%s)",
            ([alice, bob],),
        ).fetchall()
    assert alerts == [(alice, 100_000)]
    assert sorted(blocked) == sorted((sid, c) for sid, c in plan if c is not None)
