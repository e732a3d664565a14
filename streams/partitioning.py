"""Which partition a session lives on.

Every topic of turnlog is keyed by session_id and the requests and events topics have the
same partition count, so one session is one partition number everywhere. We compute it the
way Kafka's default partitioner does (murmur2 of the key), so a request produced by any
client with the session id as key lands where the worker expects it.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2

__all__ = ["partition_for"]


# murmur2 is pure Python (~4 µs); a worker asks for the same few thousand sessions' numbers
# on every input and outcome.
@lru_cache(maxsize=1 << 16)
def partition_for(session_id: str, partitions: int) -> int:
    """The partition of `session_id` among `partitions` (Kafka's default partitioner)."""
    hashed: int = murmur2(session_id.encode("utf-8"))
    return (hashed & 0x7FFFFFFF) % partitions
