"""OpenAI-compatible endpoints through the official `openai` SDK (Chat Completions).

Rule: this module only translates, like `agents.providers.anthropic`: `LlmRequest` →
Chat Completions parameters, one streamed request per attempt, the chunks → one
`LlmResponse`, an SDK failure → `AttemptFailed` with a provider-neutral error type.
Retries, fallbacks, breakers and the deadline belong to `agents.providers.retry` (the
SDK runs with `max_retries=0`).

Why Chat Completions and not the Responses API: every endpoint this adapter serves
(OpenAI, Azure OpenAI, Ollama, vLLM, OpenRouter, DeepSeek, Mistral, xAI, Groq) speaks
Chat Completions; Responses is OpenAI's own (and a few). Its strengths are server-side
conversation state (`previous_response_id`, `store`) and reasoning items carried between
calls; turnlog keeps the conversation in its own log and rebuilds each request from it,
so a stateless request that holds the whole context is exactly what it needs (and what
replay can check). Reasoning items would, like Anthropic's thinking blocks, have to be
stored in the session's events first.

Translation:
- the system prompt is a `system` message; a user message's tool results become `tool`
  messages (first, as the API wants them right after the assistant's calls), its text a
  `user` message; an assistant message's tool calls become `tool_calls`;
- tool results marked as errors are sent with an "Error: " prefix (the API has no flag);
- `max_completion_tokens` (OpenAI, Azure) or `max_tokens` (what most compatible servers
  read), per endpoint; temperature is not sent to reasoning models (o-series, gpt-5),
  which reject any value but the default;
- `parallel_tool_calls` is asked for whenever tools are offered;
- images and documents of a user message become `image_url` parts (a base64 data URL)
  and `file` parts (PDF, `file_data`), before its text;
- usage: `prompt_tokens` includes cached tokens, so input = prompt - cached, cache read =
  cached (DeepSeek's `prompt_cache_hit_tokens` too); OpenAI bills no cache writes.
  `completion_tokens` already includes reasoning tokens; their count
  (`completion_tokens_details.reasoning_tokens`) is `Usage.reasoning_tokens`, priced at
  the catalog's reasoning price;
- stop reasons: stop → end_turn, length → max_tokens, tool_calls → tool_use,
  content_filter → refusal (a `refusal` answer too).

Secrets: the key goes into the SDK client and nowhere else (see anthropic.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from typing import Any

import openai
import structlog

from agents.errors import InvalidRecord
from agents.events import ToolUse, Usage
from agents.llm import (
    LlmRequest,
    LlmResponse,
    MediaBlock,
    Message,
    StopReason,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    canonical_json,
)
from agents.providers._adapter import FallbackAdapter
from agents.providers._deltas import DeltaSink
from agents.providers._http import TRANSPORT_ERRORS, TRANSPORT_TIMEOUTS, retry_after_s
from agents.providers.base import HTTP_ERRORS, ErrorType, ProviderConfigError, Secret, redact
from agents.providers.breaker import BreakerConfig, BreakerRegistry
from agents.providers.retry import AttemptFailed, RetryPolicy, Sleep

__all__ = ["FINISH_REASONS", "OpenAICompatProvider", "build_params"]

log = structlog.get_logger("turnlog.providers")

FINISH_REASONS: dict[str, str] = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.REFUSAL,
}
_REASONING_MODEL = re.compile(r"^(?:[\w.-]+/)?(?:o\d|gpt-5)")
_NO_KEY = "no-key-needed"  # local servers (Ollama, vLLM) take any bearer token

_BY_STATUS: dict[int, tuple[ErrorType, bool]] = {
    **HTTP_ERRORS,
    409: (ErrorType.UNKNOWN, True),
    422: (ErrorType.INVALID_REQUEST, False),
    503: (ErrorType.OVERLOADED, True),
    529: (ErrorType.OVERLOADED, True),
}
# An error line in the middle of a stream has no status: its type/code name it.
_BY_CODE: dict[str, tuple[ErrorType, bool]] = {
    "rate_limit_exceeded": (ErrorType.RATE_LIMITED, True),
    "requests": (ErrorType.RATE_LIMITED, True),
    "tokens": (ErrorType.RATE_LIMITED, True),
    "server_error": (ErrorType.SERVER_ERROR, True),
    "engine_overloaded": (ErrorType.OVERLOADED, True),
    "overloaded_error": (ErrorType.OVERLOADED, True),
    "timeout": (ErrorType.TIMEOUT, True),
    "context_length_exceeded": (ErrorType.INVALID_REQUEST, False),
    "invalid_request_error": (ErrorType.INVALID_REQUEST, False),
    "content_filter": (ErrorType.INVALID_REQUEST, False),
}


def _messages(request: LlmRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        out.extend(_message(message))
    return out


def _message(message: Message) -> list[dict[str, Any]]:
    if message.role == "assistant":
        text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
        calls = [
            {
                "id": b.call_id,
                "type": "function",
                "function": {"name": b.name, "arguments": b.arguments_json or "{}"},
            }
            for b in message.content
            if isinstance(b, ToolUseBlock)
        ]
        # null content only beside tool calls: the API refuses an assistant message
        # with neither (an empty answer is still a message)
        entry: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
        if calls:
            entry["tool_calls"] = calls
        return [entry]
    results = [
        {
            "role": "tool",
            "tool_call_id": b.call_id,
            "content": f"Error: {b.content}" if b.is_error else b.content,
        }
        for b in message.content
        if isinstance(b, ToolResultBlock)
    ]
    text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
    media = [_media_part(b) for b in message.content if isinstance(b, MediaBlock)]
    if media:
        parts = [*media, *([{"type": "text", "text": text}] if text else [])]
        return [*results, {"role": "user", "content": parts}]
    return [*results, {"role": "user", "content": text}] if text or not results else results


def _media_part(block: MediaBlock) -> dict[str, Any]:
    if block.data is None:
        raise ValueError(f"attachment {block.sha256[:12]} was not resolved from the blob store")
    url = f"data:{block.media_type};base64,{block.data}"
    if block.is_image:
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": {"filename": f"{block.sha256[:12]}.pdf", "file_data": url}}


def build_params(
    request: LlmRequest,
    model: str,
    *,
    max_tokens_param: str = "max_completion_tokens",
    parallel_tool_calls: bool = True,
) -> dict[str, Any]:
    """The Chat Completions parameters of `request`, sent to `model` (streaming added by
    the caller)."""
    params: dict[str, Any] = {
        "model": model,
        "messages": _messages(request),
        max_tokens_param: request.max_tokens,
    }
    if not _REASONING_MODEL.match(model):
        params["temperature"] = request.temperature
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.input_schema,
                },
            }
            for t in request.tools
        ]
        if parallel_tool_calls:
            params["parallel_tool_calls"] = True
    return params


def _usage(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    prompt = int(getattr(raw, "prompt_tokens", 0) or 0)
    completion = int(getattr(raw, "completion_tokens", 0) or 0)
    details = getattr(raw, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    if not cached:
        extra = getattr(raw, "model_extra", None) or {}
        cached = int(extra.get("prompt_cache_hit_tokens") or 0)  # DeepSeek
    cached = min(cached, prompt)
    return Usage(
        input_tokens=prompt - cached,
        output_tokens=completion,
        cache_read_tokens=cached,
        reasoning_tokens=min(_reasoning_tokens(raw), completion),
    )


def _reasoning_tokens(raw: Any) -> int:
    details = getattr(raw, "completion_tokens_details", None)
    return int(getattr(details, "reasoning_tokens", 0) or 0) if details is not None else 0


class _Assembly:
    """The answer being put together from stream chunks (choice 0 only: n is 1)."""

    __slots__ = ("calls", "finish", "refusal", "text", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage: Any = None

    def tool_uses(self) -> tuple[ToolUse, ...]:
        uses: list[ToolUse] = []
        for index in sorted(self.calls):
            call = self.calls[index]
            raw = "".join(call["arguments"]) or "{}"
            try:
                arguments = json.loads(raw)
            except ValueError:
                raise ValueError(
                    f"tool call {index} ({call['name']!r}) has arguments that are not JSON"
                ) from None
            if not isinstance(arguments, dict):
                raise TypeError(f"tool call {index} has arguments that are not a JSON object")
            uses.append(
                ToolUse(
                    call_id=call["id"] or f"call_{index}",
                    name=call["name"],
                    arguments_json=canonical_json(arguments),
                )
            )
        return tuple(uses)


class OpenAICompatProvider(FallbackAdapter):
    """`Provider` (and routing `Adapter`) for one OpenAI-compatible endpoint. Create one
    per endpoint and process and reuse it (connection pool, breakers).

    `api_key`: str or SecretStr; None for servers that want none (Ollama, a local vLLM).
    `base_url`: the endpoint's (".../v1"); for Azure (`azure_api_version` set) the
    resource URL (https://<resource>.openai.azure.com), and the model is the deployment.
    `max_tokens_param`: "max_completion_tokens" (OpenAI, Azure) or "max_tokens".
    `stream_usage`: ask for the usage chunk (`stream_options`); off for servers that
    refuse the field (Mistral, which puts the usage on its last chunk anyway; Groq's
    `x_groq.usage` is read too).
    `name` names the endpoint in circuit targets, logs and errors.
    """

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        name: str = "openai",
        azure_api_version: str | None = None,
        max_tokens_param: str = "max_completion_tokens",
        parallel_tool_calls: bool = True,
        stream_usage: bool = True,
        retry: RetryPolicy | None = None,
        breakers: BreakerRegistry | None = None,
        request_timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        streaming: bool = True,
        default_headers: dict[str, str] | None = None,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_tokens_param not in ("max_completion_tokens", "max_tokens"):
            raise ProviderConfigError(
                f"Endpoint {name!r}: max_tokens_param must be 'max_completion_tokens' or "
                f"'max_tokens', not {max_tokens_param!r}."
            )
        key = api_key if api_key is None or isinstance(api_key, str) else api_key.get_secret_value()
        self._secrets: tuple[str, ...] = (str(key),) if key else ()
        timeout = openai.Timeout(request_timeout_s, connect=connect_timeout_s)
        self._client: openai.AsyncOpenAI
        if azure_api_version is not None:
            if not base_url:
                raise ProviderConfigError(
                    f"Endpoint {name!r} (Azure OpenAI) needs its resource URL as base_url."
                )
            self._client = openai.AsyncAzureOpenAI(
                azure_endpoint=base_url,
                api_version=azure_api_version,
                api_key=key or _NO_KEY,
                max_retries=0,  # one owner for retries: agents.providers.retry
                timeout=timeout,
                default_headers=default_headers,
            )
        else:
            self._client = openai.AsyncOpenAI(
                api_key=key or _NO_KEY,
                base_url=base_url,
                max_retries=0,
                timeout=timeout,
                default_headers=default_headers,
            )
        self.name = name
        self.max_tokens_param = max_tokens_param
        self.parallel_tool_calls = parallel_tool_calls
        self.stream_usage = stream_usage
        self.retry = retry or RetryPolicy()
        self.breakers = breakers or BreakerRegistry(BreakerConfig())
        self.request_timeout_s = request_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.streaming = streaming
        self._rng = rng or random.Random()
        self._sleep = sleep

    def __repr__(self) -> str:
        return (
            f"OpenAICompatProvider(name={self.name!r}, base_url={str(self._client.base_url)!r}, "
            f"streaming={self.streaming}, retry={self.retry!r})"
        )

    def __reduce__(self) -> Any:
        raise TypeError("OpenAICompatProvider holds a credential and cannot be pickled.")

    async def aclose(self) -> None:
        await self._client.close()

    async def attempt(
        self, request: LlmRequest, model: str, deltas: DeltaSink, budget: float | None
    ) -> LlmResponse:
        """ONE request to `model` (see `agents.providers.routing.Adapter`)."""
        try:
            params = build_params(
                request,
                model,
                max_tokens_param=self.max_tokens_param,
                parallel_tool_calls=self.parallel_tool_calls,
            )
        except ValueError as exc:
            raise AttemptFailed(
                f"The request to {self.name}/{model} cannot be sent: {exc}.",
                error_type=ErrorType.INVALID_REQUEST,
                retryable=False,
                counts_for_breaker=False,
            ) from None
        timeout: Any = (
            openai.Timeout(budget, connect=min(budget, self.connect_timeout_s))
            if budget is not None
            else openai.NOT_GIVEN
        )
        answer = _Assembly()
        try:
            if self.streaming:
                if self.stream_usage:
                    params["stream_options"] = {"include_usage": True}
                stream = await self._client.chat.completions.create(
                    **params, stream=True, timeout=timeout
                )
                async for chunk in stream:
                    await self._take(chunk, answer, deltas)
            else:
                completion = await self._client.chat.completions.create(**params, timeout=timeout)
                self._take_completion(completion, answer)
                await deltas("".join(answer.text))
        except openai.APIStatusError as exc:
            raise self._status_failure(exc, model) from None
        except openai.APITimeoutError:
            raise AttemptFailed(
                f"The request to {self.name}/{model} timed out.",
                error_type=ErrorType.TIMEOUT,
                retryable=True,
            ) from None
        except openai.APIConnectionError as exc:
            raise AttemptFailed(
                f"The request to {self.name}/{model} could not connect: {self._scrub(str(exc))}",
                error_type=ErrorType.CONNECTION,
                retryable=True,
            ) from None
        except openai.APIResponseValidationError as exc:
            raise self._unreadable(model, exc) from None
        except openai.APIError as exc:  # an error line in the middle of a stream
            raise self._stream_error(exc, model) from None
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
        except (ValueError, TypeError) as exc:
            raise self._unreadable(model, exc) from None
        return self._response(answer, model)

    async def _take(self, chunk: Any, answer: _Assembly, deltas: DeltaSink) -> None:
        if getattr(chunk, "usage", None) is not None:
            answer.usage = chunk.usage
        else:
            groq = (getattr(chunk, "model_extra", None) or {}).get("x_groq")
            if isinstance(groq, dict) and isinstance(groq.get("usage"), dict):
                answer.usage = openai.types.CompletionUsage.model_validate(groq["usage"])
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    answer.text.append(delta.content)
                    await deltas(delta.content)
                if getattr(delta, "refusal", None):
                    answer.refusal.append(delta.refusal)
                for call in delta.tool_calls or ():
                    slot = answer.calls.setdefault(
                        call.index, {"id": None, "name": "", "arguments": []}
                    )
                    if call.id:
                        slot["id"] = call.id
                    function = call.function
                    if function is not None:
                        if function.name:
                            slot["name"] = function.name
                        if function.arguments:
                            slot["arguments"].append(function.arguments)
            if choice.finish_reason:
                answer.finish = choice.finish_reason

    @staticmethod
    def _take_completion(completion: Any, answer: _Assembly) -> None:
        answer.usage = completion.usage
        if not completion.choices:
            return
        choice = completion.choices[0]
        message = choice.message
        if message.content:
            answer.text.append(message.content)
        if getattr(message, "refusal", None):
            answer.refusal.append(message.refusal)
        for index, call in enumerate(message.tool_calls or ()):
            answer.calls[index] = {
                "id": call.id,
                "name": call.function.name,
                "arguments": [call.function.arguments or ""],
            }
        answer.finish = choice.finish_reason

    def _response(self, answer: _Assembly, model: str) -> LlmResponse:
        if answer.finish is None:
            raise AttemptFailed(
                f"The stream from {self.name}/{model} ended without a finish_reason.",
                error_type=ErrorType.INVALID_RESPONSE,
                retryable=True,
                counts_for_breaker=True,
            )
        try:
            tool_uses = answer.tool_uses()
            stop = FINISH_REASONS.get(answer.finish, answer.finish)
            if tool_uses and stop == StopReason.END_TURN:
                stop = StopReason.TOOL_USE  # some servers (Ollama) finish tool calls with "stop"
            text = "".join(answer.text)
            if answer.refusal and not text and not tool_uses:
                text, stop = "".join(answer.refusal), StopReason.REFUSAL
            usage = _usage(answer.usage)
        except (InvalidRecord, TypeError, ValueError) as exc:
            raise self._unreadable(model, exc) from None
        return LlmResponse(
            model=model, text=text, tool_uses=tool_uses, stop_reason=stop, usage=usage
        )

    def _unreadable(self, model: str, exc: BaseException) -> AttemptFailed:
        return AttemptFailed(
            f"The answer of {self.name}/{model} could not be read: {self._scrub(str(exc))[:300]}",
            error_type=ErrorType.INVALID_RESPONSE,
            retryable=True,
            counts_for_breaker=False,
        )

    def _status_failure(self, exc: openai.APIStatusError, model: str) -> AttemptFailed:
        status = exc.status_code
        code, detail = _error_fields(exc.body)
        if status in _BY_STATUS:
            error_type, retryable = _BY_STATUS[status]
        elif status >= 500:
            error_type, retryable = ErrorType.SERVER_ERROR, True
        else:
            error_type, retryable = ErrorType.UNKNOWN, False
        return AttemptFailed(
            f"{self.name}/{model} answered HTTP {status} ({code or 'no error code'}): "
            f"{self._scrub(detail or exc.message)[:500]}",
            error_type=error_type,
            retryable=retryable,
            status_code=status,
            retry_after_s=retry_after_s(getattr(exc, "response", None) and exc.response.headers),
        )

    def _stream_error(self, exc: openai.APIError, model: str) -> AttemptFailed:
        code, detail = _error_fields(exc.body)
        error_type, retryable = _BY_CODE.get(code or "", (ErrorType.SERVER_ERROR, True))
        return AttemptFailed(
            f"{self.name}/{model} sent an error mid-stream ({code or 'no error code'}): "
            f"{self._scrub(detail or exc.message)[:500]}",
            error_type=error_type,
            retryable=retryable,
        )

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets)


def _error_fields(body: object) -> tuple[str | None, str | None]:
    """(code or type, message) of an error body (the envelope or its inner object)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if not isinstance(body, dict):
        return None, None
    code = body.get("code") or body.get("type")
    message = body.get("message")
    return (str(code) if code else None), (str(message) if message else None)
