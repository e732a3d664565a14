"""Build a session-worker process from settings (the composition root of streams/).

Rule: every knob comes from `turnlog.settings` (one object, validated, read once);
nothing here or below reads the environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.errors import ContractError
from agents.limits import Limits
from agents.llm import LlmRequest, LlmResponse
from agents.providers import Provider, provider_from_spec
from agents.registry import AgentRegistry
from streams.app import SessionProcess
from streams.topics import topic_names

if TYPE_CHECKING:
    from agents.tools import ToolRegistry

__all__ = ["ModelRouter", "build_provider", "build_session_process", "load_registry"]

DEFAULT_AGENTS = "examples/agents.toml"
DEFAULT_SCRIPT = "examples/demo.script.yaml"


class ModelRouter:
    """Sends `scripted-*` models to the scripted provider and every other model to the
    real one, so one agent file can mix them (and the demo runs without a key)."""

    def __init__(self, scripted: Provider | None, real: Provider | None) -> None:
        self.scripted = scripted
        self.real = real

    def _pick(self, model: str) -> Provider:
        provider = self.scripted if model.startswith("scripted") else self.real
        if provider is None:
            raise ContractError(
                f"No provider is configured for model {model!r}: set TURNLOG_PROVIDER "
                "(scripted:<file>) for scripted-* models, or ANTHROPIC_API_KEY for Claude."
            )
        return provider

    async def complete(
        self,
        request: LlmRequest,
        *,
        fallbacks: Sequence[str] = (),
        on_delta: Any = None,
        timeout_s: float | None = None,
    ) -> LlmResponse:
        return await self._pick(request.model).complete(
            request, fallbacks=fallbacks, on_delta=on_delta, timeout_s=timeout_s
        )


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
    from agents.definitions import load_definitions
    from agents.errors import AgentDefinitionError
    from agents.tools import builtin_registry
    from agents.tools.registry import bind_agent_tools

    source = path or DEFAULT_AGENTS
    definitions, specs = load_definitions(source)
    definitions, custom = bind_agent_tools(
        definitions, tools if tools is not None else builtin_registry(), source=source
    )
    try:
        return AgentRegistry(definitions, {**specs, **custom}, limits=limits)
    except AgentDefinitionError as exc:
        raise AgentDefinitionError(f"{source}: {exc}") from exc


def _secret(settings: Any) -> str | None:
    key = getattr(settings, "anthropic_api_key", None)
    value = key.get_secret_value() if key is not None else None
    return value or None  # compose passes an unset key as ""


def build_provider(settings: Any) -> ModelRouter:
    spec = settings.provider
    scripted = provider_from_spec(spec) if spec.startswith("scripted") else None
    real: Provider | None = None
    key = _secret(settings)
    if key is not None or spec == "anthropic":
        real = provider_from_spec(
            "anthropic", api_key=key, base_url=settings.anthropic_base_url or None
        )
    return ModelRouter(scripted, real)


def build_tools(settings: Any) -> tuple[ToolRegistry, Any]:
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


def build_session_process(settings: Any, *, client_id: str = "turnlog-session") -> SessionProcess:
    """The process `turnlog worker session` runs, entirely from `settings` (agents file,
    provider, tool sandbox and hosts, group session timeout, metrics interval)."""
    tools, tool_settings = build_tools(settings)
    return SessionProcess(
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
    )
