"""turnlog's web console and HTTP API (`turnlog ui`).

A Starlette application: server-rendered pages (Jinja2), a JSON + Server-Sent-Events API
described by OpenAPI (/api/openapi.json), one live Kafka tail fanned out to every
follower, reads from the Postgres projections, requests produced through
`turnlog.Client`. Loopback by default; tokens, CSRF and size limits in console.security.
"""

from turnlog.console.app import create_app
from turnlog.console.backend import Backend
from turnlog.console.config import ConsoleConfig, ConsoleConfigError, load_console_config

__all__ = ["Backend", "ConsoleConfig", "ConsoleConfigError", "create_app", "load_console_config"]
