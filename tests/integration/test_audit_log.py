"""The audit log is append-only for the application role and tamper-evident for everyone:
`audit verify` names the first broken row for every kind of tampering by a superuser."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from agents.events import AuditCheckpoint
from projections.audit import chain_hash, read_checkpoints, verify_audit_log
from projections.migrate import migrate
from projections.projector import Projector, ProjectorConfig
from projections.synthetic import generate, interleave
from projections.testing import AUDITOR_ROLE, produce_events, role_url
from streams.topics import TopicNames, ensure_topics
from tests.conftest import create_database, drop_database

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Audited:
    """A database whose audit log holds a projected stream, and its checkpoints."""

    bootstrap: str
    prefix: str
    names: TopicNames
    admin_url: str
    database: str
    rows: int
    checkpoints: list[AuditCheckpoint]


@pytest.fixture(scope="module")
def audited(kafka_bootstrap: str, topic_prefix: str, database_admin_url: str) -> Iterator[Audited]:
    prefix = f"{topic_prefix}{secrets.token_hex(3)}."
    database = f"turnlog_audit_{secrets.token_hex(4)}"
    admin_url = create_database(database_admin_url, database)
    migrate(admin_url)
    names = asyncio.run(ensure_topics(kafka_bootstrap, prefix, partitions=2)).names
    events = list(interleave(generate(600, seed=5, base=T0), seed=5))
    asyncio.run(produce_events(kafka_bootstrap, names.events, events))
    config = ProjectorConfig(kafka_bootstrap, role_url(admin_url), names.events,
                             names.checkpoints, group_id=None, max_records=97,
                             checkpoint_interval=0.0)
    asyncio.run(Projector(config).run(until_caught_up=True))
    checkpoints = asyncio.run(read_checkpoints(kafka_bootstrap, names.checkpoints))
    yield Audited(kafka_bootstrap, prefix, names, admin_url, database, len(events), checkpoints)
    drop_database(database_admin_url, database)


@pytest.fixture
def copy_url(audited: Audited, database_admin_url: str) -> Iterator[str]:
    """A copy of the audited database, free to be tampered with."""
    name = f"turnlog_tamper_{secrets.token_hex(4)}"
    with psycopg.connect(database_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(audited.database)))
    yield audited.admin_url.rsplit("/", 1)[0] + "/" + name
    drop_database(database_admin_url, name)


def test_projection_published_checkpoints_up_to_the_head(audited: Audited) -> None:
    assert len(audited.checkpoints) >= 3
    assert audited.checkpoints[-1].audit_id == audited.rows
    ids = [c.audit_id for c in audited.checkpoints]
    assert ids == sorted(ids)


def test_the_application_role_can_only_insert(audited: Audited) -> None:
    app_url = role_url(audited.admin_url)
    for statement in (
        "UPDATE audit_log SET content = 'x' WHERE audit_id = 1",
        "DELETE FROM audit_log WHERE audit_id = 1",
        "TRUNCATE audit_log",
        "SELECT count(*) FROM audit_log",
    ):
        with psycopg.connect(app_url) as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)
    with psycopg.connect(app_url) as conn:  # INSERT is allowed (rolled back here)
        conn.execute(
            "INSERT INTO audit_log VALUES (%s, 'z', 1, gen_random_uuid(), 'T', now(), '{}', "
            "'p', 'h')", (10**9,))
        conn.rollback()


def test_the_trigger_rejects_changes_even_by_the_owner(audited: Audited) -> None:
    for statement in (
        "UPDATE audit_log SET content = 'x' WHERE audit_id = 1",
        "DELETE FROM audit_log WHERE audit_id = 1",
        "TRUNCATE audit_log",
    ):
        with psycopg.connect(audited.admin_url) as conn, pytest.raises(
            errors.InsufficientPrivilege, match="append-only"
        ):
            conn.execute(statement)


def test_the_auditor_role_reads_but_cannot_write(audited: Audited) -> None:
    auditor = role_url(audited.admin_url, AUDITOR_ROLE)
    report = verify_audit_log(auditor, audited.checkpoints)
    assert report.ok and report.rows == audited.rows
    assert report.checkpoints_matched == len(audited.checkpoints)
    with psycopg.connect(auditor) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("INSERT INTO audit_log (audit_id) VALUES (1)")


def _cli_verify(audited: Audited, url: str) -> tuple[int, dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "turnlog", "audit", "verify", "--json", "--database-url", url],
        check=False, cwd=ROOT, capture_output=True, timeout=120,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": audited.bootstrap,
             "TURNLOG_TOPIC_PREFIX": audited.prefix},
    )
    return result.returncode, json.loads(result.stdout)


def test_verify_command_passes_an_intact_log(audited: Audited) -> None:
    code, report = _cli_verify(audited, role_url(audited.admin_url, AUDITOR_ROLE))
    assert code == 0
    assert report["ok"] is True and report["rows"] == audited.rows
    assert report["checkpoints_matched"] == len(audited.checkpoints)


# ------------------------------------------------------------------ tampering
# Each runs as a superuser with the triggers out of the way, as an attacker with full
# database access would; verify must name the first row that is not what it was.


def _edit(conn: psycopg.Connection, n: int) -> int:
    conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
    conn.execute("UPDATE audit_log SET content = replace(content, '\"seq\":', '\"seq\": ') "
                 "WHERE audit_id = 57")
    return 57


def _delete_middle(conn: psycopg.Connection, n: int) -> int:
    conn.execute("SET session_replication_role = replica")
    conn.execute("DELETE FROM audit_log WHERE audit_id = 100")
    return 100


def _swap(conn: psycopg.Connection, n: int) -> int:
    conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
    for old, new in ((200, 10**9), (201, 200), (10**9, 201)):
        conn.execute("UPDATE audit_log SET audit_id = %s WHERE audit_id = %s", (new, old))
    return 200


def _truncate_tail(conn: psycopg.Connection, n: int) -> int:
    conn.execute("SET session_replication_role = replica")
    conn.execute("DELETE FROM audit_log WHERE audit_id > %s", (n - 5,))
    return n - 4


def _rewrite_with_fixed_hashes(conn: psycopg.Connection, n: int) -> int:
    """Edit row 150 and recompute every hash after it: the chain itself is consistent
    again, only the published checkpoints can tell."""
    conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
    rows = conn.execute("SELECT audit_id, content, prev_hash FROM audit_log "
                        "WHERE audit_id >= 150 ORDER BY audit_id").fetchall()
    prev = rows[0][2]
    for audit_id, content, _ in rows:
        if audit_id == 150:
            content = content.replace('"seq":', '"seq": ')
        row_hash = chain_hash(prev, content)
        conn.execute("UPDATE audit_log SET content = %s, prev_hash = %s, row_hash = %s "
                     "WHERE audit_id = %s", (content, prev, row_hash, audit_id))
        prev = row_hash
    return -1  # the first checkpoint at or after row 150


TAMPERINGS: dict[str, Callable[[psycopg.Connection, int], int]] = {
    "edited row": _edit,
    "deleted middle row": _delete_middle,
    "two rows swapped": _swap,
    "truncated tail": _truncate_tail,
    "rewritten with fixed-up hashes": _rewrite_with_fixed_hashes,
}


@pytest.mark.parametrize("kind", list(TAMPERINGS))
def test_verify_names_the_first_broken_row(audited: Audited, copy_url: str, kind: str) -> None:
    assert verify_audit_log(copy_url, audited.checkpoints).ok
    with psycopg.connect(copy_url) as conn:
        expected = TAMPERINGS[kind](conn, audited.rows)
        conn.commit()
    if expected == -1:
        expected = min(c.audit_id for c in audited.checkpoints if c.audit_id >= 150)
    report = verify_audit_log(copy_url, audited.checkpoints)
    assert report.broken is not None, kind
    assert report.broken.audit_id == expected, str(report.broken)


def test_verify_command_exits_nonzero_naming_the_row(audited: Audited, copy_url: str) -> None:
    with psycopg.connect(copy_url) as conn:
        _delete_middle(conn, audited.rows)
        conn.commit()
    code, report = _cli_verify(audited, copy_url)
    assert code == 1
    assert report["ok"] is False
    broken = report["first_broken_row"]
    assert isinstance(broken, dict) and broken["audit_id"] == 100
    assert "deleted" in str(broken["reason"])
