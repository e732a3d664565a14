"""What the CPU-bound benchmarks share: the best of R runs of a function, as events/s."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(label: str, n: int, repeat: int, fn: Callable[[], object], width: int = 34) -> float:
    """Run `fn` `repeat` times; print and return n / (fastest run's CPU seconds)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    per_second = n / best
    print(f"  {label:<{width}} {per_second:>11,.0f} events/s   {best / n * 1e6:7.2f} us/event")
    return per_second
