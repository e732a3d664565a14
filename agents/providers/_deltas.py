"""Delivery of streamed text deltas to the caller's callback.

Rule: deltas only feed live clients (`turnlog.deltas`); the durable log gets the final
completion. So a failing callback is logged once and switched off for the rest of the
call rather than failing an LLM call that is already paid for. Cancellation still
propagates (it is not an Exception).

A provider calls `restart()` as each attempt begins. When the previous attempt had
delivered text, the callback gets STREAM_RESTART first, so a live client can drop the
text of the failed attempt instead of showing the answer twice.
"""

from __future__ import annotations

import structlog

from agents.providers.base import STREAM_RESTART, DeltaCallback

__all__ = ["DeltaSink"]

log = structlog.get_logger("turnlog.providers")


class DeltaSink:
    """Wraps an optional `on_delta`; empty deltas are not forwarded."""

    __slots__ = ("_callback", "_in_attempt", "delivered")

    def __init__(self, callback: DeltaCallback | None) -> None:
        self._callback = callback
        self.delivered = 0
        self._in_attempt = 0  # deltas delivered since the current attempt began

    async def __call__(self, text: str) -> None:
        if not text:
            return
        if await self._forward(text):
            self.delivered += 1
            self._in_attempt += 1

    async def restart(self) -> None:
        """An attempt begins: retract the previous attempt's text, if it showed any."""
        if self._in_attempt:
            self._in_attempt = 0
            await self._forward(STREAM_RESTART)

    async def _forward(self, text: str) -> bool:
        if self._callback is None:
            return False
        try:
            await self._callback(text)
        except Exception as exc:
            log.warning("llm.delta_failed", error=type(exc).__name__, detail=str(exc)[:200])
            self._callback = None
            return False
        return True
