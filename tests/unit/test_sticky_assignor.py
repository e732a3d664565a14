"""The session workers' assignor (streams/_assignor.py): balanced within one partition,
deterministic, moving few partitions when a member joins or leaves, and with join
metadata that never changes (changing metadata makes the broker rebalance again)."""

from __future__ import annotations

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


def moved(before: dict[str, list], after: dict[str, list]) -> int:
    owner = {tp: m for m, ps in before.items() for tp in ps}
    return sum(1 for m, ps in after.items() for tp in ps if owner.get(tp) != m)


def test_balanced_and_deterministic_for_any_group() -> None:
    for n_parts in (1, 4, 8, 12, 32):
        parts = tps(*range(n_parts))
        for n in (1, 2, 3, 5, 9):
            members = [f"turnlog-session-{i}-{i * 7919:x}" for i in range(n)]
            result = sticky_assignment(parts, members)
            check_balanced(result, parts)
            assert result == sticky_assignment(list(reversed(parts)), list(reversed(members)))


def test_a_joining_or_leaving_member_moves_few_partitions() -> None:
    parts = tps(*range(32))
    members = [f"m-{i}" for i in range(4)]
    before = sticky_assignment(parts, members)
    joined = sticky_assignment(parts, [*members, "m-new"])
    # Balance alone requires 32 - 4 * 7 = 4 or more to move to the new member; a
    # non-sticky deal (round robin by sorted id) would move most of them.
    assert moved(before, joined) <= 12
    left = sticky_assignment(parts, members[1:])
    assert moved(before, left) <= 8 + 4  # the leaver's 8, plus a little rebalancing


def test_no_partitions_or_no_members() -> None:
    assert sticky_assignment([], ["a"]) == {"a": []}
    assert sticky_assignment(tps(0), []) == {}


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}


def test_the_assignor_deals_every_partition_and_its_metadata_never_changes() -> None:
    cls = sticky_assignor()
    first = cls.metadata([T])
    result = cls.assign(_Cluster(), {"a": first, "b": cls.metadata([T])})
    assert sorted(result["a"].partitions() + result["b"].partitions()) == tps(0, 1, 2, 3)
    cls.on_assignment(result["a"])
    assert cls.metadata([T]) == first
