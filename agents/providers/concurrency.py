"""Per-model concurrency limits: at most N requests to a model in flight in a process.

A deployment that knows its vendor limits (concurrent requests per model, or a rate it
would rather meet by bounding concurrency) sets them here instead of learning them from
429 answers: `TURNLOG_MODEL_CONCURRENCY='{"claude-sonnet-4-5": 4, "*": 16}'`. The limit
is per worker process (each effect runner holds its own slots): with W workers a model
sees at most W x N requests at once, so divide the vendor's limit by the worker count.

A request waits for a slot inside its attempt's time budget (the call's deadline still
holds: a request that waited too long fails as timed out, like one the vendor kept too
long), and holds it for one attempt: a retry or a fallback model takes a slot of its own
model again. The waiting is counted (`waits`), so a limit that throttles shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

__all__ = ["ANY_MODEL", "ModelConcurrency"]

# The key whose limit applies to every model not named.
ANY_MODEL = "*"


class ModelConcurrency:
    """Slots per model name (the catalog's name, as the agent file writes it)."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        for model, limit in limits.items():
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(
                    f"the concurrency limit of {model!r} must be a whole number >= 1, got {limit!r}"
                )
        self.limits = dict(limits)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._held: dict[str, int] = {}
        self.waits = 0  # requests that found every slot of their model taken

    def limit_of(self, model: str) -> int | None:
        return self.limits.get(model, self.limits.get(ANY_MODEL))

    @contextlib.asynccontextmanager
    async def slot(self, model: str) -> AsyncIterator[None]:
        """Hold one of `model`'s slots for the body (no limit: at once)."""
        limit = self.limit_of(model)
        if limit is None:
            yield
            return
        slots = self._slots.get(model)
        if slots is None:
            slots = self._slots[model] = asyncio.Semaphore(limit)
        if slots.locked():
            self.waits += 1
        async with slots:
            self._held[model] = self._held.get(model, 0) + 1
            try:
                yield
            finally:
                self._held[model] -= 1

    def in_flight(self, model: str) -> int:
        """Requests to `model` holding a slot now (0 for a model without a limit)."""
        return self._held.get(model, 0)
