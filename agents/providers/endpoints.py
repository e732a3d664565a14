"""Named endpoints: where a vendor's API lives and which variable holds its key.

Rule: an endpoint names the environment variable of its key (or that variable's `_FILE`
twin, a file holding it), never the key itself, so no file turnlog reads holds a
credential. The presets below are the documented endpoints; a team adds its own or
changes a preset with TURNLOG_ENDPOINTS (JSON, see `turnlog.settings`), and the model
catalog says which endpoint serves each model (`ModelInfo.provider`).

    kind        the API it speaks: anthropic, openai (Chat Completions), azure (Azure
                OpenAI: deployments, api-key header, api-version), gemini
    base_url    where it is (None: the SDK's default, or base_url_env)
    base_url_env a variable that, when set, overrides base_url (OPENAI_BASE_URL...)
    api_key_env the variable holding the key (None: the server wants none)
    key_required whether a call may go without a key (a local vLLM may take one)
    stream_usage whether to ask for the usage chunk (stream_options); Mistral refuses it

Nothing here reads the environment: `turnlog.settings` resolves endpoints and hands
`ResolvedEndpoint`s (with the key as a SecretStr) to the composition root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["KINDS", "PRESETS", "Endpoint", "EndpointSpec", "ResolvedEndpoint"]

Kind = Literal["anthropic", "openai", "azure", "gemini"]
KINDS: tuple[str, ...] = ("anthropic", "openai", "azure", "gemini")


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    kind: Kind
    base_url: str | None
    api_key_env: str | None
    key_required: bool = True
    base_url_env: str | None = None
    api_version: str | None = None  # Azure OpenAI's api-version
    max_tokens_param: str = "max_tokens"
    stream_usage: bool = True  # send stream_options.include_usage (Mistral refuses it)
    doc: str = ""


class EndpointSpec(BaseModel):
    """One entry of TURNLOG_ENDPOINTS: a new endpoint (kind required) or changes to a
    preset of the same name (only the fields given change)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind | None = None
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    key_required: bool | None = None
    api_version: str | None = None
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None
    stream_usage: bool | None = None

    def apply(self, name: str, preset: Endpoint | None) -> Endpoint:
        """The endpoint `name` with this spec applied to `preset` (ValueError when a new
        endpoint lacks its kind or an Azure one its api_version)."""
        given: dict[str, Any] = {k: v for k, v in self.model_dump().items() if v is not None}
        if preset is None:
            if "kind" not in given:
                raise ValueError(
                    f"endpoint {name!r}: a new endpoint needs a kind ({', '.join(KINDS)})"
                )
            base = Endpoint(
                name=name, kind=given["kind"], base_url=None, api_key_env=None, key_required=False
            )
            if "api_key_env" in given and "key_required" not in given:
                given["key_required"] = True
        else:
            base = preset
        values = {f: getattr(base, f) for f in Endpoint.__dataclass_fields__}
        values.update(given)
        endpoint = Endpoint(**values)
        if endpoint.kind == "azure" and not endpoint.api_version:
            raise ValueError(f"endpoint {name!r}: an azure endpoint needs api_version")
        if preset is None and endpoint.kind == "azure" and "max_tokens_param" not in given:
            endpoint = _with(endpoint, max_tokens_param="max_completion_tokens")
        return endpoint


def _with(endpoint: Endpoint, **changes: Any) -> Endpoint:
    values = {f: getattr(endpoint, f) for f in Endpoint.__dataclass_fields__}
    values.update(changes)
    return Endpoint(**values)


@dataclass(frozen=True, slots=True)
class ResolvedEndpoint:
    """An endpoint with its base URL and key read from the environment (by the front
    door). `api_key` is None when its variable is unset."""

    endpoint: Endpoint
    base_url: str | None
    api_key: SecretStr | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.endpoint.name

    def key_hint(self) -> str:
        env = self.endpoint.api_key_env
        return f"{env} (or {env}_FILE)" if env else "no key"


def _preset(name: str, kind: Kind, base_url: str | None, key: str | None, **more: Any) -> Endpoint:
    return Endpoint(name=name, kind=kind, base_url=base_url, api_key_env=key, **more)


PRESETS: Mapping[str, Endpoint] = MappingProxyType(
    {
        e.name: e
        for e in (
            _preset(
                "anthropic",
                "anthropic",
                None,
                "ANTHROPIC_API_KEY",
                base_url_env="ANTHROPIC_BASE_URL",
                doc="Anthropic Messages API",
            ),
            _preset(
                "openai",
                "openai",
                None,
                "OPENAI_API_KEY",
                base_url_env="OPENAI_BASE_URL",
                max_tokens_param="max_completion_tokens",
                doc="OpenAI",
            ),
            _preset(
                "azure",
                "azure",
                None,
                "AZURE_OPENAI_API_KEY",
                base_url_env="AZURE_OPENAI_ENDPOINT",
                api_version="2024-10-21",
                max_tokens_param="max_completion_tokens",
                doc="Azure OpenAI (models are deployment names: set api_model in the catalog)",
            ),
            _preset(
                "gemini",
                "gemini",
                None,
                "GEMINI_API_KEY",
                base_url_env="GOOGLE_GEMINI_BASE_URL",
                doc="Google Gemini Developer API",
            ),
            _preset(
                "ollama",
                "openai",
                "http://127.0.0.1:11434/v1",
                None,
                key_required=False,
                base_url_env="OLLAMA_BASE_URL",
                doc="Ollama on this machine",
            ),
            _preset(
                "vllm",
                "openai",
                "http://127.0.0.1:8000/v1",
                "VLLM_API_KEY",
                key_required=False,
                base_url_env="VLLM_BASE_URL",
                doc="vLLM's OpenAI-compatible server",
            ),
            _preset(
                "openrouter",
                "openai",
                "https://openrouter.ai/api/v1",
                "OPENROUTER_API_KEY",
                doc="OpenRouter",
            ),
            _preset(
                "deepseek",
                "openai",
                "https://api.deepseek.com/v1",
                "DEEPSEEK_API_KEY",
                doc="DeepSeek",
            ),
            _preset(
                "mistral",
                "openai",
                "https://api.mistral.ai/v1",
                "MISTRAL_API_KEY",
                stream_usage=False,
                doc="Mistral AI",
            ),
            _preset("xai", "openai", "https://api.x.ai/v1", "XAI_API_KEY", doc="xAI"),
            _preset("groq", "openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY", doc="Groq"),
        )
    }
)
