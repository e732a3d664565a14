"""Circuit breakers and the retry loop's policy, with a fake clock (no waiting)."""

from __future__ import annotations

import random

import pytest

from agents.events import Usage
from agents.llm import LlmResponse
from agents.providers.base import ErrorType, ProviderError
from agents.providers.breaker import BreakerConfig, BreakerRegistry, CircuitBreaker, CircuitState
from agents.providers.retry import AttemptFailed, RetryPolicy, run_with_fallbacks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker("anthropic/m", BreakerConfig(threshold, cooldown), clock), clock


def test_opens_after_n_consecutive_failures_only() -> None:
    b, _ = breaker(threshold=3)
    assert [b.record_failure(), b.record_failure()] == [False, False]
    b.record_success()  # not consecutive any more
    assert [b.record_failure(), b.record_failure(), b.record_failure()] == [False, False, True]
    assert b.state is CircuitState.OPEN and not b.allow()
    assert b.openings == 1


def test_half_open_lets_one_probe_through_and_success_closes() -> None:
    b, clock = breaker(threshold=1, cooldown=10.0)
    assert b.record_failure()
    clock.now += 9.9
    assert not b.allow()
    clock.now += 0.2
    assert b.state is CircuitState.HALF_OPEN
    assert b.allow()  # the probe
    assert not b.allow()  # a second caller while the probe is out
    b.record_success()
    assert b.state is CircuitState.CLOSED and b.allow()


def test_failed_probe_reopens_and_counts_as_a_new_opening() -> None:
    b, clock = breaker(threshold=1, cooldown=5.0)
    b.record_failure()
    clock.now += 6
    assert b.allow()
    assert b.record_failure() is True
    assert b.state is CircuitState.OPEN and b.openings == 2


def test_late_failure_of_an_in_flight_request_is_the_same_incident() -> None:
    b, _ = breaker(threshold=1)
    assert b.record_failure() is True
    assert b.record_failure() is False
    assert b.openings == 1


def test_a_lost_probe_does_not_wedge_the_circuit() -> None:
    b, clock = breaker(threshold=1, cooldown=5.0)
    b.record_failure()
    clock.now += 6
    assert b.allow()  # probe claimed, its task then cancelled: never reports
    clock.now += 6
    assert b.allow()


def test_registry_keeps_one_breaker_per_target() -> None:
    registry = BreakerRegistry(BreakerConfig(1, 1.0), Clock())
    registry.get("anthropic/a").record_failure()
    assert registry.get("anthropic/a").state is CircuitState.OPEN
    assert registry.get("anthropic/b").state is CircuitState.CLOSED
    assert registry.states() == {
        "anthropic/a": CircuitState.OPEN,
        "anthropic/b": CircuitState.CLOSED,
    }


@pytest.mark.parametrize("config", [{"failure_threshold": 0}, {"cooldown_s": -1.0}])
def test_breaker_config_rejects_nonsense(config: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**config)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- backoff


def test_backoff_grows_exponentially_caps_and_jitters_downwards() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0, multiplier=2.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.delay_s(n, rng) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = RetryPolicy(base_delay_s=1.0, max_delay_s=5.0, jitter=0.5)
    delays = [jittered.delay_s(3, random.Random(seed)) for seed in range(50)]
    assert all(2.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 1


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=3.0, jitter=0.0)
    assert policy.delay_s(1, random.Random(), retry_after_s=2.0) == 2.0
    assert policy.delay_s(1, random.Random(), retry_after_s=60.0) == 3.0
    assert policy.delay_s(1, random.Random(), retry_after_s=0.01) == 0.1


# ----------------------------------------------------------------------------- the loop


def ok(model: str) -> LlmResponse:
    return LlmResponse(model=model, text="ok", tool_uses=(), stop_reason="end_turn", usage=Usage())


class Script:
    """Attempt function failing per model with the given errors, then answering."""

    def __init__(self, failures: dict[str, list[ErrorType | None]]) -> None:
        self.failures = failures
        self.sent: list[str] = []

    async def __call__(self, model: str, budget: float | None) -> LlmResponse:
        self.sent.append(model)
        queue = self.failures.get(model, [])
        error = queue.pop(0) if queue else None
        if error is None:
            return ok(model)
        retryable = error not in (ErrorType.INVALID_REQUEST, ErrorType.AUTHENTICATION)
        raise AttemptFailed(
            f"{error} from {model}", error_type=error, retryable=retryable, status_code=529
        )


async def test_loop_sleeps_backoff_between_retries_of_one_model() -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    attempt = Script({"a": [ErrorType.OVERLOADED, ErrorType.RATE_LIMITED]})
    response = await run_with_fallbacks(
        attempt,
        provider="p",
        models=["a"],
        policy=RetryPolicy(max_attempts=3, base_delay_s=0.5, multiplier=2.0, jitter=0.0),
        breakers=None,
        sleep=sleep,
    )
    assert (response.attempts, response.model, response.fallback_used) == (3, "a", False)
    assert slept == [0.5, 1.0]


async def test_loop_skips_open_circuits_and_reports_openings() -> None:
    registry = BreakerRegistry(BreakerConfig(failure_threshold=2, cooldown_s=60), Clock())
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.0, jitter=0.0)
    attempt = Script({"a": [ErrorType.OVERLOADED] * 10})
    first = await run_with_fallbacks(
        attempt, provider="p", models=["a", "b"], policy=policy, breakers=registry
    )
    # The circuit opened on a's 2nd failure, which ended a's retries early.
    assert attempt.sent == ["a", "a", "b"]
    assert first.circuits_opened == ("p/a",) and first.fallback_used and first.attempts == 3
    second = await run_with_fallbacks(
        attempt, provider="p", models=["a", "b"], policy=policy, breakers=registry
    )
    assert attempt.sent[3:] == ["b"]
    assert second.circuits_opened == () and second.attempts == 1 and second.fallback_used


async def test_loop_with_every_circuit_open_sends_nothing() -> None:
    registry = BreakerRegistry(BreakerConfig(failure_threshold=1, cooldown_s=60), Clock())
    registry.get("p/a").record_failure()
    attempt = Script({})
    with pytest.raises(ProviderError) as failure:
        await run_with_fallbacks(
            attempt, provider="p", models=["a"], policy=RetryPolicy(), breakers=registry
        )
    assert attempt.sent == []
    assert failure.value.error_type == ErrorType.CIRCUIT_OPEN
    assert failure.value.attempts == 0 and failure.value.retryable


async def test_loop_does_not_fall_back_on_a_non_retryable_error() -> None:
    attempt = Script({"a": [ErrorType.INVALID_REQUEST]})
    with pytest.raises(ProviderError) as failure:
        await run_with_fallbacks(
            attempt,
            provider="p",
            models=["a", "b"],
            policy=RetryPolicy(),
            breakers=BreakerRegistry(),
        )
    assert attempt.sent == ["a"]
    assert (failure.value.error_type, failure.value.attempts, failure.value.retryable) == (
        ErrorType.INVALID_REQUEST,
        1,
        False,
    )
