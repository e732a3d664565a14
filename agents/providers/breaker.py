"""Circuit breakers, one per "provider/model" target.

Rule: a target that failed `failure_threshold` times in a row (transient failures only:
429, 5xx, overloaded, timeouts, connection errors; a 400 is the request's fault, not the
model's) is *open* for `cooldown_s`: calls skip it straight to their next fallback model
without sending anything. After the cooldown one call at a time may probe it (half-open);
a success closes the circuit, a failure opens it again for another cooldown.

Breakers are process-local and in-memory on purpose: they protect this process's calls
from hammering a sick model; the durable record of an opening is the
`ProviderCircuitOpened` event the core writes from `LlmResponse.circuits_opened`.
The clock is injectable so tests never wait for a cooldown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerConfig", "BreakerRegistry", "CircuitBreaker", "CircuitState"]

Clock = Callable[[], float]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """`failure_threshold` consecutive failed attempts open a circuit for `cooldown_s`."""

    failure_threshold: int = 5
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(
                f"BreakerConfig.failure_threshold must be >= 1, got {self.failure_threshold}."
            )
        if self.cooldown_s < 0:
            raise ValueError(f"BreakerConfig.cooldown_s must be >= 0, got {self.cooldown_s}.")


class CircuitBreaker:
    """The breaker of one target. Not thread-safe: one event loop owns it."""

    def __init__(self, target: str, config: BreakerConfig, clock: Clock = time.monotonic) -> None:
        self.target = target
        self._config = config
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_started_at: float | None = None
        self.openings = 0

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(target={self.target!r}, state={self.state.value}, "
            f"failures={self._failures}, openings={self.openings})"
        )

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at < self._config.cooldown_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def allow(self) -> bool:
        """May a request be sent to this target now? Claims the probe when half-open."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN:
            return False
        now = self._clock()
        # A probe that never reported (its task was cancelled) must not wedge the circuit
        # half-open forever: after another cooldown a new probe may go.
        if (
            self._probe_started_at is not None
            and now - self._probe_started_at < self._config.cooldown_s
        ):
            return False
        self._probe_started_at = now
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_started_at = None

    def record_failure(self) -> bool:
        """Count one transient failure. True when this failure opened the circuit."""
        if self._opened_at is not None:
            if self.state is CircuitState.OPEN:
                # A request that was already in flight when the circuit opened: the same
                # incident, not a new opening.
                return False
            # A failed probe: open again for a fresh cooldown; that is a new opening.
            self._opened_at = self._clock()
            self._probe_started_at = None
            self.openings += 1
            return True
        self._failures += 1
        if self._failures >= self._config.failure_threshold:
            self._opened_at = self._clock()
            self._probe_started_at = None
            self.openings += 1
            return True
        return False


class BreakerRegistry:
    """All breakers of one process (or one provider), created on first use per target."""

    def __init__(self, config: BreakerConfig | None = None, clock: Clock = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def __repr__(self) -> str:
        return f"BreakerRegistry(config={self.config!r}, targets={sorted(self._breakers)!r})"

    def get(self, target: str) -> CircuitBreaker:
        breaker = self._breakers.get(target)
        if breaker is None:
            breaker = CircuitBreaker(target, self.config, self._clock)
            self._breakers[target] = breaker
        return breaker

    def states(self) -> dict[str, CircuitState]:
        """Every known target's state, for metrics and `turnlog` status output."""
        return {target: b.state for target, b in sorted(self._breakers.items())}
