"""Session snapshots: a session's state as a record of `turnlog.snapshots`, and back.

Rule: a snapshot is derived data — the state the events up to its `seq` fold into — so
`fold(events[:seq])` continued with the later events is the same state as the fold of
them all, and a snapshot the current code cannot read (another state format) is not an
error: the reader gets None and folds the session's events instead. Nothing here does
IO; the shell decides when to write one and where to read it.

The state is the state codec's dict (agents.state_codec) as canonical JSON, compressed
with zlib: the conversation dominates it, and text compresses well.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime

from agents.effects import next_deadline
from agents.events import RestorePoint, SessionSnapshot, Snapshot
from agents.state import Phase, SessionState
from agents.state_codec import READABLE_FORMATS, STATE_FORMAT, state_from_dict, state_to_dict

__all__ = [
    "RESTORE_POINT_KEY",
    "SNAPSHOT_EVERY",
    "is_live",
    "restore_point",
    "snapshot_of",
    "state_of",
]

# A session is snapshotted at the end of each turn and, during a long turn, whenever it
# has grown by this many events since its last snapshot (BENCHMARKS.md: Restore).
SNAPSHOT_EVERY = 64
# The key of a partition's RestorePoint: no session id can hold U+0000.
RESTORE_POINT_KEY = "\x00restore-point"
_IDLE = frozenset({Phase.NEW.value, Phase.IDLE.value, Phase.CLOSED.value})


def is_live(phase: str | Phase) -> bool:
    """A turn is in progress: the session has effects or approvals pending."""
    return (phase.value if isinstance(phase, Phase) else phase) not in _IDLE


def snapshot_of(state: SessionState, *, events_offset: int, now: datetime) -> Snapshot:
    """`state` (after its event `state.last_seq`) as a snapshot record. `events_offset`: a
    lower bound of the offset of any later event of the session."""
    body = json.dumps(state_to_dict(state), separators=(",", ":"), ensure_ascii=False)
    return Snapshot(
        session_id=state.session_id,
        written_at=now,
        payload=SessionSnapshot(
            seq=state.last_seq,
            events_offset=events_offset,
            agent=state.agent,
            phase=state.phase.value,
            state_format=STATE_FORMAT,
            state=zlib.compress(body.encode("utf-8"), 1),
            next_deadline=next_deadline(state),
        ),
    )


def state_of(snapshot: SessionSnapshot) -> SessionState | None:
    """The state a snapshot holds, or None when it was written in a state format this
    code does not read (the caller folds the session's events instead)."""
    if snapshot.state_format not in READABLE_FORMATS:
        return None
    state: SessionState = state_from_dict(json.loads(zlib.decompress(snapshot.state)))
    return state


def restore_point(events_offset: int, input_next: int, now: datetime) -> Snapshot:
    """The partition's restore point: every event below `events_offset` is covered, and
    the inputs below `input_next` were decided."""
    return Snapshot(
        session_id=RESTORE_POINT_KEY,
        written_at=now,
        payload=RestorePoint(events_offset=events_offset, input_next=input_next),
    )
