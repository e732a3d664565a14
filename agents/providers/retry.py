"""The one retry loop of LLM calls: backoff, fallback models, circuit breakers, deadline.

Rule: retries have exactly one owner, this loop. SDKs run with their own retries off;
an adapter only sends ONE request per `attempt(model, timeout)` call and classifies its
failure as an `AttemptFailed`. The loop then decides:

- retryable failure (429, 5xx, overloaded, timeout, connection): sleep an exponential
  backoff with jitter (honouring a server's retry-after, capped) and try the same model
  again, up to `RetryPolicy.max_attempts` per model; then fall back to the next model;
- non-retryable failure (400, 401, 403, 404, ...): raise at once, no fallback: another
  model would get the same broken request or the same missing permission;
- a model whose circuit is open is skipped without sending anything;
- `timeout_s` bounds the whole call (attempts, sleeps and fallbacks together).

Every request sent counts in `attempts`, over all models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from agents.errors import ExternalError
from agents.llm import LlmResponse
from agents.providers.base import ErrorType, ProviderError
from agents.providers.breaker import BreakerRegistry

__all__ = ["AttemptFailed", "RetryPolicy", "run_with_fallbacks"]

log = structlog.get_logger("turnlog.providers")

Attempt = Callable[[str, float | None], Awaitable[LlmResponse]]
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# Retry jitter needs spread, not secrecy: one generator for the process (seeding a new
# one per call read os.urandom on every LLM call).
_JITTER = random.Random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Per-model attempts and the backoff between them.

    The n-th retry waits `min(max_delay_s, base_delay_s * multiplier**(n-1))`, reduced by
    up to `jitter` of itself at random (so synchronized clients spread out), or the
    server's retry-after when that is longer (still capped at `max_delay_s`).
    """

    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}.")
        if self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("RetryPolicy delays must be >= 0 seconds.")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"RetryPolicy.jitter must be within [0, 1], got {self.jitter}.")

    def delay_s(self, retry: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 = the first retry)."""
        backoff = min(self.max_delay_s, self.base_delay_s * self.multiplier ** (retry - 1))
        backoff *= 1.0 - self.jitter * rng.random()
        if retry_after_s is not None and retry_after_s > backoff:
            backoff = min(self.max_delay_s, retry_after_s)
        return backoff


class AttemptFailed(ExternalError):
    """One request to one model failed; raised by an adapter's attempt, caught by the loop.

    `counts_for_breaker`: whether this says something about the model's health (a 529
    does, a 400 does not). The message must already be free of credentials.
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: ErrorType,
        retryable: bool,
        counts_for_breaker: bool | None = None,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.retryable = retryable
        self.counts_for_breaker = retryable if counts_for_breaker is None else counts_for_breaker
        self.status_code = status_code
        self.retry_after_s = retry_after_s


def _unique(models: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    ordered: list[str] = []
    for model in models:
        if model and model not in seen:
            seen.add(model)
            ordered.append(model)
    return ordered


async def run_with_fallbacks(
    attempt: Attempt,
    *,
    provider: str,
    models: Sequence[str],
    policy: RetryPolicy,
    breakers: BreakerRegistry | None,
    timeout_s: float | None = None,
    attempt_timeout_s: float | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
    provider_of: Callable[[str], str] | None = None,
) -> LlmResponse:
    """Serve one call from `models` (primary first). See the module docstring for the rule.

    `provider_of(model)` names the provider serving `model` when the models of one call
    are served by several (a cross-vendor fallback chain); default: `provider` for all.
    Circuits and log lines are per "provider/model" target.

    `attempt(model, timeout)` sends one request; `timeout` is the time it may take (the
    smaller of `attempt_timeout_s` and what is left of `timeout_s`; None = unbounded).
    Returns the answering attempt's response with `model`, `attempts`, `fallback_used`
    and `circuits_opened` filled in; raises ProviderError otherwise.
    """
    rng = rng or _JITTER
    ordered = _unique(models)
    if not ordered:
        raise ValueError("run_with_fallbacks needs at least one model.")
    started = clock()
    deadline = None if timeout_s is None else started + timeout_s
    attempts = 0
    opened: list[str] = []
    last: AttemptFailed | None = None
    last_model = ordered[0]
    skipped: list[str] = []

    def failure(message: str, error: AttemptFailed | None, model: str) -> ProviderError:
        return ProviderError(
            message,
            error_type=error.error_type if error else ErrorType.CIRCUIT_OPEN,
            attempts=attempts,
            retryable=error.retryable if error else True,
            circuits_opened=opened,
            model=model,
            status_code=error.status_code if error else None,
        )

    chain_provider = provider

    def serving(model: str) -> str:
        return provider_of(model) if provider_of is not None else chain_provider

    for index, model in enumerate(ordered):
        provider = serving(model)
        target = f"{provider}/{model}"
        breaker = breakers.get(target) if breakers is not None else None
        if breaker is not None and not breaker.allow():
            skipped.append(target)
            log.info("llm.circuit_skipped", provider=provider, model=model, target=target)
            continue
        last_model = model
        for number in range(1, policy.max_attempts + 1):
            budget = attempt_timeout_s
            if deadline is not None:
                left = deadline - clock()
                if left <= 0:
                    raise _deadline_error(provider, model, timeout_s, attempts, opened, last)
                budget = left if budget is None else min(budget, left)
            attempts += 1
            try:
                async with asyncio.timeout(budget):
                    response = await attempt(model, budget)
            except TimeoutError:
                last = AttemptFailed(
                    f"The request to {target} did not finish within {budget:.3f} s.",
                    error_type=ErrorType.TIMEOUT,
                    retryable=True,
                )
            except AttemptFailed as exc:
                last = exc
            else:
                if breaker is not None:
                    breaker.record_success()
                response = dataclasses.replace(
                    response,
                    model=model,
                    attempts=attempts,
                    fallback_used=index > 0,
                    circuits_opened=tuple(opened),
                )
                log.info(
                    "llm.call",
                    outcome="completed",
                    provider=provider,
                    model=model,
                    attempts=attempts,
                    fallback_used=response.fallback_used,
                    circuits_opened=list(opened),
                    stop_reason=response.stop_reason,
                    input_tokens=response.usage.input_tokens,
                    output_tokens=response.usage.output_tokens,
                    cache_read_tokens=response.usage.cache_read_tokens,
                    cache_write_tokens=response.usage.cache_write_tokens,
                    latency_ms=int((clock() - started) * 1000),
                )
                return response

            circuit_opened = False
            if breaker is not None and last.counts_for_breaker:
                circuit_opened = breaker.record_failure()
                if circuit_opened:
                    opened.append(target)
                    log.warning("llm.circuit_opened", provider=provider, target=target)
            if not last.retryable:
                log.warning(
                    "llm.call",
                    outcome="failed",
                    provider=provider,
                    model=model,
                    attempts=attempts,
                    error_type=str(last.error_type),
                    status_code=last.status_code,
                    latency_ms=int((clock() - started) * 1000),
                )
                raise failure(
                    f"The LLM call to {target} failed and is not retryable "
                    f"({last.error_type}, after {attempts} attempt(s)): {last.message}",
                    last,
                    model,
                )
            if circuit_opened or number == policy.max_attempts:
                break
            delay = policy.delay_s(number, rng, last.retry_after_s)
            if deadline is not None and clock() + delay >= deadline:
                break  # no time left to wait for this model; a fallback may still answer
            log.warning(
                "llm.attempt_failed",
                provider=provider,
                model=model,
                attempt=number,
                error_type=str(last.error_type),
                status_code=last.status_code,
                retry_in_s=round(delay, 4),
            )
            await sleep(delay)
        if index + 1 < len(ordered):
            log.warning(
                "llm.fallback",
                provider=provider,
                from_model=model,
                error_type=str(last.error_type) if last else None,
            )

    log.warning(
        "llm.call",
        outcome="failed",
        provider=provider,
        model=last_model,
        attempts=attempts,
        error_type=str(last.error_type) if last else str(ErrorType.CIRCUIT_OPEN),
        circuits_opened=list(opened),
        skipped=skipped,
        latency_ms=int((clock() - started) * 1000),
    )
    if last is None:
        raise failure(
            f"No request was sent: the circuit of every model is open ({', '.join(skipped)}).",
            None,
            last_model,
        )
    tried = ", ".join(f"{serving(m)}/{m}" for m in ordered if f"{serving(m)}/{m}" not in skipped)
    note = f"; skipped with open circuits: {', '.join(skipped)}" if skipped else ""
    raise failure(
        f"The LLM call failed on every model after {attempts} attempt(s) "
        f"(tried {tried}{note}); last error ({last.error_type}): {last.message}",
        last,
        last_model,
    )


def _deadline_error(
    provider: str,
    model: str,
    timeout_s: float | None,
    attempts: int,
    opened: list[str],
    last: AttemptFailed | None,
) -> ProviderError:
    cause = f"; last error ({last.error_type}): {last.message}" if last else ""
    return ProviderError(
        f"The LLM call ran out of its {timeout_s} s deadline after {attempts} attempt(s) "
        f"(last model {provider}/{model}){cause}",
        error_type=ErrorType.TIMEOUT,
        attempts=attempts,
        retryable=True,
        circuits_opened=opened,
        model=model,
        status_code=last.status_code if last else None,
    )
