"""Waiting for a condition in tests: one helper, so every test waits the same way."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["wait_until", "wait_until_blocking"]


async def wait_until(
    predicate: Callable[[], Any] | Callable[[], Awaitable[Any]],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.05,
    diagnose: Callable[[], str] | None = None,
) -> Any:
    """Poll `predicate` (sync or async) until it returns a truthy value, which is
    returned; AssertionError naming `what` (and `diagnose()`) at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{diagnose()}" if diagnose is not None else ""
            raise AssertionError(f"{what}: not reached within {timeout_s} s.{detail}")
        await asyncio.sleep(interval_s)


def wait_until_blocking(
    predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05
) -> Any:
    """`wait_until` for synchronous code (a test thread, not an event loop)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s.")
        time.sleep(interval_s)
