"""A worker's HTTP endpoint: `/metrics` (Prometheus text format), `/healthz`, `/readyz`.

Rule: it binds the loopback unless told otherwise, and a non-loopback address needs a
bearer token (`EndpointConfig.token`: TURNLOG_METRICS_TOKEN or its _FILE); then every
path but `/healthz` answers 401 without `Authorization: Bearer <token>`. `/healthz`
says only that the process's event loop answers (what a liveness probe or compose's
healthcheck needs, without a secret).

Why no web framework: three GET routes on the worker's own event loop (asyncio's
server, prometheus_client's text exposition). Serving on the loop, rather than in
prometheus_client's server thread, lets a scrape read the workers' state with no lock
and lets `/metrics` ask the consumer for positions (lag) before it renders.

A port that cannot be bound is logged (`endpoint.unavailable`) and the worker runs on
without it: observability must not take the work down (a healthcheck then fails,
which is loud enough). The bound port is logged (`endpoint.listening`): port 0 asks
the system for a free one (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams.logs import get_logger

__all__ = ["Endpoint", "EndpointConfig", "endpoint_config", "is_loopback", "serving"]

Check = Callable[[], tuple[bool, str]]
_MAX_HEADER_LINES = 64
_READ_TIMEOUT_S = 5.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    host: str = "127.0.0.1"
    port: int = 9464
    token: str | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.enabled and not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"The metrics endpoint would listen on {self.host}, which is not a loopback "
                "address, without a token: set TURNLOG_METRICS_TOKEN (or _FILE)."
            )


def endpoint_config(settings: Any, *, port: int | None = None) -> EndpointConfig:
    """The endpoint of a worker from turnlog's settings (`port`: another role's port)."""
    token = settings.metrics_token
    return EndpointConfig(
        host=settings.metrics_host,
        port=settings.metrics_port if port is None else port,
        token=token.get_secret_value() if token is not None else None,
        enabled=settings.metrics_enabled,
    )


class Endpoint:
    """The endpoint of one worker process (`start()` on its event loop)."""

    def __init__(
        self,
        config: EndpointConfig,
        registry: CollectorRegistry,
        *,
        ready: Check,
        live: Check | None = None,
        refresh: Callable[[], Awaitable[None]] | None = None,
        name: str = "worker",
    ) -> None:
        self.config = config
        self.registry = registry
        self._ready = ready
        self._live = live
        self._refresh = refresh
        self._server: asyncio.Server | None = None
        self._log = get_logger(component="endpoint", worker=name)
        self.port: int | None = None
        self._expected = f"Bearer {config.token}".encode() if config.token else None

    async def start(self) -> int | None:
        """Listen; the bound port, or None when disabled or the port could not be bound."""
        if not self.config.enabled:
            return None
        try:
            self._server = await asyncio.start_server(
                self._serve, self.config.host, self.config.port, limit=16 * 1024
            )
        except OSError as exc:
            self._log.error(
                "endpoint.unavailable", host=self.config.host, port=self.config.port, error=str(exc)
            )
            return None
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._log.info(
            "endpoint.listening",
            host=self.config.host,
            port=self.port,
            paths=["/metrics", "/healthz", "/readyz"],
            authenticated=self._expected is not None,
        )
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = [False]
        try:
            status, ctype, body, extra = await asyncio.wait_for(
                self._answer(reader, head_only), _READ_TIMEOUT_S
            )
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            ConnectionError,
        ):
            status, ctype, body, extra = 400, "text/plain", b"bad request\n", {}
        except Exception as exc:
            self._log.exception("endpoint.failed", error=repr(exc))
            status, ctype, body, extra = 500, "text/plain", b"internal error\n", {}
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in extra.items()),
        ]
        if head_only[0]:
            body = b""  # HEAD: the headers a GET gets, no body
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self, reader: asyncio.StreamReader, head_only: list[bool]
    ) -> tuple[int, str, bytes, dict[str, str]]:
        line = (await reader.readline()).decode("latin-1").strip()
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise ValueError("not an HTTP request line")
        method, target = parts[0], parts[1]
        auth = b""
        for _ in range(_MAX_HEADER_LINES):
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            key, _, value = header.partition(b":")
            if key.strip().lower() == b"authorization":
                auth = value.strip()
        else:
            raise ValueError("too many header lines")
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n", {"Allow": "GET, HEAD"}
        head_only[0] = method == "HEAD"
        path = target.split("?", 1)[0]
        if path == "/healthz":
            ok, detail = self._live() if self._live is not None else (True, "ok")
            return (200 if ok else 503), "text/plain", f"{detail}\n".encode(), {}
        if self._expected is not None and not hmac.compare_digest(auth, self._expected):
            return (
                401,
                "text/plain",
                b"unauthorized\n",
                {"WWW-Authenticate": 'Bearer realm="turnlog"'},
            )
        if path == "/readyz":
            ok, detail = self._ready()
            return (200 if ok else 503), "text/plain", f"{detail}\n".encode(), {}
        if path == "/metrics":
            if self._refresh is not None:
                await self._refresh()
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry), {}
        return 404, "text/plain", b"not found\n", {}


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


async def serving(endpoint: Endpoint | None, work: Awaitable[Any]) -> Any:
    """Run `work` with `endpoint` listening (started first: /healthz answers while the
    worker waits for its broker)."""
    if endpoint is None:
        return await work
    await endpoint.start()
    try:
        return await work
    finally:
        await endpoint.stop()
