"""Build a session-worker process from settings: the composition root of the workers.

Rule: every knob comes from `turnlog.settings` (one object, validated, read once); this
module turns it into the typed parts `streams` is made of (registry, providers, tools,
SessionProcess), so nothing in streams/ (or below) reads settings or the environment,
and nothing there imports turnlog.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.limits import Limits
from agents.llm import LlmRequest, LlmResponse
from agents.pricing import BUILTIN, Catalog, CatalogError, active_catalog, use_catalog
from agents.providers import Provider, ProviderConfigError, RetryPolicy, provider_from_spec
from agents.providers.breaker import BreakerRegistry
from agents.providers.endpoints import ResolvedEndpoint
from agents.providers.routing import Adapter, Route, RoutedProvider
from agents.registry import AgentRegistry
from streams.app import SessionProcess
from streams.topics import topic_names
from turnlog.settings import Settings

if TYPE_CHECKING:
    from agents.tools import ToolRegistry, ToolSettings

__all__ = [
    "ModelRouter",
    "build_adapter",
    "build_provider",
    "build_session_process",
    "install_catalog",
    "load_catalog",
    "load_registry",
]

DEFAULT_AGENTS = "examples/agents.toml"
DEFAULT_SCRIPT = "examples/demo.script.yaml"


class ModelRouter(RoutedProvider):
    """Each model goes to the provider of its endpoint, by the model catalog:
    `scripted-*` to the scripted provider (TURNLOG_PROVIDER=scripted:<file>), every other
    model to the endpoint its catalog entry names (`provider`), whose adapter is built on
    first use from the resolved endpoint (kind, base URL, key). A fallback chain may
    cross vendors; a call whose models are all scripted goes to the scripted provider
    as a whole (its own retry policy, as before routing existed)."""

    def __init__(
        self,
        scripted: Provider | None,
        endpoints: Mapping[str, ResolvedEndpoint] | None = None,
        *,
        catalog: Catalog | None = None,
        cache_conversation: bool = True,
        retry: RetryPolicy | None = None,
        breakers: BreakerRegistry | None = None,
        adapters: Mapping[str, Adapter] | None = None,
        sleep: Any = None,
    ) -> None:
        options: dict[str, Any] = {"retry": retry, "breakers": breakers}
        if sleep is not None:
            options["sleep"] = sleep
        super().__init__(self._route_of, **options)
        self.scripted = scripted
        self.endpoints = dict(endpoints or {})
        self.catalog = catalog
        self.cache_conversation = cache_conversation
        self._adapters: dict[str, Adapter] = dict(adapters or {})

    def _catalog(self) -> Catalog:
        return self.catalog if self.catalog is not None else active_catalog()

    def _route_of(self, model: str) -> Route:
        if model.startswith("scripted"):
            if self.scripted is None:
                raise ProviderConfigError(
                    f"no scripted provider for {model!r}: set TURNLOG_PROVIDER to "
                    "'scripted:<script file>'"
                )
            return Route("scripted", self.scripted, model)  # type: ignore[arg-type]
        catalog = self._catalog()
        info = catalog.find(model)
        if info is None:
            raise ProviderConfigError(
                f"{model!r} is not in the model catalog ({catalog.describe_sources()})"
            )
        return Route(info.provider, self.adapter(info.provider), info.wire_name, info.tools)

    def adapter(self, name: str) -> Adapter:
        """The adapter of endpoint `name`, built on first use."""
        adapter = self._adapters.get(name)
        if adapter is None:
            endpoint = self.endpoints.get(name)
            if endpoint is None:
                raise ProviderConfigError(
                    f"no endpoint named {name!r} (known: {', '.join(sorted(self.endpoints))}); "
                    "define it in TURNLOG_ENDPOINTS"
                )
            adapter = build_adapter(
                endpoint,
                retry=self.retry,
                breakers=self.breakers,
                cache_conversation=self.cache_conversation,
            )
            self._adapters[name] = adapter
        return adapter

    async def complete(
        self,
        request: LlmRequest,
        *,
        fallbacks: Sequence[str] = (),
        on_delta: Any = None,
        timeout_s: float | None = None,
    ) -> LlmResponse:
        models = [request.model, *fallbacks]
        if self.scripted is not None and all(m.startswith("scripted") for m in models):
            return await self.scripted.complete(
                request, fallbacks=fallbacks, on_delta=on_delta, timeout_s=timeout_s
            )
        return await super().complete(
            request, fallbacks=fallbacks, on_delta=on_delta, timeout_s=timeout_s
        )


def build_adapter(
    endpoint: ResolvedEndpoint,
    *,
    retry: RetryPolicy | None = None,
    breakers: BreakerRegistry | None = None,
    cache_conversation: bool = True,
) -> Adapter:
    """The provider of one resolved endpoint (ProviderConfigError naming the variable
    when its key is required and missing)."""
    spec = endpoint.endpoint
    key = endpoint.api_key
    if key is None and spec.key_required:
        raise ProviderConfigError(
            f"endpoint {spec.name!r} needs an API key: set {endpoint.key_hint()} in the "
            "environment of the process that executes LLM calls"
        )
    common: dict[str, Any] = {"retry": retry, "breakers": breakers}
    if spec.kind == "anthropic":
        from agents.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            api_key=key,
            base_url=endpoint.base_url,
            name=spec.name,
            cache_conversation=cache_conversation,
            **common,
        )
    if spec.kind == "gemini":
        from agents.providers.gemini import GeminiProvider

        return GeminiProvider(api_key=key, base_url=endpoint.base_url, name=spec.name, **common)
    from agents.providers.openai_compat import OpenAICompatProvider

    if spec.kind == "azure" and not endpoint.base_url:
        raise ProviderConfigError(
            f"endpoint {spec.name!r} (Azure OpenAI) needs its resource URL: set "
            f"{spec.base_url_env or 'base_url in TURNLOG_ENDPOINTS'}"
        )
    return OpenAICompatProvider(
        api_key=key,
        base_url=endpoint.base_url,
        name=spec.name,
        azure_api_version=spec.api_version if spec.kind == "azure" else None,
        max_tokens_param=spec.max_tokens_param,
        stream_usage=spec.stream_usage,
        **common,
    )


def load_catalog(path: str | Path | None) -> Catalog:
    """The built-in catalog extended by the catalog file at `path` (if any); CatalogError
    naming the file when it cannot be read or holds a bad entry."""
    if path is None:
        return BUILTIN
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(
            f"{file}: the model catalog file does not exist (TURNLOG_MODEL_CATALOG)"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{file}: the model catalog file cannot be read ({exc})") from None
    return BUILTIN.from_toml_data(data, source=str(file))


def install_catalog(settings: Settings) -> Catalog:
    """Read TURNLOG_MODEL_CATALOG and install the catalog for this process (before any
    agent file is loaded: agent files are checked against it)."""
    catalog = load_catalog(settings.model_catalog)
    use_catalog(catalog)
    return catalog


def load_registry(
    path: str | Path | None = None,
    *,
    limits: Limits | None = None,
    tools: ToolRegistry | None = None,
) -> AgentRegistry:
    """The agent file as a registry. Custom tools its agents name by import path
    (`examples.custom_tools:word_count`) are imported into `tools` (the registry the
    effect runner executes with; the built-in tools when not given) and listed under
    their own names, so the model, the policy and the runner agree on them."""
    from agents.agentfile import load_definitions
    from agents.errors import AgentDefinitionError
    from agents.tools import builtin_registry
    from agents.tools.registry import bind_agent_tools

    source = path or DEFAULT_AGENTS
    definitions, specs = load_definitions(source)
    tools = tools if tools is not None else builtin_registry()
    definitions, custom = bind_agent_tools(definitions, tools, source=source)
    from agents.tools.mcp import load_mcp  # MCP servers: discovered, their tools bound

    definitions, mcp_specs = load_mcp(definitions, tools, source=source)
    try:
        return AgentRegistry(definitions, {**specs, **custom, **mcp_specs}, limits=limits)
    except AgentDefinitionError as exc:
        raise AgentDefinitionError(f"{source}: {exc}") from exc


def build_provider(settings: Settings) -> ModelRouter:
    """The router of a worker: the scripted provider when TURNLOG_PROVIDER names a
    script, and every endpoint of the settings (presets, TURNLOG_ENDPOINTS), whose
    adapters are built when a model first needs them. TURNLOG_PROVIDER=anthropic builds
    the Anthropic one at once, so a missing key fails the start."""
    spec = settings.provider
    scripted = provider_from_spec(spec) if spec.startswith("scripted") else None
    router = ModelRouter(
        scripted,
        dict(settings.resolved_endpoints()),
        cache_conversation=settings.cache_conversation,
    )
    if settings.model_concurrency:
        from agents.providers.concurrency import ModelConcurrency

        router.concurrency = ModelConcurrency(settings.model_concurrency)
    if spec == "anthropic":
        router.adapter("anthropic")
    from agents.providers.blobs import DirectoryBlobStore

    router.blobs = DirectoryBlobStore(settings.blob_dir)
    return router


def build_tools(settings: Settings) -> tuple[ToolRegistry, ToolSettings]:
    """The built-in tools and their settings; custom tools join the registry when the
    agent file is loaded (`load_registry(..., tools=)`)."""
    from agents.tools import ShellSettings, ToolSettings, builtin_registry

    sandbox = Path(settings.sandbox_dir)
    sandbox.mkdir(parents=True, exist_ok=True)
    return builtin_registry(), ToolSettings(
        sandbox_dir=sandbox,
        allowed_hosts=settings.allowed_host_list,
        allow_private_addresses=settings.http_allow_private_addresses,
        shell=ShellSettings(
            network=settings.shell_network,
            allowed_interpreters=settings.shell_interpreter_list,
        ),
    )


def build_session_process(
    settings: Settings, *, client_id: str = "turnlog-session"
) -> SessionProcess:
    """The process `turnlog worker session` runs, entirely from `settings` (agents file,
    provider, tool sandbox and hosts, group session timeout, metrics interval)."""
    install_catalog(settings)  # models and providers: before the agents file is checked
    tools, tool_settings = build_tools(settings)
    process = SessionProcess(
        bootstrap=settings.kafka_bootstrap_servers,
        topics=topic_names(settings.topic_prefix),
        partitions=settings.partitions,
        registry=load_registry(
            settings.agents, limits=Limits(max_text_bytes=settings.max_text_bytes), tools=tools
        ),
        provider=build_provider(settings),
        tools=tools,
        tool_context=tool_settings,
        session_timeout_ms=settings.session_timeout_ms,
        max_sessions=settings.max_sessions,
        max_request_bytes=settings.max_request_bytes,
        metrics_interval_s=settings.metrics_interval_s,
        client_id=client_id,
        inline_llm_ms=settings.inline_llm_ms,
        fetch_wait_ms=settings.fetch_wait_ms,
    )
    # Agents with [agents.X.cache] share answers through Postgres (connected on first use).
    from streams.response_cache import PostgresResponseCache

    process.effects.cache = PostgresResponseCache(settings.database_url)
    # Shared rate limits (per agent / client) count in Postgres (connected on first use).
    from streams.admission import PostgresAdmissions

    process.effects.admissions = PostgresAdmissions(settings.database_url)
    from agents.tools.mcp import binding_of

    if binding_of(tools) is not None:  # its agents use MCP servers
        from streams.mcp import attach_mcp

        attach_mcp(process, tools, tool_settings)
    return process
