"""A sticky partition assignor for the session workers' group.

Rule: a rebalance moves few partitions, and the join metadata never changes. Each
partition ranks the members by a hash of (member id, partition) — rendezvous hashing —
and goes to the first member in its ranking that is under its share (balanced within
one partition). A member keeps its id while it stays in the group, so when one joins or
leaves, only the partitions whose ranking it tops (or that balance forces) move.

Why not aiokafka's StickyPartitionAssignor: its state lives on the class (shared by
every consumer of a process) and it never learns its generation, so claims are never
aged; in a storm of SIGKILLs it left two of four partitions with a member that no longer
existed (aio-libs/aiokafka#1176). Why not claims of owned partitions in the join
metadata (what Kafka's own sticky assignor does): metadata that changes with every
assignment makes the broker start another rebalance when a member rejoins while one
completes ("Updating metadata for member ... during CompletingRebalance"), and after a
broker restart the group livelocked that way for minutes (bench/soak.py). Correctness
never rests on the assignment: a new owner fences the previous one's producer before it
reads anything.
"""

from __future__ import annotations

import hashlib
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


def _rank(member: str, tp: TopicPartition) -> bytes:
    return hashlib.sha256(f"{member}\x00{tp.topic}\x00{tp.partition}".encode()).digest()


def sticky_assignment(
    partitions: Iterable[TopicPartition], members: Iterable[str]
) -> dict[str, list[TopicPartition]]:
    """Assign `partitions` to `members`: each partition to the highest-ranked member
    (rendezvous hashing) that is under its share."""
    pool = sorted(set(partitions))
    names = sorted(set(members))
    out: dict[str, list[TopicPartition]] = {m: [] for m in names}
    if not names:
        return out
    base, extra = divmod(len(pool), len(names))
    high = 0  # members that hold base + 1
    for tp in pool:
        for member in sorted(names, key=lambda m: _rank(m, tp), reverse=True):
            share = base + 1 if high < extra else base
            if len(out[member]) < share:
                out[member].append(tp)
                if len(out[member]) == base + 1:
                    high += 1
                break
    return out


def sticky_assignor() -> type[AbstractPartitionAssignor]:
    """The assignor class (aiokafka calls assignors through their class)."""

    class TurnlogStickyAssignor(AbstractPartitionAssignor):
        name = "turnlog-rendezvous"
        version = _VERSION

        @classmethod
        def assign(
            cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            topics = {t for meta in members.values() for t in meta.subscription}
            partitions = [
                TopicPartition(t, p) for t in sorted(topics)
                for p in sorted(cluster.partitions_for_topic(t) or ())
            ]
            result = sticky_assignment(partitions, members)
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
            return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            pass

    return TurnlogStickyAssignor
