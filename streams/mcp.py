"""MCP servers in a session-worker process: connected at start, discovered again on a
schedule and whenever a server says its tool list changed.

Rule: a worker decides with the tools its servers offer now. When a re-discovery finds
other tools or schemas than the registry holds, the worker's registry is rebuilt from
the agent file's definitions and the new specs and swapped in (the session worker, the
effect runner and the partitions' shared state all at once, as a newly read agent
version is): the next LLM call offers the new tool set and records its hash, so
`replay --verify` shows where the set changed. Calls in flight keep their connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agents.definitions import definition_hash
from agents.registry import AgentRegistry
from agents.tools.mcp import binding_of
from agents.tools.mcp.bind import McpBinding, bind_mcp
from streams.logs import get_logger

__all__ = ["DEFAULT_REDISCOVER_S", "McpRefresh", "attach_mcp"]

DEFAULT_REDISCOVER_S = 300.0


class McpRefresh:
    """The background job of a process whose agents use MCP servers."""

    def __init__(self, process: Any, binding: McpBinding, tools: Any, *, interval_s: float) -> None:
        self.process = process
        self.binding = binding
        self.tools = tools
        self.interval_s = interval_s
        self.refreshes = 0
        self._log = get_logger(component="mcp")

    async def __call__(self, stop: asyncio.Event) -> None:
        hub = self.binding.hub
        try:
            while not stop.is_set():
                hub.changed.clear()
                try:
                    await self.refresh()
                except Exception:  # a bad answer of one server must not end the job
                    self._log.exception("mcp.refresh_failed")
                waits = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(hub.changed.wait()),
                ]
                try:
                    await asyncio.wait(
                        waits, timeout=self.interval_s, return_when="FIRST_COMPLETED"
                    )
                finally:
                    for w in waits:
                        w.cancel()
        finally:
            await hub.aclose()

    async def refresh(self) -> bool:
        """Discover every server again; True when the registry was swapped."""
        hub = self.binding.hub
        discovered = await hub.discover()
        for name, found in discovered.items():
            if found.error is not None:
                self._log.warning("mcp.unavailable", server=name, error=found.error)
        definitions, specs = bind_mcp(self.binding.definitions, discovered, hub, self.tools)
        self.refreshes += 1
        if self.refreshes == 1:  # what this worker offers, once, for whoever reads its log
            self._log.info(
                "mcp.discovered",
                servers={n: [t.name for t in f.tools] for n, f in sorted(discovered.items())},
                unavailable=sorted(n for n, f in discovered.items() if f.error is not None),
            )
        old: AgentRegistry = self.process.worker.registry
        served = {old.info(n).definition_hash for n in old.names()}
        if specs == self.binding.specs and {definition_hash(d) for d in definitions} <= served:
            return False
        changed = sorted(
            n for n in {*specs, *self.binding.specs} if specs.get(n) != self.binding.specs.get(n)
        )
        registry = AgentRegistry(
            definitions,
            {**old.tools, **specs},
            limits=old.limits,
            versions=[i.definition for i in old.versions()],
        )
        self.binding.specs, self.binding.discovered = specs, discovered
        swap_registry(self.process, registry)
        self._log.info("mcp.tools_changed", tools=changed, servers=sorted(discovered))
        return True


def swap_registry(process: Any, registry: AgentRegistry) -> None:
    """Decide and execute with `registry` from the next input on."""
    process.worker.registry = process.effects.registry = registry
    shared = getattr(process.worker, "_shared", None)
    if shared is not None:
        shared.registry = registry


def attach_mcp(
    process: Any, tools: Any, settings: Any, *, interval_s: float = DEFAULT_REDISCOVER_S
) -> McpRefresh | None:
    """Give `process` the MCP job when its agents use MCP servers (their tools were
    bound into `tools` when the agent file was loaded); None otherwise."""
    binding = binding_of(tools)
    if binding is None:
        return None
    binding.hub.settings = settings
    job = McpRefresh(process, binding, tools, interval_s=interval_s)
    with contextlib.suppress(AttributeError):
        process.background.append(job)
    return job
