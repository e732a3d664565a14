"""The audit hash chain, pure: building rows and naming the first broken one."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.events import AuditCheckpoint, event_id_for
from projections.audit import (
    AUDIT_COLUMNS,
    GENESIS_HASH,
    AuditHead,
    chain_hash,
    chain_rows,
    row_hash_v2,
    verify_chain,
)
from schemas.codec import canonical_event_json
from tests.support.synthetic import generate, interleave

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _log(n: int = 10) -> list[tuple[Any, ...]]:
    items = [
        ("s", i, event_id_for("s", i), "TurnStarted", T0, f'{{"seq":{i}}}') for i in range(1, n + 1)
    ]
    rows, _ = chain_rows(AuditHead(0, GENESIS_HASH), items)
    return rows


def _walk(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # verify_chain reads rows in AUDIT_COLUMNS order, as chain_rows writes them
    return rows


def _checkpoint(rows: list[tuple[Any, ...]], at: int) -> AuditCheckpoint:
    return AuditCheckpoint(at, rows[at - 1][8], at, T0)


def test_rows_chain_from_the_genesis_hash() -> None:
    rows = _log(3)
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[0][7] == GENESIS_HASH
    assert rows[1][7] == rows[0][8] == row_hash_v2(GENESIS_HASH, *rows[0][:7])
    assert rows[0][9] == 2
    head = chain_rows(AuditHead(0, GENESIS_HASH), [])[1]
    assert head == AuditHead(0, GENESIS_HASH)


def test_appending_continues_the_chain() -> None:
    eid = event_id_for("s", 1)
    first, head = chain_rows(AuditHead(0, GENESIS_HASH), [("s", 1, eid, "T", T0, "a")])
    second, head2 = chain_rows(head, [("s", 2, eid, "T", T0, "b")])
    assert second[0][0] == 2 and second[0][7] == first[0][8]
    assert verify_chain(_walk(first + second)).ok
    assert head2.last_audit_id == 2


def test_an_intact_log_verifies_against_its_checkpoints() -> None:
    rows = _log()
    report = verify_chain(_walk(rows), [_checkpoint(rows, 4), _checkpoint(rows, 10)])
    assert report.ok and report.rows == 10 and report.checkpoints_matched == 2
    assert report.head == AuditHead(10, rows[-1][8])


def test_an_edited_row_is_named() -> None:
    rows = _log()
    r = rows[4]
    rows[4] = (*r[:6], r[6].replace("5", "6"), *r[7:])
    report = verify_chain(_walk(rows))
    assert report.broken is not None and report.broken.audit_id == 5
    assert "edited" in report.broken.reason


def test_a_deleted_middle_row_is_named() -> None:
    rows = _log()
    del rows[6]
    report = verify_chain(_walk(rows))
    assert report.broken is not None and report.broken.audit_id == 7
    assert "missing" in report.broken.reason


def test_a_deleted_and_renumbered_row_is_named() -> None:
    rows = _log()
    del rows[6]
    rows = [(i, *r[1:]) for i, r in enumerate(rows, start=1)]
    report = verify_chain(_walk(rows))
    assert report.broken is not None and report.broken.audit_id == 7


def test_two_swapped_rows_are_named() -> None:
    rows = _log()
    a, b = rows[2], rows[3]
    rows[2], rows[3] = (a[0], *b[1:]), (b[0], *a[1:])
    report = verify_chain(_walk(rows))
    assert report.broken is not None and report.broken.audit_id == 3


def test_a_cut_off_tail_is_found_only_through_a_checkpoint() -> None:
    rows = _log()
    checkpoint = _checkpoint(rows, 10)
    cut = rows[:7]
    assert verify_chain(_walk(cut)).ok  # the chain alone cannot tell
    report = verify_chain(_walk(cut), [checkpoint])
    assert report.broken is not None and report.broken.audit_id == 8
    assert "cut off" in report.broken.reason


def test_a_rewrite_with_fixed_up_hashes_is_found_through_a_checkpoint() -> None:
    rows = _log()
    checkpoint = _checkpoint(rows, 10)
    items = [(r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]
    items[3] = (*items[3][:5], '{"seq":"forged"}')
    forged, _ = chain_rows(AuditHead(0, GENESIS_HASH), items)
    assert verify_chain(_walk(forged)).ok
    report = verify_chain(_walk(forged), [checkpoint])
    assert report.broken is not None and report.broken.audit_id == 10
    assert "rewritten" in report.broken.reason


# ------------------------------------------------------------------ every column


def _events(n: int = 12) -> list[Any]:
    return list(interleave(generate(n, seed=2, base=T0), seed=2))[:n]


def _items(events: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            e.session_id,
            e.seq,
            e.event_id,
            type(e.payload).__name__,
            e.occurred_at,
            canonical_event_json(e),
        )
        for e in events
    ]


def _v1_log(events: list[Any]) -> list[tuple[Any, ...]]:
    """Rows as the version-1 hash wrote them (before migration 0006)."""
    rows, prev = [], GENESIS_HASH
    for i, (sid, seq, eid, etype, at, content) in enumerate(_items(events), start=1):
        h = chain_hash(prev, content)
        rows.append((i, sid, seq, eid, etype, at, content, prev, h, 1))
        prev = h
    return rows


CHANGES: dict[str, Any] = {
    "session_id": "forged",
    "seq": 999,
    "event_id": event_id_for("forged", 1),
    "event_type": "SessionClosed",
    "occurred_at": T0.replace(year=2030),
    "content": '{"forged":true}',
    "prev_hash": "a" * 64,
    "row_hash": "b" * 64,
}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("column", [*CHANGES, "hash_version"])
def test_a_change_of_any_column_is_named(version: int, column: str) -> None:
    events = _events()
    rows = (
        _v1_log(events)
        if version == 1
        else chain_rows(AuditHead(0, GENESIS_HASH), _items(events))[0]
    )
    assert verify_chain(rows).ok
    i = AUDIT_COLUMNS.index(column)
    value = (3 - version) if column == "hash_version" else CHANGES[column]
    rows[6] = (*rows[6][:i], value, *rows[6][i + 1 :])
    report = verify_chain(rows)
    assert report.broken is not None and report.broken.audit_id == 7, (column, report.broken)


def test_old_rows_then_new_rows_chain_on() -> None:
    events = _events(20)
    old = _v1_log(events[:8])
    new, head = chain_rows(AuditHead(8, old[-1][8]), _items(events[8:]))
    report = verify_chain(
        old + new,
        [AuditCheckpoint(8, old[-1][8], 8, T0), AuditCheckpoint(20, head.head_hash, 20, T0)],
    )
    assert report.ok and report.versions == {1: 8, 2: 12} and report.checkpoints_matched == 2
    # Back from version 2 to 1, even with the hashes fixed up from there: named.
    downgraded = [*old, *new[:3]]
    row12 = new[3]
    downgraded.append((*row12[:7], row12[7], chain_hash(row12[7], row12[6]), 1))
    report = verify_chain(downgraded)
    assert report.broken is not None and report.broken.audit_id == 12
    assert "never goes back" in report.broken.reason


def test_a_nul_in_a_session_id_is_stored_and_checked_cleaned() -> None:
    event = dataclasses.replace(
        _events(1)[0], session_id="s\x00x", event_id=event_id_for("s\x00x", 1)
    )
    (row,), _ = chain_rows(AuditHead(0, GENESIS_HASH), [("s\ufffdx", *_items([event])[0][1:])])
    assert verify_chain([row]).ok
    v1 = (*row[:8], chain_hash(GENESIS_HASH, row[6]), 1)
    assert verify_chain([v1]).ok  # the column is the cleaned session id of the content
