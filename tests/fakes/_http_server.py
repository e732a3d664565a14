"""The machinery the fake OpenAI and Gemini servers share: a real aiohttp server on
127.0.0.1 in a daemon thread, replies programmed per model, every request recorded.

Which reply a request gets: the model's queue, the model's `always`, the model's
responder, then the same three for any model, then `default`. A subclass names its
routes and turns a reply into the wire format of its API.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from aiohttp import web

__all__ = ["FakeHttpServer", "RecordedRequest"]

R = TypeVar("R")
_REDACTED = "[redacted]"
_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "api-key", "x-goog-api-key"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; credential headers hold "[redacted]".
    `api_key_valid`: whether the key matched (None when the server checks none)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    model: str | None
    stream: bool
    api_key_valid: bool | None
    status: int


class FakeHttpServer(Generic[R]):
    """See the module docstring. Subclasses implement `_routes(app)`."""

    kind = "fake"

    def __init__(self, *, api_key: str | None, default: R, host: str = "127.0.0.1") -> None:
        self.api_key = api_key
        self.default = default
        self._host = host
        self._port = 0
        self._lock = threading.Condition()
        self._queues: dict[str | None, deque[R]] = {}
        self._always: dict[str | None, R] = {}
        self._responders: dict[str | None, Callable[[RecordedRequest], R | None]] = {}
        self._requests: list[RecordedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, requests={len(self._requests)})"

    # ----------------------------------------------------------------- programming

    def enqueue(self, *replies: R, model: str | None = None) -> None:
        """Answer the next requests (for `model`, or any model) with these, once each."""
        with self._lock:
            self._queues.setdefault(model, deque()).extend(replies)

    def always(self, reply: R | None, *, model: str | None = None) -> None:
        """Answer every request (for `model`, or any) with `reply`; None removes it."""
        with self._lock:
            if reply is None:
                self._always.pop(model, None)
            else:
                self._always[model] = reply

    def respond_with(
        self, responder: Callable[[RecordedRequest], R | None] | None, *, model: str | None = None
    ) -> None:
        """Compute replies from the request (runs on the server thread); None passes on."""
        with self._lock:
            if responder is None:
                self._responders.pop(model, None)
            else:
                self._responders[model] = responder

    def reset(self) -> None:
        with self._lock:
            self._queues.clear()
            self._always.clear()
            self._responders.clear()
            self._requests.clear()
            self._reset_state()

    def _reset_state(self) -> None:
        """Subclasses forget their simulated state (caches) here."""

    # ----------------------------------------------------------------- inspection

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.model == model]

    def wait_for_requests(self, count: int, timeout_s: float = 10.0) -> list[RecordedRequest]:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"The {self.kind} server got {len(self._requests)} request(s) within "
                        f"{timeout_s} s; expected at least {count}."
                    )
                self._lock.wait(left)
            return list(self._requests)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve, name=self.kind, daemon=True)
        self._thread.start()
        if not self._started.wait(10.0):
            raise RuntimeError(f"The {self.kind} server did not start within 10 s.")
        if self._startup_error is not None:
            raise RuntimeError(f"The {self.kind} server failed to start.") from self._startup_error
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10.0)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self._routes(app)
        runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
            self._port = int(runner.addresses[0][1])
        except BaseException as exc:
            self._startup_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # ----------------------------------------------------------------- helpers

    def _pick(self, model: str | None, record: RecordedRequest) -> R:
        with self._lock:
            for key in (model, None) if model is not None else (None,):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
                if key in self._always:
                    return self._always[key]
                responder = self._responders.get(key)
                if responder is not None:
                    reply = responder(record)
                    if reply is not None:
                        return reply
            return self.default

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(record)
            self._lock.notify_all()

    @staticmethod
    def _headers(request: web.Request) -> dict[str, str]:
        return {
            k.lower(): (_REDACTED if k.lower() in _SECRET_HEADERS else v)
            for k, v in request.headers.items()
        }

    @staticmethod
    async def _json(request: web.Request) -> Any:
        import json

        try:
            return json.loads(await request.read() or b"null")
        except ValueError:
            return None


async def hold(release: threading.Event | None, limit_s: float = 30.0) -> bool:
    """Wait (polling, so stopping the server cancels it) until the test sets `release`."""
    if release is None:
        return True
    deadline = time.monotonic() + limit_s
    while not release.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    return release.is_set()


def record(
    request: web.Request,
    headers: dict[str, str],
    body: Any,
    model: str | None,
    stream: bool,
    key_valid: bool | None,
    status: int,
) -> RecordedRequest:
    return RecordedRequest(
        request.method,
        request.path,
        dict(request.query),
        headers,
        body,
        model,
        stream,
        key_valid,
        status,
    )


Responder = Callable[[RecordedRequest], Any]
