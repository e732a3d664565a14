"""The session worker's metrics count the events of committed transactions, one handler
per event type (streams.metrics): a case table of events and the samples they move."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agents.events import (
    ApprovalDenied,
    ApprovalGranted,
    BudgetAlert,
    BudgetExceeded,
    BudgetScope,
    BudgetUnit,
    Event,
    LlmCallCompleted,
    LlmCallFailed,
    LlmCallRequested,
    MessageQueued,
    PolicyAction,
    QueuedMessageDropped,
    RequestRejected,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
    event_id_for,
)
from streams import telemetry
from streams.effects import EffectRunner
from streams.metrics import SessionMetrics
from streams.session_worker import SessionWorker
from streams.topics import topic_names

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SID = "s-metrics"


def ev(seq: int, payload: Any, *, at: float = 0.0, session: str = SID) -> Event:
    return Event(
        event_id_for(session, seq),
        session,
        seq,
        T0 + timedelta(seconds=at),
        "calc",
        payload,
        turn_id=f"{session}:t1",
    )


def requested(call_id: str, model: str) -> LlmCallRequested:
    return LlmCallRequested(
        call_id=call_id,
        model=model,
        fallbacks=(),
        max_tokens=100,
        temperature=0.0,
        context_ranges=(),
        context_entries=0,
        system_prompt_hash="h",
        toolset_hash="t",
        request_digest="d",
        iteration=1,
        deadline_at=T0 + timedelta(minutes=1),
    )


def tool(call_id: str, name: str, decision: PolicyAction = PolicyAction.ALLOW) -> ToolCallRequested:
    return ToolCallRequested(call_id, "c1", name, "{}", decision, None, T0 + timedelta(minutes=1))


@pytest.fixture
def metrics() -> Iterator[SessionMetrics]:
    names = topic_names("")
    worker = SessionWorker(bootstrap="127.0.0.1:1", topics=names, partitions=1, registry=None)
    effects = EffectRunner(
        bootstrap="127.0.0.1:1",
        topics=names,
        partitions=1,
        registry=None,
        provider=None,
        tools=None,
    )
    m = SessionMetrics(worker, effects)
    yield m
    m.close()


def values(m: SessionMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if not s.name.endswith("_created")
    }


USAGE = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=50, cache_write_tokens=0)

CASES = [
    (
        "a completed turn",
        [
            ev(1, TurnStarted(1)),
            ev(2, requested("c1", "scripted-small")),
            ev(
                3,
                LlmCallCompleted(
                    "c1", "scripted-small", "hi", (), "end_turn", USAGE, 2_500_000, 1500, 1
                ),
            ),
            ev(4, TurnCompleted(1, 3, USAGE, 2_500_000, 1), at=2.0),
        ],
        {
            ("turnlog_turns_total", (("agent", "calc"), ("outcome", "completed"))): 1,
            ("turnlog_llm_calls_total", (("model", "scripted-small"), ("outcome", "completed"))): 1,
            ("turnlog_llm_tokens_total", (("model", "scripted-small"), ("type", "input"))): 100,
            ("turnlog_llm_tokens_total", (("model", "scripted-small"), ("type", "output"))): 20,
            ("turnlog_llm_tokens_total", (("model", "scripted-small"), ("type", "cache_read"))): 50,
            ("turnlog_llm_cost_usd_total", (("model", "scripted-small"),)): 0.0025,
            ("turnlog_llm_call_duration_seconds_sum", (("model", "scripted-small"),)): 1.5,
            ("turnlog_turn_duration_seconds_sum", (("agent", "calc"),)): 2.0,
        },
    ),
    (
        "a failed LLM call is counted under the model it asked for; the turn fails",
        [
            ev(1, TurnStarted(1)),
            ev(2, requested("c1", "scripted-medium")),
            ev(3, LlmCallFailed("c1", "Overloaded", "busy", 3)),
            ev(4, TurnFailed(1, "The LLM call failed.", "Overloaded")),
        ],
        {
            ("turnlog_llm_calls_total", (("model", "scripted-medium"), ("outcome", "failed"))): 1,
            ("turnlog_turns_total", (("agent", "calc"), ("outcome", "failed"))): 1,
            ("turnlog_turn_failures_total", (("agent", "calc"), ("error_type", "Overloaded"))): 1,
        },
    ),
    (
        "tool calls by name, outcome and policy decision",
        [
            ev(1, tool("t1", "calculator")),
            ev(2, tool("t2", "shell", PolicyAction.DENY)),
            ev(3, ToolCallCompleted("t1", "42", 250)),
            ev(4, ToolCallFailed("t2", "denied")),
        ],
        {
            ("turnlog_tool_calls_total", (("outcome", "completed"), ("tool", "calculator"))): 1,
            ("turnlog_tool_calls_total", (("outcome", "failed"), ("tool", "shell"))): 1,
            ("turnlog_tool_call_duration_seconds_sum", (("tool", "calculator"),)): 0.25,
            ("turnlog_tool_policy_decisions_total", (("decision", "allow"),)): 1,
            ("turnlog_tool_policy_decisions_total", (("decision", "deny"),)): 1,
        },
    ),
    (
        "approvals, budget trips, rejections",
        [
            ev(1, ApprovalGranted("a1", "alice")),
            ev(2, ApprovalDenied("a2", "bob")),
            ev(3, ApprovalDenied("a3", "deadline", expired=True)),
            ev(4, BudgetExceeded(BudgetScope.TURN, BudgetUnit.TOKENS, 100, 90, 50)),
            ev(5, RequestRejected("r1", "SendMessage", "busy", "awaiting_llm")),
            ev(6, BudgetAlert("session", SID, "usd", 500, 600, 1000, 0.5)),
        ],
        {
            ("turnlog_approvals_total", (("outcome", "granted"),)): 1,
            ("turnlog_approvals_total", (("outcome", "denied"),)): 1,
            ("turnlog_approvals_total", (("outcome", "expired"),)): 1,
            (
                "turnlog_budget_exceeded_total",
                (("scope", BudgetScope.TURN.value), ("unit", BudgetUnit.TOKENS.value)),
            ): 1,
            ("turnlog_requests_rejected_total", (("request_type", "SendMessage"),)): 1,
            ("turnlog_budget_alerts_total", (("scope", "session"), ("unit", "usd"))): 1,
        },
    ),
    (
        "a late answer of an abandoned call still costs, counted apart; the message queue",
        [
            ev(1, requested("c9", "scripted-small")),
            ev(
                2,
                LlmCallCompleted(
                    "c9",
                    "scripted-small",
                    "late",
                    (),
                    "end_turn",
                    USAGE,
                    7,
                    10,
                    1,
                    discarded="late",
                ),
            ),
            ev(3, MessageQueued("next one", 1)),
            ev(4, QueuedMessageDropped(3, "r9")),
        ],
        {
            ("turnlog_llm_calls_total", (("model", "scripted-small"), ("outcome", "late"))): 1,
            ("turnlog_llm_cost_usd_total", (("model", "scripted-small"),)): 7e-9,
            ("turnlog_messages_queued_total", ()): 1,
            ("turnlog_queued_messages_dropped_total", ()): 1,
        },
    ),
]


@pytest.mark.parametrize(("why", "events", "expected"), CASES, ids=[c[0] for c in CASES])
def test_committed_events_move_their_metrics(
    metrics: SessionMetrics,
    why: str,
    events: list[Event],
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> None:
    metrics.committed([(None, None, events)], 0.004)
    got = values(metrics)
    for key, value in expected.items():
        assert got.get(key) == pytest.approx(value), (why, key, got.get(key))
    assert got[("turnlog_transaction_duration_seconds_count", ())] == 1


def test_an_uncommitted_transaction_counts_nothing(metrics: SessionMetrics) -> None:
    stats = metrics.worker.stats
    telemetry.batch_begin(stats)
    telemetry.input_traceparent(
        None, None, [ev(1, TurnStarted(1)), ev(2, TurnFailed(1, "x", "Guard"))], None
    )
    telemetry.batch_begin(stats)  # the next transaction began: the first did not commit
    telemetry.batch_committed()
    got = values(metrics)
    assert ("turnlog_turns_total", (("agent", "calc"), ("outcome", "failed"))) not in got
    telemetry.batch_begin(stats)
    telemetry.input_traceparent(None, None, [ev(3, TurnFailed(1, "x", "Guard"))], None)
    telemetry.batch_committed()
    got = values(metrics)
    assert got[("turnlog_turns_total", (("agent", "calc"), ("outcome", "failed")))] == 1


def test_the_workers_own_counters_are_read_not_kept_twice(metrics: SessionMetrics) -> None:
    metrics.worker.stats["dlq"] += 3
    metrics.worker.stats["inputs"] += 7
    metrics.effects.stats["started"] += 2
    got = values(metrics)
    assert got[("turnlog_dlq_records_total", ())] == 3
    assert got[("turnlog_inputs_total", ())] == 7
    assert got[("turnlog_effects_started_total", ())] == 2
    metrics.worker.stats["brand_new_counter"] = 5  # a counter added later still shows
    assert values(metrics)[("turnlog_session_worker_brand_new_counter_total", ())] == 5


def test_shared_rate_limit_admissions_are_counted(metrics: SessionMetrics) -> None:
    from streams.admission import PostgresAdmissions

    assert metrics.effects is not None
    store = PostgresAdmissions("postgresql://127.0.0.1:1/none")  # never connects here
    metrics.effects.admissions = store
    store.stats.update(admitted=7, limited=2)
    got = values(metrics)
    assert got[("turnlog_admissions_admitted_total", ())] == 7
    assert got[("turnlog_admissions_limited_total", ())] == 2
