"""Routing models to vendors by the catalog, and fallback chains that cross vendors: the
real anthropic, openai and google-genai SDKs against their fake servers over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from agents.events import Usage
from agents.llm import LlmRequest, Message, TextBlock, ToolSpec
from agents.pricing import BUILTIN, Catalog, cost_nanos
from agents.providers import ProviderConfigError, ProviderError, RetryPolicy, ScriptedProvider
from agents.providers.breaker import BreakerConfig, BreakerRegistry
from agents.providers.endpoints import PRESETS, ResolvedEndpoint
from tests.fakes.anthropic_server import FAKE_API_KEY, FakeAnthropicServer, FakeError, FakeMessage
from tests.fakes.gemini_server import FAKE_GEMINI_KEY, FakeGeminiServer
from tests.fakes.openai_server import (
    FAKE_OPENAI_KEY,
    FakeOpenAIError,
    FakeOpenAIServer,
)
from turnlog.wiring import ModelRouter, load_catalog

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST = RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.01, jitter=0.0)
LOCAL_CATALOG = """
[models."local-qwen"]
provider = "ollama"
api_model = "qwen2.5:7b"
context_window = 32768
max_output_tokens = 4096
input = 0
output = 0
"""


class Servers:
    def __init__(self) -> None:
        self.anthropic = FakeAnthropicServer(api_key=FAKE_API_KEY)
        self.openai = FakeOpenAIServer(cache_min_tokens=0, cache_increment=1)
        self.ollama = FakeOpenAIServer(api_key=None)
        self.gemini = FakeGeminiServer(cache_min_tokens=0)
        self.all = (self.anthropic, self.openai, self.ollama, self.gemini)

    def endpoints(self) -> dict[str, ResolvedEndpoint]:
        return {
            "anthropic": ResolvedEndpoint(
                PRESETS["anthropic"], self.anthropic.base_url, _secret(FAKE_API_KEY)
            ),
            "openai": ResolvedEndpoint(
                PRESETS["openai"], f"{self.openai.base_url}/v1", _secret(FAKE_OPENAI_KEY)
            ),
            "ollama": ResolvedEndpoint(PRESETS["ollama"], f"{self.ollama.base_url}/v1", None),
            "gemini": ResolvedEndpoint(
                PRESETS["gemini"], self.gemini.base_url, _secret(FAKE_GEMINI_KEY)
            ),
            "groq": ResolvedEndpoint(PRESETS["groq"], "http://127.0.0.1:9/v1", None),
        }


def _secret(value: str) -> SecretStr:
    return SecretStr(value)


@pytest.fixture(scope="module")
def module_servers() -> Iterator[Servers]:
    servers = Servers()
    for s in servers.all:
        s.start()
    try:
        yield servers
    finally:
        for s in servers.all:
            s.stop()


@pytest.fixture
def servers(module_servers: Servers) -> Servers:
    for s in module_servers.all:
        s.reset()
    return module_servers


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    path = tmp_path / "models.toml"
    path.write_text(LOCAL_CATALOG)
    return load_catalog(path)


def router(servers: Servers, catalog: Catalog | None = None, **options: Any) -> ModelRouter:
    options.setdefault("retry", FAST)
    return ModelRouter(None, servers.endpoints(), catalog=catalog or BUILTIN, **options)


def request(model: str) -> LlmRequest:
    return LlmRequest(
        model,
        "Be brief.",
        (Message("user", (TextBlock("what is 2+2?"),)),),
        (ToolSpec("calculator", "Evaluate.", {"type": "object"}),),
        128,
        0.0,
    )


async def test_each_model_goes_to_its_vendor(servers: Servers) -> None:
    r = router(servers)
    for model, server in [
        ("claude-haiku-4-5", servers.anthropic),
        ("gpt-4o-mini", servers.openai),
        ("gemini-2.5-flash", servers.gemini),
    ]:
        response = await r.complete(request(model))
        assert response.model == model and not response.fallback_used
        assert [q.model for q in server.requests] == [model]


async def test_a_fallback_chain_crosses_from_claude_to_openai_to_a_local_model(
    servers: Servers, catalog: Catalog
) -> None:
    servers.anthropic.always(FakeError(529))
    servers.openai.always(FakeOpenAIError(500))
    breakers = BreakerRegistry(BreakerConfig(failure_threshold=2, cooldown_s=60))
    r = router(servers, catalog, breakers=breakers)
    sent = request("claude-haiku-4-5")
    digest = sent.digest()
    response = await r.complete(sent, fallbacks=["gpt-4o-mini", "local-qwen"])
    # Each hop recorded: every request counted, the two opened circuits named per vendor.
    assert (response.model, response.attempts, response.fallback_used) == ("local-qwen", 5, True)
    assert response.circuits_opened == ("anthropic/claude-haiku-4-5", "openai/gpt-4o-mini")
    # The local endpoint is sent the id it knows the model by, and wants no key.
    (local,) = servers.ollama.requests
    assert local.body["model"] == "qwen2.5:7b" and local.headers["authorization"] == "[redacted]"
    # The request stayed provider-neutral: same object, same digest, whoever served it.
    assert sent.digest() == digest == request("claude-haiku-4-5").digest()
    assert cost_nanos(catalog.info(response.model), response.usage) == 0
    # Next call: the open circuits are skipped without sending anything.
    again = await r.complete(sent, fallbacks=["gpt-4o-mini", "local-qwen"])
    assert (again.attempts, again.model) == (1, "local-qwen")
    assert len(servers.anthropic.requests) == 2 and len(servers.openai.requests) == 2


async def test_a_non_retryable_error_does_not_cross_to_another_vendor(servers: Servers) -> None:
    servers.anthropic.always(FakeError(400, message="bad request"))
    with pytest.raises(ProviderError) as caught:
        await router(servers).complete(request("claude-haiku-4-5"), fallbacks=["gpt-4o-mini"])
    assert (caught.value.error_type, caught.value.attempts) == ("invalid_request", 1)
    assert servers.openai.requests == []


async def test_models_without_a_route_are_skipped_and_named(servers: Servers) -> None:
    r = router(servers)
    # Unknown model, then an endpoint without its key, then one that serves.
    response = await r.complete(
        request("no-such-model"), fallbacks=["llama-3.3-70b-versatile", "gpt-4o-mini"]
    )
    assert (response.model, response.fallback_used, response.attempts) == ("gpt-4o-mini", True, 1)
    with pytest.raises(ProviderError) as caught:
        await r.complete(request("no-such-model"), fallbacks=["llama-3.3-70b-versatile"])
    error = caught.value
    assert (error.error_type, error.attempts, error.retryable) == ("not_configured", 0, False)
    assert "not in the model catalog" in error.message and "GROQ_API_KEY" in error.message


async def test_an_unknown_endpoint_is_named_with_the_known_ones(servers: Servers) -> None:
    r = ModelRouter(None, {}, catalog=BUILTIN, retry=FAST)
    with pytest.raises(ProviderConfigError, match="no endpoint named 'openai'.*TURNLOG_ENDPOINTS"):
        r.adapter("openai")


async def test_scripted_calls_keep_their_provider_and_may_fall_back_to_a_vendor(
    servers: Servers,
) -> None:
    scripted = ScriptedProvider.from_dict(
        {
            "rules": [
                {"when": {"model": "scripted-small"}, "respond": {"error": {"type": "overloaded"}}},
                {"respond": {"text": "scripted answer"}},
            ]
        },
        retry=FAST,
    )
    r = ModelRouter(scripted, servers.endpoints(), catalog=BUILTIN, retry=FAST)
    alone = await r.complete(request("scripted-medium"))
    assert (alone.model, alone.text) == ("scripted-medium", "scripted answer")
    mixed = await r.complete(request("scripted-small"), fallbacks=["gpt-4o-mini"])
    assert (mixed.model, mixed.attempts, mixed.fallback_used) == ("gpt-4o-mini", 3, True)


async def test_user_catalog_prices_and_wire_names(catalog: Catalog) -> None:
    info = catalog.info("local-qwen")
    assert (info.provider, info.wire_name, info.input_nanos, info.source[-11:]) == (
        "ollama",
        "qwen2.5:7b",
        0,
        "models.toml",
    )
    assert cost_nanos(info, Usage(1000, 1000)) == 0
    gpt = catalog.info("gpt-4o-mini")
    assert (
        cost_nanos(gpt, Usage(1_000_000, 1_000_000, 1_000_000))
        == 150_000_000 + 600_000_000 + 75_000_000
    )
    assert dataclasses.replace(gpt, api_model="x").wire_name == "x"


async def test_exact_token_counts_where_the_vendor_offers_them(servers: Servers) -> None:
    r = router(servers)
    counted = await r.count_tokens(request("claude-haiku-4-5"))
    assert counted is not None and counted > 0
    assert servers.anthropic.requests[-1].path == "/v1/messages/count_tokens"
    assert await r.count_tokens(request("gpt-4o-mini")) is None  # no counting endpoint
    assert servers.openai.requests == []


async def test_a_model_that_cannot_call_tools_is_skipped_when_tools_are_offered(
    servers: Servers,
) -> None:
    catalog = BUILTIN.from_toml_data(
        {
            "models": {
                "plain-local": {
                    "provider": "ollama",
                    "context_window": 8192,
                    "max_output_tokens": 1024,
                    "input": 0,
                    "output": 0,
                    "tools": False,
                }
            }
        },
        source="plain.toml",
    )
    r = router(servers, catalog)
    response = await r.complete(request("plain-local"), fallbacks=["gpt-4o-mini"])
    assert (response.model, response.fallback_used) == ("gpt-4o-mini", True)
    assert servers.ollama.requests == []
    bare = dataclasses.replace(request("plain-local"), tools=())
    assert (await r.complete(bare)).model == "plain-local"


async def test_a_per_model_concurrency_limit_holds_at_the_vendor(servers: Servers) -> None:
    from agents.providers.concurrency import ModelConcurrency

    servers.anthropic.always(FakeMessage("4", latency_s=0.2), model="claude-haiku-4-5")
    r = router(servers)
    r.concurrency = ModelConcurrency({"claude-haiku-4-5": 2, "*": 5})
    answers = await asyncio.gather(*(r.complete(request("claude-haiku-4-5")) for _ in range(6)))
    assert [a.text for a in answers] == ["4"] * 6
    # Counted where it lands: the vendor never saw more than 2 at once.
    assert servers.anthropic.max_in_flight == 2
    assert r.concurrency.waits == 4 and r.concurrency.in_flight("claude-haiku-4-5") == 0
    # Another model falls under "*"; a model without a limit is not held.
    assert r.concurrency.limit_of("gpt-4o-mini") == 5
    assert ModelConcurrency({"x": 1}).limit_of("y") is None


async def test_a_broken_concurrency_setting_names_the_field() -> None:
    from turnlog.settings import Settings

    for text, says in [
        ("{not json", "not a JSON object"),
        ('["a"]', "must be a JSON object"),
        ('{"claude-haiku-4-5": 0}', "whole number >= 1"),
    ]:
        with pytest.raises(Exception) as caught:
            Settings(model_concurrency=text)
        assert "model_concurrency" in str(caught.value) and says in str(caught.value)
    assert Settings(model_concurrency='{"*": 3}').model_concurrency == {"*": 3}
