"""What users query: fork branches and cost views, projected through real Kafka into
real Postgres, checked against values computed from the events alone."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agents.events import (
    ChildSessionRequested,
    ContextCompacted,
    Event,
    LlmCallCompleted,
    SessionForked,
    SessionStarted,
    TurnCompleted,
    TurnStarted,
    Usage,
    UserMessageReceived,
    event_id_for,
)
from agents.pricing import cost_nanos
from projections.migrate import migrate
from projections.projector import Projector, ProjectorConfig
from projections.queries import costs, show_session
from streams.topics import ensure_topics
from tests.support.projections import produce_events, role_url
from tests.support.synthetic import generate, interleave

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _ev(sid: str, seq: int, payload: Any, agent: str = "support") -> Event:
    return Event(event_id_for(sid, seq), sid, seq, T0 + timedelta(minutes=seq), agent, payload)


def _answer(call: str, text: str) -> LlmCallCompleted:
    usage = Usage(100, 10)
    return LlmCallCompleted(
        call,
        "claude-haiku-4-5",
        text,
        (),
        "end_turn",
        usage,
        cost_nanos("claude-haiku-4-5", usage),
        5,
        1,
    )


def _fork_tree() -> list[Event]:
    """root: q1 a1 q2 a2; fork1 branches off root after a1 (seq 6) and asks q3;
    fork2 branches off fork1 after q3 (seq 9); the root goes on independently."""
    done = TurnCompleted(1, 4, Usage(), 0, 1)
    return [
        _ev("root", 1, SessionStarted("support", "h")),
        _ev("root", 2, TurnStarted(1)),
        _ev("root", 3, UserMessageReceived("q1")),
        _ev("root", 4, _answer("r1", "a1")),
        _ev("root", 5, done),
        _ev("root", 6, TurnStarted(2)),
        _ev("root", 7, UserMessageReceived("q2")),
        _ev("root", 8, _answer("r2", "a2")),
        _ev("fork1", 6, SessionForked("root", 5, "support", "h")),
        _ev("fork1", 7, TurnStarted(2)),
        _ev("fork1", 8, UserMessageReceived("q3")),
        _ev("fork1", 9, _answer("f1", "a3")),
        _ev("fork2", 9, SessionForked("fork1", 8, "support", "h")),
        _ev("fork2", 10, _answer("f2", "a4")),
    ]


@dataclass(frozen=True)
class Projected:
    url: str
    events: list[Event]
    env: dict[str, str]


@pytest.fixture(scope="module")
def projected(kafka_bootstrap: str, topic_prefix: str, database_admin_url: str) -> Projected:
    import secrets

    from tests.conftest import create_database

    prefix = f"{topic_prefix}{secrets.token_hex(3)}."
    admin = create_database(database_admin_url, f"turnlog_q_{secrets.token_hex(4)}")
    migrate(admin)
    names = asyncio.run(ensure_topics(kafka_bootstrap, prefix, partitions=3)).names
    events = [*_fork_tree(), *interleave(generate(3000, seed=9, base=T0), seed=9)]
    asyncio.run(produce_events(kafka_bootstrap, names.events, events))
    url = role_url(admin)
    config = ProjectorConfig(kafka_bootstrap, url, names.events, None, group_id=None)
    asyncio.run(Projector(config).run(until_caught_up=True))
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TURNLOG_TOPIC_PREFIX": prefix,
    }
    return Projected(url, events, env)


def _branch(url: str, session_id: str) -> list[tuple[str, int, str]]:
    with psycopg.connect(url) as conn:
        return [
            (sid, seq, content)
            for sid, seq, content in conn.execute(
                "SELECT session_id, seq, content FROM branch_entries(%s)", (session_id,)
            )
        ]


def test_a_fork_branch_is_the_shared_prefix_plus_its_own_entries(projected: Projected) -> None:
    assert _branch(projected.url, "root") == [
        ("root", 3, "q1"),
        ("root", 4, "a1"),
        ("root", 7, "q2"),
        ("root", 8, "a2"),
    ]
    assert _branch(projected.url, "fork1") == [
        ("root", 3, "q1"),
        ("root", 4, "a1"),
        ("fork1", 8, "q3"),
        ("fork1", 9, "a3"),
    ]
    assert _branch(projected.url, "fork2") == [
        ("root", 3, "q1"),
        ("root", 4, "a1"),
        ("fork1", 8, "q3"),
        ("fork2", 10, "a4"),
    ]


def test_branches_of_a_fork_tree_are_listed_from_any_member(projected: Projected) -> None:
    with psycopg.connect(projected.url) as conn:
        rows = conn.execute(
            "SELECT session_id, forked_from_session_id, forked_at_seq, depth, branch_entries, "
            "is_requested FROM session_branches('fork1')"
        ).fetchall()
    assert rows == [
        ("root", None, None, 0, 4, False),
        ("fork1", "root", 5, 1, 4, True),
        ("fork2", "fork1", 8, 2, 4, False),
    ]


def test_first_own_entry_links_to_the_branch_point(projected: Projected) -> None:
    with psycopg.connect(projected.url) as conn:
        links = conn.execute(
            "SELECT session_id, seq, parent_session_id, parent_seq FROM entries "
            "WHERE session_id IN ('fork1', 'fork2') ORDER BY seq"
        ).fetchall()
    assert links == [("fork1", 8, "root", 5), ("fork1", 9, "fork1", 8), ("fork2", 10, "fork1", 8)]


def test_every_synthetic_fork_branch_matches_its_events(projected: Projected) -> None:
    by_session: dict[str, list[Event]] = defaultdict(list)
    for e in projected.events:
        by_session[e.session_id].append(e)
    forks = [s for s, evs in by_session.items() if isinstance(evs[0].payload, SessionForked)]
    assert len(forks) >= 5
    with psycopg.connect(projected.url) as conn:
        own = {
            sid: [
                q
                for (q,) in conn.execute(
                    "SELECT seq FROM entries WHERE session_id = %s ORDER BY seq", (sid,)
                )
            ]
            for sid in by_session
        }
    for sid in forks:
        # Walk up the fork chain from the events themselves.
        expected: list[tuple[str, int]] = []
        current, bound = sid, None
        while True:
            expected = [
                (current, q) for q in own[current] if bound is None or q <= bound
            ] + expected
            first = by_session[current][0].payload
            if not isinstance(first, SessionForked):
                break
            bound = first.at_seq if bound is None else min(bound, first.at_seq)
            current = first.source_session_id
        assert [(s, q) for s, q, _ in _branch(projected.url, sid)] == expected, sid


def _priced(events: list[Event]) -> dict[str, list[tuple[str, Usage, datetime]]]:
    """Each session's priced items (model, usage, when), straight from the events."""
    items: dict[str, list[tuple[str, Usage, datetime]]] = defaultdict(list)
    for e in events:
        p = e.payload
        priced = isinstance(p, LlmCallCompleted) or (
            isinstance(p, ContextCompacted) and p.model is not None
        )
        if priced:
            assert isinstance(p, (LlmCallCompleted, ContextCompacted)) and p.model is not None
            items[e.session_id].append((p.model, p.usage, e.occurred_at))
    return items


def test_costs_equal_usage_at_catalog_prices_with_children_rolled_up(
    projected: Projected,
) -> None:
    items = _priced(projected.events)
    own = {s: sum(cost_nanos(m, u) for m, u, _ in xs) for s, xs in items.items()}
    children: dict[str, list[str]] = defaultdict(list)
    for e in projected.events:
        if isinstance(e.payload, ChildSessionRequested):
            children[e.session_id].append(e.payload.child_session_id)
    assert sum(len(c) for c in children.values()) >= 20

    def total(sid: str) -> int:
        return own.get(sid, 0) + sum(total(c) for c in children.get(sid, []))

    rows = {r["session_id"]: r for r in costs(projected.url, "session", limit=100_000)}
    sessions = {e.session_id for e in projected.events}
    assert set(rows) == sessions
    for sid in sessions:
        assert rows[sid]["own_cost_nanos"] == own.get(sid, 0), sid
        assert rows[sid]["total_cost_nanos"] == total(sid), sid
    rolled = [s for s in sessions if children.get(s)]
    assert any(rows[s]["total_cost_nanos"] > rows[s]["own_cost_nanos"] for s in rolled)

    by_model: dict[str, int] = defaultdict(int)
    by_day: dict[str, int] = defaultdict(int)
    for xs in items.values():
        for model, usage, at in xs:
            by_model[model] += cost_nanos(model, usage)
            by_day[at.date().isoformat()] += cost_nanos(model, usage)
    assert {r["model"]: r["cost_nanos"] for r in costs(projected.url, "model")} == by_model
    assert {r["day"].isoformat(): r["cost_nanos"] for r in costs(projected.url, "day")} == by_day

    agent_of = {
        e.session_id: e.agent
        for e in projected.events
        if isinstance(e.payload, (SessionStarted, SessionForked))
    }
    parent = {c: p for p, cs in children.items() for c in cs}

    def root(sid: str) -> str:
        while sid in parent:
            sid = parent[sid]
        return sid

    own_by_agent: dict[str, int] = defaultdict(int)
    rolled_by_agent: dict[str, int] = defaultdict(int)
    for sid, nanos in own.items():
        own_by_agent[agent_of[sid]] += nanos
        rolled_by_agent[agent_of[root(sid)]] += nanos
    agents = {r["agent"]: r for r in costs(projected.url, "agent")}
    assert {a: r["own_cost_nanos"] for a, r in agents.items()} == own_by_agent
    assert {a: r["rolled_up_cost_nanos"] for a, r in agents.items()} == rolled_by_agent


def _cli(projected: Projected, *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "turnlog", *args, "--json"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        env=projected.env,
    )
    return json.loads(result.stdout)


def test_query_commands_print_the_views(projected: Projected) -> None:
    shown = _cli(projected, "show", "fork2")
    assert [(e["session_id"], e["content"]) for e in shown["entries"]] == [
        ("root", "q1"),
        ("root", "a1"),
        ("fork1", "q3"),
        ("fork2", "a4"),
    ]
    assert [b["session_id"] for b in shown["branches"]] == ["root", "fork1", "fork2"]
    direct = show_session(projected.url, "fork2")
    assert shown == json.loads(json.dumps(direct, default=lambda v: v.isoformat()))
    by_model = _cli(projected, "costs", "--by", "model")
    assert {r["model"] for r in by_model} >= {"claude-haiku-4-5", "claude-sonnet-4-5"}
    sessions = _cli(projected, "sessions", "--limit", "5")
    assert len(sessions) == 5
    assert sessions == sorted(sessions, key=lambda s: s["updated_at"], reverse=True)
