"""Prometheus metrics of a projector: its own counters, lag per partition, readiness.

The HTTP endpoint that serves them is the workers' (streams.endpoint), put together by
the front door (turnlog): projections does not import streams.

Rule: one bookkeeping. Everything is read from the projector when scraped — the
counters of `Projector.stats()` (the `projector.metrics` log line's), `Projector.lag()`
and `Projector.ready()` — nothing is counted a second time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["PROJECTOR_METRICS", "ProjectorMetrics"]

# stats() key -> (metric name, help, counter?)
PROJECTOR_METRICS: dict[str, tuple[str, str, bool]] = {
    "events_applied": ("turnlog_projector_events_applied", "Events projected into Postgres.", True),
    "batches": ("turnlog_projector_transactions", "Postgres transactions committed.", True),
    "events_quarantined": (
        "turnlog_projector_events_quarantined",
        "Events set aside in projection_quarantine.",
        True,
    ),
    "reconnects": ("turnlog_projector_reconnects", "Postgres connections made again.", True),
    "reseeks": (
        "turnlog_projector_reseeks",
        ("Stored positions found moved by another process."),
        True,
    ),
    "partitions_stopped": (
        "turnlog_projector_partitions_stopped",
        ("Partitions stopped (seq gap, conflicting duplicate) until an operator clears them."),
        False,
    ),
    "group_commits": (
        "turnlog_projector_group_commits",
        ("Mirrors of the positions to the consumer group's offsets in Kafka."),
        True,
    ),
}


class _Collector(Collector):
    def __init__(self, owner: ProjectorMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        projector = self._owner.projector
        for key, value in projector.stats().items():
            name, doc, counter = PROJECTOR_METRICS.get(
                key, (f"turnlog_projector_{key}", f"Projector counter {key!r}.", True)
            )
            family = CounterMetricFamily if counter else GaugeMetricFamily
            yield family(name, doc, value=value)
        yield CounterMetricFamily(
            "turnlog_projector_db_seconds",
            "Seconds in Postgres transactions.",
            value=projector.db_seconds,
        )
        yield CounterMetricFamily(
            "turnlog_projector_decode_seconds",
            "Seconds decoding records.",
            value=projector.decode_seconds,
        )
        lag = GaugeMetricFamily(
            "turnlog_projector_lag",
            "Events of an owned partition not projected yet (transaction markers not counted).",
            labels=["partition"],
        )
        for p, value in sorted(self._owner.lag.items()):
            lag.add_metric([str(p)], value)
        yield lag
        yield GaugeMetricFamily(
            "turnlog_projector_ready",
            "1 when connected and consuming (what /readyz says).",
            value=1 if projector.ready()[0] else 0,
        )


class ProjectorMetrics:
    """The metrics of one projector (`registry`: the process's, shared by `worker all`)."""

    def __init__(self, projector: Any, registry: CollectorRegistry | None = None) -> None:
        self.projector = projector
        self.registry = registry if registry is not None else CollectorRegistry()
        self.lag: dict[int, int] = {}
        self.registry.register(_Collector(self))

    async def refresh(self) -> None:
        self.lag = await self.projector.lag()
