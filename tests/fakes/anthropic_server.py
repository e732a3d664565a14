"""A fake Anthropic Messages API: a real HTTP server on 127.0.0.1 for tests.

Rule: the SDK under test is never mocked; it talks HTTP to this server, which answers
what each test programs, in the real API's wire format (see `_messages_api`), and records
every request it received (with the credential headers redacted) for assertions.

    with FakeAnthropicServer(api_key=FAKE_API_KEY) as server:
        server.enqueue(FakeError(429))                         # once, any model
        server.always(FakeError(529), model="claude-a")        # every call to claude-a
        server.enqueue(FakeMessage("hi", tool_uses=[FakeToolUse("calculator", {"x": 1})]))
        provider = AnthropicProvider(api_key=FAKE_API_KEY, base_url=server.base_url)
        ...
        assert server.requests[0].body["stream"] is True

Which reply a request gets: the model's queue, the model's `always`, the model's
responder, then the same three for any model, then `default` (a short text answer).
The server runs its own event loop in a daemon thread, so it serves sync tests, async
tests and worker subprocesses alike.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

from tests.fakes._messages_api import (
    FakeError,
    FakeMessage,
    FakeToolUse,
    FakeUsage,
    PromptCache,
    Reply,
    error_body,
    estimate_tokens,
    message_body,
    sse_events,
    thinking_enabled,
    validate_request,
)

__all__ = [
    "FAKE_API_KEY",
    "FakeAnthropicServer",
    "FakeError",
    "FakeMessage",
    "FakeToolUse",
    "FakeUsage",
    "RecordedRequest",
    "Reply",
    "Responder",
    "fake_anthropic_server",
]

FAKE_API_KEY = "sk-ant-fake-0123456789-THIS-KEY-MUST-NEVER-LEAK"
_REDACTED = "[redacted]"
_SECRET_HEADERS = frozenset({"x-api-key", "authorization"})


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it. `headers` (lower-case names) keep the
    credential headers (x-api-key, authorization) with the value replaced by "[redacted]";
    `api_key_valid` says whether the key matched the server's (None when the server does
    not check one). `status` is the HTTP status the server answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    model: str | None
    stream: bool
    api_key_valid: bool | None
    status: int


Responder = Callable[[RecordedRequest], Reply | None]
"""Computes a reply from the request (its `status` is still 0); None passes it on to the
next source. It runs on the server's thread."""


class FakeAnthropicServer:
    """See the module docstring. `api_key`: when set, any other x-api-key gets a 401.
    `validate`: reject malformed requests with the real API's 400 messages."""

    def __init__(
        self,
        *,
        api_key: str | None = FAKE_API_KEY,
        validate: bool = True,
        default: Reply | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cache_min_tokens: int = 0,
    ) -> None:
        self.api_key = api_key
        self.cache_min_tokens = cache_min_tokens
        self.validate = validate
        self.default: Reply = default or FakeMessage()
        self._host = host
        self._port = port
        self._lock = threading.Condition()
        self._queues: dict[str | None, deque[Reply]] = {}
        self._always: dict[str | None, Reply] = {}
        self._responders: dict[str | None, Responder] = {}
        self._requests: list[RecordedRequest] = []
        self._cache = PromptCache(min_tokens=self.cache_min_tokens)
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        # Messages requests being answered now, and the most there ever were at once.
        self.in_flight = 0
        self.max_in_flight = 0

    def __repr__(self) -> str:
        return f"FakeAnthropicServer(base_url={self.base_url!r}, requests={len(self._requests)})"

    # ----------------------------------------------------------------- programming

    def enqueue(self, *replies: Reply, model: str | None = None) -> None:
        """Answer the next requests (for `model`, or any model) with these, once each."""
        with self._lock:
            self._queues.setdefault(model, deque()).extend(replies)

    def always(self, reply: Reply | None, *, model: str | None = None) -> None:
        """Answer every request (for `model`, or any) with `reply`; None removes it."""
        with self._lock:
            if reply is None:
                self._always.pop(model, None)
            else:
                self._always[model] = reply

    def respond_with(self, responder: Responder | None, *, model: str | None = None) -> None:
        """Compute replies from the request (it runs on the server thread)."""
        with self._lock:
            if responder is None:
                self._responders.pop(model, None)
            else:
                self._responders[model] = responder

    def reset(self) -> None:
        """Forget programming, recorded requests and the simulated prompt cache."""
        with self._lock:
            self._queues.clear()
            self._always.clear()
            self._responders.clear()
            self._requests.clear()
            self._cache = PromptCache(min_tokens=self.cache_min_tokens)
            self.max_in_flight = 0

    # ----------------------------------------------------------------- inspection

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def env(self) -> dict[str, str]:
        """Environment for a worker subprocess that should talk to this server: the SDK
        reads ANTHROPIC_BASE_URL itself, and the provider reads ANTHROPIC_API_KEY."""
        return {
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_API_KEY": self.api_key or "sk-ant-any",
        }

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.model == model]

    def wait_for_requests(self, count: int, timeout_s: float = 10.0) -> list[RecordedRequest]:
        """Block until at least `count` requests arrived; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"The fake Anthropic server got {len(self._requests)} request(s) "
                        f"within {timeout_s} s; expected at least {count}."
                    )
                self._lock.wait(left)
            return list(self._requests)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve, name="fake-anthropic", daemon=True)
        self._thread.start()
        if not self._started.wait(10.0):
            raise RuntimeError("The fake Anthropic server did not start within 10 s.")
        if self._startup_error is not None:
            raise RuntimeError(
                "The fake Anthropic server failed to start."
            ) from self._startup_error
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
            # Handlers still sleeping (a reply's latency) end with the server, quietly.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._handle_messages)
        app.router.add_post("/v1/messages/count_tokens", self._handle_count_tokens)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        # handler_cancellation: a client that gave up (timeout) ends its handler, as a real
        # server would stop generating.
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

    # ----------------------------------------------------------------- handlers

    def _pick(self, model: str | None, record: RecordedRequest) -> Reply:
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

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return web.json_response(
            error_body("not_found_error", f"{request.method} {request.path} does not exist."),
            status=404,
        )

    async def _handle_count_tokens(self, request: web.Request) -> web.Response:
        """`messages.count_tokens`: the input tokens of a request, estimated the way the
        fake's usage is (so a count equals the input of the same request, uncached)."""
        bearer = request.headers.get("authorization", "")
        given_key = request.headers.get("x-api-key") or (
            bearer[7:] if bearer.lower().startswith("bearer ") else None
        )
        headers = {
            k.lower(): (_REDACTED if k.lower() in _SECRET_HEADERS else v)
            for k, v in request.headers.items()
        }
        try:
            body: Any = json.loads(await request.read() or b"null")
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        valid = None if self.api_key is None else given_key == self.api_key
        status = 200
        if valid is False or not given_key:
            status = 401
        elif not isinstance(body, dict) or not body.get("messages") or not model:
            status = 400
        self._record(
            RecordedRequest("POST", request.path, headers, body, model, False, valid, status)
        )
        if status == 401:
            return web.json_response(error_body("authentication_error"), status=401)
        if status == 400:
            return web.json_response(
                error_body("invalid_request_error", "model and messages are required"), status=400
            )
        blocks = PromptCache.blocks(body)
        return web.json_response({"input_tokens": sum(estimate_tokens(b) for b in blocks) or 1})

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1  # the server's own loop: no lock needed
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer_messages(request)
        finally:
            self.in_flight -= 1

    async def _answer_messages(self, request: web.Request) -> web.StreamResponse:
        headers = {
            k.lower(): (_REDACTED if k.lower() in _SECRET_HEADERS else v)
            for k, v in request.headers.items()
        }
        # anthropic 2.x sends the key as a bearer token, older SDKs as x-api-key; like the
        # real API, x-api-key wins when both are present.
        bearer = request.headers.get("authorization", "")
        given_key = request.headers.get("x-api-key") or (
            bearer[7:] if bearer.lower().startswith("bearer ") else None
        )
        key_valid = None if self.api_key is None else given_key == self.api_key
        raw = await request.read()
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = None
        model = body.get("model") if isinstance(body, dict) else None
        stream = bool(body.get("stream")) if isinstance(body, dict) else False
        draft = RecordedRequest(
            "POST", request.path, headers, body, model, stream, key_valid, status=0
        )

        reply: Reply
        if not given_key or key_valid is False:
            reply = FakeError(401, "authentication_error", "invalid x-api-key")
        elif "anthropic-version" not in headers:
            reply = FakeError(400, "invalid_request_error", "anthropic-version: header is required")
        elif (
            self.validate
            and (invalid := validate_request(body, headers["anthropic-version"])) is not None
        ):
            reply = invalid
        else:
            reply = self._pick(model, draft)

        status = reply.status if isinstance(reply, FakeError) else 200
        self._record(
            RecordedRequest("POST", request.path, headers, body, model, stream, key_valid, status)
        )
        if reply.latency_s:
            await asyncio.sleep(reply.latency_s)
        request_id = f"req_fake_{next(self._ids):06d}"
        if isinstance(reply, FakeError):
            return web.json_response(
                error_body(reply.type, reply.message),
                status=reply.status,
                headers={"request-id": request_id, **reply.headers},
            )
        with self._lock:
            split = self._cache.split(body)
        message_id = f"msg_fake_{request_id[9:]}"
        if not stream:
            return web.json_response(
                message_body(
                    reply,
                    model=str(model),
                    message_id=message_id,
                    split=split,
                    thinking=thinking_enabled(body),
                ),
                headers={"request-id": request_id},
            )
        return await self._stream(
            request, reply, str(model), message_id, split, request_id, thinking_enabled(body)
        )

    async def _stream(
        self,
        request: web.Request,
        reply: FakeMessage,
        model: str,
        message_id: str,
        split: tuple[int, int, int],
        request_id: str,
        thinking: bool = False,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": request_id,
            },
        )
        await response.prepare(request)
        events = sse_events(
            reply, model=model, message_id=message_id, split=split, thinking=thinking
        )
        for sent, (name, data) in enumerate(events):
            if reply.break_after_events is not None and sent >= reply.break_after_events:
                if reply.break_mode == "disconnect":
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                await response.write(_sse("error", error_body(reply.break_error)))
                break
            if sent == reply.hold_after_events and reply.release is not None:
                # Polled, not waited on in a thread: stopping the server cancels it at once.
                deadline = time.monotonic() + 30.0
                while not reply.release.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.002)
                if not reply.release.is_set():
                    break  # the test never released it: end the stream unfinished
            if sent and reply.event_delay_s:
                await asyncio.sleep(reply.event_delay_s)
            await response.write(_sse(name, data))
        await response.write_eof()
        return response


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


@contextmanager
def fake_anthropic_server(**options: Any) -> Iterator[FakeAnthropicServer]:
    """`with fake_anthropic_server() as server:` — the server, started and stopped."""
    server = FakeAnthropicServer(**options)
    with server:
        yield server
