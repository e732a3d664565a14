"""The session workers' sticky assignor (streams/_assignor.py): balanced within one
partition, deterministic, and moving only what balance requires."""

from __future__ import annotations

import itertools

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.structs import TopicPartition

from streams._assignor import sticky_assignment, sticky_assignor

T = "turnlog.requests"


def tps(*numbers: int) -> list[TopicPartition]:
    return [TopicPartition(T, n) for n in numbers]


def check_balanced(result: dict[str, list[TopicPartition]], partitions: list) -> None:
    assigned = [tp for tps_ in result.values() for tp in tps_]
    assert sorted(assigned) == sorted(partitions)  # each exactly once
    sizes = [len(v) for v in result.values()]
    assert max(sizes) - min(sizes) <= 1


def test_a_joining_member_takes_only_what_balance_needs() -> None:
    result = sticky_assignment(tps(0, 1, 2, 3), {"a": tps(0, 1, 2, 3), "b": []})
    assert result == {"a": tps(0, 1), "b": tps(2, 3)}


def test_a_leaving_member_leaves_the_others_in_place() -> None:
    before = {"a": tps(0, 1, 2), "b": tps(3, 4, 5), "c": tps(6, 7)}
    result = sticky_assignment(tps(*range(8)), {"a": before["a"], "c": before["c"]})
    assert set(before["a"]) <= set(result["a"]) and set(before["c"]) <= set(result["c"])
    check_balanced(result, tps(*range(8)))


def test_claims_of_a_gone_member_or_gone_partitions_are_ignored_and_doubles_resolved() -> None:
    # Two members claim partition 1 (one was expelled and rejoined): one gets it.
    result = sticky_assignment(tps(0, 1, 2, 3), {"a": tps(0, 1, 9), "b": tps(1, 2)})
    check_balanced(result, tps(0, 1, 2, 3))
    assert result["a"] == tps(0, 1)


def test_any_claims_end_balanced_and_complete() -> None:
    parts = tps(*range(8))
    for n in (1, 2, 3, 5, 9):
        members = [f"m{i}" for i in range(n)]
        for seed in range(20):
            claims = {m: [p for j, p in enumerate(parts) if (j * 7 + seed + i) % (i + 2) == 0]
                      for i, m in enumerate(members)}
            result = sticky_assignment(parts, claims)
            check_balanced(result, parts)
            assert result == sticky_assignment(parts, dict(reversed(claims.items())))


def test_no_partitions_or_no_members() -> None:
    assert sticky_assignment([], {"a": []}) == {"a": []}
    assert sticky_assignment(tps(0), {}) == {}


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}


def test_the_assignor_round_trips_claims_through_join_metadata() -> None:
    a, b = sticky_assignor(), sticky_assignor()
    assert a is not b  # one class per consumer: the owned partitions are its own
    first = a.assign(_Cluster(), {"a": a.metadata([T])})
    a.on_assignment(first["a"])
    assert sorted(a.owned) == tps(0, 1, 2, 3)
    assert b.owned == ()
    second = a.assign(_Cluster(), {"a": a.metadata([T]), "b": b.metadata([T])})
    assert second["a"].partitions() == tps(0, 1) and second["b"].partitions() == tps(2, 3)
    garbage = ConsumerProtocolMemberMetadata(0, [T], b"\xff not json")
    third = a.assign(_Cluster(), {"a": a.metadata([T]), "z": garbage})
    assert sorted(itertools.chain(third["a"].partitions(), third["z"].partitions())) == tps(
        0, 1, 2, 3)
