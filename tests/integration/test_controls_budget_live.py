"""Budget alerts, budgets across sessions and prompt variants on the live platform.

Real broker, real Postgres, the real session worker (in this process), the real projector
and the budget watcher (streams.budgets), the scripted model of tests/data/budgets (every
answer costs 150,000 nano-dollars; agent `metered`: session_usd 300,000, day_usd 400,000,
alert_at 0.5 and 0.8; project `acme`: day_usd 1,000,000, alert_at 0.25):

- a session's soft thresholds alert once each (BudgetAlert events, budget_alerts rows);
- the agent's day budget, spent across two sessions, is enforced on both: a new message is
  RequestRejected naming the limit, and no LLM call is requested after the enforcement;
- the overshoot (spend past the limit before enforcement, and the lag) is measured;
- a session started after the enforcement is blocked from the watcher's next poll on;
- the watcher's agent and project alerts are rows once per threshold, however often it polls;
- prompt variants: each session gets the variant its id is assigned, in SQL
  (sessions.variant), and the README's query compares them by cost.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from agents.agentfile import registry_from_file
from agents.events import (
    BudgetAlert,
    BudgetLimitReached,
    LlmCallCompleted,
    LlmCallRequested,
    RequestRejected,
    SendMessage,
    TurnCompleted,
)
from agents.providers.scripted import ScriptedProvider
from agents.variants import assign
from streams.budgets import BudgetWatcher, WatchConfig, load_scopes
from streams.topics import TopicNames
from tests.support.live import (
    EventLog,
    live_platform,
    new_session_id,
    payloads,
    project_to_end,
    turnlog_cli,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "budgets"
CALL = 150_000  # nano-dollars per answer (script.yaml at scripted-small's prices)
DAY_LIMIT = 400_000


async def _project(bootstrap: str, database_url: str, names: TopicNames, consumer: str) -> None:
    await project_to_end(bootstrap, database_url, names.events, consumer)


async def _turn(live: object, log: EventLog, sid: str, n: int, first: bool) -> None:
    """Send a message and wait for the session's n-th completed turn."""
    await live.client.send(  # type: ignore[attr-defined]
        sid, SendMessage(f"question {n}"), agent="metered" if first else None
    )
    await log.wait_for(
        sid, lambda evs: len(payloads(evs, TurnCompleted)) >= n, f"turn {n} of {sid}"
    )


def _rows(database_url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return list(conn.execute(query).fetchall())


async def test_alerts_once_and_the_day_budget_is_enforced_across_sessions(
    kafka_bootstrap: str,
    names: TopicNames,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = registry_from_file(DATA / "agents.toml")
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    consumer = f"live-budgets-{secrets.token_hex(4)}"
    a, b, c = (new_session_id(n) for n in ("budget-a", "budget-b", "budget-c"))
    watcher = BudgetWatcher(
        WatchConfig(kafka_bootstrap, database_url, names.requests, interval_s=0.5),
        load_scopes(DATA / "agents.toml", registry),
    )
    assert {(s.kind, s.key, s.agents, s.limit) for s in watcher.scopes} == {
        ("agent", "metered", ("metered",), DAY_LIMIT),
        ("project", "acme", ("metered",), 1_000_000),
    }
    async with live_platform(
        kafka_bootstrap, names, registry=registry, provider=provider, sandbox=tmp_path
    ) as live:
        log = live.log
        await watcher.start()
        try:
            # Session a: two turns, 300,000 spent — its session thresholds alert once each.
            await _turn(live, log, a, 1, True)
            await _turn(live, log, a, 2, False)
            alerts = payloads(log.events(a), BudgetAlert)
            assert [(x.scope, x.unit, x.threshold, x.fraction) for x in alerts] == [
                ("session", "usd", 150_000, 0.5),
                ("session", "usd", 240_000, 0.8),
            ], log.describe(a)

            # Below the day limit: the watcher alerts (agent 200,000, project 250,000) and
            # enforces nothing.
            await _project(kafka_bootstrap, database_url, names, consumer)
            assert await watcher.poll() == []

            # Session b's first answer takes the agent's day past its limit (450,000).
            await _turn(live, log, b, 1, True)
            crossed_at = payloads(log.events(b), LlmCallCompleted)[-1]
            crossing = next(e for e in log.events(b) if e.payload is crossed_at).occurred_at
            await _project(kafka_bootstrap, database_url, names, consumer)
            enforced = await watcher.poll()
            assert sorted(enforced) == sorted([a, b])
            for sid in (a, b):
                await log.wait_for_type(sid, BudgetLimitReached)

            # A new message is rejected naming the limit; no call is requested any more.
            await live.client.send(b, SendMessage("one more"))
            rejected = await log.wait_for_type(b, RequestRejected)
            day = datetime.now(UTC).date().isoformat()
            assert f"The agent budget of 'metered' for {day} is spent" in rejected.reason
            assert f"limit of {DAY_LIMIT} nano-dollars (day_usd)" in rejected.reason
            for sid in (a, b):
                events = log.events(sid)
                block = next(
                    i for i, e in enumerate(events) if type(e.payload) is BudgetLimitReached
                )
                assert not payloads(events[block:], LlmCallRequested), log.describe(sid)

            # The overshoot: what was spent past the limit, and how long it took.
            reached = next(e for e in log.events(b) if type(e.payload) is BudgetLimitReached)
            spent = reached.payload.spent  # type: ignore[union-attr]
            lag_s = (reached.occurred_at - crossing).total_seconds()
            print(
                f"\novershoot: {spent - DAY_LIMIT} nano-dollars past the day limit of "
                f"{DAY_LIMIT} ({(spent - DAY_LIMIT) / CALL:.2f} calls), enforced "
                f"{lag_s:.2f} s after the crossing call completed"
            )
            assert spent == 3 * CALL and spent - DAY_LIMIT < CALL

            # A session that starts after the enforcement: its first turn runs (the
            # watcher has not seen it yet); the next poll blocks it.
            await _turn(live, log, c, 1, True)
            await _project(kafka_bootstrap, database_url, names, consumer)
            assert await watcher.poll() == [c]
            await log.wait_for_type(c, BudgetLimitReached)
            await _project(kafka_bootstrap, database_url, names, consumer)
            assert await watcher.poll() == []  # everyone blocked: nothing sent again
            live.worker.assert_alive()
        finally:
            await watcher.stop()

    # In SQL: once per threshold per scope, however often the watcher polled.
    rows = _rows(
        database_url,
        "SELECT scope, scope_key, unit, threshold, fraction FROM budget_alerts "
        "ORDER BY scope, scope_key, threshold",
    )
    # (The database is shared with the other live tests: only this test's scopes count.)
    ours = {("agent", "metered"), ("project", "acme")}
    assert [r for r in rows if (r[0], r[1]) in ours] == [
        ("agent", "metered", "usd", 200_000, 0.5),
        ("agent", "metered", "usd", 320_000, 0.8),
        ("project", "acme", "usd", 250_000, 0.25),
    ]
    sessions = {a, b, c}
    session_rows = sorted((r[1], r[3]) for r in rows if r[0] == "session" and r[1] in sessions)
    assert session_rows == sorted([(a, 150_000), (a, 240_000), (b, 150_000), (c, 150_000)]), rows
    blocked = _rows(database_url, "SELECT session_id, scope, budget_limit FROM budget_limits")
    assert sorted(r for r in blocked if r[0] in sessions) == sorted(
        (s, "agent", DAY_LIMIT) for s in (a, b, c)
    )
    assert watcher.stats["alerts"] == 3
    # The CLI prints the same rows.
    monkeypatch.setenv("DATABASE_URL", database_url)
    code, out, err = await turnlog_cli(kafka_bootstrap, names, "budgets", "alerts", "--json")
    assert code == 0, out + err
    printed = {(r["scope"], r["scope_key"], r["threshold"]) for r in json.loads(out)}
    assert printed == {(r[0], r[1], r[3]) for r in rows}


async def test_variants_are_assigned_by_session_and_compared_in_sql(
    kafka_bootstrap: str,
    names: TopicNames,
    database_url: str,
    tmp_path: Path,
) -> None:
    registry = registry_from_file(DATA / "agents.toml")
    arms = registry.get("ab").variants
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    sessions = [new_session_id("ab") for _ in range(6)]
    async with live_platform(
        kafka_bootstrap, names, registry=registry, provider=provider, sandbox=tmp_path
    ) as live:
        for sid in sessions:
            await live.client.send(sid, SendMessage("hello"), agent="ab")
        for sid in sessions:
            await live.log.wait_for_type(sid, TurnCompleted)
        live.worker.assert_alive()
    await _project(kafka_bootstrap, database_url, names, f"live-ab-{secrets.token_hex(4)}")
    rows = _rows(database_url, "SELECT session_id, variant FROM sessions WHERE agent = 'ab'")
    assert {r[0]: r[1] for r in rows} == {sid: assign(sid, arms) for sid in sessions}
    # The README's comparison: cost, turns, failures and guardrail trips by variant.
    by_variant = _rows(database_url, VARIANTS_SQL)
    cost = {r[0]: (r[1], r[4]) for r in by_variant}
    expected = Counter(assign(sid, arms) for sid in sessions)
    for arm, n in expected.items():
        per_call = 100 * 100 + 1 * 500 if arm == "terse" else CALL
        assert cost[arm] == (n, n * per_call), by_variant


VARIANTS_SQL = """
SELECT s.variant, count(*) AS sessions, sum(s.turns) AS turns,
       sum(s.turns_failed) AS failed_turns, sum(s.cost_nanos) AS cost_nanos,
       count(g.event_id) AS guardrail_trips
FROM sessions s LEFT JOIN guardrail_trips g ON g.session_id = s.session_id
WHERE s.agent = 'ab'
GROUP BY s.variant ORDER BY s.variant
"""
