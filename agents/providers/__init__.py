"""LLM provider adapters (IO, kept apart from the pure core) and their factory.

Rule: everything outside this package talks to an LLM through `Provider.complete` and
sees only `LlmResponse` or `ProviderError`. Which provider a process uses is decided
here, from a spec string:

    "anthropic"                          the Messages API via the anthropic SDK
                                         (key: ANTHROPIC_API_KEY; URL: ANTHROPIC_BASE_URL)
    "scripted:examples/demo.script.yaml" a script file (YAML or JSON)

The anthropic SDK is imported only when an AnthropicProvider is built, so scripted runs
(demos, benchmarks) do not pay for it; likewise openai (`OpenAICompatProvider`, every
OpenAI-compatible endpoint) and google-genai (`GeminiProvider`). A worker serves many
vendors through `routing.RoutedProvider`: each model goes to the adapter of the endpoint
its catalog entry names (`endpoints`), and fallback chains may cross vendors
(`turnlog.wiring.ModelRouter` builds it from the settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.providers.base import (
    DeltaCallback,
    ErrorType,
    Provider,
    ProviderConfigError,
    ProviderError,
)
from agents.providers.breaker import BreakerConfig, BreakerRegistry, CircuitBreaker, CircuitState
from agents.providers.retry import RetryPolicy
from agents.providers.scripted import ScriptedProvider

if TYPE_CHECKING:
    from agents.providers.anthropic import AnthropicProvider
    from agents.providers.gemini import GeminiProvider
    from agents.providers.openai_compat import OpenAICompatProvider

__all__ = [
    "PROVIDER_KINDS",
    "AnthropicProvider",
    "BreakerConfig",
    "BreakerRegistry",
    "CircuitBreaker",
    "CircuitState",
    "DeltaCallback",
    "ErrorType",
    "GeminiProvider",
    "OpenAICompatProvider",
    "Provider",
    "ProviderConfigError",
    "ProviderError",
    "RetryPolicy",
    "ScriptedProvider",
    "make_provider",
    "provider_from_spec",
]

PROVIDER_KINDS = ("anthropic", "scripted")


def __getattr__(name: str) -> Any:
    if name == "AnthropicProvider":
        from agents.providers.anthropic import AnthropicProvider

        return AnthropicProvider
    if name == "OpenAICompatProvider":
        from agents.providers.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider
    if name == "GeminiProvider":
        from agents.providers.gemini import GeminiProvider

        return GeminiProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_provider(
    kind: str,
    *,
    script: str | Path | None = None,
    api_key: Any = None,
    base_url: str | None = None,
    retry: RetryPolicy | None = None,
    breakers: BreakerRegistry | None = None,
    **options: Any,
) -> Provider:
    """Build a provider of `kind` ("anthropic" or "scripted").

    scripted: `script` is the script file. anthropic: `api_key` (str or SecretStr, e.g.
    `load_settings().anthropic_api_key`; default ANTHROPIC_API_KEY) and `base_url`;
    further `options` go to the provider's constructor (request_timeout_s, streaming...).
    """
    if kind == "scripted":
        if script is None:
            raise ProviderConfigError(
                "The scripted provider needs a script file: use 'scripted:<path>'."
            )
        return ScriptedProvider.from_file(script, retry=retry, breakers=breakers, **options)
    if kind == "anthropic":
        from agents.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            api_key=api_key, base_url=base_url, retry=retry, breakers=breakers, **options
        )
    raise ProviderConfigError(
        f"Unknown provider kind {kind!r}; expected one of {', '.join(PROVIDER_KINDS)}."
    )


def provider_from_spec(spec: str, **options: Any) -> Provider:
    """Build a provider from "anthropic" or "scripted:<path>" (see the module docstring)."""
    kind, _, rest = spec.strip().partition(":")
    if kind == "scripted":
        return make_provider("scripted", script=rest or None, **options)
    if rest:
        raise ProviderConfigError(
            f"Provider spec {spec!r}: only 'scripted' takes a ':<path>' argument."
        )
    return make_provider(kind, **options)
