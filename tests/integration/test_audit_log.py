"""The audit log is append-only for the application role and tamper-evident for everyone:
`audit verify` names the first broken row for every kind of tampering by a superuser."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql

from agents.errors import ExternalError
from agents.events import AuditCheckpoint, event_id_for
from projections.audit import (
    AUDIT_COLUMNS,
    chain_hash,
    read_checkpoints,
    row_hash_v2,
    verify_audit_log,
    verify_chain,
)
from projections.migrate import MIGRATIONS_DIR, migrate
from projections.projector import Projector, ProjectorConfig
from schemas.codec import canonical_event_json
from streams.topics import TopicNames, ensure_topics
from tests.conftest import create_database, drop_database
from tests.support.projections import AUDITOR_ROLE, produce_events, role_url
from tests.support.synthetic import generate, interleave

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
    config = ProjectorConfig(
        kafka_bootstrap,
        role_url(admin_url),
        names.events,
        names.checkpoints,
        group_id=None,
        max_records=97,
        checkpoint_interval=0.0,
    )
    asyncio.run(Projector(config).run(until_caught_up=True))
    checkpoints = asyncio.run(read_checkpoints(kafka_bootstrap, names.checkpoints))
    yield Audited(kafka_bootstrap, prefix, names, admin_url, database, len(events), checkpoints)
    drop_database(database_admin_url, database)


@pytest.fixture
def copy_url(audited: Audited, database_admin_url: str) -> Iterator[str]:
    """A copy of the audited database, free to be tampered with."""
    name = f"turnlog_tamper_{secrets.token_hex(4)}"
    with psycopg.connect(database_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(audited.database)
            )
        )
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
            "'p', 'h', 2)",
            (10**9,),
        )
        conn.rollback()


def test_the_trigger_rejects_changes_even_by_the_owner(audited: Audited) -> None:
    for statement in (
        "UPDATE audit_log SET content = 'x' WHERE audit_id = 1",
        "DELETE FROM audit_log WHERE audit_id = 1",
        "TRUNCATE audit_log",
    ):
        with (
            psycopg.connect(audited.admin_url) as conn,
            pytest.raises(errors.InsufficientPrivilege, match="append-only"),
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
        check=False,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": audited.bootstrap,
            "TURNLOG_TOPIC_PREFIX": audited.prefix,
        },
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
    conn.execute(
        "UPDATE audit_log SET content = replace(content, '\"seq\":', '\"seq\": ') "
        "WHERE audit_id = 57"
    )
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


def _rehash_from(conn: psycopg.Connection, first: int) -> None:
    """Recompute prev_hash and row_hash of every row from `first` on, as an attacker who
    knows the algorithm would (each row by its own hash version)."""
    rows = conn.execute(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log WHERE audit_id >= %s ORDER BY audit_id",
        (first,),
    ).fetchall()
    prev = rows[0][7]
    for (
        audit_id,
        session_id,
        seq,
        event_id,
        event_type,
        occurred_at,
        content,
        _,
        _,
        version,
    ) in rows:
        row_hash = (
            row_hash_v2(prev, audit_id, session_id, seq, event_id, event_type, occurred_at, content)
            if version == 2
            else chain_hash(prev, content)
        )
        conn.execute(
            "UPDATE audit_log SET prev_hash = %s, row_hash = %s WHERE audit_id = %s",
            (prev, row_hash, audit_id),
        )
        prev = row_hash


def _rewrite_with_fixed_hashes(conn: psycopg.Connection, n: int) -> int:
    """Move row 150 to another session and recompute every hash from it on: the chain
    itself is consistent again, only the published checkpoints can tell."""
    conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
    conn.execute("UPDATE audit_log SET session_id = 'forged' WHERE audit_id = 150")
    _rehash_from(conn, 150)
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


# ------------------------------------------------------------------ every column
# The issue as reported: rewriting session_id, event_type, occurred_at or event_id of a
# row verified OK. Each column of a row, changed alone, must name that row.

COLUMN_EDITS: dict[str, str] = {
    "audit_id": "audit_id = 10000000",
    "session_id": "session_id = 'forged'",
    "seq": "seq = seq + 1000",
    "event_id": "event_id = gen_random_uuid()",
    "event_type": "event_type = 'SessionClosed'",
    "occurred_at": "occurred_at = occurred_at + interval '1 microsecond'",
    "content": "content = replace(content, '\"seq\":', '\"seq\": ')",
    "prev_hash": "prev_hash = repeat('a', 64)",
    "row_hash": "row_hash = repeat('b', 64)",
    "hash_version": "hash_version = 1",
}


def test_every_column_has_an_edit_here() -> None:
    assert set(COLUMN_EDITS) == set(AUDIT_COLUMNS)


@pytest.mark.parametrize("column", list(COLUMN_EDITS))
def test_verify_names_a_row_whose_any_column_changed(
    audited: Audited, copy_url: str, column: str
) -> None:
    with psycopg.connect(copy_url) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        conn.execute(f"UPDATE audit_log SET {COLUMN_EDITS[column]} WHERE audit_id = 57")
        conn.commit()
    report = verify_audit_log(copy_url, audited.checkpoints)
    assert report.broken is not None, column
    assert report.broken.audit_id == 57, str(report.broken)
    if column in ("session_id", "seq", "event_id", "event_type", "occurred_at"):
        assert f"its {column} " in report.broken.reason  # and it says which column


def test_verify_refuses_a_table_with_a_column_it_does_not_check(
    audited: Audited, copy_url: str
) -> None:
    with psycopg.connect(copy_url) as conn:
        conn.execute("ALTER TABLE audit_log ADD COLUMN note text")
        conn.commit()
    with pytest.raises(ExternalError, match="unknown: note"):
        verify_audit_log(copy_url, audited.checkpoints)


# ------------------------------------------------------------------ the tail


def test_verify_says_what_it_cannot_prove_past_the_last_checkpoint(
    audited: Audited, copy_url: str
) -> None:
    assert audited.checkpoints[-1].audit_id == audited.rows
    intact = verify_audit_log(copy_url, audited.checkpoints)
    assert intact.rows_past_last_checkpoint == 0 and intact.unproven == ""
    # As if the projector had not published its last heads yet, and the newest rows
    # were then cut: the chain is consistent, and verify says it cannot tell.
    older = [c for c in audited.checkpoints if c.audit_id <= audited.rows - 40]
    last = older[-1].audit_id
    with psycopg.connect(copy_url) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM audit_log WHERE audit_id > %s", (audited.rows - 10,))
        conn.commit()
    report = verify_audit_log(copy_url, older)
    assert report.ok
    assert report.last_checkpoint_audit_id == last
    assert report.rows_past_last_checkpoint == audited.rows - 10 - last
    assert "cannot be detected" in report.unproven
    assert f"{audited.rows - 10 - last} rows lie past the last checkpoint (row {last})" in (
        report.unproven
    )
    # The same cut against every checkpoint: the checkpoint covered them, it is named.
    report = verify_audit_log(copy_url, audited.checkpoints)
    assert report.broken is not None and report.broken.audit_id == audited.rows - 9
    assert "cut off" in report.broken.reason

    code, out = _cli_verify(audited, copy_url)
    assert code == 1 and out["rows_past_last_checkpoint"] == 0
    assert out["last_checkpoint_audit_id"] == audited.rows


def test_verify_without_checkpoints_says_it_proves_no_tail(audited: Audited) -> None:
    report = verify_audit_log(audited.admin_url)
    assert report.ok and report.last_checkpoint_audit_id is None
    assert report.rows_past_last_checkpoint == audited.rows
    assert "No published checkpoint" in report.unproven


# ------------------------------------------------------------------ rows of hash version 1


@pytest.fixture
def legacy(
    kafka_bootstrap: str, unique_prefix: str, scratch_database_url: str, tmp_path: Path
) -> tuple[str, int, int, list[AuditCheckpoint]]:
    """A database whose audit log was written by the version-1 hash (before migration
    0006), then migrated and appended to by today's projector: (url, v1 rows, v2 rows,
    checkpoints)."""
    old = tmp_path / "migrations"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "0006":
            shutil.copy(path, old / path.name)
    migrate(scratch_database_url, old)
    before = list(interleave(generate(60, seed=8, base=T0), seed=8))
    with psycopg.connect(scratch_database_url) as conn:
        prev = "0" * 64
        for i, e in enumerate(before, start=1):
            content = canonical_event_json(e)
            row_hash = chain_hash(prev, content)
            conn.execute(
                "INSERT INTO audit_log VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    i,
                    e.session_id,
                    e.seq,
                    e.event_id,
                    type(e.payload).__name__,
                    e.occurred_at,
                    content,
                    prev,
                    row_hash,
                ),
            )
            prev = row_hash
        conn.execute(
            "UPDATE audit_head SET last_audit_id = %s, head_hash = %s", (len(before), prev)
        )
    migrate(scratch_database_url)  # 0006 and anything later
    names = asyncio.run(ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)).names
    after = list(interleave(generate(90, seed=9, base=T0), seed=9))
    after = [
        dataclasses.replace(
            e, session_id=f"new-{e.session_id}", event_id=event_id_for(f"new-{e.session_id}", e.seq)
        )
        for e in after
    ]
    asyncio.run(produce_events(kafka_bootstrap, names.events, after))
    config = ProjectorConfig(
        kafka_bootstrap,
        role_url(scratch_database_url),
        names.events,
        names.checkpoints,
        group_id=None,
        checkpoint_interval=0.0,
    )
    asyncio.run(Projector(config).run(until_caught_up=True))
    checkpoints = asyncio.run(read_checkpoints(kafka_bootstrap, names.checkpoints))
    return scratch_database_url, len(before), len(after), checkpoints


def _walk(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    """The rows as verify_audit_log reads them, seen from `conn`'s transaction."""
    return conn.execute(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log ORDER BY audit_id"
    ).fetchall()


def test_rows_of_the_old_hash_still_verify_and_their_columns_are_checked(
    legacy: tuple[str, int, int, list[AuditCheckpoint]],
) -> None:
    url, v1, v2, checkpoints = legacy
    report = verify_audit_log(url, checkpoints)
    assert report.ok, report.broken
    assert report.versions == {1: v1, 2: v2} and report.rows == v1 + v2
    assert report.checkpoints_matched == len(checkpoints) > 0
    for column, edit in {**COLUMN_EDITS, "hash_version": "hash_version = 2"}.items():
        # Edited in a transaction that is rolled back, and walked inside it.
        with psycopg.connect(url) as conn:
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
            conn.execute(f"UPDATE audit_log SET {edit} WHERE audit_id = 17")
            broken = verify_chain(_walk(conn), checkpoints).broken
            conn.rollback()
        assert broken is not None and broken.audit_id == 17, (column, broken)
    # A version-2 row made to look like a version-1 one, its hash fixed: still named.
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        conn.execute("UPDATE audit_log SET hash_version = 1 WHERE audit_id = %s", (v1 + 5,))
        _rehash_from(conn, v1 + 5)
        broken = verify_chain(_walk(conn)).broken
        conn.rollback()
    assert broken is not None and broken.audit_id == v1 + 5
    assert "never goes back" in broken.reason


def test_verify_command_says_what_it_did_not_prove(audited: Audited) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "turnlog",
            "audit",
            "verify",
            "--no-checkpoints",
            "--database-url",
            role_url(audited.admin_url, AUDITOR_ROLE),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        text=True,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": audited.bootstrap,
            "TURNLOG_TOPIC_PREFIX": audited.prefix,
        },
    )
    assert result.returncode == 0, result.stderr
    assert f"audit log intact: {audited.rows} rows" in result.stdout
    assert "not proven: No published checkpoint was compared" in result.stdout
