"""A small persistent (immutable) vector: O(1) amortised append, O(1) index.

Rule: nothing here mutates; every append returns a new vector that shares all full
chunks with the old one. A session's history is appended to on almost every event and
a state is evolved 100k+ times a second, so `history + (entry,)` (a full copy, O(n) per
append, O(n²) per session) is not an option. Full chunks are 32 long and never change;
only the tail and the (short) tuple of chunk references are copied.

The representation is canonical (every chunk is exactly CHUNK long, the tail is shorter)
so that two vectors with the same items compare equal with `==`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, NamedTuple, TypeVar

__all__ = ["CHUNK", "EMPTY", "PVec", "pvec_of"]

T = TypeVar("T")

CHUNK = 32
_tuple_new = tuple.__new__
_SHIFT = 5
_MASK = CHUNK - 1


class PVec(NamedTuple, Generic[T]):
    """Items are `chunks` (each CHUNK long) followed by `tail` (< CHUNK long)."""

    chunks: tuple[tuple[T, ...], ...] = ()
    tail: tuple[T, ...] = ()

    def size(self) -> int:
        return (len(self.chunks) << _SHIFT) + len(self.tail)

    def append(self, item: T) -> PVec[T]:
        # tuple.__new__ skips the NamedTuple's Python-level __new__: this runs per event.
        chunks, tail = self
        if len(tail) < _MASK:
            result: PVec[T] = _tuple_new(PVec, (chunks, (*tail, item)))
        else:
            # The tail becomes full: it moves into chunks, so the tail stays < CHUNK.
            result = _tuple_new(PVec, ((*chunks, (*tail, item)), ()))
        return result

    def get(self, index: int) -> T:
        """Item at `index` (0 <= index < size); IndexError otherwise."""
        if index < 0:
            raise IndexError(f"PVec index {index} is negative")
        c = index >> _SHIFT
        chunks = self.chunks
        if c < len(chunks):
            return chunks[c][index & _MASK]
        return self.tail[index - (len(chunks) << _SHIFT)]

    def last(self) -> T | None:
        if self.tail:
            return self.tail[-1]
        if self.chunks:
            return self.chunks[-1][-1]
        return None

    def iter_from(self, start: int) -> Iterator[T]:
        """Items from index `start` to the end, in order."""
        chunks = self.chunks
        c = max(start, 0) >> _SHIFT
        offset = max(start, 0) & _MASK
        while c < len(chunks):
            yield from chunks[c][offset:]
            offset = 0
            c += 1
        tail_start = max(start - (len(chunks) << _SHIFT), 0)
        yield from self.tail[tail_start:]

    def items(self) -> Iterator[T]:
        return self.iter_from(0)


EMPTY: PVec[object] = PVec((), ())


def pvec_of(items: Iterable[T]) -> PVec[T]:
    """Build a canonical vector from items (used when restoring serialised state)."""
    seq = tuple(items)
    full = len(seq) >> _SHIFT << _SHIFT
    chunks = tuple(seq[i : i + CHUNK] for i in range(0, full, CHUNK))
    return PVec(chunks, seq[full:])
