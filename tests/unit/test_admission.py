"""Shared rate limits (per agent, per client) in the pure core: the admission flow as a
case table through decide — a message waits (AdmissionRequested), then is admitted (its
turn starts with the recorded text), limited (AdmissionDecided naming the limit and when
to retry, no turn), or ended by a cancel or close while it waits; a duplicate or stale
outcome is a RequestRejected that changes nothing. Plus: the effect the shell runs, the
limit keys, a guarded (redacted) text, folds and snapshots agreeing at every step, and
definition hashes of per-session limits unchanged by the new fields."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from agents.definitions import definition_hash
from agents.effects import AdmissionEffect, pending_effects, started_effects
from agents.events import (
    AdmissionDecided,
    AdmissionRequested,
    CancelTurn,
    CloseSession,
    CompleteAdmission,
    RequestRejected,
    SendMessage,
    UserMessageReceived,
)
from agents.fold import fold
from agents.ratelimit import RateLimit, admission_key
from agents.state_codec import state_from_dict, state_to_dict
from tests.unit.test_fsm_support import Driver, agent, make_registry, types

PER_AGENT = agent("shared", rate_limit={"per": "agent", "requests_per_minute": 2})
PER_CLIENT = agent(
    "perclient",
    rate_limit={"per": "client", "requests_per_minute": 1, "window_s": 5},
    guardrails=[
        {"name": "keys", "on": "input", "kind": "regex", "pattern": r"sk-\w+", "action": "redact"}
    ],
)
QUEUED = agent(
    "patient",
    rate_limit={"per": "agent", "requests_per_minute": 1, "on_limit": "queue", "max_wait_s": 2},
)
REGISTRY = make_registry(PER_AGENT, PER_CLIENT, QUEUED)
LIMITED_REASON = (
    "rate_limit.requests_per_minute (per agent) exceeded: 2 messages in the last 60 s; "
    "retry after 12.500 s"
)


def _consistent(d: Driver) -> None:
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state


def _waiting(agent_name: str = "shared", text: str = "hello", client: str | None = None) -> Driver:
    d = Driver(REGISTRY)
    req = replace(d.request(SendMessage(text), agent=agent_name), client=client)
    events = d.send_request(req)
    assert types(events)[0] == "SessionStarted" and types(events)[-1] == "AdmissionRequested"
    assert d.state.phase.value == "admitting" and d.state.turn is None
    _consistent(d)
    return d


# (outcome, expected events, expected phase, admission left pending)
CASES: list[tuple[Any, list[str], str, bool]] = [
    (
        CompleteAdmission("s1-r1", True),
        ["AdmissionDecided", "TurnStarted", "UserMessageReceived", "LlmCallRequested"],
        "awaiting_llm",
        False,
    ),
    (
        CompleteAdmission("s1-r1", False, "rate_limit.requests_per_minute", LIMITED_REASON, 12_500),
        ["AdmissionDecided"],
        "idle",
        False,
    ),
    (CancelTurn(reason="changed my mind"), ["AdmissionDecided"], "idle", False),
    (CloseSession(), ["AdmissionDecided", "SessionClosed"], "closed", False),
    # an outcome for another admission (stale, or a duplicate request id): nothing changes
    (CompleteAdmission("s1-r9", True), ["RequestRejected"], "admitting", True),
    # a second message while the first waits: one at a time
    (SendMessage("another"), ["RequestRejected"], "admitting", True),
]


@pytest.mark.parametrize(("outcome", "expected", "phase", "pending"), CASES)
def test_the_admission_flow(outcome: Any, expected: list[str], phase: str, pending: bool) -> None:
    d = _waiting()
    before = d.state
    events = d.send(outcome)
    assert types(events) == expected
    assert d.state.phase.value == phase
    assert (d.state.admission is not None) == pending
    if expected == ["RequestRejected"]:
        assert d.state._replace(last_seq=before.last_seq) == before
    decided = [e.payload for e in events if isinstance(e.payload, AdmissionDecided)]
    if isinstance(outcome, CompleteAdmission) and decided:
        assert decided[0].admitted == outcome.admitted
        assert decided[0].reason == outcome.reason
        assert decided[0].retry_after_ms == outcome.retry_after_ms
    _consistent(d)


def test_admitted_turn_runs_the_recorded_text_and_a_duplicate_outcome_is_ignored() -> None:
    d = _waiting(text="what is 2+2?")
    d.send(CompleteAdmission("s1-r1", True))
    received = [e.payload for e in d.log if isinstance(e.payload, UserMessageReceived)]
    assert [r.text for r in received] == ["what is 2+2?"]
    again = d.send(CompleteAdmission("s1-r1", True))
    assert types(again) == ["RequestRejected"]
    p = again[0].payload
    assert isinstance(p, RequestRejected) and "CompleteAdmission is not accepted" in p.reason
    d.answer("4")
    assert d.state.phase.value == "idle"
    # the next message waits for admission again
    assert types(d.send(SendMessage("and 3+3?"))) == ["AdmissionRequested"]
    _consistent(d)


def test_a_limited_message_names_the_limit_and_when_to_retry() -> None:
    d = _waiting()
    events = d.send(
        CompleteAdmission("s1-r1", False, "rate_limit.requests_per_minute", LIMITED_REASON, 12_500)
    )
    p = events[0].payload
    assert isinstance(p, AdmissionDecided) and not p.admitted
    assert p.reason is not None and p.reason.startswith(
        "rate_limit.requests_per_minute (per agent)"
    )
    assert "retry after 12.500 s" in p.reason and p.retry_after_ms == 12_500
    assert d.state.turns == 0
    assert not any(isinstance(e.payload, UserMessageReceived) for e in d.log)
    # the session takes the next message (a retry) as a new admission
    assert types(d.send(SendMessage("retry"), advance=13)) == ["AdmissionRequested"]


def test_the_effect_the_shell_runs_and_its_keys() -> None:
    d = _waiting(client="team-a")
    (effect,) = pending_effects(d.state)
    assert isinstance(effect, AdmissionEffect) and effect.effect_id == "s1-r1"
    assert started_effects(d.log[-1:], d.state) == [effect]
    req = effect.requested
    assert (req.key, req.requests_per_minute, req.window_ms) == ("agent:shared", 2, 60_000)
    assert req.client == "team-a" and req.on_limit == "reject" and req.max_wait_ms == 0
    d.send(CancelTurn())
    assert pending_effects(d.state) == []


def test_per_client_keys_and_a_redacted_text_never_recorded() -> None:
    d = _waiting("perclient", "my key is sk-abc123", client="svc:billing")
    requested = [e.payload for e in d.log if isinstance(e.payload, AdmissionRequested)]
    assert requested[0].key == "client:svc:billing" and requested[0].window_ms == 5_000
    assert "sk-abc123" not in requested[0].text
    assert types(d.log) == ["SessionStarted", "GuardrailTripped", "AdmissionRequested"]
    assert admission_key(RateLimit(per="client"), "a", None) == "client:-"


def test_queue_mode_carries_its_wait_and_a_busy_session_refuses_messages() -> None:
    d = _waiting("patient")
    (effect,) = pending_effects(d.state)
    assert isinstance(effect, AdmissionEffect)
    assert effect.requested.on_limit == "queue" and effect.requested.max_wait_ms == 2_000
    d.send(CompleteAdmission("s1-r1", True, waited_ms=1_500))
    rejected = d.send(SendMessage("during the turn"))
    assert types(rejected) == ["RequestRejected"]
    p = rejected[0].payload
    assert isinstance(p, RequestRejected) and "does not queue messages" in p.reason


def test_a_per_session_limit_keeps_its_definition_hash() -> None:
    old = agent("a", rate_limit={"requests_per_minute": 3})
    same = agent("a", rate_limit={"requests_per_minute": 3, "window_s": 60, "on_limit": "reject"})
    assert definition_hash(old) == definition_hash(same)
    assert definition_hash(old) != definition_hash(
        agent("a", rate_limit={"requests_per_minute": 3, "window_s": 10})
    )


def test_a_waiting_admission_is_live_so_a_takeover_restarts_it() -> None:
    from agents.snapshots import is_live

    d = _waiting()
    assert is_live(d.state.phase) and pending_effects(d.state)
    d.send(CompleteAdmission("s1-r1", False, "rate_limit.requests_per_minute", "x", 5))
    assert not is_live(d.state.phase) and pending_effects(d.state) == []
