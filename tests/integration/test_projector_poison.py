"""Events Postgres cannot take never stop the projector: text it cannot store is stored
cleaned, and an event whose rows it still refuses is quarantined while its partition
goes on, exactly once, and can be retried.

Real Kafka, real Postgres (the projector connects as the application role); the refusal
is a real trigger in the test's own database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import structlog

from agents.events import (
    Event,
    SessionStarted,
    ToolCallCompleted,
    TurnStarted,
    UserMessageReceived,
    event_id_for,
)
from projections.audit import read_checkpoints, verify_audit_log
from projections.migrate import migrate
from projections.projector import Projector, ProjectorConfig
from projections.rebuild import rebuild, table_checksums
from projections.store import PROJECTION_TABLES
from streams.topics import TopicNames, ensure_topics
from tests.support.projections import produce_events, role_url, wait_until
from tests.support.synthetic import generate, interleave

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Env:
    bootstrap: str
    prefix: str
    names: TopicNames
    admin_url: str
    app_url: str

    def config(self, **kw: Any) -> ProjectorConfig:
        return ProjectorConfig(
            self.bootstrap,
            self.app_url,
            self.names.events,
            self.names.checkpoints,
            group_id=None,
            checkpoint_interval=0.0,
            **kw,
        )


@pytest.fixture
def env(kafka_bootstrap: str, unique_prefix: str, scratch_database_url: str) -> Env:
    migrate(scratch_database_url)
    # One partition: whatever stops a session would stop every session after it.
    names = asyncio.run(ensure_topics(kafka_bootstrap, unique_prefix, partitions=1)).names
    return Env(
        kafka_bootstrap, unique_prefix, names, scratch_database_url, role_url(scratch_database_url)
    )


def _rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def _session(sid: str, n: int, text: str = "hello") -> list[Event]:
    """seq 1 SessionStarted, then turns of (TurnStarted, UserMessageReceived)."""
    out = [Event(event_id_for(sid, 1), sid, 1, T0, "support", SessionStarted("support", "h"))]
    for seq in range(2, n + 1):
        payload = TurnStarted(seq // 2) if seq % 2 == 0 else UserMessageReceived(f"{text} {seq}")
        out.append(Event(event_id_for(sid, seq), sid, seq, T0, "support", payload))
    return out


def _interleave(*sessions: list[Event]) -> list[Event]:
    out: list[Event] = []
    for i in range(max(len(s) for s in sessions)):
        out.extend(s[i] for s in sessions if i < len(s))
    return out


def _run(env: Env) -> Projector:
    projector = Projector(env.config())
    asyncio.run(projector.run(until_caught_up=True))
    return projector


def _offsets(env: Env) -> tuple[int, int | None]:
    ((next_offset, stopped),) = _rows(
        env.app_url, "SELECT next_offset, stopped_offset FROM projector_offsets"
    )
    return int(next_offset), stopped


# ------------------------------------------------------------------ NUL


def _with_nul(events: list[Event]) -> tuple[list[Event], int]:
    """The synthetic stream with NULs in user messages and tool results (as a tool's
    output may carry them), and how many events got one."""
    out, n = [], 0
    for e in events:
        p = e.payload
        if isinstance(p, UserMessageReceived) and n % 2 == 0:
            e = dataclasses.replace(e, payload=UserMessageReceived("what is 6*7?\x00" + p.text))
            n += 1
        elif isinstance(p, ToolCallCompleted) and n % 2 == 1:
            e = dataclasses.replace(
                e, payload=dataclasses.replace(p, result="\x00bin\x00" + p.result)
            )
            n += 1
        out.append(e)
    return out, n


def test_text_with_nul_is_stored_cleaned_and_a_rebuild_gives_the_same_tables(env: Env) -> None:
    events, nuls = _with_nul(list(interleave(generate(400, seed=12, base=T0), seed=12)))
    assert nuls >= 10
    asyncio.run(produce_events(env.bootstrap, env.names.events, events))

    projector = _run(env)  # today: "invalid byte sequence for encoding UTF8: 0x00", at every start
    assert projector.applied == len(events) and projector.quarantined == 0
    assert _offsets(env) == (len(events), None)
    assert _rows(env.app_url, "SELECT count(*) FROM events") == [(len(events),)]
    cleaned = _rows(env.app_url, "SELECT content FROM entries WHERE content LIKE %s", "%\ufffd%")
    assert len(cleaned) == nuls
    assert any(c.startswith("what is 6*7?\ufffd") for (c,) in cleaned)
    assert any(c.startswith("\ufffdbin\ufffd") for (c,) in cleaned)

    # The audit log keeps the exact event: its content spells the NUL as \u0000.
    audited = _rows(
        env.admin_url,
        "SELECT content FROM audit_log WHERE content LIKE %s",
        "%what is 6*7?\\\\u0000%",
    )
    assert len(audited) == (nuls + 1) // 2
    checkpoints = asyncio.run(read_checkpoints(env.bootstrap, env.names.checkpoints))
    report = verify_audit_log(env.admin_url, checkpoints)
    assert report.ok and report.rows == len(events), report.broken

    # Deterministic: a rebuild stores exactly the same rows.
    incremental = table_checksums(env.app_url, PROJECTION_TABLES)
    rebuilt = asyncio.run(rebuild(env.config()))
    assert rebuilt.events_replayed == len(events)
    assert rebuilt.checksums == incremental


def test_the_projector_worker_command_projects_nul_text(env: Env, tmp_path: Path) -> None:
    """The issue as reported: `turnlog worker projector` died on this at every start."""
    events = _session("n", 5, text="what is 6*7?\x00")
    asyncio.run(produce_events(env.bootstrap, env.names.events, events))
    log = tmp_path / "projector.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "turnlog", "worker", "projector", "--no-group"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env={
            **os.environ,
            "DATABASE_URL": env.app_url,
            "KAFKA_BOOTSTRAP_SERVERS": env.bootstrap,
            "TURNLOG_TOPIC_PREFIX": env.prefix,
        },
    )
    try:
        wait_until(
            lambda: (
                proc.poll() is not None
                or _rows(env.app_url, "SELECT count(*) FROM events") == [(5,)]
            ),
            60,
            "the worker to project the session",
        )
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert _rows(env.app_url, "SELECT seq, content FROM entries ORDER BY seq") == [
        (3, "what is 6*7?\ufffd 3"),
        (5, "what is 6*7?\ufffd 5"),
    ]


# ------------------------------------------------------------------ quarantine


_REFUSE = """
CREATE FUNCTION refuse_q3() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.session_id = 'q' AND NEW.seq = 3 THEN
        RAISE EXCEPTION 'entries of q seq 3 are refused by this test';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_q3 BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION refuse_q3();
"""


def _cli(env: Env, *args: str, command: str = "quarantine") -> tuple[int, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "turnlog", "projections", command, *args, "--json"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        env={
            **os.environ,
            "DATABASE_URL": env.app_url,
            "KAFKA_BOOTSTRAP_SERVERS": env.bootstrap,
            "TURNLOG_TOPIC_PREFIX": env.prefix,
        },
    )
    assert result.stdout, result.stderr.decode()[-3000:]
    return result.returncode, json.loads(result.stdout)


def test_a_refused_event_is_quarantined_its_session_held_and_the_partition_goes_on(
    env: Env,
) -> None:
    q, a, b = _session("q", 7), _session("a", 9), _session("b", 9)
    stream = _interleave(a, q, b)
    asyncio.run(produce_events(env.bootstrap, env.names.events, stream))
    with psycopg.connect(env.admin_url) as conn:
        conn.execute(_REFUSE)

    with structlog.testing.capture_logs() as logs:
        projector = _run(env)
    # Every record consumed, none stopped: q's seq 3 failed, 4..7 wait behind it.
    assert _offsets(env) == (len(stream), None)
    assert projector.quarantined == 5
    assert projector.applied == len(stream) - 5
    assert _rows(env.app_url, "SELECT session_id, max(seq) FROM events GROUP BY 1 ORDER BY 1") == [
        ("a", 9),
        ("b", 9),
        ("q", 2),
    ]
    alerts = [e for e in logs if e["event"] == "projection.quarantined"]
    assert len(alerts) == 1 and alerts[0]["log_level"] == "error"
    assert (alerts[0]["session_id"], alerts[0]["seq"]) == ("q", 3)
    assert "refused by this test" in alerts[0]["error"]
    assert projector.stats()["events_quarantined"] == 5
    code, status = _cli(env, command="status")
    assert code == 0 and [(r["partition"], r["quarantined"]) for r in status] == [(0, 5)]

    code, listed = _cli(env)
    assert code == 0
    assert [(r["session_id"], r["seq"], r["held_behind_seq"]) for r in listed] == [
        ("q", 3, None),
        ("q", 4, 3),
        ("q", 5, 3),
        ("q", 6, 3),
        ("q", 7, 3),
    ]
    first = listed[0]
    assert first["event_type"] == "UserMessageReceived" and first["attempts"] == 1
    assert first["kafka_partition"] == 0
    assert first["kafka_offset"] == stream.index(q[2])
    assert "RaiseException" in first["error"] and "refused by this test" in first["error"]
    # Quarantined events are in the audit log: it records the log, not the projection.
    report = verify_audit_log(
        env.admin_url, asyncio.run(read_checkpoints(env.bootstrap, env.names.checkpoints))
    )
    assert report.ok and report.rows == len(stream), report.broken

    # A restart does not re-apply or re-quarantine anything.
    again = _run(env)
    assert again.applied == 0 and again.quarantined == 0

    # A rebuild while Postgres still refuses: the same tables, the same quarantine.
    before = table_checksums(env.app_url, PROJECTION_TABLES)
    rebuilt = asyncio.run(rebuild(env.config()))
    assert rebuilt.checksums == before
    assert [(r["session_id"], r["seq"]) for r in _cli(env)[1]] == [
        ("q", 3),
        ("q", 4),
        ("q", 5),
        ("q", 6),
        ("q", 7),
    ]

    # Retrying while the refusal stands: the first fails again, the rest stay held.
    code, retried = _cli(env, "retry", "--all")
    assert code == 1 and retried["resolved"] == [] and len(retried["failed"]) == 1
    assert len(retried["still_held"]) == 4
    listed = _cli(env)[1]
    assert (
        listed[0]["attempts"] == 2 and listed[0]["last_failed_at"] >= listed[0]["first_failed_at"]
    )

    # The cause is fixed: one retry projects q's events in order and empties the quarantine.
    with psycopg.connect(env.admin_url) as conn:
        conn.execute("DROP TRIGGER refuse_q3 ON entries")
    code, retried = _cli(env, "retry", str(listed[2]["quarantine_id"]))
    assert code == 0 and len(retried["resolved"]) == 5, retried
    assert _cli(env)[1] == []
    code, retried = _cli(env, "retry", str(listed[2]["quarantine_id"]))
    assert code == 1 and retried["missing"] == [listed[2]["quarantine_id"]]
    assert _rows(env.app_url, "SELECT max(seq) FROM events WHERE session_id = 'q'") == [(7,)]
    retried_tables = table_checksums(env.app_url, PROJECTION_TABLES)
    # ... and the result is what a projection that never failed gives.
    clean = asyncio.run(rebuild(env.config()))
    assert clean.checksums == retried_tables
    assert _cli(env)[1] == []
    assert table_checksums(env.admin_url, ("audit_log",))["audit_log"][0] == len(stream)

    # Later events of q, after the retry, are projected normally.
    more = [Event(event_id_for("q", 8), "q", 8, T0, "support", TurnStarted(4))]
    asyncio.run(produce_events(env.bootstrap, env.names.events, more))
    assert _run(env).applied == 1


def test_a_refused_event_in_a_big_batch_commits_everything_around_it(env: Env) -> None:
    """Isolation by halves inside one poll batch of many sessions: everything but the
    refused session's tail is projected once, in few transactions."""
    logs = generate(1500, seed=21, base=T0)
    events = list(interleave(logs, seed=21))
    victim = next(e for e in events if isinstance(e.payload, UserMessageReceived) and e.seq > 3)
    asyncio.run(produce_events(env.bootstrap, env.names.events, events))
    with psycopg.connect(env.admin_url) as conn:
        conn.execute(
            _REFUSE.replace("'q'", f"'{victim.session_id}'").replace(
                "NEW.seq = 3", f"NEW.seq = {victim.seq}"
            )
        )
    projector = _run(env)
    tail = [e for e in events if e.session_id == victim.session_id and e.seq >= victim.seq]
    assert projector.quarantined == len(tail)
    assert projector.applied == len(events) - len(tail)
    assert _offsets(env) == (len(events), None)
    held = _rows(env.app_url, "SELECT session_id, seq FROM projection_quarantine ORDER BY seq")
    assert held == [(e.session_id, e.seq) for e in tail]
    keys = set(_rows(env.app_url, "SELECT session_id, seq FROM events"))
    assert keys == {(e.session_id, e.seq) for e in events} - {(e.session_id, e.seq) for e in tail}


_REFUSE_AUDIT = """
CREATE FUNCTION refuse_audit_q3() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.session_id = 'q' AND NEW.seq = 3 THEN
        RAISE EXCEPTION 'the audit row of q seq 3 is refused by this test';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_audit_q3 BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_audit_q3();
"""


def test_an_event_whose_audit_row_is_refused_is_set_aside_unaudited_and_audited_on_retry(
    env: Env,
) -> None:
    q, a = _session("q", 5), _session("a", 5)
    stream = _interleave(a, q)
    asyncio.run(produce_events(env.bootstrap, env.names.events, stream))
    with psycopg.connect(env.admin_url) as conn:
        conn.execute(_REFUSE_AUDIT)

    projector = _run(env)
    assert _offsets(env) == (len(stream), None)
    assert projector.quarantined == 3  # q 3 failed; 4 and 5 held behind it
    assert _rows(
        env.app_url, "SELECT seq, audited, held_behind_seq FROM projection_quarantine ORDER BY seq"
    ) == [(3, False, None), (4, True, 3), (5, True, 3)]
    assert _rows(env.admin_url, "SELECT count(*) FROM audit_log") == [(len(stream) - 1,)]

    # A rebuild keeps the row whose audit row is owed (its replay never audits).
    before = table_checksums(env.app_url, PROJECTION_TABLES)
    assert asyncio.run(rebuild(env.config())).checksums == before
    assert _rows(env.app_url, "SELECT seq, audited FROM projection_quarantine ORDER BY seq") == [
        (3, False),
        (4, True),
        (5, True),
    ]

    with psycopg.connect(env.admin_url) as conn:
        conn.execute("DROP TRIGGER refuse_audit_q3 ON audit_log")
    code, retried = _cli(env, "retry", "--all")
    assert code == 0 and len(retried["resolved"]) == 3
    # Every event audited once (q 3 last, at the end of the chain), and it verifies.
    audited = _rows(env.admin_url, "SELECT session_id, seq FROM audit_log ORDER BY audit_id")
    assert sorted(audited) == sorted((e.session_id, e.seq) for e in stream)
    assert audited[-1] == ("q", 3)
    report = verify_audit_log(env.admin_url)
    assert report.ok and report.rows == len(stream), report.broken
    assert asyncio.run(rebuild(env.config())).checksums == table_checksums(
        env.app_url, PROJECTION_TABLES
    )
    assert _rows(env.app_url, "SELECT max(seq) FROM events WHERE session_id = 'q'") == [(5,)]


def test_a_retry_projects_up_to_the_next_refused_event_and_holds_the_rest_behind_it(
    env: Env,
) -> None:
    q, a = _session("q", 7), _session("a", 3)
    asyncio.run(produce_events(env.bootstrap, env.names.events, _interleave(q, a)))
    with psycopg.connect(env.admin_url) as conn:
        conn.execute(_REFUSE.replace("NEW.seq = 3", "NEW.seq IN (3, 5)"))
    assert _run(env).quarantined == 5
    with psycopg.connect(env.admin_url) as conn:  # seq 3 is taken now, seq 5 still refused
        conn.execute(
            "CREATE OR REPLACE FUNCTION refuse_q3() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN IF NEW.session_id = 'q' AND NEW.seq = 5 THEN "
            "RAISE EXCEPTION 'q seq 5 is refused'; END IF; RETURN NEW; END $$"
        )
    code, retried = _cli(env, "retry", "--all")
    assert code == 1 and len(retried["resolved"]) == 2 and len(retried["still_held"]) == 2
    assert "q seq 5 is refused" in retried["failed"][0]["error"]
    assert [(r["seq"], r["held_behind_seq"], r["attempts"]) for r in _cli(env)[1]] == [
        (5, None, 2),
        (6, 5, 1),
        (7, 5, 1),
    ]
    assert _rows(env.app_url, "SELECT max(seq) FROM events WHERE session_id = 'q'") == [(4,)]
    # Later events of q keep waiting behind seq 5; other sessions go on.
    more = [
        Event(event_id_for("q", 8), "q", 8, T0, "support", TurnStarted(4)),
        Event(event_id_for("a", 4), "a", 4, T0, "support", TurnStarted(2)),
    ]
    asyncio.run(produce_events(env.bootstrap, env.names.events, more))
    later = _run(env)
    assert (later.applied, later.quarantined) == (1, 1)
    assert _cli(env)[1][-1]["seq"] == 8 and _cli(env)[1][-1]["held_behind_seq"] == 5


def test_jsonb_refuses_the_nul_escape_and_takes_it_cleaned(scratch_database_url: str) -> None:
    """No projection column is json/jsonb today; the rule for the first one is checked
    against the real server: the escape is refused, the cleaned text stored."""
    from projections._clean import clean_json_text

    text = '{"out":"bin\\u0000ary","path":"C:\\\\u0000"}'
    with psycopg.connect(scratch_database_url) as conn:
        with pytest.raises(psycopg.errors.UntranslatableCharacter):
            conn.execute("SELECT %s::jsonb", (text,))
        conn.rollback()
        row = conn.execute(
            "SELECT (%s::jsonb)->>'out', (%s::jsonb)->>'path'",
            (clean_json_text(text), clean_json_text(text)),
        ).fetchone()
    assert row == ("bin\ufffdary", "C:\\u0000")


def test_kill9_while_quarantining_sets_each_event_aside_once(env: Env, tmp_path: Path) -> None:
    """The quarantine row moves with the offset: killed at any point, a restarted worker
    neither loses a refused event nor sets one aside twice."""
    import random

    rng = random.Random(7)
    events = list(interleave(generate(3000, seed=41, base=T0), seed=41))
    messages = [e for e in events if isinstance(e.payload, UserMessageReceived) and e.seq > 3]
    victims = rng.sample(messages, 6)
    refusals = " OR ".join(
        f"(NEW.session_id = '{v.session_id}' AND NEW.seq = {v.seq})" for v in victims
    )
    with psycopg.connect(env.admin_url) as conn:
        conn.execute(_REFUSE.replace("NEW.session_id = 'q' AND NEW.seq = 3", refusals))
    asyncio.run(produce_events(env.bootstrap, env.names.events, events))
    first = {v.session_id: v.seq for v in victims}
    for v in victims:
        first[v.session_id] = min(first[v.session_id], v.seq)
    tails = {
        (e.session_id, e.seq)
        for e in events
        if e.session_id in first and e.seq >= first[e.session_id]
    }

    log = tmp_path / "projector.log"
    environ = {
        **os.environ,
        "DATABASE_URL": env.app_url,
        "KAFKA_BOOTSTRAP_SERVERS": env.bootstrap,
        "TURNLOG_TOPIC_PREFIX": env.prefix,
    }

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "turnlog",
                "worker",
                "projector",
                "--no-group",
                "--max-records",
                "400",
                "--checkpoint-interval",
                "0.2",
            ],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
        )

    def consumed() -> int:
        return _offsets(env)[0] if _rows(env.app_url, "SELECT 1 FROM projector_offsets") else 0

    procs: list[subprocess.Popen[bytes]] = []
    try:
        for mark in sorted(rng.sample(range(300, len(events) - 300), 3)):
            proc = start()
            procs.append(proc)
            wait_until(
                lambda m=mark, p=proc: p.poll() is not None or consumed() >= m,
                90,
                f"the projector to consume {mark} records",
            )
            assert proc.poll() is None, log.read_text()[-3000:]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assigned = log.read_text().count("partitions assigned")
        proc = start()
        procs.append(proc)
        # Up (its signal handlers in place), then done: the killed one may have finished.
        wait_until(
            lambda: (
                proc.poll() is not None
                or (
                    log.read_text().count("partitions assigned") > assigned
                    and consumed() >= len(events)
                )
            ),
            120,
            "the projector to consume every record",
        )
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    assert _offsets(env) == (len(events), None)
    keys = set(_rows(env.app_url, "SELECT session_id, seq FROM events"))
    assert keys == {(e.session_id, e.seq) for e in events} - tails
    quarantined = _rows(env.app_url, "SELECT session_id, seq, attempts FROM projection_quarantine")
    assert {(s, q) for s, q, _ in quarantined} == tails
    assert {a for _, _, a in quarantined} == {1}  # none set aside twice
    assert _rows(env.admin_url, "SELECT count(*) FROM audit_log") == [(len(events),)]
    incremental = table_checksums(env.app_url, PROJECTION_TABLES)
    assert asyncio.run(rebuild(env.config())).checksums == incremental
