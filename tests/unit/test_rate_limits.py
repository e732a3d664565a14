"""Rate limits in the pure core: the window arithmetic as a case table over `check_rate`,
then through decide — a message over a limit is a RequestRejected naming the limit, its
value and when to retry, and changes nothing else; the verdict uses the worker's ingest
time, not the sender's claim; folding the log and restoring a snapshot give the same
window (so replay decides the same); a broken limit is refused naming the field. Shared
limits (per agent, per client) are tests/unit/test_admission.py's."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from agents.definitions import definition_hash, parse_definitions
from agents.errors import AgentDefinitionError
from agents.events import RequestRejected, SendMessage, Usage
from agents.fold import fold
from agents.fsm import decide_and_evolve
from agents.ratelimit import RateLimit, check_rate, record_rate
from agents.state_codec import state_from_dict, state_to_dict
from tests.unit.test_fsm_support import T0, Driver, agent, make_registry, types

S = 1_000_000  # µs


def _window(*entries: tuple[float, int, int]) -> tuple[tuple[int, int, int], ...]:
    w: tuple[tuple[int, int, int], ...] = ()
    for secs, msgs, toks in entries:
        w = record_rate(w, T0 + timedelta(seconds=secs), msgs, toks)
    return w


# (limit, window entries (seconds after T0, messages, tokens), now (s after T0),
#  expected limit name or None, expected retry_after_s)
CASES: list[tuple[dict[str, Any], list[tuple[float, int, int]], float, str | None, float]] = [
    ({"requests_per_minute": 2}, [(0, 1, 0)], 10, None, 0),
    ({"requests_per_minute": 2}, [(0, 1, 0), (5, 1, 0)], 10,
     "rate_limit.requests_per_minute", 50),
    # the oldest message left the window exactly a minute after it arrived
    ({"requests_per_minute": 2}, [(0, 1, 0), (5, 1, 0)], 60, None, 0),
    # three in the window, limit 2: two must leave, the second oldest at 5 s frees it
    ({"requests_per_minute": 2}, [(0, 1, 0), (5, 1, 0), (7, 1, 0)], 30,
     "rate_limit.requests_per_minute", 35),
    # LLM calls are not messages
    ({"requests_per_minute": 1}, [(0, 0, 500), (1, 0, 500)], 2, None, 0),
    ({"tokens_per_minute": 1000}, [(0, 1, 0), (1, 0, 600), (2, 0, 300)], 3, None, 0),
    ({"tokens_per_minute": 1000}, [(0, 1, 0), (1, 0, 600), (2, 0, 400)], 3,
     "rate_limit.tokens_per_minute", 58),
    # after the first call leaves, 400 remain: under the limit
    ({"tokens_per_minute": 1000}, [(1, 0, 600), (2, 0, 400)], 61, None, 0),
    ({"tokens_per_minute": 1000}, [(1, 0, 700), (2, 0, 200), (3, 0, 400)], 10,
     "rate_limit.tokens_per_minute", 51),
    # two calls must leave before the window is under the limit
    ({"tokens_per_minute": 500}, [(1, 0, 500), (2, 0, 400), (3, 0, 400)], 10,
     "rate_limit.tokens_per_minute", 52),
    ({"requests_per_minute": 5, "tokens_per_minute": 10}, [(0, 1, 0), (0.5, 0, 10)], 1,
     "rate_limit.tokens_per_minute", 59.5),
    ({}, [(0, 1, 0)] * 50, 1, None, 0),
]  # fmt: skip


@pytest.mark.parametrize(("limit", "entries", "now", "expected", "retry"), CASES)
def test_window_verdicts(
    limit: dict[str, Any],
    entries: list[tuple[float, int, int]],
    now: float,
    expected: str | None,
    retry: float,
) -> None:
    verdict = check_rate(RateLimit(**limit), _window(*entries), T0 + timedelta(seconds=now))
    if expected is None:
        assert verdict is None
        return
    assert verdict is not None
    assert verdict.limit == expected
    assert verdict.retry_after_s == pytest.approx(retry)
    assert verdict.retry_at == T0 + timedelta(seconds=now + retry)
    assert expected in verdict.reason() and f"retry after {retry:.3f} s" in verdict.reason()


def test_no_limit_means_no_verdict_and_the_window_forgets_after_a_minute() -> None:
    assert check_rate(None, _window((0, 1, 0)), T0) is None
    w = _window((0, 1, 0), (30, 0, 5), (61, 1, 0))
    assert [e[0] for e in w] == [30 * S + _us_t0(), 61 * S + _us_t0()]


def _us_t0() -> int:
    return record_rate((), T0, 0, 0)[0][0]


# --------------------------------------------------------------------------- through decide

LIMITED = agent("limited", rate_limit={"requests_per_minute": 2})
TOKENS = agent("tokens", rate_limit={"tokens_per_minute": 300})
REGISTRY = make_registry(LIMITED, TOKENS)


def _consistent(d: Driver) -> None:
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state


def test_a_message_over_the_requests_limit_is_rejected_naming_it() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("one"), agent="limited")
    d.answer("ok")
    d.send(SendMessage("two"), advance=10)  # 11 s after the first
    before = d.state
    rejected = d.send(SendMessage("three"), advance=9)  # a queued message counts too
    assert types(rejected) == ["RequestRejected"]
    reason = rejected[0].payload
    assert isinstance(reason, RequestRejected) and reason.request_type == "SendMessage"
    assert reason.reason.startswith("Session s1: rate_limit.requests_per_minute exceeded")
    assert "limit is 2 per minute per session" in reason.reason
    # the first message (at T0 + 1 s) leaves the window at T0 + 61 s; now is T0 + 21 s
    assert "retry after 40.000 s" in reason.reason
    assert d.state._replace(last_seq=before.last_seq) == before
    d.answer("ok", advance=1)
    # 61 s after the first message there is room for one more
    events = d.send(SendMessage("four"), advance=40)
    assert "UserMessageReceived" in types(events)
    _consistent(d)


def test_queued_messages_count_once() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("one"), agent="limited")
    assert types(d.send(SendMessage("queued"))) == ["MessageQueued"]
    # its turn starting later is not a second message
    d.answer("ok")
    assert len(d.state.rate) == 3  # two messages, one LLM call
    assert sum(m for _, m, _ in d.state.rate) == 2
    _consistent(d)


def test_tokens_per_minute_gates_the_next_message() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("one"), agent="tokens")
    d.answer("ok", usage=Usage(250, 60))  # 310 tokens, over 300
    rejected = d.send(SendMessage("two"))
    assert "rate_limit.tokens_per_minute exceeded: 310 tokens" in str(rejected[0].payload)
    ok = d.send(SendMessage("two"), advance=60)
    assert "UserMessageReceived" in types(ok)
    _consistent(d)


def test_the_verdict_uses_the_ingest_time_not_the_senders_claim() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("one"), agent="limited")
    d.answer("ok")
    d.send(SendMessage("two"))
    d.answer("ok")
    # The sender claims a time two minutes later; the worker took it 3 s after the last.
    req = d.request(SendMessage("three"), advance=120)
    events, _ = decide_and_evolve(
        d.state, req, REGISTRY, ingested_at=d.log[-1].occurred_at + timedelta(seconds=3)
    )
    assert types(events) == ["RequestRejected"]
    assert "rate_limit.requests_per_minute" in str(events[0].payload)
    # and a replay handing the same ingest time decides the same, byte for byte
    again, _ = decide_and_evolve(
        d.state, req, REGISTRY, ingested_at=d.log[-1].occurred_at + timedelta(seconds=3)
    )
    assert again == events


def test_an_agent_without_a_limit_is_never_limited_and_keeps_its_hash() -> None:
    d = Driver(REGISTRY)
    d.send(SendMessage("one"), agent="assistant")
    for i in range(20):
        d.answer("ok", advance=0.01)
        assert "UserMessageReceived" in types(d.send(SendMessage(f"m{i}"), advance=0.01))
    assert definition_hash(agent("a")) == definition_hash(agent("a", rate_limit=None))
    assert definition_hash(agent("a", rate_limit={"requests_per_minute": 1})) != (
        definition_hash(agent("a"))
    )
    _consistent(d)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"requests_per_minute": 0}, "rate_limit.requests_per_minute"),
        ({"tokens_per_minute": -5}, "rate_limit.tokens_per_minute"),
        ({"per": "tenant"}, "rate_limit.per"),
        ({"per": "agent", "window_s": 0}, "rate_limit.window_s"),
        ({"per": "client", "on_limit": "drop"}, "rate_limit.on_limit"),
        ({"rpm": 5}, "rate_limit.rpm"),
    ],
)
def test_a_broken_limit_is_refused_naming_the_field(spec: dict[str, Any], message: str) -> None:
    body = {"model": "scripted-small", "system_prompt": "p", "rate_limit": spec}
    with pytest.raises(AgentDefinitionError) as err:
        parse_definitions({"agents": {"g": body}}, "a.toml")
    assert "agent 'g'" in str(err.value) and message in str(err.value)
