"""streams/_snapshots.Keeper: when a session is snapshotted, where a restore starts, and
which sessions may leave memory (pure rules; the worker applies them in its
transactions, tests/integration/test_snapshots.py runs them against the broker)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from streams._snapshots import BYTES_PER_EVENT, Keeper, Stored


def state(seq: int, phase: str = "idle") -> Any:
    return SimpleNamespace(last_seq=seq, phase=phase)


class _Done:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def result(self) -> _Done:
        return self


def test_a_turn_end_is_snapshotted_and_a_long_turn_every_n_events() -> None:
    keeper = Keeper({}, {}, floor=100)
    assert keeper.plan({"a": state(10), "b": state(5, "awaiting_llm")}, every=64) == ["a"]
    keeper.stored["b"] = Stored(0, 5, True, None, 100)
    assert keeper.plan({"b": state(68, "awaiting_tools")}, every=64) == []
    assert keeper.plan({"b": state(69, "awaiting_tools")}, every=64) == ["b"]


def test_a_large_snapshot_is_written_again_only_after_its_size_in_events() -> None:
    size = 50_000
    keeper = Keeper({"a": Stored(0, 1000, False, None, size)}, {}, floor=0)
    need = size // BYTES_PER_EVENT
    assert keeper.plan({"a": state(1000 + need - 1)}, every=64) == []  # turn ended, too soon
    assert keeper.plan({"a": state(1000 + need)}, every=64) == ["a"]


def test_the_restore_point_is_the_oldest_uncovered_event() -> None:
    keeper = Keeper({}, {"old": 40, "mid": 70}, floor=100)
    # 'old' is snapshotted now; 'new' has its first uncovered events in this transaction.
    assert keeper.restore_from(["new"], {"old"}) == 70
    assert keeper.restore_from(["new"], {"old", "mid"}) == 100  # new's events: >= floor
    assert keeper.restore_from([], {"old", "mid"}) == 100


def test_committed_covers_and_uncovers() -> None:
    keeper = Keeper({}, {}, floor=100)
    keeper.committed(["a", "b"], {"a": (_Done(7), 12, state(12), 900)}, floor_before=100)
    assert "a" not in keeper.uncovered and keeper.uncovered["b"] == 100
    stored = keeper.stored["a"]
    assert (stored.offset, stored.seq, stored.live, stored.size) == (7, 12, False, 900)
    keeper.committed(["b"], {}, floor_before=150)
    assert keeper.uncovered["b"] == 100  # the first uncovered event is still the bound


def test_laggards_and_sessions_to_cover_before_eviction() -> None:
    keeper = Keeper({"c": Stored(0, 3, False, None, 10)}, {"a": 10, "b": 9_000}, floor=10_000)
    assert keeper.laggards(5_000) == ["a"]
    sessions = {"a": state(4), "busy": state(9, "awaiting_llm"), "c": state(3), "d": state(2)}
    # Over a budget of 1: the cold idle sessions without a current snapshot are covered
    # first ('c' is already evictable, 'busy' has a turn in progress).
    assert keeper.to_cover(sessions, budget=1) == ["a", "d"]
    assert keeper.evictable("c", sessions["c"]) and not keeper.evictable("a", sessions["a"])
