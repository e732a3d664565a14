"""Errors of the local infrastructure: the outside world (a JVM, a server, a tool) failed."""

from __future__ import annotations

from agents.errors import ExternalError

__all__ = ["DevInfraError", "MissingToolError"]


class DevInfraError(ExternalError):
    """Kafka or PostgreSQL of `turnlog dev` could not be started, reached or stopped."""


class MissingToolError(DevInfraError):
    """A program the local infrastructure needs (java, mvn, PostgreSQL) is not installed."""
