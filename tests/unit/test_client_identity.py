"""The requester identity (Request.client) in the pure core: recorded on the session's
start and on every message it carries, kept in the state (folds and snapshots agree),
and bounded: an over-long or unprintable identity is a RequestRejected naming the
limit, with nothing else changed."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from agents.events import RequestRejected, SendMessage, SessionStarted, UserMessageReceived
from agents.fold import fold
from agents.limits import MAX_CLIENT_BYTES, client_problem
from agents.state_codec import state_from_dict, state_to_dict
from tests.unit.test_fsm_support import Driver, types


def _send(d: Driver, text: str, client: str | None, **kw: object) -> list:  # type: ignore[type-arg]
    return d.send_request(replace(d.request(SendMessage(text), **kw), client=client))  # type: ignore[arg-type]


def test_the_identity_is_recorded_on_the_start_and_on_each_message() -> None:
    d = Driver()
    events = _send(d, "hello", "team-a", agent="assistant")
    started = [e.payload for e in events if isinstance(e.payload, SessionStarted)]
    received = [e.payload for e in events if isinstance(e.payload, UserMessageReceived)]
    assert started[0].client == "team-a" and received[0].client == "team-a"
    assert d.state.client == "team-a"
    d.answer("hi")
    events = _send(d, "again", "svc:billing")
    received = [e.payload for e in events if isinstance(e.payload, UserMessageReceived)]
    assert received[0].client == "svc:billing"
    assert d.state.client == "team-a"  # the session's own identity is its start's
    assert fold(d.log, "s1") == d.state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(d.state)))) == d.state


def test_no_identity_is_none_and_costs_nothing_in_the_snapshot() -> None:
    d = Driver()
    _send(d, "hello", None, agent="assistant")
    assert d.state.client == ""
    assert "cl" not in state_to_dict(d.state)


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("x" * (MAX_CLIENT_BYTES + 1), "over the client identity limit (MAX_CLIENT_BYTES)"),
        ("é" * (MAX_CLIENT_BYTES // 2 + 1), "over the client identity limit (MAX_CLIENT_BYTES)"),
        ("tab\there", "is not a printable name"),
        (" padded", "is not a printable name"),
        ("", "is not a printable name"),
        ("nul\x00", "is not a printable name"),
    ],
)
def test_a_bad_identity_is_rejected_naming_the_limit(client: str, expected: str) -> None:
    d = Driver()
    _send(d, "hello", "ok", agent="assistant")
    d.answer("hi")
    before = d.state
    events = _send(d, "again", client)
    assert types(events) == ["RequestRejected"]
    reason = events[0].payload
    assert isinstance(reason, RequestRejected)
    assert "SendMessage rejected: client" in reason.reason and expected in reason.reason
    assert d.state._replace(last_seq=before.last_seq) == before


def test_client_problem_accepts_names() -> None:
    for ok in (None, "alice", "svc:billing/eu-1", "x" * MAX_CLIENT_BYTES, "équipe"):
        assert client_problem(ok) is None


# --------------------------------------------------------------------------- the HTTP API


def _http_request(tokens: dict[str, str], headers: dict[str, str], who: str | None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request as HttpRequest

    from turnlog.console.config import ConsoleConfig

    app = Starlette()
    app.state.config = ConsoleConfig(tokens=tokens)
    scope = {
        "type": "http",
        "app": app,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        **({"turnlog.identity": who} if who is not None else {}),
    }
    return HttpRequest(scope)


def test_the_http_api_takes_the_identity_from_the_token_else_the_header() -> None:
    from turnlog.console.api import CLIENT_HEADER, requester

    named = {"t" * 32: "team-a"}
    # Named tokens: the token's name; a header cannot claim another identity.
    assert requester(_http_request(named, {CLIENT_HEADER: "root"}, "team-a")) == "team-a"
    # Loopback without tokens: the documented header, self-declared; none without it.
    assert requester(_http_request({}, {CLIENT_HEADER: "svc:billing"}, None)) == "svc:billing"
    assert requester(_http_request({}, {}, None)) is None


def test_budget_scopes_of_clients_and_a_broken_client_budget_names_the_field() -> None:
    from agents.budget import parse_projects
    from agents.definitions import parse_definitions
    from agents.errors import AgentDefinitionError
    from agents.registry import AgentRegistry
    from streams.budgets import scopes_of

    body = {"model": "scripted-small", "system_prompt": "p"}
    data = {
        "agents": {"a": body},
        "clients": {"team-a": {"day_usd": 0.5, "alert_at": [0.5]}, "*": {"day_usd": 0.1}},
    }
    defs, _ = parse_definitions(data)
    clients = parse_projects(data["clients"], "f", "clients")
    scopes = scopes_of(AgentRegistry(defs), {}, clients)
    assert {(s.kind, s.key, s.limit, s.alert_at) for s in scopes} == {
        ("client", "team-a", 500_000_000, (0.5,)),
        ("client", "*", 100_000_000, ()),
    }
    with pytest.raises(AgentDefinitionError) as err:
        parse_definitions({"agents": {"a": body}, "clients": {"x": {"day_usd": 0}}}, "f.toml")
    assert "f.toml: client 'x': day_usd" in str(err.value)
