"""Delivery of streamed text deltas to the caller's callback.

Rule: deltas only feed live clients (`turnlog.deltas`); the durable log gets the final
completion. So a failing callback is logged once and switched off for the rest of the
call rather than failing an LLM call that is already paid for. Cancellation still
propagates (it is not an Exception).
"""

from __future__ import annotations

import structlog

from agents.providers.base import DeltaCallback

__all__ = ["DeltaSink"]

log = structlog.get_logger("turnlog.providers")


class DeltaSink:
    """Wraps an optional `on_delta`; empty deltas are not forwarded."""

    __slots__ = ("_callback", "delivered")

    def __init__(self, callback: DeltaCallback | None) -> None:
        self._callback = callback
        self.delivered = 0

    async def __call__(self, text: str) -> None:
        if self._callback is None or not text:
            return
        try:
            await self._callback(text)
        except Exception as exc:  # noqa: BLE001 - see the module docstring
            log.warning("llm.delta_failed", error=type(exc).__name__, detail=str(exc)[:200])
            self._callback = None
            return
        self.delivered += 1
