"""MCP servers as tools: declared per agent, discovered, called like the built-ins.

    definitions, specs = load_mcp(definitions, tools, source="agents.toml")
    registry = AgentRegistry(definitions, {**file_specs, **specs})
    binding = binding_of(tools)   # the hub and what to bind again after a re-discovery

Rule: this package is an IO adapter (it starts processes and opens connections); the
pure core sees only the definitions (`agents.definitions.McpServer`) and the specs.
See `hub` for connections and calls, `_launch` for the confinement of stdio servers,
`bind` for names and specs, `_content` for what the model reads of a result. The SDK
is imported only when an agent declares a server (it takes a second to import).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.definitions import AgentDefinition
from agents.llm import ToolSpec

if TYPE_CHECKING:
    from agents.tools.mcp.bind import McpBinding

__all__ = ["binding_of", "load_mcp"]

_BINDINGS: weakref.WeakKeyDictionary[Any, McpBinding] = weakref.WeakKeyDictionary()


def binding_of(tools: Any) -> McpBinding | None:
    """The MCP binding whose tools were put into `tools` (None: no agent uses MCP)."""
    try:
        return _BINDINGS.get(tools)
    except TypeError:  # not a registry that can hold a binding
        return None


def load_mcp(
    definitions: Iterable[AgentDefinition],
    tools: Any,
    *,
    source: str | Path | None = None,
    discovery_timeout_s: float = 60.0,
) -> tuple[tuple[AgentDefinition, ...], dict[str, ToolSpec]]:
    """Discover the servers the agents declare (temporary connections) and bind their
    tools into `tools`; the calls go through a hub whose connections open on first use,
    on the loop that runs them. No server declared: the definitions unchanged."""
    defs = tuple(definitions)
    if not any(d.mcp for d in defs):
        return defs, {}
    from agents.tools.mcp.bind import McpBinding, bind_mcp, servers_of
    from agents.tools.mcp.hub import McpHub, discover_blocking

    servers = servers_of(defs, source)
    discovered = discover_blocking(servers, timeout_s=discovery_timeout_s)
    hub = McpHub(servers)
    bound, specs = bind_mcp(defs, discovered, hub, tools)
    _BINDINGS[tools] = McpBinding(hub, defs, specs, discovered)
    return bound, specs
