"""Shared rate limits (per agent, per client) on the live platform: real broker, real
Postgres (table rate_admissions), real session workers and the scripted model of
tests/data/ratelimits.

- per agent, two `turnlog worker session` processes owning different partitions: many
  sessions of one agent, more messages than the limit, sent at once — exactly the limit
  is admitted (their turns complete), the rest are answered AdmissionDecided(admitted =
  false) naming the limit and when to retry; both workers admitted some; the table
  holds one row per message (the admitted ones counted), the events say the same;
- queued (on_limit = "queue"): a message over the limit waits for the window and is
  admitted after it (AdmissionDecided.waited_ms), and a CancelTurn ends one that waits;
- per client (a worker in this process): each requester identity has its own window, a
  message without one shares `client:-`; a re-run admission (the same request id)
  answers the same and counts once; the client library reports a limited message as
  rejected with the limit's reason.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from agents.agentfile import registry_from_file
from agents.events import (
    AdmissionDecided,
    AdmissionRequested,
    CancelTurn,
    SendMessage,
    SessionStarted,
    TurnCompleted,
)
from agents.providers.scripted import ScriptedProvider
from streams.admission import PostgresAdmissions
from streams.partitioning import partition_for
from streams.topics import TopicNames
from tests.support.harness import (
    EventLog,
    RequestSender,
    WorkerGroup,
    user_message,
    wait_until,
    worker_env,
)
from tests.support.live import live_platform, new_session_id, payloads
from turnlog.cli import app as cli_app
from turnlog.cli import load_extensions
from turnlog.cli import session as cli_session
from turnlog.client import Client

DATA = Path(__file__).resolve().parents[1] / "data" / "ratelimits"
PARTITIONS = 4


def _agents(tmp_path: Path, name: str, limit: str) -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(
        f"""
[agents.{name}]
model = "scripted-small"
system_prompt = "You answer briefly. (live shared rate limits test)"
max_tokens = 32
[agents.{name}.rate_limit]
{limit}
""",
        encoding="utf-8",
    )
    return path


def _rows(database_url: str, key: str) -> list[tuple[str, bool, str | None]]:
    with psycopg.connect(database_url) as conn:
        return list(
            conn.execute(
                "SELECT entry_id, admitted, limit_name FROM rate_admissions WHERE limit_key = %s "
                "AND kind = 'message' ORDER BY at",
                (key,),
            ).fetchall()
        )


async def test_a_per_agent_limit_shared_by_two_worker_processes_holds(
    kafka_bootstrap: str,
    names: TopicNames,
    unique_prefix: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    agent = f"shared_{secrets.token_hex(3)}"
    limit, sent = 4, 10
    agents = _agents(tmp_path, agent, 'per = "agent"\nrequests_per_minute = 4\nwindow_s = 300\n')
    env = worker_env(
        kafka_bootstrap,
        unique_prefix,
        partitions=PARTITIONS,
        agents=agents,
        script=DATA / "script.yaml",
        extra={"DATABASE_URL": database_url},
    )
    async with (
        WorkerGroup(env, tmp_path / "logs") as group,
        EventLog(kafka_bootstrap, names.events) as log,
    ):
        w1, w2 = group.start("w1"), group.start("w2")

        def split() -> tuple[set[int], set[int]] | None:
            a, b = w1.owned_partitions(), w2.owned_partitions()
            return (a, b) if a and b and len(a | b) == PARTITIONS and not a & b else None

        owned = await wait_until(
            split, 60, "two workers owning the partitions", diagnose=group.tails
        )
        # Sessions on both workers' partitions, the same number on each.
        sids: list[str] = []
        per_worker = [0, 0]
        while len(sids) < sent:
            sid = new_session_id("rl")
            w = 0 if partition_for(sid, PARTITIONS) in owned[0] else 1
            if per_worker[w] < sent // 2:
                per_worker[w] += 1
                sids.append(sid)
        async with RequestSender(kafka_bootstrap, names) as sender:
            await asyncio.gather(
                *(
                    sender.request(replace(user_message(sid, "hi", agent=agent), client="load"))
                    for sid in sids
                )
            )

        def decided() -> list[AdmissionDecided]:
            return [p for sid in sids for p in payloads(log.of(sid), AdmissionDecided)]

        await log.wait_for(lambda: len(decided()) == sent, 60, "every admission decided")
        admitted = [p for p in decided() if p.admitted]
        limited = [p for p in decided() if not p.admitted]
        assert len(admitted) == limit, decided()
        assert len(limited) == sent - limit
        for p in limited:
            assert p.reason is not None
            assert p.reason.startswith("rate_limit.requests_per_minute (per agent) exceeded")
            assert "retry after" in p.reason and p.retry_after_ms > 0
        # Both workers asked the shared counters, and the admitted turns ran.
        admitted_sids = {sid for sid in sids if payloads(log.of(sid), AdmissionDecided)[0].admitted}
        workers = {0 if partition_for(sid, PARTITIONS) in owned[0] else 1 for sid in sids}
        assert workers == {0, 1}
        await log.wait_for(
            lambda: all(log.turns_completed(sid) == 1 for sid in admitted_sids),
            60,
            "the admitted turns complete",
        )
        assert all(log.turns_completed(sid) == 0 for sid in set(sids) - admitted_sids)
        # The table holds one row per message, the admitted ones those of the events.
        rows = _rows(database_url, f"agent:{agent}")
        assert len(rows) == sent
        request_of = {sid: f"{sid}:u1" for sid in sids}
        assert {r[0] for r in rows if r[1]} == {request_of[s] for s in admitted_sids}
        for worker in (w1, w2):
            assert worker.alive, worker.tail()


async def test_a_per_client_limit_counts_each_requester_apart(
    kafka_bootstrap: str,
    names: TopicNames,
    unique_prefix: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = f"perclient_{secrets.token_hex(3)}"
    registry = registry_from_file(
        _agents(tmp_path, agent, 'per = "client"\nrequests_per_minute = 2\nwindow_s = 300\n')
    )
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    alice = f"alice-{secrets.token_hex(2)}"
    async with live_platform(kafka_bootstrap, names, registry=registry, provider=provider) as live:
        store = PostgresAdmissions(database_url)
        live.worker.process.effects.admissions = store
        plan = [(alice, new_session_id("a")) for _ in range(3)] + [("bob-x", new_session_id("b"))]
        for client, sid in plan:
            req = live.client.request(sid, SendMessage("hello"), agent=agent)
            await live.client.send_request(replace(req, client=client))
        sids = [sid for _, sid in plan]

        def decided(sid: str) -> list[AdmissionDecided]:
            return live.log.of_type(sid, AdmissionDecided)

        await live.log.wait_until(lambda: all(decided(s) for s in sids), "admissions", 30)
        # Alice's three sessions are on different partitions: their admissions run in
        # whatever order their partitions decide them, and any two of them get her two.
        verdicts = [decided(sid)[0].admitted for sid in sids]
        assert sorted(verdicts[:3]) == [False, True, True] and verdicts[3], verdicts
        first = next(s for s, ok in zip(sids, verdicts, strict=True) if ok)
        refused = next(s for s, ok in zip(sids, verdicts, strict=True) if not ok)
        reason = decided(refused)[0].reason or ""
        assert reason.startswith("rate_limit.requests_per_minute (per client) exceeded")
        requested = live.log.of_type(first, AdmissionRequested)[0]
        assert requested.key == f"client:{alice}" and requested.client == alice
        await live.log.wait_until(
            lambda: all(live.log.of_type(s, TurnCompleted) for s in (first, sids[3])),
            "admitted turns",
            30,
        )
        # A re-run of the refused admission (a crash, a takeover) answers the same and
        # counts once: the window of alice still holds two admitted messages.
        again = await store.admit(refused, live.log.of_type(refused, AdmissionRequested)[0])
        assert not again.admitted and again.reason == reason
        rows = _rows(database_url, f"client:{alice}")
        assert sorted(r[1] for r in rows) == [False, True, True]
        # Through the Python client: its identity rides on the request; bob's second
        # message is admitted (its turn completes), alice's fourth is reported rejected
        # with the limit's reason.
        async with Client(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix) as c:
            sent = await c.send_message("hi", agent=agent, client="bob-x")
            done = await c.outcome(sent, until="turn", timeout=30)
            assert done.status == "completed", done
            sent = await c.send_message("hi", agent=agent, client=alice)
            limited = await c.outcome(sent, until="turn", timeout=30)
        assert limited.status == "rejected" and limited.exit_code == 5
        assert (limited.reason or "").startswith("rate_limit.requests_per_minute (per client)")
        # The CLI (in a thread of this process, on this test's topics): --client rides
        # on the message and is recorded on the session's start.
        monkeypatch.setattr(
            cli_session,
            "_client",
            lambda: Client(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix),
        )
        load_extensions()
        argv = ["send", "hi", "--agent", agent, "--client", "carol-x", "--json"]
        result = await asyncio.to_thread(CliRunner().invoke, cli_app, argv)
        assert result.exit_code == 0, result.output
        sid = json.loads(result.stdout)["session_id"]
        started = live.log.of_type(sid, SessionStarted) or await _started(live, sid)
        assert started[0].client == "carol-x"
        assert live.log.of_type(sid, AdmissionRequested)[0].key == "client:carol-x"
        await store.close()


async def _started(live: Any, sid: str) -> list[SessionStarted]:
    await live.log.wait_until(lambda: live.log.of_type(sid, SessionStarted), "started", 20)
    return list(live.log.of_type(sid, SessionStarted))


async def test_a_queued_admission_waits_for_the_window_and_a_cancel_ends_it(
    kafka_bootstrap: str, names: TopicNames, database_url: str, tmp_path: Path
) -> None:
    agent = f"patient_{secrets.token_hex(3)}"
    registry = registry_from_file(
        _agents(
            tmp_path,
            agent,
            'per = "agent"\nrequests_per_minute = 1\nwindow_s = 1.5\n'
            'on_limit = "queue"\nmax_wait_s = 10\n',
        )
    )
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    async with live_platform(kafka_bootstrap, names, registry=registry, provider=provider) as live:
        store = PostgresAdmissions(database_url)
        live.worker.process.effects.admissions = store
        first, second, third = (new_session_id(x) for x in ("q1", "q2", "q3"))
        for sid in (first, second):
            await live.client.send(sid, SendMessage("hello"), agent=agent)

        def decided(sid: str) -> list[AdmissionDecided]:
            return live.log.of_type(sid, AdmissionDecided)

        await live.log.wait_until(
            lambda: decided(first) or decided(second), "the first admission", 20
        )
        # A third waits behind the one still waiting: cancelled, it never starts.
        await live.client.send(third, SendMessage("hello"), agent=agent)
        await live.log.wait_until(
            lambda: live.log.of_type(third, AdmissionRequested), "the third asks", 20
        )
        await live.client.send(third, CancelTurn(reason="not now"))
        await live.log.wait_until(
            lambda: decided(first) and decided(second) and decided(third), "the rest", 20
        )
        now, later = sorted((decided(first)[0], decided(second)[0]), key=lambda p: p.waited_ms)
        assert now.admitted and later.admitted, (now, later)
        assert later.waited_ms > 0
        cancelled = decided(third)[0]
        assert not cancelled.admitted and cancelled.reason == "not now"
        await live.log.wait_until(
            lambda: all(live.log.of_type(s, TurnCompleted) for s in (first, second)),
            "both turns",
            20,
        )
        assert not live.log.of_type(third, TurnCompleted)
        await store.close()


async def test_a_shared_tokens_limit_counts_the_calls_tokens(
    kafka_bootstrap: str, names: TopicNames, database_url: str, tmp_path: Path
) -> None:
    agent = f"tokens_{secrets.token_hex(3)}"
    # Every answer of the script uses 110 tokens: two calls spend the window.
    registry = registry_from_file(
        _agents(tmp_path, agent, 'per = "agent"\ntokens_per_minute = 200\nwindow_s = 300\n')
    )
    provider = ScriptedProvider.from_file(DATA / "script.yaml")
    async with live_platform(kafka_bootstrap, names, registry=registry, provider=provider) as live:
        store = PostgresAdmissions(database_url)
        live.worker.process.effects.admissions = store
        sids = [new_session_id(f"t{i}") for i in range(3)]
        for sid in sids:
            await live.client.send(sid, SendMessage("hello"), agent=agent)
            await live.log.wait_until(
                lambda sid=sid: live.log.of_type(sid, AdmissionDecided), "decided", 20
            )
            if live.log.of_type(sid, AdmissionDecided)[0].admitted:
                await live.log.wait_until(
                    lambda sid=sid: live.log.of_type(sid, TurnCompleted), "its turn", 20
                )
        verdicts = [live.log.of_type(sid, AdmissionDecided)[0] for sid in sids]
        assert [v.admitted for v in verdicts] == [True, True, False]
        reason = verdicts[2].reason or ""
        assert reason.startswith("rate_limit.tokens_per_minute (per agent) exceeded: 220 tokens")
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT entry_id, tokens FROM rate_admissions WHERE limit_key = %s "
                "AND kind = 'tokens' ORDER BY at",
                (f"agent:{agent}",),
            ).fetchall()
            totals = conn.execute(
                "SELECT messages, tokens FROM rate_counters WHERE limit_key = %s",
                (f"agent:{agent}",),
            ).fetchone()
        assert [r[1] for r in rows] == [110, 110] and all(r[0].startswith("llm:") for r in rows)
        assert totals == (2, 220)
        await store.close()


async def test_counters_that_cannot_be_asked_admit_nothing() -> None:
    # A port nothing listens on: the connection is refused at once.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = PostgresAdmissions(
        f"postgresql://nobody:secret@127.0.0.1:{port}/none", connect_timeout_s=1, timeout_s=3
    )
    req = AdmissionRequested("r1", "agent:a", "hi", 60_000, requests_per_minute=5)
    outcome = await store.admit("s1", req)
    assert not outcome.admitted and outcome.limit == "rate_limit.admission"
    assert "secret" not in (outcome.reason or "") and "not admitted" in (outcome.reason or "")
    await store.close()
