"""The rows of projection_quarantine, as the store writes and reads them inside its
transactions (the policy around them is in projections.quarantine).

Rule: a session with a quarantined event is *held*: each later event of it is set aside
too, behind the first one, so nothing of a session is projected out of seq order. A held
event is a duplicate when the same (session, seq) is already set aside with the same
digest, a conflicting duplicate (the partition stops, as for projected events) with
another digest, and a gap when its seq is not the next after the held ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from projections._clean import clean_text
from projections.fold import Verdict

if TYPE_CHECKING:
    from projections.store import Record, Stop

__all__ = ["HOLD", "Held", "check_held", "held_sessions", "insert_quarantine"]


class _Hold:
    def __repr__(self) -> str:
        return "HOLD"


# The verdict for an event that waits behind its session's quarantined one.
HOLD = _Hold()


@dataclass(slots=True)
class Held:
    """A held session: its quarantined seqs (→ digest) and the first of them."""

    first: int
    seqs: dict[int, str] = field(default_factory=dict)

    @property
    def next_seq(self) -> int:
        return max(self.seqs) + 1


async def held_sessions(cur: Any, session_ids: Sequence[str]) -> dict[str, Held]:
    """The held sessions among `session_ids` (one indexed query per batch)."""
    if not session_ids:
        return {}
    await cur.execute(
        "SELECT session_id, seq, digest FROM projection_quarantine "
        "WHERE session_id = ANY(%s) ORDER BY session_id, seq",
        (list(session_ids),),
    )
    held: dict[str, Held] = {}
    for sid, seq, digest in await cur.fetchall():
        queue = held.setdefault(str(sid), Held(int(seq)))
        queue.seqs[int(seq)] = str(digest)
    return held


def check_held(record: Record, held: Held) -> Stop | _Hold | Verdict:
    """HOLD, DUPLICATE, or a Stop, for a record of a held session past its projected
    events."""
    from projections.store import Stop

    event = record.event
    assert event is not None
    known = held.seqs.get(event.seq)
    if known is not None:
        if known == record.digest:
            return Verdict.DUPLICATE
        return Stop(
            record.offset,
            f"Conflicting duplicate at offset {record.offset}: session {event.session_id} "
            f"seq {event.seq} is quarantined with digest {known[:16]}…, this "
            f"{type(event.payload).__name__} has digest {record.digest[:16]}….",
        )
    if event.seq != held.next_seq:
        return Stop(
            record.offset,
            f"Seq gap at offset {record.offset}: session {event.session_id} is held behind "
            f"quarantined seqs up to {held.next_seq - 1}; the next must be seq "
            f"{held.next_seq}, got seq {event.seq} ({type(event.payload).__name__}).",
        )
    return HOLD


async def insert_quarantine(
    cur: Any,
    consumer: str,
    topic: str,
    record: Record,
    error: str,
    *,
    held_behind: int | None,
    audited: bool,
) -> None:
    """Set `record` aside (or, when its (session, seq) already is, count one more
    failed attempt). Text is cleaned: the row must be storable whatever the event holds."""
    event = record.event
    assert event is not None
    await cur.execute(
        "INSERT INTO projection_quarantine (consumer, topic, kafka_partition, kafka_offset, "
        "session_id, seq, event_id, event_type, digest, held_behind_seq, error, audited, "
        "raw_event, event_json) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (session_id, seq) DO UPDATE SET error = excluded.error, "
        "last_failed_at = now(), attempts = projection_quarantine.attempts + 1",
        (
            consumer,
            topic,
            record.partition,
            record.offset,
            clean_text(event.session_id),
            event.seq,
            clean_text(event.event_id),
            type(event.payload).__name__,
            record.digest,
            held_behind,
            clean_text(error),
            audited,
            record.raw or b"",
            clean_text(record.canonical),
        ),
    )
