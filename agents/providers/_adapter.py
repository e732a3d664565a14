"""What every vendor adapter shares: one `complete` that runs the adapter's single
attempts through the one retry/fallback loop (agents.providers.retry), and the async
context manager that closes its client.

Rule: an adapter defines `name`, `attempt(request, model, deltas, budget)` (ONE request
to one model: an LlmResponse or an AttemptFailed) and `aclose()`, and holds `retry`,
`breakers` and `_sleep` (and, when it has them, `request_timeout_s` and `_rng`);
retries, fallbacks, breakers and the stream restart marker are never its business.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Self

from agents.llm import LlmRequest, LlmResponse
from agents.providers._deltas import DeltaSink
from agents.providers.base import DeltaCallback
from agents.providers.breaker import BreakerRegistry
from agents.providers.retry import RetryPolicy, Sleep, run_with_fallbacks

__all__ = ["FallbackAdapter"]


class FallbackAdapter:
    name: str
    retry: RetryPolicy
    breakers: BreakerRegistry | None  # None: no circuit breakers (the scripted model)
    _sleep: Sleep
    request_timeout_s: float | None = None
    _rng: random.Random | None = None

    async def attempt(
        self, request: LlmRequest, model: str, deltas: DeltaSink, budget: float | None
    ) -> LlmResponse:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def complete(
        self,
        request: LlmRequest,
        *,
        fallbacks: Sequence[str] = (),
        on_delta: DeltaCallback | None = None,
        timeout_s: float | None = None,
    ) -> LlmResponse:
        """`request.model`, then each of `fallbacks`, through the retry loop (see
        agents.providers.base.Provider)."""
        deltas = DeltaSink(on_delta)

        async def attempt(model: str, budget: float | None) -> LlmResponse:
            await deltas.restart()
            return await self.attempt(request, model, deltas, budget)

        return await run_with_fallbacks(
            attempt,
            provider=self.name,
            models=[request.model, *fallbacks],
            policy=self.retry,
            breakers=self.breakers,
            timeout_s=timeout_s,
            attempt_timeout_s=self.request_timeout_s,
            sleep=self._sleep,
            rng=self._rng,
        )
