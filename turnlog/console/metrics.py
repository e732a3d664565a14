"""Prometheus metrics of a console process, served at /metrics (behind the Guard: with
tokens configured, a scrape needs a bearer token like any other call).

Rule: one bookkeeping, read when scraped — the live hub's followers and records, and the
requests the API produced (counted where they are produced, console.api._answer).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from turnlog.console.backend import Backend

__all__ = ["metrics_endpoint"]


class _Collector(Collector):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        hub = self.backend.hub
        yield GaugeMetricFamily(
            "turnlog_console_followers", "Live followers (SSE streams) now.", value=hub.followers
        )
        yield CounterMetricFamily(
            "turnlog_console_live_records",
            "Records the live tail read from the events and deltas topics.",
            value=hub.records,
        )
        yield GaugeMetricFamily(
            "turnlog_console_live_ok",
            "1 while the live tail reads without error.",
            value=0 if hub.error else 1,
        )
        produced = CounterMetricFamily(
            "turnlog_console_requests",
            "Requests the console produced, by request type.",
            labels=["type"],
        )
        for kind, n in sorted(self.backend.produced.items()):
            produced.add_metric([kind], n)
        yield produced


def metrics_endpoint(backend: Backend) -> Response:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Collector(backend))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")


async def metrics(request: Request) -> Response:
    backend: Backend = request.app.state.backend
    return metrics_endpoint(backend)
