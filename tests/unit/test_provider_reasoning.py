"""Reasoning tokens: what OpenAI (`completion_tokens_details.reasoning_tokens`) and Gemini
(`thoughtsTokenCount`) report comes back in `Usage.reasoning_tokens` through each real
SDK, inside the output tokens, and is priced at the catalog's reasoning price."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.events import Usage
from agents.llm import LlmRequest, Message, TextBlock
from agents.pricing import BUILTIN, cost_nanos, per_mtok
from agents.providers import RetryPolicy
from agents.providers.gemini import GeminiProvider
from agents.providers.openai_compat import OpenAICompatProvider
from tests.fakes.gemini_server import FAKE_GEMINI_KEY, FakeGeminiServer, FakeGeneration, GeminiUsage
from tests.fakes.openai_server import (
    FAKE_OPENAI_KEY,
    FakeCompletion,
    FakeOpenAIServer,
    OpenAIUsage,
)

ASYNC = pytest.mark.asyncio(loop_scope="session")
ONCE = RetryPolicy(max_attempts=1)


def ask(model: str) -> LlmRequest:
    return LlmRequest(
        model=model,
        system="Think, then answer.",
        messages=(Message("user", (TextBlock("what is 17*23?"),)),),
        tools=(),
        max_tokens=2048,
        temperature=0.0,
    )


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def gemini_server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as server:
        yield server


@ASYNC
@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "not-streamed"])
async def test_openai_reasoning_tokens(openai_server: FakeOpenAIServer, streaming: bool) -> None:
    openai_server.reset()
    openai_server.enqueue(
        FakeCompletion(
            "391",
            usage=OpenAIUsage(prompt_tokens=40, reasoning_tokens=300),
        )
    )
    async with OpenAICompatProvider(
        api_key=FAKE_OPENAI_KEY,
        base_url=f"{openai_server.base_url}/v1",
        retry=ONCE,
        streaming=streaming,
    ) as provider:
        answer = await provider.complete(ask("o3"))
    assert answer.usage.reasoning_tokens == 300
    assert answer.usage.output_tokens >= 300  # reasoning is part of the output


@ASYNC
@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "not-streamed"])
async def test_gemini_thoughts_are_reasoning_tokens(
    gemini_server: FakeGeminiServer, streaming: bool
) -> None:
    gemini_server.reset()
    gemini_server.enqueue(
        FakeGeneration(
            "391", usage=GeminiUsage(prompt_tokens=40, candidates_tokens=3, thoughts_tokens=200)
        )
    )
    async with GeminiProvider(
        api_key=FAKE_GEMINI_KEY, base_url=gemini_server.base_url, retry=ONCE, streaming=streaming
    ) as provider:
        answer = await provider.complete(ask("gemini-2.5-flash"))
    assert answer.usage.reasoning_tokens == 200
    assert answer.usage.output_tokens == 203


def test_reasoning_is_priced_at_the_catalog_reasoning_price() -> None:
    catalog = BUILTIN.from_toml_data(
        {
            "models": {
                "thinker": {
                    "provider": "openai",
                    "context_window": 1000,
                    "max_output_tokens": 500,
                    "input": "1",
                    "output": "10",
                    "reasoning": "20",
                }
            }
        },
        source="catalog.toml",
    )
    info = catalog.info("thinker")
    usage = Usage(input_tokens=100, output_tokens=50, reasoning_tokens=30)
    assert cost_nanos(info, usage) == 100 * per_mtok("1") + 20 * per_mtok("10") + 30 * per_mtok(
        "20"
    )
    # No reasoning price: reasoning costs what output costs.
    o3 = BUILTIN.info("o3")
    assert cost_nanos(o3, usage) == cost_nanos(o3, Usage(100, 50))


def test_reasoning_cannot_exceed_the_output() -> None:
    from agents.errors import InvalidRecord

    with pytest.raises(InvalidRecord, match="reasoning_tokens"):
        Usage(output_tokens=5, reasoning_tokens=6)


@ASYNC
async def test_gemini_gets_the_thinking_budget_only_where_the_model_thinks(
    gemini_server: FakeGeminiServer,
) -> None:
    import dataclasses

    gemini_server.reset()
    async with GeminiProvider(
        api_key=FAKE_GEMINI_KEY, base_url=gemini_server.base_url, retry=ONCE
    ) as provider:
        for model in ("gemini-2.5-flash", "gemini-2.0-flash"):
            gemini_server.enqueue(FakeGeneration("391"))
            await provider.complete(dataclasses.replace(ask(model), thinking_budget=1024))
    thinks, plain = (r.body.get("generationConfig", {}) for r in gemini_server.requests)
    assert thinks["thinkingConfig"] == {"thinking_budget": 1024}  # as the SDK spells it
    assert "thinkingConfig" not in plain
