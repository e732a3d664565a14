"""Budget alerts and budgets across sessions in the pure core: soft thresholds
(`alert_at` fractions of a limit, `alert_at_usd` amounts) as a case table over
`session_alerts`, then through decide — a decision whose charges cross a threshold
records one BudgetAlert per threshold, each threshold once per session, in ascending
order, tokens before USD; an EnforceBudget (the budget watcher's) refuses new messages
naming the limit until the period ends and fails a running turn before its next LLM
call; the log folds to the same state; broken budgets are refused naming the field."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agents.budget import (
    BudgetConfig,
    Spend,
    Threshold,
    crossed,
    parse_projects,
    session_alerts,
    thresholds,
)
from agents.definitions import definition_hash, parse_definitions
from agents.errors import AgentDefinitionError
from agents.events import (
    BudgetAlert,
    CompleteToolCall,
    EnforceBudget,
    SendMessage,
    TurnFailed,
    Usage,
)
from agents.fold import fold
from agents.state_codec import state_from_dict, state_to_dict
from tests.unit.test_fsm_support import T0, Driver, agent, make_registry, types


def cfg(**kw: Any) -> BudgetConfig:
    return BudgetConfig.model_validate(kw)


# (config, spend before, spend after, expected alerts as (unit, threshold, fraction))
CASES: list[tuple[dict[str, Any], Spend, Spend, list[tuple[str, int, float | None]]]] = [
    # below every threshold, nothing
    ({"session_tokens": 1000, "alert_at": [0.5]}, Spend(0, 0), Spend(499, 0), []),
    # reaching a threshold exactly crosses it
    ({"session_tokens": 1000, "alert_at": [0.5]}, Spend(0, 0), Spend(500, 0),
     [("tokens", 500, 0.5)]),
    # already past it before: not again
    ({"session_tokens": 1000, "alert_at": [0.5]}, Spend(500, 0), Spend(900, 0), []),
    # one charge over several thresholds: one alert each, ascending
    ({"session_tokens": 1000, "alert_at": [0.8, 0.5, 1.0]}, Spend(100, 0), Spend(1200, 0),
     [("tokens", 500, 0.5), ("tokens", 800, 0.8), ("tokens", 1000, 1.0)]),
    # fractions apply to every session limit: tokens first, then USD
    ({"session_tokens": 1000, "session_usd": "0.000001", "alert_at": [0.5]},
     Spend(0, 0), Spend(600, 700),
     [("tokens", 500, 0.5), ("usd", 500, 0.5)]),
    # an amount in USD needs no limit; a fraction without its limit is no threshold
    ({"session_tokens": 10, "alert_at": [0.5], "alert_at_usd": ["0.000002"]},
     Spend(0, 0), Spend(4, 2500), [("usd", 2000, None)]),
    # a fraction and an amount on the same value are one threshold (the fraction's)
    ({"session_usd": "0.000004", "alert_at": [0.5], "alert_at_usd": ["0.000002"]},
     Spend(0, 1999), Spend(0, 2000), [("usd", 2000, 0.5)]),
    # a fraction that is not a whole number of units rounds up
    ({"session_tokens": 3, "alert_at": [0.5]}, Spend(1, 0), Spend(2, 0), [("tokens", 2, 0.5)]),
    # no alerts configured: none, however much is spent
    ({"session_tokens": 1000}, Spend(0, 0), Spend(5000, 10**9), []),
]  # fmt: skip


@pytest.mark.parametrize(("config", "before", "after", "expected"), CASES)
def test_session_alerts(
    config: dict[str, Any],
    before: Spend,
    after: Spend,
    expected: list[tuple[str, int, float | None]],
) -> None:
    alerts = session_alerts(cfg(**config), "s1", before, after)
    assert [(a.unit, a.threshold, a.fraction) for a in alerts] == expected
    assert all(a.scope == "session" and a.key == "s1" and a.period is None for a in alerts)
    for a in alerts:
        assert a.spent == (after.tokens if a.unit == "tokens" else after.nanos)


def test_a_growing_spend_crosses_each_threshold_exactly_once() -> None:
    marks = thresholds(1000, [0.25, 0.5, 0.75, 1.0], [333])
    assert [t.amount for t in marks] == [250, 333, 500, 750, 1000]
    seen: list[Threshold] = []
    spend = 0
    for step in (0, 1, 249, 83, 1, 600, 66, 1000):
        seen.extend(crossed(marks, spend, spend + step))
        spend += step
    assert seen == list(marks)


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"alert_at": [0.5]}, "alert_at: fractions need a limit"),
        ({"session_tokens": 10, "alert_at": [1.5]}, "budget.alert_at.0: must be <= 1"),
        ({"session_tokens": 10, "alert_at": [0]}, "budget.alert_at.0: must be > 0"),
        ({"alert_at_usd": [-1]}, "budget.alert_at_usd.0: must be > 0"),
        ({"day_usd": 0}, "budget.day_usd: must be > 0"),
    ],
)
def test_a_broken_alert_is_refused_naming_the_field(budget: dict[str, Any], message: str) -> None:
    data = {"agents": {"b": {"model": "scripted-small", "system_prompt": "p", "budget": budget}}}
    with pytest.raises(AgentDefinitionError) as err:
        parse_definitions(data, "a.toml")
    assert "agent 'b'" in str(err.value) and message in str(err.value)


def test_an_agent_without_alerts_keeps_its_definition_hash() -> None:
    plain = agent("a", budget={"session_tokens": 100})
    same = agent("a", budget={"session_tokens": 100, "alert_at": [], "alert_at_usd": []})
    assert definition_hash(plain) == definition_hash(same)
    alerted = agent("a", budget={"session_tokens": 100, "alert_at": [0.5]})
    assert definition_hash(alerted) != definition_hash(plain)
    daily = agent("a", budget={"session_tokens": 100, "day_usd": "5"})
    assert definition_hash(daily) != definition_hash(plain)


# --------------------------------------------------------------------------- through decide

ALERTED = agent(
    "alerted",
    budget={
        "session_tokens": 10_000,
        "alert_at": [0.05, 0.08, 0.1],  # 500, 800 and 1,000 tokens
        "alert_at_usd": [Decimal("0.0001")],  # 100,000 nano-dollars
    },
)
REGISTRY = make_registry(ALERTED)
# 500 tokens; at scripted-small's prices (100 / 500 nano-dollars per token) 90,000 nanos.
USAGE = Usage(400, 100)


def _alerts(events: list[Any]) -> list[tuple[str, int]]:
    return [(e.payload.unit, e.payload.threshold) for e in events if type(e.payload) is BudgetAlert]


def test_a_charge_that_crosses_a_threshold_records_one_alert_per_threshold_once() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("one"), agent="alerted")
    first = d.answer("a", usage=USAGE)
    assert types(first) == ["LlmCallCompleted", "TurnCompleted", "BudgetAlert"]
    alert = first[-1].payload
    assert isinstance(alert, BudgetAlert)
    assert (alert.scope, alert.key, alert.unit, alert.threshold, alert.spent, alert.limit) == (
        "session",
        "s1",
        "tokens",
        500,
        500,
        10_000,
    )
    assert alert.fraction == 0.05
    assert first[-1].turn_id is None  # after the turn ended: the session's fact
    d.send(SendMessage("two"))
    second = d.answer("b", usage=USAGE)
    assert _alerts(second) == [("tokens", 800), ("tokens", 1000), ("usd", 100_000)]
    d.send(SendMessage("three"))
    assert _alerts(d.answer("c", usage=USAGE)) == []  # every threshold already crossed
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state


def test_an_alert_in_the_middle_of_a_turn_does_not_move_its_phase() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("sum"), agent="alerted")
    events = d.answer("", tools=[("c1", "calculator", '{"expression": "1+1"}')], usage=USAGE)
    assert types(events)[-1] == "BudgetAlert"
    assert events[-1].turn_id == d.state.turn.turn_id  # type: ignore[union-attr]
    assert d.state.phase.value == "awaiting_tools"
    assert fold(d.log, "s1") == d.state


def test_a_decision_that_charges_nothing_alerts_nothing() -> None:
    d = Driver(REGISTRY)
    started = d.send(SendMessage("hi"), agent="alerted")
    rejected = d.send(SendMessage("again", attachments=()), request_id="s1-r1")  # duplicate id
    assert "BudgetAlert" not in types(started) + types(rejected)
    plain = Driver()  # an agent with no alerts: a charge records none
    plain.send(SendMessage("hi"), agent="budgeted")
    assert "BudgetAlert" not in types(plain.answer("ok", usage=Usage(10, 1)))


# --------------------------------------------------------------------------- across sessions

UNTIL = T0 + timedelta(hours=1)


def enforce(until: datetime = UNTIL, key: str = "alerted") -> EnforceBudget:
    return EnforceBudget("agent", key, "2025-01-01", "usd", 5_000_000, 5_100_000, until)


def test_a_spent_budget_refuses_new_messages_naming_the_limit_until_it_ends() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("one"), agent="alerted")
    d.answer("a")
    assert types(d.send(enforce())) == ["BudgetLimitReached"]
    rejected = d.send(SendMessage("two"))
    assert types(rejected) == ["RequestRejected"]
    reason = rejected[0].payload.reason  # type: ignore[union-attr]
    assert "The agent budget of 'alerted' for 2025-01-01 is spent" in reason
    assert "5100000 of its limit of 5000000 nano-dollars (day_usd)" in reason
    # Once the period has ended, the session takes messages again.
    later = d.send(SendMessage("three"), advance=3600)
    assert types(later)[-1] == "LlmCallRequested"
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state


def test_a_running_turn_fails_before_its_next_llm_call_and_a_queued_message_is_refused() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("sum"), agent="alerted")
    assert types(d.send(enforce())) == ["BudgetLimitReached"]
    assert d.state.budget_block is not None
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state
    queued = d.send(SendMessage("meanwhile"))
    assert types(queued) == ["RequestRejected"]
    # The call in flight completes (it is charged); the step's tool runs; then no more calls.
    d.answer("", tools=[("c1", "calculator", '{"expression": "1+1"}')])
    events = d.send(CompleteToolCall("c1", "2"))
    assert types(events) == ["ToolCallCompleted", "TurnFailed"]
    failed = events[-1].payload
    assert isinstance(failed, TurnFailed) and failed.error_type == "BudgetExceeded"
    assert "'alerted' for 2025-01-01 is spent" in failed.reason
    assert fold(d.log, "s1") == d.state


def test_an_enforcement_already_recorded_or_already_over_is_rejected() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("hi"), agent="alerted")
    d.answer("a")
    assert types(d.send(enforce())) == ["BudgetLimitReached"]
    again = d.send(enforce())
    assert types(again) == ["RequestRejected"]
    assert "already enforced" in again[0].payload.reason  # type: ignore[union-attr]
    over = d.send(enforce(until=T0, key="other"))
    assert types(over) == ["RequestRejected"]
    assert "nothing to enforce" in over[0].payload.reason  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("projects", "message"),
    [
        ({"p": {}}, "project 'p': day_usd"),
        ({"p": {"day_usd": 1, "alert_at": [2]}}, "project 'p': alert_at.0"),
        ({"p": {"day_usd": 1, "per": "week"}}, "project 'p': per"),
        ([1], "projects must be a table"),
    ],
)
def test_a_broken_project_budget_is_refused_naming_it(projects: Any, message: str) -> None:
    data = {
        "agents": {"b": {"model": "scripted-small", "system_prompt": "p"}},
        "projects": projects,
    }
    with pytest.raises(AgentDefinitionError, match=message):
        parse_definitions(data, "a.toml")


def test_projects_parse_and_the_project_field_keeps_hashes() -> None:
    data = {"p": {"day_usd": "2.5", "alert_at": [0.5, 0.8]}}
    budget = parse_projects(data)["p"]
    assert budget.day_nanos == 2_500_000_000 and budget.alert_at == (0.5, 0.8)
    assert definition_hash(agent("a")) == definition_hash(agent("a", project=None))
    assert definition_hash(agent("a", project="p")) != definition_hash(agent("a"))
