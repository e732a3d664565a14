"""streams/_deadlines.py: due sessions in order of due time, stale deadlines skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams._deadlines import DeadlineIndex

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_only_current_due_deadlines_are_returned() -> None:
    index = DeadlineIndex()
    index.set("a", at(10))
    index.set("b", at(5))
    index.set("c", at(50))
    index.set("a", at(30))  # moved on: its deadline of 10 is stale
    assert index.due(at(20)) == [("b", at(5))]
    assert index.due(at(20)) == [("b", at(5))]  # until its state changes
    index.set("b", None)
    assert index.due(at(40)) == [("a", at(30))]
    assert len(index) == 2


def test_stale_entries_do_not_pile_up() -> None:
    index = DeadlineIndex()
    for i in range(10_000):
        index.set("s", at(i))
    assert len(index._heap) <= 4 * len(index) + 64
    assert index.due(at(20_000)) == [("s", at(9_999))]


def test_a_hundred_thousand_sessions_and_ten_due() -> None:
    index = DeadlineIndex()
    for i in range(100_000):
        index.set(f"s{i}", at(1000 + i))
    for i in range(10):
        index.set(f"due{i}", at(i))
    assert sorted(s for s, _ in index.due(at(100))) == [f"due{i}" for i in range(10)]
