"""Google Gemini (the Gemini Developer API) through the official `google-genai` SDK.

Rule: this module only translates, like `agents.providers.anthropic`: `LlmRequest` →
`contents` + `GenerateContentConfig`, one streamed request per attempt
(`streamGenerateContent?alt=sse`), the chunks → one `LlmResponse`, an SDK failure →
`AttemptFailed`. Retries, fallbacks, breakers and the deadline belong to
`agents.providers.retry` (the SDK runs with one attempt: `HttpRetryOptions(attempts=1)`,
which also stops its aiohttp path from retrying a refused connection by itself).

Translation:
- the system prompt is `system_instruction`; user messages are `user` contents, the
  assistant's are `model` contents; tool calls are `functionCall` parts and tool results
  `functionResponse` parts (named after the call they answer: Gemini wants the function's
  name, which the request holds in the assistant message before);
- tool schemas go as `parametersJsonSchema` (JSON Schema as is, no OpenAPI subset);
- thought signatures: the `thoughtSignature` of an answer's first function call comes
  back as a ThinkingBlock (provider "gemini", base64), kept in LlmCallCompleted.thinking
  like Anthropic's thinking, and goes back on that call when the conversation is sent
  again, as Gemini 3 requires; a call with no signature of its own (answered by another
  vendor, or from before signatures were kept) carries the sentinel Google documents for
  such history ("skip_thought_signature_validator") on Gemini 3;
- images and documents of a user message are `inline_data` parts (the bytes and their
  MIME type), before its text;
- usage: `promptTokenCount` includes `cachedContentTokenCount` (implicit or explicit
  caching), so input = prompt - cached and cache read = cached; thinking tokens
  (`thoughtsTokenCount`) are billed as output, so output = candidates + thoughts, and
  they are `Usage.reasoning_tokens` (priced at the catalog's reasoning price);
- stop reasons: STOP → end_turn (tool_use when the answer calls functions), MAX_TOKENS →
  max_tokens, SAFETY / RECITATION / BLOCKLIST / PROHIBITED_CONTENT / SPII /
  IMAGE_SAFETY (and a blocked prompt) → refusal; MALFORMED_FUNCTION_CALL is a broken
  answer, retried; any other reason is kept as Gemini says it, lower-cased.

A function call without an id gets one derived from the request digest and its position,
so a re-issued call reproduces it and no two calls of one conversation share one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
from typing import Any

import structlog
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from agents.errors import InvalidRecord
from agents.events import ThinkingBlock, ToolUse, Usage
from agents.llm import (
    LlmRequest,
    LlmResponse,
    MediaBlock,
    StopReason,
    TextBlock,
    ThinkingContent,
    ToolResultBlock,
    ToolUseBlock,
    canonical_json,
)
from agents.pricing import find_model
from agents.providers._adapter import FallbackAdapter
from agents.providers._deltas import DeltaSink
from agents.providers._http import TRANSPORT_ERRORS, TRANSPORT_TIMEOUTS, retry_after_s
from agents.providers.base import HTTP_ERRORS, ErrorType, ProviderConfigError, Secret, redact
from agents.providers.breaker import BreakerConfig, BreakerRegistry
from agents.providers.retry import AttemptFailed, RetryPolicy, Sleep

__all__ = ["API_KEY_ENV", "FINISH_REASONS", "GeminiProvider", "build_contents"]

log = structlog.get_logger("turnlog.providers")

API_KEY_ENV = "GEMINI_API_KEY"
SKIP_SIGNATURE = b"skip_thought_signature_validator"
_NEEDS_SIGNATURE = re.compile(r"^(?:models/)?gemini-(?:[3-9]|\d{2,})")

FINISH_REASONS: dict[str, str] = {
    "STOP": StopReason.END_TURN,
    "MAX_TOKENS": StopReason.MAX_TOKENS,
    "SAFETY": StopReason.REFUSAL,
    "RECITATION": StopReason.REFUSAL,
    "BLOCKLIST": StopReason.REFUSAL,
    "PROHIBITED_CONTENT": StopReason.REFUSAL,
    "SPII": StopReason.REFUSAL,
    "IMAGE_SAFETY": StopReason.REFUSAL,
}
_BY_STATUS: dict[int, tuple[ErrorType, bool]] = {
    **HTTP_ERRORS,
    503: (ErrorType.OVERLOADED, True),
    504: (ErrorType.TIMEOUT, True),
}


def build_contents(request: LlmRequest, model: str) -> list[types.Content]:
    """The `contents` of `request` for `model`."""
    names: dict[str, str] = {}
    contents: list[types.Content] = []
    signed = bool(_NEEDS_SIGNATURE.match(model))
    for message in request.messages:
        parts: list[types.Part] = []
        first_call = True
        own = next(
            (
                base64.b64decode(b.block.signature)
                for b in message.content
                if isinstance(b, ThinkingContent) and b.block.provider == "gemini"
            ),
            None,
        )
        for block in message.content:
            if isinstance(block, TextBlock):
                if block.text:
                    parts.append(types.Part(text=block.text))
            elif isinstance(block, MediaBlock):
                if block.data is None:
                    raise ValueError(
                        f"attachment {block.sha256[:12]} was not resolved from the blob store"
                    )
                blob = types.Blob(mime_type=block.media_type, data=base64.b64decode(block.data))
                parts.append(types.Part(inline_data=blob))
            elif isinstance(block, ToolUseBlock):
                names[block.call_id] = block.name
                part = types.Part(
                    function_call=types.FunctionCall(
                        id=block.call_id,
                        name=block.name,
                        args=json.loads(block.arguments_json or "{}"),
                    )
                )
                if first_call and own is not None:
                    part.thought_signature = own  # the one the model gave this call
                elif signed and first_call:
                    part.thought_signature = SKIP_SIGNATURE
                first_call = False
                parts.append(part)
            elif isinstance(block, ToolResultBlock):
                key = "error" if block.is_error else "output"
                parts.append(
                    types.Part(
                        function_response=types.FunctionResponse(
                            id=block.call_id,
                            name=names.get(block.call_id, "tool"),
                            response={key: block.content},
                        )
                    )
                )
        if not parts:
            parts.append(types.Part(text=" "))  # Gemini rejects a content without parts
        contents.append(
            types.Content(role="model" if message.role == "assistant" else "user", parts=parts)
        )
    return contents


def build_config(request: LlmRequest, timeout_ms: int | None) -> types.GenerateContentConfig:
    config = types.GenerateContentConfig(
        max_output_tokens=request.max_tokens,
        temperature=request.temperature,
        candidate_count=1,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    if request.system:
        config.system_instruction = request.system
    if request.tools:
        config.tools = [
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(
                        name=t.name,
                        description=t.description,
                        parameters_json_schema=t.input_schema,
                    )
                    for t in request.tools
                ]
            )
        ]
    if timeout_ms is not None:
        config.http_options = types.HttpOptions(
            timeout=timeout_ms, retry_options=types.HttpRetryOptions(attempts=1)
        )
    return config


def _call_id(request: LlmRequest, model: str, index: int) -> str:
    digest = hashlib.sha256(f"{request.digest()}/{model}/{index}".encode()).hexdigest()
    return f"call_{digest[:24]}"


class _Assembly:
    __slots__ = ("blocked", "calls", "finish", "signature", "text", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: list[types.FunctionCall] = []
        self.finish: str | None = None
        self.usage: Any = None
        self.blocked: str | None = None
        self.signature: bytes | None = None  # of the first function call


class GeminiProvider(FallbackAdapter):
    """`Provider` (and routing `Adapter`) for the Gemini Developer API. Create one per
    process and reuse it.

    `api_key`: str or SecretStr; default GEMINI_API_KEY. `base_url`: default the SDK's
    (generativelanguage.googleapis.com); tests point it at `tests.fakes.gemini_server`.
    """

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        name: str = "gemini",
        retry: RetryPolicy | None = None,
        breakers: BreakerRegistry | None = None,
        request_timeout_s: float = 600.0,
        streaming: bool = True,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        key = api_key if api_key is None or isinstance(api_key, str) else api_key.get_secret_value()
        if not key:
            raise ProviderConfigError(
                f"The {name} provider needs an API key: set {API_KEY_ENV} (or the variable "
                "its endpoint names) in the environment of the process that executes LLM calls."
            )
        self._secrets: tuple[str, ...] = (str(key),)
        options = types.HttpOptions(
            base_url=base_url,
            timeout=int(request_timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),  # one owner for retries
        )
        self._client = genai.Client(api_key=str(key), http_options=options)
        self._base_url = base_url or "https://generativelanguage.googleapis.com/"
        self.name = name
        self.retry = retry or RetryPolicy()
        self.breakers = breakers or BreakerRegistry(BreakerConfig())
        self.request_timeout_s = request_timeout_s
        self.streaming = streaming
        self._rng = rng or random.Random()
        self._sleep = sleep

    def __repr__(self) -> str:
        return (
            f"GeminiProvider(name={self.name!r}, base_url={self._base_url!r}, "
            f"streaming={self.streaming}, retry={self.retry!r})"
        )

    def __reduce__(self) -> Any:
        raise TypeError("GeminiProvider holds a credential and cannot be pickled.")

    async def aclose(self) -> None:
        await self._client.aio.aclose()

    async def attempt(
        self, request: LlmRequest, model: str, deltas: DeltaSink, budget: float | None
    ) -> LlmResponse:
        """ONE request to `model` (see `agents.providers.routing.Adapter`)."""
        try:
            contents = build_contents(request, model)
        except ValueError as exc:
            raise AttemptFailed(
                f"The request to {self.name}/{model} cannot be sent: {exc}.",
                error_type=ErrorType.INVALID_REQUEST,
                retryable=False,
                counts_for_breaker=False,
            ) from None
        config = build_config(request, None if budget is None else max(1, int(budget * 1000)))
        if request.thinking_budget and getattr(find_model(model), "thinking", True):
            # The agent's thinking budget, as Gemini 2.5 takes it (thoughts are output);
            # never sent to a model the catalog says does not think.
            config.thinking_config = types.ThinkingConfig(thinking_budget=request.thinking_budget)
        answer = _Assembly()
        try:
            if self.streaming:
                stream = await self._client.aio.models.generate_content_stream(
                    model=model, contents=contents, config=config
                )
                async for chunk in stream:
                    await self._take(chunk, answer, deltas)
            else:
                response = await self._client.aio.models.generate_content(
                    model=model, contents=contents, config=config
                )
                await self._take(response, answer, deltas)
        except genai_errors.APIError as exc:
            raise self._api_failure(exc, model) from None
        except TRANSPORT_TIMEOUTS:
            raise AttemptFailed(
                f"The request to {self.name}/{model} timed out.",
                error_type=ErrorType.TIMEOUT,
                retryable=True,
            ) from None
        except TRANSPORT_ERRORS as exc:
            raise AttemptFailed(
                f"The request to {self.name}/{model} failed in transport "
                f"({type(exc).__name__}: {self._scrub(str(exc))[:300]}).",
                error_type=ErrorType.CONNECTION,
                retryable=True,
            ) from None
        except (ValueError, TypeError) as exc:
            raise self._unreadable(model, exc) from None
        return self._response(request, answer, model)

    async def _take(self, chunk: Any, answer: _Assembly, deltas: DeltaSink) -> None:
        if chunk.usage_metadata is not None:
            answer.usage = chunk.usage_metadata
        feedback = chunk.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            answer.blocked = str(getattr(feedback.block_reason, "value", feedback.block_reason))
        for candidate in (chunk.candidates or ())[:1]:
            content = candidate.content
            for part in (content.parts if content is not None else None) or ():
                if part.thought:
                    continue  # thought summaries are not part of the answer
                if part.text:
                    answer.text.append(part.text)
                    await deltas(part.text)
                if part.function_call is not None:
                    if not answer.calls and part.thought_signature:
                        answer.signature = part.thought_signature
                    answer.calls.append(part.function_call)
            if candidate.finish_reason is not None:
                reason = candidate.finish_reason
                answer.finish = str(getattr(reason, "value", reason))

    def _response(self, request: LlmRequest, answer: _Assembly, model: str) -> LlmResponse:
        usage = _usage(answer.usage)
        if answer.blocked is not None and answer.finish is None:
            return LlmResponse(model, "", (), StopReason.REFUSAL, usage)
        if answer.finish is None:
            raise AttemptFailed(
                f"The stream from {self.name}/{model} ended without a finishReason.",
                error_type=ErrorType.INVALID_RESPONSE,
                retryable=True,
                counts_for_breaker=True,
            )
        if answer.finish == "MALFORMED_FUNCTION_CALL":
            raise AttemptFailed(
                f"{self.name}/{model} produced a malformed function call.",
                error_type=ErrorType.INVALID_RESPONSE,
                retryable=True,
                counts_for_breaker=False,
            )
        try:
            tool_uses = tuple(
                ToolUse(
                    call_id=call.id or _call_id(request, model, index),
                    name=str(call.name),
                    arguments_json=canonical_json(dict(call.args or {})),
                )
                for index, call in enumerate(answer.calls)
            )
        except (InvalidRecord, TypeError, ValueError) as exc:
            raise self._unreadable(model, exc) from None
        stop = FINISH_REASONS.get(answer.finish, answer.finish.lower())
        if tool_uses and stop == StopReason.END_TURN:
            stop = StopReason.TOOL_USE
        thinking = (
            (
                ThinkingBlock(
                    signature=base64.b64encode(answer.signature).decode(), provider="gemini"
                ),
            )
            if answer.signature and tool_uses
            else ()
        )
        return LlmResponse(model, "".join(answer.text), tool_uses, stop, usage, thinking=thinking)

    def _unreadable(self, model: str, exc: BaseException) -> AttemptFailed:
        return AttemptFailed(
            f"The answer of {self.name}/{model} could not be read: {self._scrub(str(exc))[:300]}",
            error_type=ErrorType.INVALID_RESPONSE,
            retryable=True,
            counts_for_breaker=False,
        )

    def _api_failure(self, exc: genai_errors.APIError, model: str) -> AttemptFailed:
        status = int(exc.code or 0)
        if status in _BY_STATUS:
            error_type, retryable = _BY_STATUS[status]
        elif status >= 500:
            error_type, retryable = ErrorType.SERVER_ERROR, True
        else:
            error_type, retryable = ErrorType.UNKNOWN, False
        if status == 400 and "API key not valid" in str(exc.message or ""):
            error_type = ErrorType.AUTHENTICATION  # the API answers a wrong key with a 400
        headers = getattr(getattr(exc, "response", None), "headers", None)
        return AttemptFailed(
            f"{self.name}/{model} answered HTTP {status} ({exc.status or 'no status'}): "
            f"{self._scrub(str(exc.message or ''))[:500]}",
            error_type=error_type,
            retryable=retryable,
            status_code=status or None,
            retry_after_s=retry_after_s(headers),
        )

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets)


def _usage(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    prompt = int(raw.prompt_token_count or 0)
    cached = min(int(raw.cached_content_token_count or 0), prompt)
    thoughts = int(raw.thoughts_token_count or 0)
    output = int(raw.candidates_token_count or 0) + thoughts
    return Usage(
        input_tokens=prompt - cached,
        output_tokens=output,
        cache_read_tokens=cached,
        reasoning_tokens=thoughts,
    )
