"""The Anthropic Messages API through the official `anthropic` SDK.

Rule: this module only translates. `LlmRequest` → Messages API parameters, one streamed
request per attempt, the final message → `LlmResponse`, and an SDK failure →
`AttemptFailed` with a provider-neutral error type. Retries, fallbacks, breakers and the
deadline belong to `agents.providers.retry` (the SDK runs with `max_retries=0`, so no
request is ever retried twice over).

Secrets: the API key goes into the SDK client and nowhere else: not into an attribute of
ours, a repr, a log line or an exception (SDK messages are scrubbed of it, and SDK
exceptions are not chained because they carry the request and its headers).

Prompt caching: when `request.cache_prefix`, the last tool and the system prompt carry
`cache_control: ephemeral` breakpoints, so the stable prefix (tools, then system) is
written once and read on later calls; cache reads and writes come back in `Usage`. With
`cache_conversation` (the default) the conversation is cached too: a breakpoint on the
last block of the newest message (everything up to it is what the next call of the
session starts with) and one on the last block of the user message before it (where the
previous call put its breakpoint, so that prefix is read back even when this call added
more than the API's ~20-block look-back). Each call then reads the whole previous
request from the cache and pays full price only for what is new: the uncached input per
call stays flat however long the session grows. Four breakpoints at most, as the API
allows.

Token counting: `count_tokens(request)` asks the API (`messages.count_tokens`) for the
exact input tokens of a request, for where an estimate is not good enough.

Stop reasons are the Messages API's, which are `agents.llm.StopReason`'s vocabulary:
passed through as the API says them.

Extended thinking: a request with a `thinking_budget` asks for it
(`thinking = {type: enabled, budget_tokens}`) when the model thinks (the catalog's
`thinking`; a fallback that does not is sent the request without it). The answer's
thinking and redacted_thinking blocks come back in `LlmResponse.thinking`, verbatim with
their signatures; the core keeps them in `LlmCallCompleted.thinking` and puts them back
at the head of that assistant message, which is what the API requires when tool results
follow. A request sent without thinking leaves those blocks out (the API only accepts
them while thinking is on). Thinking tokens are inside `output_tokens`: billed as output.

Images and documents (`MediaBlock`) become `image` / `document` blocks with a base64
source; one whose bytes were not resolved from the blob store is refused before sending.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import anthropic
import structlog

from agents.errors import InvalidRecord
from agents.events import ThinkingBlock, ToolUse, Usage
from agents.llm import (
    LlmRequest,
    LlmResponse,
    MediaBlock,
    Message,
    TextBlock,
    ThinkingContent,
    ToolUseBlock,
    canonical_json,
)
from agents.pricing import find_model
from agents.providers._adapter import FallbackAdapter
from agents.providers._deltas import DeltaSink
from agents.providers._http import TRANSPORT_ERRORS, TRANSPORT_TIMEOUTS, retry_after_s
from agents.providers.base import (
    BILLED,
    HTTP_ERRORS,
    ErrorType,
    ProviderConfigError,
    Secret,
    redact,
)
from agents.providers.breaker import BreakerConfig, BreakerRegistry
from agents.providers.retry import AttemptFailed, RetryPolicy, Sleep, run_with_fallbacks

__all__ = ["API_KEY_ENV", "AnthropicProvider", "build_params", "count_params", "thinks"]

log = structlog.get_logger("turnlog.providers")

API_KEY_ENV = "ANTHROPIC_API_KEY"
_CACHE = {"type": "ephemeral"}


_BY_STATUS: dict[int, tuple[ErrorType, bool]] = {
    **HTTP_ERRORS,
    409: (ErrorType.UNKNOWN, True),
    422: (ErrorType.INVALID_REQUEST, False),
    529: (ErrorType.OVERLOADED, True),
}
# An error event in the middle of a stream arrives on an HTTP 200: its body names it.
_BY_API_TYPE: dict[str, tuple[ErrorType, bool]] = {
    "invalid_request_error": (ErrorType.INVALID_REQUEST, False),
    "authentication_error": (ErrorType.AUTHENTICATION, False),
    "permission_error": (ErrorType.PERMISSION, False),
    "not_found_error": (ErrorType.NOT_FOUND, False),
    "request_too_large": (ErrorType.REQUEST_TOO_LARGE, False),
    "rate_limit_error": (ErrorType.RATE_LIMITED, True),
    "api_error": (ErrorType.SERVER_ERROR, True),
    "overloaded_error": (ErrorType.OVERLOADED, True),
    "timeout_error": (ErrorType.TIMEOUT, True),
}


def _message_params(message: Message, *, thinking: bool = False) -> dict[str, Any]:
    # The API rejects empty text blocks; the core may hold an assistant turn whose text is
    # empty beside its tool calls. The digest covers the LlmRequest, not this wire form.
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            if block.text != "":
                blocks.append(block.to_dict())
        elif isinstance(block, ThinkingContent):
            if thinking and block.anthropic:  # accepted only while thinking is on
                blocks.append(block.to_dict())
        elif isinstance(block, MediaBlock):
            blocks.append(_media_params(block))
        else:
            blocks.append(block.to_dict())
    return {"role": message.role, "content": blocks}


def _media_params(block: MediaBlock) -> dict[str, Any]:
    if block.data is None:
        raise ValueError(f"attachment {block.sha256[:12]} was not resolved from the blob store")
    source = {"type": "base64", "media_type": block.media_type, "data": block.data}
    return {"type": "image" if block.is_image else "document", "source": source}


def thinks(request: LlmRequest, model: str) -> bool:
    """Whether `request` asks `model` for extended thinking: a budget, a model the catalog
    says thinks (one it does not know is trusted to), and — as the API requires with
    thinking on — a last assistant message that starts with its thinking when it called
    tools. One that does not (its answer came from a vendor without thinking, a fallback
    or a switched model) is sent without thinking rather than refused."""
    if not request.thinking_budget:
        return False
    info = find_model(model)
    if info is not None and not info.thinking:
        return False
    last = next((m for m in reversed(request.messages) if m.role == "assistant"), None)
    if last is None or not any(isinstance(b, ToolUseBlock) for b in last.content):
        return True
    first = last.content[0]
    return isinstance(first, ThinkingContent) and first.anthropic


def _mark_last_block(message: dict[str, Any]) -> None:
    blocks = message["content"]
    if blocks:
        blocks[-1] = {**blocks[-1], "cache_control": dict(_CACHE)}


def _conversation_breakpoints(messages: list[dict[str, Any]]) -> None:
    """Breakpoints on the newest message and on the user message before it (see the
    module docstring); the dicts of `messages` are fresh copies, changed in place."""
    if not messages:
        return
    _mark_last_block(messages[-1])
    for message in reversed(messages[:-1]):
        if message["role"] == "user":
            _mark_last_block(message)
            break


def build_params(
    request: LlmRequest, model: str, *, cache_conversation: bool = True
) -> dict[str, Any]:
    """The Messages API parameters of `request`, sent to `model`.

    `request.temperature` is not sent: API version 2026-10-21 (the one anthropic 2.x
    speaks) rejects sampling parameters with a 400, even at their defaults. It stays in
    the request (and its digest) as a record of what the agent definition asked for.
    """
    thinking = thinks(request, model)
    messages = [_message_params(m, thinking=thinking) for m in request.messages]
    if request.cache_prefix and cache_conversation:
        _conversation_breakpoints(messages)
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "messages": messages,
    }
    if thinking:
        params["thinking"] = {"type": "enabled", "budget_tokens": request.thinking_budget}
    if request.system:
        if request.cache_prefix:
            params["system"] = [
                {"type": "text", "text": request.system, "cache_control": dict(_CACHE)}
            ]
        else:
            params["system"] = request.system
    if request.tools:
        tools = [t.to_dict() for t in request.tools]
        if request.cache_prefix:
            tools[-1]["cache_control"] = dict(_CACHE)
        params["tools"] = tools
    return params


def count_params(request: LlmRequest, model: str) -> dict[str, Any]:
    """The `messages.count_tokens` parameters of `request` (no max_tokens, no caching)."""
    params = build_params(request, model, cache_conversation=False)
    params.pop("max_tokens", None)
    if isinstance(params.get("system"), list):
        params["system"] = request.system
    if "tools" in params:
        params["tools"] = [t.to_dict() for t in request.tools]
    return params


_USAGE_EVENTS = frozenset({"message_start", "message_delta"})


def _usage_so_far(event: Any, before: Usage) -> Usage:
    """The attempt's usage after a message_start (input, cache) or a message_delta
    (cumulative output) event."""
    if event.type == "message_start":
        u = event.message.usage
        return Usage(
            input_tokens=u.input_tokens or 0,
            output_tokens=u.output_tokens or 0,
            cache_read_tokens=getattr(u, "cache_read_input_tokens", None) or 0,
            cache_write_tokens=getattr(u, "cache_creation_input_tokens", None) or 0,
        )
    out = getattr(getattr(event, "usage", None), "output_tokens", None)
    return (
        before
        if out is None
        else Usage(before.input_tokens, out, before.cache_read_tokens, before.cache_write_tokens)
    )


def _to_response(message: Any, model: str) -> LlmResponse:
    texts: list[str] = []
    tool_uses: list[ToolUse] = []
    thinking: list[ThinkingBlock] = []
    for block in message.content:
        if block.type == "thinking":
            thinking.append(ThinkingBlock(thinking=block.thinking, signature=block.signature))
        elif block.type == "redacted_thinking":
            thinking.append(ThinkingBlock(redacted_data=block.data))
        elif block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            tool_uses.append(
                ToolUse(
                    call_id=block.id, name=block.name, arguments_json=canonical_json(block.input)
                )
            )
        # server-tool blocks are not part of our contract: dropped on purpose.
    usage = message.usage
    return LlmResponse(
        model=model,
        text="".join(texts),
        tool_uses=tuple(tool_uses),
        stop_reason=str(message.stop_reason),
        usage=Usage(
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_tokens=getattr(usage, "cache_read_input_tokens", None) or 0,
            cache_write_tokens=getattr(usage, "cache_creation_input_tokens", None) or 0,
        ),
        thinking=tuple(thinking),
    )


class AnthropicProvider(FallbackAdapter):
    """`Provider` for the Anthropic Messages API. Create one per process and reuse it: it
    holds the HTTP connection pool and the circuit breakers.

    `api_key`: a str or a pydantic SecretStr; default the ANTHROPIC_API_KEY environment
    variable. `base_url`: default the SDK's (ANTHROPIC_BASE_URL or api.anthropic.com);
    tests point it at `tests.fakes.anthropic_server`. `request_timeout_s` bounds each
    attempt; `timeout_s` of `complete` bounds the whole call.
    """

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        breakers: BreakerRegistry | None = None,
        request_timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        streaming: bool = True,
        cache_conversation: bool = True,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
        name: str = "anthropic",
    ) -> None:
        self.name = name
        self.cache_conversation = cache_conversation
        key = api_key if api_key is None or isinstance(api_key, str) else api_key.get_secret_value()
        key = key or os.environ.get(API_KEY_ENV) or None
        if not key:
            raise ProviderConfigError(
                f"The anthropic provider needs an API key: set {API_KEY_ENV} in the "
                "environment of the process that executes LLM calls."
            )
        self._secrets: tuple[str, ...] = (str(key),)
        self._client = anthropic.AsyncAnthropic(
            api_key=str(key),
            base_url=base_url,
            max_retries=0,  # one owner for retries: agents.providers.retry
            timeout=anthropic.Timeout(request_timeout_s, connect=connect_timeout_s),
        )
        self.retry = retry or RetryPolicy()
        self.breakers = breakers or BreakerRegistry(BreakerConfig())
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.streaming = streaming
        self._rng = rng or random.Random()
        self._sleep = sleep

    def __repr__(self) -> str:
        return (
            f"AnthropicProvider(base_url={str(self._client.base_url)!r}, "
            f"streaming={self.streaming}, retry={self.retry!r}, breakers={self.breakers!r})"
        )

    def __reduce__(self) -> Any:
        # Pickling would copy the client, and the key with it, into whatever reads the pickle.
        raise TypeError("AnthropicProvider holds a credential and cannot be pickled.")

    async def aclose(self) -> None:
        await self._client.close()

    async def count_tokens(self, request: LlmRequest, model: str | None = None) -> int:
        """The exact input tokens of `request` for `model` (default: its own), counted
        by the API. One request, no retries; ProviderError when it fails."""
        target = model or request.model

        async def attempt(name: str, budget: float | None) -> LlmResponse:
            counted = await self._count(request, name)
            return LlmResponse(name, "", (), "end_turn", Usage(input_tokens=counted))

        response = await run_with_fallbacks(
            attempt,
            provider=self.name,
            models=[target],
            policy=RetryPolicy(max_attempts=1),
            breakers=None,
            attempt_timeout_s=self.request_timeout_s,
            sleep=self._sleep,
            rng=self._rng,
        )
        return response.usage.input_tokens

    async def _count(self, request: LlmRequest, model: str) -> int:
        try:
            result = await self._client.messages.count_tokens(**count_params(request, model))
        except anthropic.APIStatusError as exc:
            raise self._status_failure(exc, model) from None
        except anthropic.APIConnectionError as exc:
            raise AttemptFailed(
                f"Counting tokens at {self.name}/{model} failed: {self._scrub(str(exc))}",
                error_type=ErrorType.CONNECTION,
                retryable=True,
            ) from None
        return int(result.input_tokens)

    async def attempt(
        self, request: LlmRequest, model: str, deltas: DeltaSink, budget: float | None
    ) -> LlmResponse:
        """ONE request to `model` (see `agents.providers.routing.Adapter`)."""
        try:
            params = build_params(request, model, cache_conversation=self.cache_conversation)
        except ValueError as exc:
            raise AttemptFailed(
                f"The request to {self.name}/{model} cannot be sent: {exc}.",
                error_type=ErrorType.INVALID_REQUEST,
                retryable=False,
                counts_for_breaker=False,
            ) from None
        timeout = (
            anthropic.Timeout(budget, connect=min(budget, self.connect_timeout_s))
            if budget is not None
            else anthropic.NOT_GIVEN
        )
        try:
            if self.streaming:
                billed = BILLED.get()
                async with self._client.messages.stream(**params, timeout=timeout) as stream:
                    async for event in stream:
                        if event.type == "text":
                            await deltas(event.text)
                        elif billed is not None and event.type in _USAGE_EVENTS:
                            billed.usage = _usage_so_far(event, billed.usage)
                    message = await stream.get_final_message()
            else:
                message = await self._client.messages.create(**params, timeout=timeout)
                await deltas(_text_of(message))
        except anthropic.APIStatusError as exc:
            raise self._status_failure(exc, model) from None
        except anthropic.APITimeoutError:
            raise AttemptFailed(
                f"The request to {self.name}/{model} timed out.",
                error_type=ErrorType.TIMEOUT,
                retryable=True,
            ) from None
        except anthropic.APIConnectionError as exc:
            raise AttemptFailed(
                f"The request to {self.name}/{model} could not connect: {self._scrub(str(exc))}",
                error_type=ErrorType.CONNECTION,
                retryable=True,
            ) from None
        except TRANSPORT_TIMEOUTS:
            raise AttemptFailed(
                f"The stream from {self.name}/{model} stalled past its timeout.",
                error_type=ErrorType.TIMEOUT,
                retryable=True,
            ) from None
        except TRANSPORT_ERRORS as exc:
            raise AttemptFailed(
                f"The stream from {self.name}/{model} broke off "
                f"({type(exc).__name__}: {self._scrub(str(exc))}).",
                error_type=ErrorType.CONNECTION,
                retryable=True,
            ) from None
        except (anthropic.APIResponseValidationError, ValueError, RuntimeError) as exc:
            # The SDK raises ValueError for unparsable tool-input JSON and RuntimeError for
            # events out of order: a broken answer, worth one more try.
            raise AttemptFailed(
                f"The answer of {self.name}/{model} could not be read: "
                f"{self._scrub(str(exc))[:300]}",
                error_type=ErrorType.INVALID_RESPONSE,
                retryable=True,
                counts_for_breaker=False,
            ) from None
        if message.stop_reason is None:
            raise AttemptFailed(
                f"The stream from {self.name}/{model} ended before its message_stop.",
                error_type=ErrorType.INVALID_RESPONSE,
                retryable=True,
                counts_for_breaker=True,
            )
        try:
            return _to_response(message, model)
        except (InvalidRecord, TypeError, ValueError) as exc:
            raise AttemptFailed(
                f"The answer of {self.name}/{model} does not fit our contract: "
                f"{self._scrub(str(exc))[:300]}",
                error_type=ErrorType.INVALID_RESPONSE,
                retryable=True,
                counts_for_breaker=False,
            ) from None

    def _status_failure(self, exc: anthropic.APIStatusError, model: str) -> AttemptFailed:
        api_type = _api_error_type(exc.body)
        status = exc.status_code
        if status in _BY_STATUS:
            error_type, retryable = _BY_STATUS[status]
        elif status >= 500:
            error_type, retryable = ErrorType.SERVER_ERROR, True
        elif api_type in _BY_API_TYPE:
            error_type, retryable = _BY_API_TYPE[api_type]
        else:
            error_type, retryable = ErrorType.UNKNOWN, False
        detail = _api_error_message(exc.body) or exc.message
        status_text = f"HTTP {status}" if status != 200 else "an error event mid-stream"
        return AttemptFailed(
            f"{self.name}/{model} answered {status_text} ({api_type or 'no error type'}): "
            f"{self._scrub(str(detail))[:500]}",
            error_type=error_type,
            retryable=retryable,
            status_code=status,
            retry_after_s=retry_after_s(getattr(exc, "response", None) and exc.response.headers),
        )

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets)


def _text_of(message: Any) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _api_error_type(body: object) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None


def _api_error_message(body: object) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return None
