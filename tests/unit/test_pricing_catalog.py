"""The model catalog as data: built-in vendors, capabilities, user entries, lookups."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.events import Usage
from agents.pricing import (
    BUILTIN,
    CATALOG,
    ModelInfo,
    active_catalog,
    cost_nanos,
    find_model,
    model_info,
    per_mtok,
    use_catalog,
)


@pytest.fixture(autouse=True)
def restore_catalog() -> Iterator[None]:
    previous = active_catalog()
    yield
    use_catalog(previous)


def test_every_vendor_has_priced_models_with_capabilities() -> None:
    by_provider = {m.provider for m in BUILTIN.values()}
    assert {
        "anthropic",
        "openai",
        "gemini",
        "deepseek",
        "mistral",
        "xai",
        "groq",
        "ollama",
        "scripted",
    } <= by_provider
    gpt = BUILTIN.info("gpt-4o-mini")
    assert (gpt.input_nanos, gpt.output_nanos, gpt.cache_read_nanos) == (150, 600, 75)
    assert gpt.tools and gpt.vision and not gpt.thinking and gpt.reasoning_price == 600
    flash = BUILTIN.info("gemini-2.5-flash")
    assert flash.thinking and flash.context_window == 1_048_576
    assert BUILTIN.info("o3").thinking and BUILTIN.info("claude-sonnet-4-5").thinking
    assert BUILTIN.info("llama3.1:8b").input_nanos == 0
    assert all(m.max_output_tokens <= m.context_window for m in BUILTIN.values())


def test_prices_convert_exactly() -> None:
    assert per_mtok("0.075") == 75 and per_mtok(2) == 2_000 and per_mtok("0") == 0
    with pytest.raises(ValueError, match="finer than"):
        per_mtok("0.0001")
    with pytest.raises(ValueError, match="negative"):
        per_mtok("-1")


def test_a_user_entry_replaces_a_built_in_one_and_aliases_resolve() -> None:
    catalog = BUILTIN.from_toml_data(
        {
            "models": {
                "gpt-4o": {
                    "provider": "azure",
                    "api_model": "prod-gpt4o",
                    "context_window": 128_000,
                    "max_output_tokens": 16_384,
                    "input": "2",
                    "output": "8",
                    "aliases": ["prod"],
                }
            }
        },
        source="team.toml",
    )
    info = catalog.info("prod")
    assert (info.name, info.provider, info.wire_name, info.input_nanos) == (
        "gpt-4o",
        "azure",
        "prod-gpt4o",
        2_000,
    )
    assert (info.cache_read_nanos, info.cache_write_nanos, info.source) == (
        2_000,
        2_000,
        "team.toml",
    )
    assert BUILTIN.info("gpt-4o").provider == "openai"  # catalogs are immutable
    assert catalog.sources == ("built-in", "team.toml")


def test_lookups_see_the_installed_catalog_through_long_lived_names() -> None:
    extra = ModelInfo("house-model", "ollama", 1, 2, 0, 1, 1000, 100)
    assert "house-model" not in CATALOG and find_model("house-model") is None
    use_catalog(BUILTIN.extended([extra], source="house.toml"))
    assert "house-model" in CATALOG and model_info("house-model") is extra
    assert cost_nanos("house-model", Usage(10, 10)) == 30
    assert model_info("claude-sonnet-4-5-20250929").name == "claude-sonnet-4-5"
    assert "house.toml" in repr(CATALOG)
