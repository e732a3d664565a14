"""A sticky partition assignor for the session workers' group.

Rule: a rebalance moves only the partitions that must move for balance. Each member
reports the partitions it owned in its join metadata; the leader keeps every partition
with its owner while that owner is under its share, then deals the rest to the members
with the fewest. Balanced within one partition, deterministic (sorted), and stateless
across members: a member's claim is all there is.

Why not aiokafka's StickyPartitionAssignor: its state lives on the class (shared by
every consumer of a process) and it never learns its generation, so claims are never
aged; in a storm of SIGKILLs it left two of four partitions with a member that no longer
existed, rebalancing every few seconds for minutes while those partitions' sessions
waited (aio-libs/aiokafka#1176). Correctness never rests on the assignment: a new owner
fences the previous one's producer before it reads anything.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.structs import TopicPartition

__all__ = ["sticky_assignment", "sticky_assignor"]

_VERSION = 0


def sticky_assignment(
    partitions: Iterable[TopicPartition], claims: Mapping[str, Iterable[TopicPartition]]
) -> dict[str, list[TopicPartition]]:
    """Assign `partitions` to the members of `claims` (member id -> what it owned):
    each keeps what it claims up to its share, the rest go to the least loaded."""
    pool = sorted(set(partitions))
    members = sorted(claims)
    out: dict[str, list[TopicPartition]] = {m: [] for m in members}
    if not members:
        return out
    base, extra = divmod(len(pool), len(members))
    free = set(pool)
    high = 0  # members that hold base + 1
    for member in members:
        for tp in sorted(set(claims[member])):
            if tp not in free:
                continue  # not a partition now, or claimed by another member first
            share = base + 1 if high < extra else base
            if len(out[member]) >= share:
                break
            out[member].append(tp)
            free.discard(tp)
        if len(out[member]) == base + 1:
            high += 1
    # Everyone holds at most their share now, so dealing each remaining partition to
    # the least loaded member ends balanced within one.
    for tp in sorted(free):
        target = min(members, key=lambda m: (len(out[m]), m))
        out[target].append(tp)
    return out


def sticky_assignor() -> type[AbstractPartitionAssignor]:
    """A new assignor class for one consumer (aiokafka calls assignors through their
    class, so the member's own assignment must live on a class of its own)."""

    class TurnlogStickyAssignor(AbstractPartitionAssignor):
        name = "turnlog-sticky"
        version = _VERSION
        owned: tuple[TopicPartition, ...] = ()

        @classmethod
        def assign(
            cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            topics = {t for meta in members.values() for t in meta.subscription}
            partitions = [
                TopicPartition(t, p) for t in sorted(topics)
                for p in sorted(cluster.partitions_for_topic(t) or ())
            ]
            claims = {m: _claims(meta.user_data) for m, meta in members.items()}
            result = sticky_assignment(partitions, claims)
            out = {}
            for member, tps in result.items():
                by_topic: dict[str, list[int]] = defaultdict(list)
                for tp in tps:
                    by_topic[tp.topic].append(tp.partition)
                out[member] = ConsumerProtocolMemberAssignment(
                    cls.version, sorted((t, sorted(ps)) for t, ps in by_topic.items()), b""
                )
            return out

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            by_topic: dict[str, list[int]] = defaultdict(list)
            for tp in cls.owned:
                by_topic[tp.topic].append(tp.partition)
            data = json.dumps(by_topic, sort_keys=True).encode()
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), data)

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            cls.owned = tuple(assignment.partitions())

    return TurnlogStickyAssignor


def _claims(user_data: bytes | None) -> list[TopicPartition]:
    """A member's claim from its join metadata (anything unreadable claims nothing)."""
    try:
        data = json.loads(user_data or b"{}")
        return [TopicPartition(str(t), int(p)) for t, ps in data.items() for p in ps]
    except (ValueError, TypeError, AttributeError):
        return []
