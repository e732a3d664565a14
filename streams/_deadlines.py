"""The deadlines of the sessions a worker holds, ordered by due time.

Rule: a Tick costs the sessions that are due, not every session held. Each session has
at most one current deadline (`set`); the heap may hold stale entries of earlier
deadlines, which `due` skips, and it is rebuilt from the current ones when stale entries
outnumber them.
"""

from __future__ import annotations

import heapq
from datetime import datetime

__all__ = ["DeadlineIndex"]


class DeadlineIndex:
    def __init__(self) -> None:
        self._current: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._current)

    def set(self, session_id: str, due: datetime | None) -> None:
        """`session_id`'s next deadline is `due` (None: it has none, or left memory)."""
        if due is None:
            self._current.pop(session_id, None)
            return
        if self._current.get(session_id) == due:
            return
        self._current[session_id] = due
        heapq.heappush(self._heap, (due, session_id))
        if len(self._heap) > 4 * len(self._current) + 64:
            self._heap = [(d, s) for s, d in self._current.items()]
            heapq.heapify(self._heap)

    def due(self, now: datetime) -> list[tuple[str, datetime]]:
        """The sessions whose current deadline is at or before `now` (they stay in the
        index until their state changes: the caller ticks each deadline once)."""
        out = []
        keep = []
        while self._heap and self._heap[0][0] <= now:
            due, session_id = heapq.heappop(self._heap)
            if self._current.get(session_id) == due:
                out.append((session_id, due))
                keep.append((due, session_id))
        for entry in keep:  # still current: due again until the session moves on
            heapq.heappush(self._heap, entry)
        return out
