"""The front door's wiring of the workers' endpoints (/metrics, /healthz, /readyz).

Rule: settings are read here (turnlog/) and handed down as an EndpointConfig; the
metrics themselves live with the workers (streams.metrics, projections.metrics).
"""

from __future__ import annotations

from typing import Any

from streams.endpoint import Endpoint, endpoint_config

__all__ = ["projector_endpoint", "worker_all_endpoint"]


def projector_endpoint(projector: Any, settings: Any) -> Endpoint:
    """A projector's endpoint, on TURNLOG_PROJECTOR_METRICS_PORT."""
    from projections.metrics import ProjectorMetrics

    metrics = ProjectorMetrics(projector)
    return Endpoint(
        endpoint_config(settings, port=settings.projector_metrics_port),
        metrics.registry,
        ready=projector.ready,
        refresh=metrics.refresh,
        name="projector",
    )


def worker_all_endpoint(workers: Any, settings: Any) -> Endpoint:
    """`worker all`'s one endpoint (TURNLOG_METRICS_PORT): the session worker's metrics
    and the projector's in one registry; ready when both are."""
    from projections.metrics import ProjectorMetrics
    from streams.metrics import SessionMetrics

    session = SessionMetrics(workers.session.worker, workers.session.effects)
    projector = ProjectorMetrics(workers.projector, registry=session.registry)

    def ready() -> tuple[bool, str]:
        checks = [("session worker", session.ready()), ("projector", workers.projector.ready())]
        ok = all(result[0] for _, result in checks)
        return ok, "; ".join(f"{name}: {detail}" for name, (_, detail) in checks)

    async def refresh() -> None:
        await session.refresh()
        await projector.refresh()

    return Endpoint(
        endpoint_config(settings), session.registry, ready=ready, refresh=refresh, name="all"
    )
