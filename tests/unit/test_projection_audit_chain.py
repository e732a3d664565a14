"""The audit hash chain, pure: building rows and naming the first broken one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.events import AuditCheckpoint
from projections.audit import GENESIS_HASH, AuditHead, chain_hash, chain_rows, verify_chain

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _log(n: int = 10) -> list[tuple[Any, ...]]:
    items = [("s", i, f"id{i}", "TurnStarted", T0, f'{{"seq":{i}}}') for i in range(1, n + 1)]
    rows, _ = chain_rows(AuditHead(0, GENESIS_HASH), items)
    return rows


def _walk(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # verify_chain reads (audit_id, session_id, seq, content, prev_hash, row_hash)
    return [(r[0], r[1], r[2], r[6], r[7], r[8]) for r in rows]


def _checkpoint(rows: list[tuple[Any, ...]], at: int) -> AuditCheckpoint:
    return AuditCheckpoint(at, rows[at - 1][8], at, T0)


def test_rows_chain_from_the_genesis_hash() -> None:
    rows = _log(3)
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[0][7] == GENESIS_HASH
    assert rows[1][7] == rows[0][8] == chain_hash(GENESIS_HASH, rows[0][6])
    head = chain_rows(AuditHead(0, GENESIS_HASH), [])[1]
    assert head == AuditHead(0, GENESIS_HASH)


def test_appending_continues_the_chain() -> None:
    first, head = chain_rows(AuditHead(0, GENESIS_HASH), [("s", 1, "e", "T", T0, "a")])
    second, head2 = chain_rows(head, [("s", 2, "e", "T", T0, "b")])
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
