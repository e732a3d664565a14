"""One `Provider` over many vendors: each model of a call goes to the adapter of its
endpoint, and a fallback chain may cross vendors (a Claude model, then an OpenAI model,
then a local one).

Rule: routing changes *where* a request goes, never *what* it is. The `LlmRequest` (and
its digest) is the same whatever vendor serves it; each adapter translates it to its own
wire format at the last moment. There is still exactly one retry loop per call
(`agents.providers.retry.run_with_fallbacks`), so attempts, `fallback_used` and
`circuits_opened` are counted over the whole chain exactly as for a single vendor, and
circuits are per "endpoint/model" target.

A model no endpoint serves (unknown to the catalog, or its endpoint has no key), one
that cannot call tools when the request offers some, or one that cannot see (the
catalog's `vision`) when the request holds images or documents, is skipped like a model
with an open circuit, and logged; when no model of the call can be
served, the call fails with `ProviderError(error_type="not_configured")` and nothing is
sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from agents.llm import LlmRequest, LlmResponse, MediaBlock
from agents.pricing import find_model
from agents.providers._deltas import DeltaSink
from agents.providers.base import DeltaCallback, ErrorType, ProviderConfigError, ProviderError
from agents.providers.blobs import BlobStore, resolve_media
from agents.providers.breaker import BreakerConfig, BreakerRegistry
from agents.providers.concurrency import ModelConcurrency
from agents.providers.retry import RetryPolicy, Sleep, run_with_fallbacks

__all__ = ["Adapter", "Route", "RoutedProvider"]

log = structlog.get_logger("turnlog.providers")


class Adapter(Protocol):
    """One vendor's translation: sends ONE request for `model` (the id the endpoint
    knows) and returns its answer, or raises `AttemptFailed`. Retries are not its job."""

    async def attempt(
        self, request: LlmRequest, model: str, deltas: DeltaSink, budget: float | None
    ) -> LlmResponse: ...


@dataclass(frozen=True, slots=True)
class Route:
    """Where a model goes: `endpoint` names the provider in circuit targets and logs,
    `wire_model` is the id sent (a catalog entry's `api_model`, or its name)."""

    endpoint: str
    adapter: Adapter
    wire_model: str
    tools: bool = True  # the model can call tools (the catalog's capability)


Resolver = Callable[[str], Route]
"""Model name -> its Route; raises ProviderConfigError saying why it has none."""


class RoutedProvider:
    """`Provider` that serves each model of a call through its endpoint's adapter.
    `blobs`: where attachments sent by reference are read (agents.providers.blobs)."""

    name = "router"
    blobs: BlobStore | None = None
    # Per-model limits of requests in flight (agents.providers.concurrency); None: none.
    concurrency: ModelConcurrency | None = None

    def __init__(
        self,
        resolve: Resolver,
        *,
        retry: RetryPolicy | None = None,
        breakers: BreakerRegistry | None = None,
        request_timeout_s: float | None = 600.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._resolve = resolve
        self.retry = retry or RetryPolicy()
        self.breakers = breakers or BreakerRegistry(BreakerConfig())
        self.request_timeout_s = request_timeout_s
        self._rng = rng or random.Random()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"RoutedProvider(retry={self.retry!r}, breakers={self.breakers!r})"

    def route(self, model: str) -> Route:
        return self._resolve(model)

    async def count_tokens(self, request: LlmRequest, model: str | None = None) -> int | None:
        """The exact input tokens of `request` for `model` (default: its own), counted by
        the vendor's API where it offers that (Anthropic's `count_tokens`); None where it
        does not, so the caller keeps its estimate. ProviderError when the count fails."""
        route = self._resolve(model or request.model)
        counter = getattr(route.adapter, "count_tokens", None)
        if counter is None:
            return None
        counted: int = await counter(request, route.wire_model)
        return counted

    async def complete(
        self,
        request: LlmRequest,
        *,
        fallbacks: Sequence[str] = (),
        on_delta: DeltaCallback | None = None,
        timeout_s: float | None = None,
    ) -> LlmResponse:
        request = resolve_media(request, self.blobs)
        routes: dict[str, Route] = {}
        unroutable: list[str] = []
        media = any(isinstance(b, MediaBlock) for m in request.messages for b in m.content)
        for model in (request.model, *fallbacks):
            if not model or model in routes:
                continue
            try:
                route = self._resolve(model)
                if request.tools and not route.tools:
                    raise ProviderConfigError(
                        "it cannot call tools (the catalog says tools = false) and the "
                        "request offers some"
                    )
                info = find_model(model) if media else None
                if info is not None and not info.vision:
                    raise ProviderConfigError(
                        "it cannot read images or documents (the catalog says vision = "
                        "false) and the request holds some"
                    )
            except ProviderConfigError as exc:
                unroutable.append(f"{model} ({exc})")
                log.warning("llm.model_unroutable", model=model, reason=str(exc))
            else:
                routes[model] = route
        if not routes:
            raise ProviderError(
                "No request was sent: no configured provider serves any model of the call: "
                + "; ".join(unroutable),
                error_type=ErrorType.NOT_CONFIGURED,
                attempts=0,
                retryable=False,
                model=request.model,
            )
        deltas = DeltaSink(on_delta)

        async def attempt(model: str, budget: float | None) -> LlmResponse:
            await deltas.restart()
            route = routes[model]
            if self.concurrency is None:
                return await route.adapter.attempt(request, route.wire_model, deltas, budget)
            async with self.concurrency.slot(model):
                return await route.adapter.attempt(request, route.wire_model, deltas, budget)

        response = await run_with_fallbacks(
            attempt,
            provider=self.name,
            models=list(routes),
            policy=self.retry,
            breakers=self.breakers,
            timeout_s=timeout_s,
            attempt_timeout_s=self.request_timeout_s,
            sleep=self._sleep,
            rng=self._rng,
            provider_of=lambda model: routes[model].endpoint,
        )
        if response.model != request.model and not response.fallback_used:
            # The primary had no route, so the first model tried was already a fallback.
            response = dataclasses.replace(response, fallback_used=True)
        return response
