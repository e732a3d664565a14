"""AnthropicProvider: the real anthropic SDK against the fake Messages API over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
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
from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import STREAM_RESTART
from agents.providers.breaker import BreakerConfig, BreakerRegistry
from tests.fakes.anthropic_server import (
    FAKE_API_KEY,
    FakeAnthropicServer,
    FakeError,
    FakeMessage,
    FakeToolUse,
    FakeUsage,
)

# One event loop for the module: the provider fixture's HTTP connections belong to it.
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


def make_request(
    model: str = "claude-a", *, cache_prefix: bool = True, text: str = "what is 17*23?"
) -> LlmRequest:
    return LlmRequest(
        model=model,
        system="You are a careful assistant.",
        messages=(
            Message("user", (TextBlock("hi"),)),
            Message(
                "assistant",
                (TextBlock(""), ToolUseBlock("toolu_prev", "calculator", '{"expression":"1+1"}')),
            ),
            Message("user", (ToolResultBlock("toolu_prev", "2"),)),
            Message("assistant", (TextBlock("It is 2."),)),
            Message("user", (TextBlock(text),)),
        ),
        tools=TOOLS,
        max_tokens=256,
        temperature=0.2,
        cache_prefix=cache_prefix,
    )


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key=FAKE_API_KEY) as server:
        yield server


@pytest.fixture
def server(module_server: FakeAnthropicServer) -> FakeAnthropicServer:
    module_server.reset()
    return module_server


def provider_for(server: FakeAnthropicServer, **options: Any) -> AnthropicProvider:
    options.setdefault("retry", FAST)
    options.setdefault("api_key", FAKE_API_KEY)
    return AnthropicProvider(base_url=server.base_url, **options)


@pytest.fixture
async def provider(server: FakeAnthropicServer) -> AsyncIterator[AnthropicProvider]:
    async with provider_for(server) as p:
        yield p


# ----------------------------------------------------------------------------- happy paths


async def test_tool_use_answer_with_usage_and_the_request_the_sdk_sent(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.enqueue(
        FakeMessage(
            "Let me calculate.",
            tool_uses=[
                FakeToolUse("calculator", {"expression": "17*23"}, id="toolu_calc"),
                FakeToolUse("shell", {"command": "ls -la"}),
            ],
            usage=FakeUsage(
                input_tokens=21,
                output_tokens=34,
                cache_creation_input_tokens=500,
                cache_read_input_tokens=7,
            ),
        )
    )
    response = await provider.complete(make_request())
    assert response.text == "Let me calculate."
    assert next((t.call_id, t.name, json.loads(t.arguments_json)) for t in response.tool_uses) == (
        "toolu_calc",
        "calculator",
        {"expression": "17*23"},
    )
    assert response.tool_uses[1].name == "shell" and response.tool_uses[1].call_id.startswith(
        "toolu_"
    )
    assert response.stop_reason == "tool_use"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 34)
    assert (response.usage.cache_write_tokens, response.usage.cache_read_tokens) == (500, 7)
    assert (response.model, response.attempts, response.fallback_used) == ("claude-a", 1, False)

    (sent,) = server.requests
    body = sent.body
    assert sent.stream is True and sent.api_key_valid is True
    assert sent.headers["authorization"] == "[redacted]" and sent.headers["anthropic-version"]
    assert body["model"] == "claude-a" and body["max_tokens"] == 256
    # API version 2026-10-21 rejects sampling parameters, so none is sent.
    assert "temperature" not in body
    assert body["system"] == [
        {
            "type": "text",
            "text": "You are a careful assistant.",
            "cache_control": {"type": "ephemeral"},
        }
    ]
    assert "cache_control" not in body["tools"][0]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][0]["input_schema"]["properties"] == {"expression": {"type": "string"}}
    # The empty text block beside the earlier tool call is dropped (the API rejects it).
    assert body["messages"][1]["content"] == [
        {
            "type": "tool_use",
            "id": "toolu_prev",
            "name": "calculator",
            "input": {"expression": "1+1"},
        }
    ]
    # Conversation caching: breakpoints on the newest message and the user message before
    # it (where the previous call of the session put its own), four in all.
    ephemeral = {"type": "ephemeral"}
    assert body["messages"][2]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_prev",
            "content": "2",
            "is_error": False,
            "cache_control": ephemeral,
        }
    ]
    assert body["messages"][4]["content"][-1]["cache_control"] == ephemeral
    assert all("cache_control" not in b for m in body["messages"][:2] for b in m["content"])
    assert "cache_control" not in body["messages"][3]["content"][-1]


def grown(request: LlmRequest, answer: str, text: str) -> LlmRequest:
    """`request` one exchange later: the model's answer, then the user's next message."""
    return dataclasses.replace(
        request,
        messages=(
            *request.messages,
            Message("assistant", (TextBlock(answer),)),
            Message("user", (TextBlock(text),)),
        ),
    )


async def test_prompt_cache_is_written_then_read_and_reported(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    request = make_request(text="one")
    first = await provider.complete(request)
    second = await provider.complete(grown(request, first.text, "two"))
    assert first.usage.cache_write_tokens > 0 and first.usage.cache_read_tokens == 0
    # The second call reads everything the first sent and writes only the new exchange.
    assert second.usage.cache_read_tokens == first.usage.cache_write_tokens
    assert 0 < second.usage.cache_write_tokens < first.usage.cache_write_tokens
    assert second.usage.input_tokens == first.usage.input_tokens == 1


async def test_conversation_caching_keeps_the_uncached_input_flat(
    server: FakeAnthropicServer,
) -> None:
    async def session(cache_conversation: bool) -> list[int]:
        server.reset()
        billed: list[int] = []
        request = make_request(text="question 0")
        async with provider_for(server, cache_conversation=cache_conversation) as provider:
            for n in range(1, 16):
                response = await provider.complete(request)
                billed.append(response.usage.input_tokens + response.usage.cache_write_tokens)
                request = grown(request, f"answer {n:02d} " * 5, f"question {n:02d} " * 5)
        return billed

    cached = await session(True)
    uncached = await session(False)
    # With the conversation cached, each call pays full price only for the exchange it
    # added (the same size every time); without, for the whole conversation so far.
    assert len(set(cached[2:])) == 1, cached
    assert uncached[-1] > uncached[1] * 5, uncached
    assert sum(cached) < sum(uncached) / 3


async def test_count_tokens_asks_the_api(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    request = make_request()
    counted = await provider.count_tokens(request)
    (sent,) = server.requests
    assert sent.path == "/v1/messages/count_tokens" and sent.body["model"] == "claude-a"
    assert "max_tokens" not in sent.body and "cache_control" not in json.dumps(sent.body)
    # The fake counts what it bills: the count is the input of the same request uncached.
    answered = await provider.complete(make_request(cache_prefix=False))
    assert counted == answered.usage.input_tokens > 0
    assert await provider.count_tokens(request, "claude-b") == counted
    assert server.requests[-1].body["model"] == "claude-b"


async def test_count_tokens_failure_is_a_provider_error(server: FakeAnthropicServer) -> None:
    async with provider_for(server, api_key="sk-ant-wrong-key") as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.count_tokens(make_request())
    assert caught.value.error_type == "authentication" and caught.value.attempts == 1


async def test_stop_reasons_pass_through_as_the_api_says_them(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    for reason in ("max_tokens", "refusal", "pause_turn", "model_context_window_exceeded"):
        server.enqueue(FakeMessage("cut", stop_reason=reason))
        response = await provider.complete(make_request())
        assert response.stop_reason == reason


async def test_without_cache_prefix_no_cache_markers_are_sent(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    response = await provider.complete(make_request(cache_prefix=False))
    body = server.requests[0].body
    assert body["system"] == "You are a careful assistant."
    assert all("cache_control" not in tool for tool in body["tools"])
    assert response.usage.cache_write_tokens == 0 and response.usage.cache_read_tokens == 0


async def test_text_deltas_stream_in_order_before_the_stream_ends(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    text = "The quick brown fox jumps over the lazy dog, twice over."
    release = threading.Event()
    # The server holds the stream after the first text delta until the test releases it:
    # a provider that buffered the answer would never see a delta and time out here.
    server.enqueue(FakeMessage(text, text_chunk_chars=5, hold_after_events=4, release=release))
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)
        release.set()

    response = await provider.complete(make_request(), on_delta=on_delta, timeout_s=20)
    assert deltas == [text[i : i + 5] for i in range(0, len(text), 5)]
    assert "".join(deltas) == response.text == text


async def test_a_stream_cut_mid_answer_restarts_the_deltas_on_the_retry(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    cut = "This attempt breaks off half way through."
    server.enqueue(
        FakeMessage(cut, text_chunk_chars=4, break_after_events=6),
        FakeMessage("whole answer", text_chunk_chars=4),
    )
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    response = await provider.complete(make_request(), on_delta=on_delta)
    assert response.attempts == 2
    assert deltas.count(STREAM_RESTART) == 1
    marker = deltas.index(STREAM_RESTART)
    assert marker > 0 and cut.startswith("".join(deltas[:marker]))
    assert "".join(deltas[marker + 1 :]) == response.text == "whole answer"


async def test_a_retry_before_any_text_sends_no_restart_marker(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.enqueue(FakeError(503), FakeMessage("whole answer", text_chunk_chars=4))
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    response = await provider.complete(make_request(), on_delta=on_delta)
    assert response.attempts == 2 and STREAM_RESTART not in deltas
    assert "".join(deltas) == "whole answer"


async def test_non_streaming_mode_gets_the_same_answer(server: FakeAnthropicServer) -> None:
    server.enqueue(FakeMessage("plain", tool_uses=[FakeToolUse("shell", {"command": "ls"})]))
    deltas: list[str] = []

    async def on_delta(piece: str) -> None:
        deltas.append(piece)

    async with provider_for(server, streaming=False) as p:
        response = await p.complete(make_request(), on_delta=on_delta)
    assert server.requests[0].stream is False
    assert response.text == "plain" and deltas == ["plain"]
    assert response.tool_uses[0].arguments_json == '{"command":"ls"}'


# ----------------------------------------------------------------------------- retries


async def test_429_then_success_is_retried_after_the_servers_retry_after(
    server: FakeAnthropicServer,
) -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    server.enqueue(FakeError(429, headers={"retry-after": "0.25"}))
    async with provider_for(
        server, sleep=sleep, retry=RetryPolicy(base_delay_s=0.001, jitter=0.0)
    ) as p:
        response = await p.complete(make_request())
    assert response.attempts == 2 and response.model == "claude-a"
    assert [r.status for r in server.requests] == [429, 200]
    assert slept == [0.25]


@pytest.mark.parametrize(
    "broken",
    [
        FakeMessage("cut short", break_after_events=4),  # an overloaded_error event mid-stream
        FakeMessage("cut short", break_after_events=4, break_mode="disconnect"),
        FakeError(500),
        FakeError(503),
    ],
    ids=["error-event", "disconnect", "500", "503"],
)
async def test_transient_failures_are_retried(
    server: FakeAnthropicServer, provider: AnthropicProvider, broken: FakeMessage | FakeError
) -> None:
    server.enqueue(broken, FakeMessage("whole answer"))
    response = await provider.complete(make_request())
    assert response.text == "whole answer" and response.attempts == 2


async def test_overloaded_primary_falls_back_to_the_next_model(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.always(FakeError(529), model="claude-a")
    server.always(FakeMessage("from b"), model="claude-b")
    response = await provider.complete(make_request("claude-a"), fallbacks=["claude-b", "claude-c"])
    assert (response.model, response.text, response.fallback_used) == ("claude-b", "from b", True)
    assert response.attempts == FAST.max_attempts + 1
    assert len(server.requests_for("claude-a")) == FAST.max_attempts
    assert server.requests_for("claude-c") == []


async def test_breaker_opens_after_n_failures_is_reported_then_skipped(
    server: FakeAnthropicServer,
) -> None:
    server.always(FakeError(529), model="claude-a")
    breakers = BreakerRegistry(BreakerConfig(failure_threshold=2, cooldown_s=300))
    async with provider_for(server, breakers=breakers) as p:
        first = await p.complete(make_request("claude-a"), fallbacks=["claude-b"])
        second = await p.complete(make_request("claude-a"), fallbacks=["claude-b"])
    assert first.circuits_opened == ("anthropic/claude-a",)
    assert first.attempts == 3  # two to claude-a (then it opened), one to claude-b
    # While open, claude-a gets nothing: the call goes straight to the fallback.
    assert len(server.requests_for("claude-a")) == 2
    assert (second.model, second.attempts, second.circuits_opened) == ("claude-b", 1, ())


async def test_exhausted_models_raise_a_retryable_provider_error(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.always(FakeError(529))
    with pytest.raises(ProviderError) as failure:
        await provider.complete(make_request("claude-a"), fallbacks=["claude-b"])
    error = failure.value
    assert (error.error_type, error.retryable, error.attempts) == ("overloaded", True, 6)
    assert error.status_code == 529 and error.model == "claude-b"
    assert "claude-a" in str(error) and "claude-b" in str(error)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request"),
        (401, "authentication"),
        (403, "permission"),
        (404, "not_found"),
        (413, "request_too_large"),
    ],
)
async def test_client_errors_fail_at_once_without_retry_or_fallback(
    server: FakeAnthropicServer, provider: AnthropicProvider, status: int, error_type: str
) -> None:
    server.enqueue(FakeError(status, message="You sent something wrong."))
    with pytest.raises(ProviderError) as failure:
        await provider.complete(make_request(), fallbacks=["claude-b"])
    assert (failure.value.error_type, failure.value.attempts, failure.value.retryable) == (
        error_type,
        1,
        False,
    )
    assert failure.value.status_code == status
    assert "You sent something wrong." in str(failure.value)
    assert len(server.requests) == 1


async def test_a_wrong_key_is_an_authentication_error(server: FakeAnthropicServer) -> None:
    async with provider_for(server, api_key="sk-ant-wrong-key-000000") as p:
        with pytest.raises(ProviderError) as failure:
            await p.complete(make_request())
    assert failure.value.error_type == "authentication"
    assert server.requests[0].api_key_valid is False


async def test_the_deadline_bounds_the_whole_call(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.always(FakeMessage("too late", latency_s=3.0))
    with pytest.raises(ProviderError) as failure:
        await provider.complete(make_request(), fallbacks=["claude-b"], timeout_s=0.3)
    assert failure.value.error_type == "timeout" and failure.value.retryable


async def test_a_slow_attempt_times_out_and_the_retry_answers(server: FakeAnthropicServer) -> None:
    server.enqueue(FakeMessage("slow", latency_s=3.0), FakeMessage("fast"))
    async with provider_for(server, request_timeout_s=0.3) as p:
        response = await p.complete(make_request())
    assert (response.text, response.attempts) == ("fast", 2)


async def test_a_failing_delta_callback_does_not_fail_the_call(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    calls = 0

    async def on_delta(piece: str) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("delta topic unavailable")

    server.enqueue(FakeMessage("a long enough answer", text_chunk_chars=3))
    response = await provider.complete(make_request(), on_delta=on_delta)
    assert response.text == "a long enough answer" and calls == 1


# ----------------------------------------------------------------------------- secrets


async def test_the_api_key_never_appears_in_errors_reprs_or_logs(
    server: FakeAnthropicServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's and the HTTP stack's own loggers too
    # A hostile or buggy server echoing the key back must not make us leak it either.
    server.enqueue(FakeError(400, message=f"bad request from key {FAKE_API_KEY}"))
    server.always(FakeError(529, message=f"overloaded for {FAKE_API_KEY}"))
    texts: list[str] = []
    with structlog.testing.capture_logs() as logs:
        async with provider_for(server, breakers=BreakerRegistry(BreakerConfig(1, 60))) as p:
            texts.append(repr(p))
            for fallbacks in ([], ["claude-c"]):
                with pytest.raises(ProviderError) as failure:
                    await p.complete(
                        make_request("claude-b" if fallbacks else "claude-a"), fallbacks=fallbacks
                    )
                error = failure.value
                # SDK exceptions carry the request and its headers: never chained to ours.
                assert error.__cause__ is None and error.__context__ is None
                texts += [str(error), repr(error), repr(error.args), repr(p.breakers)]
            with pytest.raises(TypeError):
                pickle.dumps(p)
    texts += [repr(entry) for entry in logs]
    texts.append(caplog.text)
    assert "HTTP Request: POST" in caplog.text  # the HTTP stack's debug lines were captured
    texts.append(repr(pickle.loads(pickle.dumps(error))))
    assert any(entry["event"] == "llm.call" for entry in logs)
    assert any("[redacted]" in t for t in texts)
    leaks = [t for t in texts if FAKE_API_KEY in t or FAKE_API_KEY[-16:] in t]
    assert leaks == []


async def test_a_missing_api_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProviderConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(base_url="http://127.0.0.1:9")


async def test_the_api_key_is_read_from_the_environment(
    server: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_API_KEY)
    async with AnthropicProvider(base_url=server.base_url, retry=FAST) as p:
        await p.complete(make_request())
    assert server.requests[0].api_key_valid is True


async def test_concurrent_calls_share_one_provider(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.respond_with(
        lambda r: FakeMessage(f"echo {r.body['messages'][-1]['content'][0]['text']}")
    )
    texts = [f"q{i}" for i in range(20)]
    responses = await asyncio.gather(*(provider.complete(make_request(text=t)) for t in texts))
    assert [r.text for r in responses] == [f"echo {t}" for t in texts]


async def test_the_factory_reaches_the_server_through_the_environment(
    server: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.providers import provider_from_spec

    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    provider = provider_from_spec("anthropic", retry=FAST)
    assert isinstance(provider, AnthropicProvider)
    async with provider:
        response = await provider.complete(make_request())
    assert response.text == "Hello from the fake Messages API."
    assert server.requests[0].api_key_valid is True
