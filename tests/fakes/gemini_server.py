"""A fake Gemini Developer API: a real HTTP server on 127.0.0.1 for tests and benchmarks.

Rule: the `google-genai` SDK under test is never mocked; it talks HTTP to this server,
which answers in the real wire format and records every request (key redacted):

- `POST /v1beta/models/<model>:generateContent`: one `GenerateContentResponse` (JSON);
- `POST /v1beta/models/<model>:streamGenerateContent?alt=sse`: `data: {...}` SSE lines,
  each a `GenerateContentResponse` holding the next text piece; function calls arrive
  whole (Gemini does not stream their arguments); the last one carries `finishReason`
  and the `usageMetadata`;
- the key comes in `x-goog-api-key`; errors are `{"error": {"code", "message",
  "status"}}` with the HTTP status, and in the middle of a stream a `data:` line of it;
- usage: `promptTokenCount` (≈ 4 characters a token) includes `cachedContentTokenCount`
  (implicit caching: prefixes at content boundaries, from `cache_min_tokens`, 1,024 as
  the API for Flash models); `thoughtsTokenCount` is reported apart from
  `candidatesTokenCount`, as the API does;
- requests the API rejects get its 400: a function response that follows no function
  call turn, a role that is neither user nor model, and for Gemini 3 models a model
  turn whose first function call carries no `thoughtSignature`.
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._http_server import FakeHttpServer, RecordedRequest, hold, record

__all__ = [
    "FAKE_GEMINI_KEY",
    "FakeFunctionCall",
    "FakeGeminiError",
    "FakeGeminiServer",
    "FakeGeneration",
    "GeminiUsage",
    "RecordedRequest",
    "fake_gemini_server",
]

FAKE_GEMINI_KEY = "AIzaFAKE-0123456789-THIS-KEY-MUST-NEVER-LEAK"
_NEEDS_SIGNATURE = re.compile(r"^gemini-(?:[3-9]|\d{2,})")
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class FakeFunctionCall:
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None  # the Developer API often sends none


@dataclass(frozen=True)
class GeminiUsage:
    """Usage to report; a None field is computed (estimated, or from the prefix cache)."""

    prompt_tokens: int | None = None
    candidates_tokens: int | None = None
    cached_tokens: int | None = None
    thoughts_tokens: int = 0


@dataclass(frozen=True)
class FakeGeneration:
    """A successful answer, streamed in `text_chunk_chars` pieces. `break_after_chunks`
    cuts the stream (`break_mode` "error": an error line of HTTP status `break_status`,
    "disconnect", or "end": a clean end without the final chunk). `blocked`: the prompt
    is blocked (promptFeedback.blockReason) and no candidate comes back."""

    text: str = "Hello from the fake Gemini API."
    function_calls: Sequence[FakeFunctionCall] = ()
    finish_reason: str = "STOP"
    usage: GeminiUsage = field(default_factory=GeminiUsage)
    thought: str | None = None  # a thought summary part (not answer text)
    thought_signature: bool = False  # sign the first function call (always on Gemini 3)
    blocked: str | None = None
    text_chunk_chars: int = 8
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    break_after_chunks: int | None = None
    break_mode: str = "error"
    break_status: int = 503
    hold_after_chunks: int | None = None
    release: threading.Event | None = None


@dataclass(frozen=True)
class FakeGeminiError:
    status: int
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    latency_s: float = 0.0

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.status,
                "message": self.message or f"Fake error {self.status}.",
                "status": _STATUS.get(self.status, "UNKNOWN"),
            }
        }


Reply = FakeGeneration | FakeGeminiError


def estimate_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return max(1, math.ceil(len(text) / 4))


def validate(body: Any, model: str) -> FakeGeminiError | None:
    """The 400 the real API answers for `body`, or None."""
    if not isinstance(body, dict) or not body.get("contents"):
        return FakeGeminiError(400, "* GenerateContentRequest.contents: contents is not specified")
    previous_calls: list[str] = []
    for i, content in enumerate(body["contents"]):
        role = content.get("role", "user")
        if role not in ("user", "model"):
            return FakeGeminiError(
                400, f"Please use a valid role: user, model. (got {role!r} in contents[{i}])"
            )
        parts = content.get("parts") or []
        if not parts:
            return FakeGeminiError(
                400,
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.",
            )
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if responses and (role != "user" or len(responses) != len(previous_calls)):
            return FakeGeminiError(
                400,
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn.",
            )
        for j, part in enumerate(parts):
            blob = part.get("inlineData")
            # Proto JSON takes field names in either case (the SDK sends mime_type).
            mime = blob.get("mimeType") or blob.get("mime_type") if blob is not None else None
            if blob is not None and (not mime or not _base64_ok(blob.get("data"))):
                return FakeGeminiError(
                    400,
                    f"* GenerateContentRequest.contents[{i}].parts[{j}].inline_data: "
                    "mime_type and base64 data are required.",
                )
        calls = [p for p in parts if "functionCall" in p]
        if calls and "thoughtSignature" in calls[0]:
            name = str(calls[0]["functionCall"].get("name", ""))
            if not _signature_ok(calls[0]["thoughtSignature"], name):
                return FakeGeminiError(
                    400,
                    f"Corrupted thought signature. (contents[{i}].parts[0].thought_signature)",
                )
        if calls and _NEEDS_SIGNATURE.match(model) and "thoughtSignature" not in calls[0]:
            return FakeGeminiError(
                400,
                f"Function call is missing a thought_signature in functionCall parts. "
                f"(contents[{i}].parts[0])",
            )
        previous_calls = [c["functionCall"].get("name", "") for c in calls]
    return None


SKIP_SIGNATURE = b"skip_thought_signature_validator"


def thought_signature(name: str) -> str:
    """The signature the fake gives the first function call of an answer (base64, as on
    the wire): checkable later, as the real one is, without keeping state."""
    return base64.b64encode(b"fakesig:" + hashlib.sha256(name.encode()).digest()[:16]).decode()


def _signature_ok(value: Any, name: str) -> bool:
    text = str(value).replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return False
    return raw == SKIP_SIGNATURE or text.rstrip("=") == thought_signature(name).rstrip("=")


def _base64_ok(data: Any) -> bool:
    """Proto JSON takes bytes as standard or URL-safe base64 (the SDK sends the latter)."""
    text = str(data)
    try:
        base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except ValueError:
        return False
    return bool(text)


class _PrefixCache:
    """Implicit caching: prefixes at content boundaries, from `min_tokens` on."""

    def __init__(self, min_tokens: int) -> None:
        self.min_tokens = min_tokens
        self._seen: set[str] = set()

    def split(self, model: str, body: Mapping[str, Any]) -> tuple[int, int]:
        head = [body.get("systemInstruction"), body.get("tools")]
        parts: list[Any] = [h for h in head if h] + list(body.get("contents") or [])
        running = hashlib.sha256(model.encode())
        total = cached = 0
        for part in parts:
            running.update(json.dumps(part, sort_keys=True).encode())
            total += estimate_tokens(part)
            key = running.hexdigest()
            if key in self._seen:
                cached = total
            if total >= self.min_tokens:
                self._seen.add(key)
        return total, (cached if cached >= self.min_tokens else 0)


class FakeGeminiServer(FakeHttpServer[Reply]):
    """See the module docstring. `api_key`: any other key gets the API's 400."""

    kind = "fake-gemini"

    def __init__(
        self,
        *,
        api_key: str | None = FAKE_GEMINI_KEY,
        default: Reply | None = None,
        validate_requests: bool = True,
        cache_min_tokens: int = 1024,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(api_key=api_key, default=default or FakeGeneration(), host=host)
        self.validate_requests = validate_requests
        self.cache_min_tokens = cache_min_tokens
        self._cache = _PrefixCache(cache_min_tokens)
        self._ids = itertools.count(1)

    def _reset_state(self) -> None:
        self._cache = _PrefixCache(self.cache_min_tokens)

    def env(self, variable: str = "GEMINI_API_KEY") -> dict[str, str]:
        return {variable: self.api_key or "AIza-any"}

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/{version}/models/{target}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    async def _unknown(self, request: web.Request) -> web.Response:
        return web.json_response(FakeGeminiError(404, "Not found.").body(), status=404)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["target"].partition(":")
        if action not in ("generateContent", "streamGenerateContent"):
            return await self._unknown(request)
        headers = self._headers(request)
        given = request.headers.get("x-goog-api-key") or request.query.get("key")
        key_valid = None if self.api_key is None else given == self.api_key
        body = await self._json(request)
        stream = action == "streamGenerateContent"
        draft = record(request, headers, body, model, stream, key_valid, 0)
        reply: Reply
        if key_valid is False:
            reply = FakeGeminiError(400, "API key not valid. Please pass a valid API key.")
        elif self.validate_requests and (bad := validate(body, model)) is not None:
            reply = bad
        else:
            reply = self._pick(model, draft)
        status = reply.status if isinstance(reply, FakeGeminiError) else 200
        self._record(record(request, headers, body, model, stream, key_valid, status))
        if reply.latency_s:
            await asyncio.sleep(reply.latency_s)
        if isinstance(reply, FakeGeminiError):
            return web.json_response(reply.body(), status=reply.status, headers=dict(reply.headers))
        with self._lock:
            prompt, cached = self._cache.split(model, body)
        usage = _usage(reply, prompt, cached)
        response_id = f"fake{next(self._ids):08d}"
        chunks = list(_chunks(reply, model, usage, response_id))
        if not stream:
            return web.json_response(_merge(chunks))
        response = web.StreamResponse(
            status=200, headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await response.prepare(request)
        for sent, chunk in enumerate(chunks):
            if reply.break_after_chunks is not None and sent >= reply.break_after_chunks:
                if reply.break_mode == "disconnect":
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if reply.break_mode == "error":
                    error = FakeGeminiError(reply.break_status, "The model is overloaded.")
                    await response.write(f"data: {json.dumps(error.body())}\r\n\r\n".encode())
                break
            if sent == reply.hold_after_chunks and not await hold(reply.release):
                break
            if sent and reply.chunk_delay_s:
                await asyncio.sleep(reply.chunk_delay_s)
            await response.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
        await response.write_eof()
        return response


def _usage(reply: FakeGeneration, prompt: int, cached: int) -> dict[str, Any]:
    u = reply.usage
    prompt_tokens = u.prompt_tokens if u.prompt_tokens is not None else prompt
    cached_tokens = u.cached_tokens if u.cached_tokens is not None else min(cached, prompt_tokens)
    candidates = u.candidates_tokens
    if candidates is None:
        candidates = estimate_tokens(
            reply.text + "".join(json.dumps(dict(c.args)) for c in reply.function_calls)
        )
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt_tokens + candidates + u.thoughts_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }
    if cached_tokens:
        usage["cachedContentTokenCount"] = cached_tokens
    if u.thoughts_tokens:
        usage["thoughtsTokenCount"] = u.thoughts_tokens
    return usage


def _chunks(
    reply: FakeGeneration, model: str, usage: dict[str, Any], response_id: str
) -> Iterator[dict[str, Any]]:
    envelope = {"modelVersion": model, "responseId": response_id}
    if reply.blocked:
        yield {
            "promptFeedback": {"blockReason": reply.blocked},
            "usageMetadata": {
                "promptTokenCount": usage["promptTokenCount"],
                "totalTokenCount": usage["promptTokenCount"],
            },
            **envelope,
        }
        return
    parts: list[dict[str, Any]] = []
    if reply.thought:
        parts.append({"text": reply.thought, "thought": True})
    size = max(1, reply.text_chunk_chars)
    parts.extend({"text": reply.text[i : i + size]} for i in range(0, len(reply.text), size))
    for n, call in enumerate(reply.function_calls):
        function: dict[str, Any] = {"name": call.name, "args": dict(call.args)}
        if call.id:
            function["id"] = call.id
        part: dict[str, Any] = {"functionCall": function}
        if n == 0 and (_NEEDS_SIGNATURE.match(model) or reply.thought_signature):
            # Gemini 3 (and 2.5 when it thinks) signs an answer's first function call.
            part["thoughtSignature"] = thought_signature(call.name)
        parts.append(part)
    if not parts:
        parts.append({"text": ""})
    last = len(parts) - 1
    for i, part in enumerate(parts):
        candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
        chunk: dict[str, Any] = {"candidates": [candidate], **envelope}
        if i == last:
            candidate["finishReason"] = reply.finish_reason
            chunk["usageMetadata"] = usage
        else:
            chunk["usageMetadata"] = {
                "promptTokenCount": usage["promptTokenCount"],
                "totalTokenCount": usage["promptTokenCount"],
            }
        yield chunk


def _merge(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streamed answer: the chunks' parts in one candidate."""
    merged = dict(chunks[-1])
    if "candidates" in merged:
        parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
        text = "".join(p.get("text", "") for p in parts if "text" in p and not p.get("thought"))
        others = [p for p in parts if "text" not in p or p.get("thought")]
        joined = ([{"text": text}] if text else []) + others
        candidate = dict(merged["candidates"][0])
        candidate["content"] = {"parts": joined or [{"text": ""}], "role": "model"}
        merged["candidates"] = [candidate]
    return merged


@contextmanager
def fake_gemini_server(**options: Any) -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(**options) as server:
        yield server
