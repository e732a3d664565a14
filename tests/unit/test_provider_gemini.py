"""GeminiProvider: the real google-genai SDK against the fake Gemini API over HTTP."""

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
from agents.providers.gemini import GeminiProvider
from tests.fakes.gemini_server import (
    FAKE_GEMINI_KEY,
    FakeFunctionCall,
    FakeGeminiError,
    FakeGeminiServer,
    FakeGeneration,
    GeminiUsage,
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


def make_request(model: str = "gemini-2.5-flash", *, text: str = "what is 17*23?") -> LlmRequest:
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
def module_server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(cache_min_tokens=0) as server:
        yield server


@pytest.fixture
def server(module_server: FakeGeminiServer) -> FakeGeminiServer:
    module_server.reset()
    return module_server


def provider_for(server: FakeGeminiServer, **options: Any) -> GeminiProvider:
    options.setdefault("retry", FAST)
    options.setdefault("api_key", FAKE_GEMINI_KEY)
    return GeminiProvider(base_url=server.base_url, **options)


@pytest.fixture
async def provider(server: FakeGeminiServer) -> AsyncIterator[GeminiProvider]:
    async with provider_for(server) as p:
        yield p


async def test_function_calls_with_usage_and_the_request_the_sdk_sent(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    server.enqueue(
        FakeGeneration(
            "Let me calculate.",
            function_calls=[
                FakeFunctionCall("calculator", {"expression": "17*23"}, id="fc_1"),
                FakeFunctionCall("shell", {"command": "echo 391"}),
            ],
            thought="First, multiply.",
            usage=GeminiUsage(
                prompt_tokens=120, candidates_tokens=30, cached_tokens=64, thoughts_tokens=12
            ),
        )
    )
    response = await provider.complete(make_request())
    assert response.text == "Let me calculate." and response.stop_reason == "tool_use"
    first, second = response.tool_uses
    assert (first.call_id, first.name, first.arguments_json) == (
        "fc_1",
        "calculator",
        '{"expression":"17*23"}',
    )
    assert second.name == "shell" and second.call_id.startswith("call_")
    # promptTokenCount includes the cached tokens; thoughts are billed as output.
    usage = response.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (56, 64, 42)

    (sent,) = server.requests
    assert sent.stream and sent.query["alt"] == "sse" and sent.api_key_valid
    assert sent.headers["x-goog-api-key"] == "[redacted]"
    body = sent.body
    assert body["systemInstruction"]["parts"] == [{"text": "You are a careful assistant."}]
    assert body["generationConfig"]["maxOutputTokens"] == 256
    assert body["generationConfig"]["temperature"] == 0.2
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "calculator"
    schema = declaration.get("parametersJsonSchema") or declaration.get("parameters_json_schema")
    assert schema == {"type": "object", "properties": {"expression": {"type": "string"}}}
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert contents[1]["parts"] == [
        {"functionCall": {"id": "call_a", "name": "calculator", "args": {"expression": "1+1"}}},
        {"functionCall": {"id": "call_b", "name": "shell", "args": {"command": "ls"}}},
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"id": "call_a", "name": "calculator", "response": {"output": "2"}}},
        {
            "functionResponse": {
                "id": "call_b",
                "name": "shell",
                "response": {"error": "no such dir"},
            }
        },
    ]


async def test_a_generated_call_id_is_the_same_when_the_call_is_reissued(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    reply = FakeGeneration("", function_calls=[FakeFunctionCall("shell", {"command": "ls"})])
    server.enqueue(reply, reply)
    first = await provider.complete(make_request())
    again = await provider.complete(make_request())
    other = await provider.complete(make_request(text="something else"))
    assert first.tool_uses[0].call_id == again.tool_uses[0].call_id
    assert other.tool_uses == ()


async def test_gemini_3_turns_carry_the_documented_signature_sentinel(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    response = await provider.complete(make_request("gemini-3-pro-preview"))
    calls = server.requests[0].body["contents"][1]["parts"]
    assert "thoughtSignature" in calls[0] and "thoughtSignature" not in calls[1]
    assert response.stop_reason == "end_turn"
    await provider.complete(make_request("gemini-2.5-pro"))
    assert all("thoughtSignature" not in p for p in server.requests[1].body["contents"][1]["parts"])


async def test_implicit_caching_is_reported_as_cache_reads(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    first = await provider.complete(make_request(text="one"))
    second = await provider.complete(make_request(text="two"))
    assert first.usage.cache_read_tokens == 0
    assert 0 < second.usage.cache_read_tokens < first.usage.input_tokens
    assert second.usage.input_tokens + second.usage.cache_read_tokens == first.usage.input_tokens


@pytest.mark.parametrize(
    ("finish", "calls", "expected"),
    [
        ("STOP", False, "end_turn"),
        ("STOP", True, "tool_use"),
        ("MAX_TOKENS", False, "max_tokens"),
        ("SAFETY", False, "refusal"),
        ("RECITATION", False, "refusal"),
        ("PROHIBITED_CONTENT", False, "refusal"),
        ("OTHER", False, "other"),
    ],
)
async def test_finish_reasons_map_onto_stop_reasons(
    server: FakeGeminiServer, provider: GeminiProvider, finish: str, calls: bool, expected: str
) -> None:
    function_calls = [FakeFunctionCall("shell", {"command": "ls"})] if calls else []
    server.enqueue(FakeGeneration("x", function_calls=function_calls, finish_reason=finish))
    assert (await provider.complete(make_request())).stop_reason == expected


async def test_a_blocked_prompt_is_a_refusal(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    server.enqueue(FakeGeneration(blocked="SAFETY"))
    response = await provider.complete(make_request())
    assert (response.text, response.stop_reason, response.tool_uses) == ("", "refusal", ())


async def test_a_malformed_function_call_is_retried(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    server.enqueue(FakeGeneration("", finish_reason="MALFORMED_FUNCTION_CALL"))
    response = await provider.complete(make_request())
    assert response.attempts == 2 and response.stop_reason == "end_turn"


async def test_text_deltas_stream_in_order_before_the_stream_ends(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    release = threading.Event()
    server.enqueue(FakeGeneration(text, text_chunk_chars=5, hold_after_chunks=1, release=release))
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)
        release.set()

    response = await provider.complete(make_request(), on_delta=on_delta, timeout_s=20)
    assert deltas == [text[i : i + 5] for i in range(0, len(text), 5)]
    assert response.text == text


@pytest.mark.parametrize("mode", ["error", "disconnect", "end"])
async def test_a_stream_cut_mid_answer_is_retried_with_a_restart_marker(
    server: FakeGeminiServer, provider: GeminiProvider, mode: str
) -> None:
    cut = "This attempt breaks off half way through."
    server.enqueue(
        FakeGeneration(cut, text_chunk_chars=4, break_after_chunks=3, break_mode=mode),
        FakeGeneration("whole answer", text_chunk_chars=4),
    )
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    response = await provider.complete(make_request(), on_delta=on_delta)
    assert response.attempts == 2 and deltas.count(STREAM_RESTART) == 1
    marker = deltas.index(STREAM_RESTART)
    assert "".join(deltas[:marker]) == cut[:12]
    assert "".join(deltas[marker + 1 :]) == response.text == "whole answer"


async def test_429_and_5xx_are_retried_then_answered(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    server.enqueue(FakeGeminiError(429, headers={"retry-after": "0"}), FakeGeminiError(503))
    response = await provider.complete(make_request())
    assert response.attempts == 3 and [r.status for r in server.requests] == [429, 503, 200]


async def test_exhausted_retries_fall_back_to_the_next_model(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    server.always(FakeGeminiError(500), model="gemini-2.5-pro")
    response = await provider.complete(
        make_request("gemini-2.5-pro"), fallbacks=["gemini-2.5-flash"]
    )
    assert (response.model, response.attempts, response.fallback_used) == (
        "gemini-2.5-flash",
        4,
        True,
    )


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request"),
        (403, "permission"),
        (404, "not_found"),
    ],
)
async def test_client_errors_fail_at_once_without_fallback(
    server: FakeGeminiServer, provider: GeminiProvider, status: int, error_type: str
) -> None:
    server.always(FakeGeminiError(status, "nope"))
    with pytest.raises(ProviderError) as caught:
        await provider.complete(make_request(), fallbacks=["gemini-2.5-pro"])
    assert (caught.value.error_type, caught.value.attempts) == (error_type, 1)
    assert not caught.value.retryable and caught.value.status_code == status


async def test_the_fake_rejects_a_function_response_without_a_call(
    server: FakeGeminiServer, provider: GeminiProvider
) -> None:
    broken = LlmRequest(
        "gemini-2.5-flash",
        "",
        (
            Message("user", (TextBlock("hi"),)),
            Message("assistant", (TextBlock("no calls here"),)),
            Message("user", (ToolResultBlock("call_x", "orphan"),)),
        ),
        TOOLS,
        10,
        0.0,
    )
    with pytest.raises(ProviderError) as caught:
        await provider.complete(broken)
    assert caught.value.error_type == "invalid_request" and "function response" in str(caught.value)


async def test_non_streaming_mode_gets_the_same_answer(server: FakeGeminiServer) -> None:
    server.enqueue(
        FakeGeneration(
            "plain answer", function_calls=[FakeFunctionCall("shell", {"command": "ls"})]
        )
    )
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    async with provider_for(server, streaming=False) as p:
        response = await p.complete(make_request(), on_delta=on_delta)
    assert server.requests[0].stream is False and deltas == ["plain answer"]
    assert response.text == "plain answer" and response.stop_reason == "tool_use"
    assert response.tool_uses[0].arguments_json == '{"command":"ls"}'


async def test_a_missing_api_key_is_a_configuration_error() -> None:
    with pytest.raises(ProviderConfigError, match="GEMINI_API_KEY"):
        GeminiProvider(api_key=None)


async def test_the_api_key_never_appears_in_errors_reprs_or_logs(
    server: FakeGeminiServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "AIza-wrong-key-SHOULD-NOT-LEAK-42"
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
    # The API answers a wrong key with a 400 whose message says so.
    assert (caught.value.error_type, caught.value.status_code) == ("authentication", 400)
    assert wrong not in text and wrong[:12] not in text
