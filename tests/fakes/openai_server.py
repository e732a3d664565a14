"""A fake OpenAI Chat Completions API (and so of every OpenAI-compatible endpoint): a
real HTTP server on 127.0.0.1 for tests and benchmarks.

Rule: the `openai` SDK under test is never mocked; it talks HTTP to this server, which
answers in the real wire format and records every request (credentials redacted):

- `POST /v1/chat/completions` (also under an Azure deployment path,
  `/openai/deployments/<name>/chat/completions?api-version=...`, which takes the key in
  an `api-key` header): a JSON `chat.completion`, or with `stream: true` an SSE stream
  of `chat.completion.chunk` objects (`data: {...}` lines, then `data: [DONE]`): the
  role, text deltas, tool calls opened with id and name and then argument fragments per
  `index` (several calls in one answer: parallel tool calls), the chunk with the
  `finish_reason`, and with `stream_options.include_usage` a last chunk with empty
  `choices` and the `usage`.
- Errors: `{"error": {"message", "type", "param", "code"}}` with the HTTP status; an
  error in the middle of a stream is a `data: {"error": {...}}` line.
- Usage: `prompt_tokens` (≈ 4 characters a token) includes the cached ones reported in
  `prompt_tokens_details.cached_tokens`: the API caches prompt prefixes automatically
  (from `cache_min_tokens`, 1,024 as the API, in steps of `cache_increment`, 128); the
  fake remembers prefixes at message boundaries. `completion_tokens` includes
  `completion_tokens_details.reasoning_tokens`.
- `dialect="mistral"`: Mistral's API, which answers `stream_options` with a 422 (its
  fields are strict) and puts the usage on the chunk that finishes the answer;
  `dialect="groq"`: Groq's, whose finishing chunk carries it as `x_groq.usage`.
- Requests the real API rejects with a 400 are rejected (a tool message that answers
  no call of the assistant message before it, a call left unanswered, a bad tool name).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._http_server import FakeHttpServer, RecordedRequest, hold, record

__all__ = [
    "FAKE_OPENAI_KEY",
    "FakeCompletion",
    "FakeOpenAIError",
    "FakeOpenAIServer",
    "FakeToolCall",
    "OpenAIUsage",
    "RecordedRequest",
    "fake_openai_server",
]

FAKE_OPENAI_KEY = "sk-proj-fake-0123456789-THIS-KEY-MUST-NEVER-LEAK"
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "engine_overloaded"),
}


@dataclass(frozen=True)
class FakeToolCall:
    """A tool call of an answer. `arguments`: a mapping (sent as JSON) or raw text."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class OpenAIUsage:
    """Usage to report; a None field is computed (estimated or from the prefix cache)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # vendor fields (DeepSeek's)


@dataclass(frozen=True)
class FakeCompletion:
    """A successful answer. Streams text in `text_chunk_chars` pieces and tool arguments
    in `json_chunk_chars` pieces; `break_after_chunks` cuts the stream after that many
    chunks (`break_mode` "error": an SSE error line of `break_error`, "disconnect": the
    connection closes, "end": the stream ends cleanly without its last chunks); `hold_after_chunks` waits for `release` (a threading.Event)."""

    text: str = "Hello from the fake Chat Completions API."
    tool_calls: Sequence[FakeToolCall] = ()
    finish_reason: str | None = None
    refusal: str | None = None
    usage: OpenAIUsage = field(default_factory=OpenAIUsage)
    text_chunk_chars: int = 8
    json_chunk_chars: int = 12
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    break_after_chunks: int | None = None
    break_mode: str = "error"
    break_error: str = "server_error"
    hold_after_chunks: int | None = None
    release: threading.Event | None = None
    usage_chunk: bool = True  # some servers never send the usage chunk


@dataclass(frozen=True)
class FakeOpenAIError:
    """An error answer: HTTP `status` with the API's error envelope."""

    status: int
    message: str | None = None
    type: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    latency_s: float = 0.0

    def body(self) -> dict[str, Any]:
        kind, code = _ERROR_TYPES.get(self.status, ("server_error", None))
        return {
            "error": {
                "message": self.message or f"Fake error {self.status}.",
                "type": self.type or kind,
                "param": None,
                "code": self.code if self.code is not None else code,
            }
        }


Reply = FakeCompletion | FakeOpenAIError


def estimate_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return max(1, math.ceil(len(text) / 4))


def validate(body: Any) -> FakeOpenAIError | None:
    """The 400 the real API answers for `body`, or None."""

    def bad(message: str, param: str | None = None) -> FakeOpenAIError:
        return FakeOpenAIError(400, message, "invalid_request_error", param)

    if not isinstance(body, dict):
        return bad("We could not parse the JSON body of your request.")
    if not body.get("model"):
        return bad("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return bad("[] is too short - 'messages'", "messages")
    if "max_tokens" in body and "max_completion_tokens" in body:
        return bad("max_tokens and max_completion_tokens cannot both be set")
    for i, tool in enumerate(body.get("tools") or []):
        name = str((tool.get("function") or {}).get("name", ""))
        if tool.get("type") != "function" or not _TOOL_NAME.match(name):
            return bad(
                f"Invalid 'tools[{i}].function.name': string does not match pattern.",
                f"tools[{i}].function.name",
            )
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return bad(f"Invalid value: '{role}'.", f"messages[{i}].role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                return bad(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            open_calls.discard(call_id)
            continue
        if open_calls:
            return bad(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(sorted(open_calls))}",
                "messages",
            )
        content = message.get("content")
        if role == "user" and isinstance(content, list):
            problem = _parts_problem(i, content)
            if problem is not None:
                return bad(*problem)
        if role == "assistant":
            calls = message.get("tool_calls") or []
            open_calls = {str(c.get("id")) for c in calls}
            if not calls and message.get("content") is None:
                return bad(
                    f"Invalid 'messages[{i}]': an assistant message needs content or tool_calls."
                )
    return None


def _parts_problem(i: int, parts: list[Any]) -> tuple[str, str] | None:
    """What the real API says about a user message's content parts (text, image_url,
    file), or None: an image is an http(s) URL or a base64 data URL of an image, a file
    a base64 data URL of a PDF."""
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"messages[{i}].content[{j}]"
        if kind == "text":
            continue
        if kind == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if not (url.startswith(("http://", "https://")) or _data_url_ok(url, "image/")):
                return f"Invalid '{where}.image_url.url': expected a URL or a data URL.", where
            continue
        if kind == "file":
            data = str((part.get("file") or {}).get("file_data", ""))
            if not _data_url_ok(data, "application/pdf"):
                return f"Invalid '{where}.file.file_data': expected a base64 PDF.", where
            continue
        return (
            f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url' and 'file'.",
            where,
        )
    return None


def _data_url_ok(url: str, prefix: str) -> bool:
    head, _, data = url.partition(";base64,")
    if not head.startswith("data:" + prefix) or not data:
        return False
    try:
        base64.b64decode(data, validate=True)
    except ValueError:
        return False
    return True


class _PrefixCache:
    """Automatic prompt caching: prefixes at message boundaries, from `min_tokens` on,
    reported in whole `increment`s of tokens."""

    def __init__(self, min_tokens: int, increment: int) -> None:
        self.min_tokens = min_tokens
        self.increment = max(1, increment)
        self._seen: set[str] = set()

    def split(self, body: Mapping[str, Any]) -> tuple[int, int]:
        """(prompt tokens, cached tokens) of `body`."""
        parts: list[Any] = [*(body.get("tools") or []), *body.get("messages", [])]
        running = hashlib.sha256(str(body.get("model")).encode())
        total = 0
        cached = 0
        for part in parts:
            running.update(json.dumps(part, sort_keys=True).encode())
            total += estimate_tokens(part)
            key = running.hexdigest()
            if key in self._seen:
                cached = total
            if total >= self.min_tokens:
                self._seen.add(key)
        if cached < self.min_tokens:
            cached = 0
        return total, cached - cached % self.increment


class FakeOpenAIServer(FakeHttpServer[Reply]):
    """See the module docstring. `api_key`: any other key gets a 401."""

    kind = "fake-openai"

    def __init__(
        self,
        *,
        api_key: str | None = FAKE_OPENAI_KEY,
        default: Reply | None = None,
        validate_requests: bool = True,
        cache_min_tokens: int = 1024,
        cache_increment: int = 128,
        dialect: str = "openai",
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(api_key=api_key, default=default or FakeCompletion(), host=host)
        if dialect not in ("openai", "mistral", "groq"):
            raise ValueError(f"dialect must be 'openai', 'mistral' or 'groq', not {dialect!r}")
        self.dialect = dialect
        self.validate_requests = validate_requests
        self.cache_min_tokens = cache_min_tokens
        self.cache_increment = cache_increment
        self._cache = _PrefixCache(cache_min_tokens, cache_increment)
        self._ids = itertools.count(1)

    def _reset_state(self) -> None:
        self._cache = _PrefixCache(self.cache_min_tokens, self.cache_increment)

    def env(self, variable: str = "OPENAI_API_KEY") -> dict[str, str]:
        """Environment for a process that reaches this server as the `openai` endpoint."""
        return {variable: self.api_key or "sk-any", "OPENAI_BASE_URL": f"{self.base_url}/v1"}

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    async def _unknown(self, request: web.Request) -> web.Response:
        return web.json_response(
            FakeOpenAIError(404, f"Invalid URL ({request.method} {request.path})").body(),
            status=404,
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = self._headers(request)
        bearer = request.headers.get("authorization", "")
        given = request.headers.get("api-key") or (
            bearer[7:] if bearer.lower().startswith("bearer ") else None
        )
        key_valid = None if self.api_key is None else given == self.api_key
        body = await self._json(request)
        deployment = request.match_info.get("deployment")
        model = deployment or (body.get("model") if isinstance(body, dict) else None)
        stream = bool(body.get("stream")) if isinstance(body, dict) else False
        draft = record(request, headers, body, model, stream, key_valid, 0)
        reply: Reply
        if key_valid is False:
            reply = FakeOpenAIError(
                401, f"Incorrect API key provided: {str(given)[:3]}***.", code="invalid_api_key"
            )
        elif deployment is not None and "api-version" not in request.query:
            reply = FakeOpenAIError(404, "Resource not found")
        elif self.validate_requests and deployment is None and (bad := validate(body)):
            reply = bad
        elif self.dialect == "mistral" and isinstance(body, dict) and "stream_options" in body:
            reply = FakeOpenAIError(
                422, "Extra inputs are not permitted (stream_options)", code="extra_forbidden"
            )
        else:
            reply = self._pick(model, draft)
        status = reply.status if isinstance(reply, FakeOpenAIError) else 200
        self._record(record(request, headers, body, model, stream, key_valid, status))
        if reply.latency_s:
            await asyncio.sleep(reply.latency_s)
        request_id = f"req_{next(self._ids):08d}"
        if isinstance(reply, FakeOpenAIError):
            return web.json_response(
                reply.body(),
                status=reply.status,
                headers={"x-request-id": request_id, **reply.headers},
            )
        with self._lock:
            prompt, cached = self._cache.split(body)
        usage = _usage(reply, prompt, cached)
        completion_id = f"chatcmpl-fake{request_id[4:]}"
        if not stream:
            return web.json_response(
                _completion(reply, str(model), completion_id, usage),
                headers={"x-request-id": request_id},
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        mode = {"mistral": "last", "groq": "x_groq"}.get(
            self.dialect, "chunk" if include_usage else "none"
        )
        return await self._stream(request, reply, str(model), completion_id, usage, mode)

    async def _stream(
        self,
        request: web.Request,
        reply: FakeCompletion,
        model: str,
        completion_id: str,
        usage: dict[str, Any],
        usage_mode: str,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
            },
        )
        await response.prepare(request)
        created = int(time.time())
        for sent, delta in enumerate(_chunks(reply, usage, completion_id, usage_mode)):
            if reply.break_after_chunks is not None and sent >= reply.break_after_chunks:
                if reply.break_mode == "disconnect":
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if reply.break_mode == "end":  # a clean end of stream, unfinished
                    await response.write_eof()
                    return response
                error = FakeOpenAIError(
                    500,
                    "The server had an error while processing your request.",
                    type=reply.break_error,
                )
                await response.write(f"data: {json.dumps(error.body())}\n\n".encode())
                break
            if sent == reply.hold_after_chunks and not await hold(reply.release):
                break
            if sent and reply.chunk_delay_s:
                await asyncio.sleep(reply.chunk_delay_s)
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                **delta,
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        else:
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _tool_id(tool: FakeToolCall, index: int, salt: str) -> str:
    return tool.id or "call_" + hashlib.sha256(f"{salt}/{index}".encode()).hexdigest()[:24]


def _arguments(tool: FakeToolCall) -> str:
    return tool.arguments if isinstance(tool.arguments, str) else json.dumps(dict(tool.arguments))


def _finish(reply: FakeCompletion) -> str:
    if reply.finish_reason:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _usage(reply: FakeCompletion, prompt: int, cached: int) -> dict[str, Any]:
    u = reply.usage
    prompt_tokens = u.prompt_tokens if u.prompt_tokens is not None else prompt
    cached_tokens = u.cached_tokens if u.cached_tokens is not None else min(cached, prompt_tokens)
    completion = u.completion_tokens
    if completion is None:
        completion = (
            estimate_tokens(reply.text + "".join(_arguments(t) for t in reply.tool_calls))
            + u.reasoning_tokens
        )
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
        **u.extra,
    }


def _completion(
    reply: FakeCompletion, model: str, completion_id: str, usage: dict[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.text if (reply.text or not reply.tool_calls) else None,
        "refusal": reply.refusal,
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _tool_id(t, i, completion_id),
                "type": "function",
                "function": {"name": t.name, "arguments": _arguments(t)},
            }
            for i, t in enumerate(reply.tool_calls)
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
        ],
        "usage": usage,
        "system_fingerprint": "fp_fake",
    }


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _chunks(
    reply: FakeCompletion, usage: dict[str, Any], salt: str, usage_mode: str
) -> Iterator[dict[str, Any]]:
    """The `choices`/`usage` part of each chunk, in the order the API sends them. Usage:
    in a chunk of its own ("chunk", OpenAI with include_usage), on the finish chunk
    ("last", Mistral), or not at all ("none")."""

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }

    yield choice({"role": "assistant", "content": "", "refusal": None})
    if reply.refusal:
        for piece in _pieces(reply.refusal, reply.text_chunk_chars):
            yield choice({"refusal": piece})
    for piece in _pieces(reply.text, reply.text_chunk_chars):
        yield choice({"content": piece})
    for index, tool in enumerate(reply.tool_calls):
        yield choice(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": _tool_id(tool, index, salt),
                        "type": "function",
                        "function": {"name": tool.name, "arguments": ""},
                    }
                ]
            }
        )
        for piece in _pieces(_arguments(tool), reply.json_chunk_chars):
            yield choice({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    finish = choice({}, _finish(reply))
    if usage_mode == "last" and reply.usage_chunk:
        finish["usage"] = usage
    if usage_mode == "x_groq" and reply.usage_chunk:
        finish["x_groq"] = {"id": "req_fake", "usage": usage}
    yield finish
    if usage_mode == "chunk" and reply.usage_chunk:
        yield {"choices": [], "usage": usage}


@contextmanager
def fake_openai_server(**options: Any) -> Iterator[FakeOpenAIServer]:
    """`with fake_openai_server() as server:` — started and stopped."""
    with FakeOpenAIServer(**options) as server:
        yield server
