"""MCP tools into an agent registry: names, specs, and the tools that call them.

Rule: an agent's MCP tools are offered as `<server>__<tool>` and join its `tools`, so
the core checks, decides policy and approvals for them like for any tool, and hashes
their specs (name, description, the server's JSON schema) into every LLM call's tool-set
hash: a server whose tools changed changes that hash, and `replay --verify` reports it.
A tool the agent file allows by name is offered even when its server did not list it
(unreachable, or the tool is gone): with a spec that says so, and calls that fail with
the reason. `"*"` offers whatever the server lists, so the agent's version then follows
the server. Two agents may share a server name only with the same declaration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from agents.definitions import AgentDefinition, McpServer
from agents.errors import AgentDefinitionError
from agents.llm import ToolSpec
from agents.tools.context import ToolContext
from agents.tools.mcp.hub import Discovered, McpHub
from agents.tools.tool import Tool, ToolResult

__all__ = ["McpBinding", "bind_mcp", "offered_name", "servers_of"]

_SEPARATOR = "__"
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_UNAVAILABLE_SCHEMA: dict[str, Any] = {"type": "object"}


def offered_name(server: str, tool: str) -> str:
    """The name the model calls server `server`'s tool `tool` by (letters, digits, '_'
    and '-', at most 64 characters, as every provider accepts)."""
    return (server + _SEPARATOR + _INVALID.sub("_", tool))[:64]


class _AnyArguments(BaseModel):
    """Any JSON object: the server validates the arguments against its own schema."""

    model_config = ConfigDict(extra="allow")


def servers_of(
    definitions: Iterable[AgentDefinition], source: str | Path | None = None
) -> dict[str, McpServer]:
    """Every server the agents declare, by name; AgentDefinitionError when two agents
    declare one name differently."""
    where = f"{source}: " if source is not None else ""
    out: dict[str, McpServer] = {}
    owner: dict[str, str] = {}
    for d in definitions:
        for name, config in d.mcp.items():
            known = out.get(name)
            if known is not None and known != config:
                raise AgentDefinitionError(
                    f"{where}agent {d.name!r}: mcp.{name}: declared differently by agent "
                    f"{owner[name]!r}; one server name is one server (rename one)."
                )
            out[name], owner[name] = config, d.name
    return out


def _spec(server: str, config: McpServer, name: str, found: Any | None, reason: str) -> ToolSpec:
    idempotent = name in config.idempotent
    offered = offered_name(server, name)
    if found is None:
        return ToolSpec(
            offered,
            f"(unavailable) The tool {name!r} of MCP server {server!r} was not offered when "
            f"this worker asked ({reason}); calls of it fail.",
            dict(_UNAVAILABLE_SCHEMA),
            idempotent,
        )
    description = found.description or found.title or f"The tool {name!r} of MCP server {server!r}."
    return ToolSpec(offered, description, dict(found.input_schema), idempotent)


@dataclass
class McpBinding:
    """What binding produced: the hub the tools call through, the definitions as the
    agent file gave them (to bind again after a re-discovery), and the MCP specs now."""

    hub: McpHub
    definitions: tuple[AgentDefinition, ...]
    specs: dict[str, ToolSpec] = field(default_factory=dict)
    discovered: Mapping[str, Discovered] = field(default_factory=dict)


def _tool(hub: McpHub, server: str, name: str, config: McpServer, spec: ToolSpec) -> Tool:
    async def call_mcp_tool(args: _AnyArguments, ctx: ToolContext) -> ToolResult:
        return await hub.call(server, name, dict(args.model_extra or {}), ctx)

    return Tool(
        name=spec.name,
        description=spec.description or spec.name,
        input_model=_AnyArguments,
        func=call_mcp_tool,
        timeout_s=config.timeout_s,
        idempotent=spec.idempotent,
        takes="model",
        context_param="ctx",
        declared_spec=spec,
    )


def bind_mcp(
    definitions: Iterable[AgentDefinition],
    discovered: Mapping[str, Discovered],
    hub: McpHub,
    tools: Any,
) -> tuple[tuple[AgentDefinition, ...], dict[str, ToolSpec]]:
    """The definitions with each agent's MCP tools added to its `tools`, and the specs
    of those tools by name; each is put into `tools` (a ToolRegistry), replacing an
    earlier binding's tool of the same name."""
    specs: dict[str, ToolSpec] = {}
    out: list[AgentDefinition] = []
    for d in definitions:
        added: list[str] = []
        for server, config in d.mcp.items():
            found = discovered.get(server) or Discovered(server, error="not asked")
            listed = {t.name: t for t in found.tools}
            reason = found.error or "the server did not list it"
            names = list(listed) if "*" in config.tools else list(config.tools)
            for name in names:
                spec = _spec(server, config, name, listed.get(name), reason)
                specs[spec.name] = spec
                tools.put(_tool(hub, server, name, config, spec))
                if spec.name not in added and spec.name not in d.tools:
                    added.append(spec.name)
        out.append(d.model_copy(update={"tools": (*d.tools, *added)}) if added else d)
    return tuple(out), specs
