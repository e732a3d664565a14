"""Build a session-worker process from settings (the composition root of streams/).

Rule: configuration is read here once; nothing below this module reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.errors import ContractError
from agents.llm import LlmRequest, LlmResponse
from agents.providers import Provider, provider_from_spec
from agents.registry import AgentRegistry
from streams.app import SessionProcess
from streams.topics import topic_names

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


def load_registry(path: str | Path | None = None) -> AgentRegistry:
    path = path or os.environ.get("TURNLOG_AGENTS", DEFAULT_AGENTS)
    return AgentRegistry.from_file(path)


def build_provider(settings: Any) -> ModelRouter:
    spec = os.environ.get("TURNLOG_PROVIDER", f"scripted:{DEFAULT_SCRIPT}")
    scripted = provider_from_spec(spec) if spec.startswith("scripted") else None
    real: Provider | None = None
    key = getattr(settings, "anthropic_api_key", None)
    if key is not None or spec == "anthropic":
        real = provider_from_spec(
            "anthropic", api_key=key, base_url=os.environ.get("ANTHROPIC_BASE_URL") or None
        )
    return ModelRouter(scripted, real)


def build_tools() -> tuple[Any, Any]:
    from agents.tools import ToolSettings, builtin_registry

    hosts = tuple(h for h in os.environ.get("TURNLOG_ALLOWED_HOSTS", "").split(",") if h)
    sandbox = Path(os.environ.get("TURNLOG_SANDBOX_DIR", ".turnlog/sandbox"))
    sandbox.mkdir(parents=True, exist_ok=True)
    return builtin_registry(), ToolSettings(sandbox_dir=sandbox, allowed_hosts=hosts)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ContractError(f"{name}: expected an integer, got {raw!r}.") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ContractError(f"{name}: expected a number, got {raw!r}.") from None


def build_session_process(settings: Any, *, client_id: str = "turnlog-session") -> SessionProcess:
    """The process `turnlog worker session` runs. Besides the settings it reads
    TURNLOG_AGENTS, TURNLOG_PROVIDER, ANTHROPIC_BASE_URL, TURNLOG_ALLOWED_HOSTS,
    TURNLOG_SANDBOX_DIR, TURNLOG_SESSION_TIMEOUT_MS (consumer-group session timeout:
    how long a SIGKILLed worker's partitions wait before another worker takes them) and
    TURNLOG_METRICS_INTERVAL_S (seconds between `worker.metrics` log lines)."""
    tools, tool_settings = build_tools()
    return SessionProcess(
        bootstrap=settings.kafka_bootstrap_servers,
        topics=topic_names(settings.topic_prefix),
        partitions=settings.partitions,
        registry=load_registry(),
        provider=build_provider(settings),
        tools=tools,
        tool_context=tool_settings,
        session_timeout_ms=_env_int("TURNLOG_SESSION_TIMEOUT_MS", 6000),
        metrics_interval_s=_env_float("TURNLOG_METRICS_INTERVAL_S", 30.0),
        client_id=client_id,
    )
