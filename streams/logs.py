"""structlog configuration for the shells (workers, CLI). The pure core never logs.

JSON lines when stderr is not a terminal, pretty console output when it is. Every line is
bound with the ids that matter (session_id, turn_id, seq, effect_id) by the callers.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from streams.telemetry import add_trace_context

__all__ = ["configure_logging", "get_logger"]

_configured = False


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    global _configured
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_context,  # trace_id / span_id of the effect a line is about
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Quiet the Kafka client's own chatter; its warnings still come through.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _configured = True


def get_logger(**bound: Any) -> Any:
    if not _configured:
        configure_logging()
    return structlog.get_logger("turnlog").bind(**bound)
