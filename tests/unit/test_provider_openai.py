"""OpenAICompatProvider: the real openai SDK against the fake Chat Completions API."""

from __future__ import annotations

import json
import logging
import pickle
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog

from agents.llm import LlmRequest, Message, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock
from agents.providers import ProviderConfigError, ProviderError, RetryPolicy
from agents.providers.base import STREAM_RESTART
from agents.providers.breaker import BreakerConfig, BreakerRegistry
from agents.providers.openai_compat import OpenAICompatProvider
from tests.fakes.openai_server import (
    FAKE_OPENAI_KEY,
    FakeCompletion,
    FakeOpenAIError,
    FakeOpenAIServer,
    FakeToolCall,
    OpenAIUsage,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01, jitter=0.0)
TOOLS = (
    ToolSpec(
        "calculator",
        "Evaluate arithmetic.",
        {"type": "object", "properties": {"expression": {"type": "string"}}},
    ),
    ToolSpec(
        "shell", "Run a command.", {"type": "object", "properties": {"command": {"type": "string"}}}
    ),
)


def make_request(model: str = "gpt-4o", *, text: str = "what is 17*23?") -> LlmRequest:
    return LlmRequest(
        model=model,
        system="You are a careful assistant.",
        messages=(
            Message("user", (TextBlock("hi"),)),
            Message(
                "assistant",
                (
                    TextBlock(""),
                    ToolUseBlock("call_a", "calculator", '{"expression":"1+1"}'),
                    ToolUseBlock("call_b", "shell", '{"command":"ls"}'),
                ),
            ),
            Message(
                "user",
                (
                    ToolResultBlock("call_a", "2"),
                    ToolResultBlock("call_b", "no such dir", is_error=True),
                ),
            ),
            Message("assistant", (TextBlock("It is 2."),)),
            Message("user", (TextBlock(text),)),
        ),
        tools=TOOLS,
        max_tokens=256,
        temperature=0.2,
    )


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(cache_min_tokens=0, cache_increment=1) as server:
        yield server


@pytest.fixture
def server(module_server: FakeOpenAIServer) -> FakeOpenAIServer:
    module_server.reset()
    return module_server


def provider_for(server: FakeOpenAIServer, **options: Any) -> OpenAICompatProvider:
    options.setdefault("retry", FAST)
    options.setdefault("api_key", FAKE_OPENAI_KEY)
    options.setdefault("base_url", f"{server.base_url}/v1")
    return OpenAICompatProvider(**options)


@pytest.fixture
async def provider(server: FakeOpenAIServer) -> AsyncIterator[OpenAICompatProvider]:
    async with provider_for(server) as p:
        yield p


async def test_parallel_tool_calls_with_usage_and_the_request_the_sdk_sent(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    server.enqueue(
        FakeCompletion(
            "Let me calculate.",
            tool_calls=[
                FakeToolCall("calculator", {"expression": "17*23"}, id="call_calc"),
                FakeToolCall("shell", {"command": "echo 391"}),
            ],
            json_chunk_chars=5,
            usage=OpenAIUsage(prompt_tokens=120, completion_tokens=30, cached_tokens=64),
        )
    )
    response = await provider.complete(make_request())
    assert response.text == "Let me calculate." and response.stop_reason == "tool_use"
    first = response.tool_uses[0]
    assert (first.call_id, first.name, first.arguments_json) == (
        "call_calc",
        "calculator",
        '{"expression":"17*23"}',
    )
    assert response.tool_uses[1].name == "shell"
    assert response.tool_uses[1].call_id.startswith("call_")
    # prompt_tokens include the cached ones: billed input is the rest.
    usage = response.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (56, 64, 30)
    assert usage.cache_write_tokens == 0

    (sent,) = server.requests
    body = sent.body
    assert sent.stream and sent.api_key_valid and sent.headers["authorization"] == "[redacted]"
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 256 and "max_tokens" not in body
    assert body["temperature"] == 0.2 and body["parallel_tool_calls"] is True
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate arithmetic.",
            "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
        },
    }
    assert body["messages"] == [
        {"role": "system", "content": "You are a careful assistant."},
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression":"1+1"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "shell", "arguments": '{"command":"ls"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "2"},
        {"role": "tool", "tool_call_id": "call_b", "content": "Error: no such dir"},
        {"role": "assistant", "content": "It is 2."},
        {"role": "user", "content": "what is 17*23?"},
    ]


async def test_automatic_prompt_caching_is_reported_as_cache_reads(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    first = await provider.complete(make_request(text="one"))
    second = await provider.complete(make_request(text="two"))
    assert first.usage.cache_read_tokens == 0
    # Everything before the last message is a prefix the fake has seen.
    assert 0 < second.usage.cache_read_tokens < first.usage.input_tokens
    assert second.usage.input_tokens + second.usage.cache_read_tokens == first.usage.input_tokens


async def test_reasoning_models_get_no_temperature_and_bill_reasoning_as_output(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    server.enqueue(
        FakeCompletion(
            "391", usage=OpenAIUsage(prompt_tokens=50, completion_tokens=210, reasoning_tokens=200)
        )
    )
    response = await provider.complete(make_request("o4-mini"))
    assert "temperature" not in server.requests[0].body
    assert response.usage.output_tokens == 210  # reasoning tokens are inside completion


async def test_deepseek_cache_hits_are_read_from_its_own_usage_fields(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    server.enqueue(
        FakeCompletion(
            "ok",
            usage=OpenAIUsage(
                prompt_tokens=100,
                completion_tokens=5,
                cached_tokens=0,
                extra={"prompt_cache_hit_tokens": 80, "prompt_cache_miss_tokens": 20},
            ),
        )
    )
    usage = (await provider.complete(make_request("deepseek-chat"))).usage
    assert (usage.input_tokens, usage.cache_read_tokens) == (20, 80)


@pytest.mark.parametrize(
    ("finish", "tools", "expected"),
    [
        ("stop", False, "end_turn"),
        ("length", False, "max_tokens"),
        ("content_filter", False, "refusal"),
        ("tool_calls", True, "tool_use"),
        ("stop", True, "tool_use"),  # Ollama finishes tool calls with "stop"
        ("some_new_reason", False, "some_new_reason"),
    ],
)
async def test_finish_reasons_map_onto_stop_reasons(
    server: FakeOpenAIServer,
    provider: OpenAICompatProvider,
    finish: str,
    tools: bool,
    expected: str,
) -> None:
    calls = [FakeToolCall("calculator", {"expression": "1"})] if tools else []
    server.enqueue(FakeCompletion("x", tool_calls=calls, finish_reason=finish))
    assert (await provider.complete(make_request())).stop_reason == expected


async def test_a_refusal_is_the_answer_text_with_the_refusal_stop_reason(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    server.enqueue(FakeCompletion("", refusal="I can't help with that."))
    response = await provider.complete(make_request())
    assert (response.text, response.stop_reason) == ("I can't help with that.", "refusal")


async def test_text_deltas_stream_in_order_before_the_stream_ends(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    release = threading.Event()
    # Held after the role chunk and the first text chunk until a delta arrived.
    server.enqueue(FakeCompletion(text, text_chunk_chars=5, hold_after_chunks=2, release=release))
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)
        release.set()

    response = await provider.complete(make_request(), on_delta=on_delta, timeout_s=20)
    assert deltas == [text[i : i + 5] for i in range(0, len(text), 5)]
    assert response.text == text


@pytest.mark.parametrize("mode", ["error", "disconnect"])
async def test_a_stream_cut_mid_answer_is_retried_with_a_restart_marker(
    server: FakeOpenAIServer, provider: OpenAICompatProvider, mode: str
) -> None:
    cut = "This attempt breaks off half way through."
    server.enqueue(
        FakeCompletion(cut, text_chunk_chars=4, break_after_chunks=4, break_mode=mode),
        FakeCompletion("whole answer", text_chunk_chars=4),
    )
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    response = await provider.complete(make_request(), on_delta=on_delta)
    assert response.attempts == 2 and deltas.count(STREAM_RESTART) == 1
    marker = deltas.index(STREAM_RESTART)
    assert cut.startswith("".join(deltas[:marker])) and marker > 0
    assert "".join(deltas[marker + 1 :]) == response.text == "whole answer"


async def test_a_mid_stream_rate_limit_is_a_retryable_rate_limit(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    server.always(FakeCompletion("abc", break_after_chunks=1, break_error="rate_limit_exceeded"))
    with pytest.raises(ProviderError) as caught:
        await provider.complete(make_request())
    assert caught.value.error_type == "rate_limited"
    assert caught.value.retryable and caught.value.attempts == 3


async def test_429_and_5xx_are_retried_then_answered(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    server.enqueue(FakeOpenAIError(429, headers={"retry-after-ms": "1"}), FakeOpenAIError(503))
    response = await provider.complete(make_request())
    assert response.attempts == 3 and [r.status for r in server.requests] == [429, 503, 200]


async def test_exhausted_retries_fall_back_to_the_next_model(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    server.always(FakeOpenAIError(500), model="gpt-4o")
    response = await provider.complete(make_request(), fallbacks=["gpt-4o-mini"])
    assert (response.model, response.attempts, response.fallback_used) == ("gpt-4o-mini", 4, True)


async def test_exhausted_models_raise_a_retryable_provider_error(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    server.always(FakeOpenAIError(500))
    with pytest.raises(ProviderError) as caught:
        await provider.complete(make_request(), fallbacks=["gpt-4o-mini"])
    error = caught.value
    assert (error.error_type, error.retryable, error.attempts) == ("server_error", True, 6)
    assert error.model == "gpt-4o-mini" and error.status_code == 500


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request"),
        (401, "authentication"),
        (403, "permission"),
        (404, "not_found"),
    ],
)
async def test_client_errors_fail_at_once_without_fallback(
    server: FakeOpenAIServer, provider: OpenAICompatProvider, status: int, error_type: str
) -> None:
    server.always(FakeOpenAIError(status, "nope"))
    with pytest.raises(ProviderError) as caught:
        await provider.complete(make_request(), fallbacks=["gpt-4o-mini"])
    assert (caught.value.error_type, caught.value.attempts) == (error_type, 1)
    assert not caught.value.retryable and len(server.requests) == 1


async def test_the_fake_rejects_what_the_api_rejects(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    broken = LlmRequest(
        "gpt-4o",
        "",
        (
            Message("user", (TextBlock("hi"),)),
            Message("assistant", (ToolUseBlock("call_x", "calculator", "{}"),)),
            Message("user", (TextBlock("no result for call_x"),)),
        ),
        TOOLS,
        10,
        0.0,
    )
    with pytest.raises(ProviderError) as caught:
        await provider.complete(broken)
    assert caught.value.error_type == "invalid_request" and "call_x" in caught.value.message


async def test_arguments_that_are_not_json_are_an_invalid_response_and_retried(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    server.enqueue(FakeCompletion("", tool_calls=[FakeToolCall("shell", '{"command": "ls"')]))
    response = await provider.complete(make_request())
    assert response.attempts == 2 and response.stop_reason == "end_turn"


async def test_a_stream_without_a_finish_reason_is_retried(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    # Cut right after the text, before the finish chunk, by a clean end of stream.
    server.enqueue(FakeCompletion("abc", break_after_chunks=2, break_mode="end"))
    with structlog.testing.capture_logs() as logs:
        response = await provider.complete(make_request())
    assert response.attempts == 2
    failed = [e for e in logs if e["event"] == "llm.attempt_failed"]
    assert [e["error_type"] for e in failed] == ["invalid_response"]


async def test_breaker_opens_and_the_next_call_skips_the_model(server: FakeOpenAIServer) -> None:
    server.always(FakeOpenAIError(500), model="gpt-4o")
    breakers = BreakerRegistry(BreakerConfig(failure_threshold=2, cooldown_s=60))
    async with provider_for(server, breakers=breakers) as p:
        first = await p.complete(make_request(), fallbacks=["gpt-4o-mini"])
        second = await p.complete(make_request(), fallbacks=["gpt-4o-mini"])
    assert first.circuits_opened == ("openai/gpt-4o",) and first.attempts == 3
    assert second.attempts == 1 and second.circuits_opened == ()
    assert len(server.requests_for("gpt-4o")) == 2


async def test_non_streaming_mode_gets_the_same_answer(server: FakeOpenAIServer) -> None:
    server.enqueue(FakeCompletion("plain", tool_calls=[FakeToolCall("shell", {"command": "ls"})]))
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    async with provider_for(server, streaming=False) as p:
        response = await p.complete(make_request(), on_delta=on_delta)
    assert server.requests[0].stream is False and deltas == ["plain"]
    assert response.tool_uses[0].arguments_json == '{"command":"ls"}'
    assert response.stop_reason == "tool_use" and response.usage.output_tokens > 0


async def test_endpoints_that_read_max_tokens_and_want_no_key(server: FakeOpenAIServer) -> None:
    async with provider_for(
        server, api_key=None, name="ollama", max_tokens_param="max_tokens"
    ) as p:
        server.api_key = None
        try:
            response = await p.complete(make_request("llama3.1:8b"))
        finally:
            server.api_key = FAKE_OPENAI_KEY
    body = server.requests[0].body
    assert body["max_tokens"] == 256 and "max_completion_tokens" not in body
    assert response.model == "llama3.1:8b"
    with pytest.raises(ProviderConfigError, match="max_tokens_param"):
        provider_for(server, max_tokens_param="max_output")


async def test_azure_deployments_take_the_key_header_and_api_version(
    server: FakeOpenAIServer,
) -> None:
    async with provider_for(
        server, name="azure", base_url=server.base_url, azure_api_version="2024-10-21"
    ) as p:
        response = await p.complete(make_request("prod-gpt4o"))
    (sent,) = server.requests
    assert sent.path == "/openai/deployments/prod-gpt4o/chat/completions"
    assert sent.query["api-version"] == "2024-10-21" and sent.api_key_valid is True
    assert sent.headers["api-key"] == "[redacted]" and response.model == "prod-gpt4o"
    with pytest.raises(ProviderConfigError, match="resource URL"):
        OpenAICompatProvider(api_key="k", base_url=None, azure_api_version="2024-10-21")


async def test_the_api_key_never_appears_in_errors_reprs_or_logs(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-proj-wrong-key-SHOULD-NOT-LEAK-42"
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        async with provider_for(server, api_key=wrong) as p:
            with pytest.raises(ProviderError) as caught:
                await p.complete(make_request())
            text = " ".join(
                [
                    str(caught.value),
                    repr(caught.value),
                    repr(p),
                    json.dumps(logs, default=str),
                    caplog.text,
                ]
            )
            with pytest.raises(TypeError):
                pickle.dumps(p)
    assert caught.value.error_type == "authentication"
    assert wrong not in text and wrong[:12] not in text


async def test_mistral_refuses_stream_options_and_reports_usage_on_its_last_chunk() -> None:
    with FakeOpenAIServer(dialect="mistral") as mistral:
        mistral.always(
            FakeCompletion("bonjour", usage=OpenAIUsage(prompt_tokens=40, completion_tokens=3))
        )
        async with provider_for(mistral, name="mistral", max_tokens_param="max_tokens") as p:
            with pytest.raises(ProviderError) as caught:
                await p.complete(make_request("mistral-small-latest"))
        assert (caught.value.error_type, caught.value.attempts) == ("invalid_request", 1)
        async with provider_for(
            mistral, name="mistral", max_tokens_param="max_tokens", stream_usage=False
        ) as p:
            response = await p.complete(make_request("mistral-small-latest"))
        assert "stream_options" not in mistral.requests[-1].body
        assert (response.text, response.usage.input_tokens, response.usage.output_tokens) == (
            "bonjour",
            40,
            3,
        )


async def test_the_mistral_preset_asks_for_no_usage_chunk() -> None:  # the module is asyncio-marked
    from agents.providers.endpoints import PRESETS

    assert PRESETS["mistral"].stream_usage is False and PRESETS["openai"].stream_usage


async def test_groq_usage_is_read_from_its_x_groq_field() -> None:
    with FakeOpenAIServer(dialect="groq") as groq:
        groq.always(FakeCompletion("hi", usage=OpenAIUsage(prompt_tokens=30, completion_tokens=2)))
        async with provider_for(groq, name="groq", max_tokens_param="max_tokens") as p:
            response = await p.complete(make_request("llama-3.3-70b-versatile"))
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 2)


async def test_an_empty_assistant_answer_is_sent_as_empty_text(
    server: FakeOpenAIServer, provider: OpenAICompatProvider
) -> None:
    request = LlmRequest(
        "gpt-4o",
        "",
        (
            Message("user", (TextBlock("hi"),)),
            Message("assistant", (TextBlock(""),)),
            Message("user", (TextBlock("hello?"),)),
        ),
        (),
        10,
        0.0,
    )
    response = await provider.complete(request)
    assert server.requests[0].body["messages"][1] == {"role": "assistant", "content": ""}
    assert response.stop_reason == "end_turn"
