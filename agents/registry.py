"""The agent registry: agent definitions by name and the tool specs they may use.

Rule: a registry is immutable and internally consistent — every tool an agent lists has
a spec, every delegate is a known agent — and it precomputes what the core needs on
every LLM call (definition hash, system prompt hash, tool set and its hash, the token
estimate of the fixed prefix), so deciding stays cheap. Unknown-agent messages list the
known agents. Nothing here does IO (agents.agentfile reads agent files).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

from agents.definitions import AgentDefinition, definition_hash
from agents.errors import AgentDefinitionError, ContractError
from agents.limits import Limits
from agents.llm import ToolSpec, canonical_json, sha256_hex
from agents.tokens import ENTRY_OVERHEAD, estimate_tokens
from agents.toolspecs import BUILTIN_TOOL_SPECS, REMOTE_AGENT_PREFIX

__all__ = ["AgentInfo", "AgentRegistry", "toolset_hash"]


def _info(d: AgentDefinition, specs: Mapping[str, ToolSpec]) -> AgentInfo:
    agent_tools = tuple(specs[t] for t in d.tools)
    prefix = estimate_tokens(d.system_prompt) + sum(
        estimate_tokens(canonical_json(t.to_dict())) + ENTRY_OVERHEAD for t in agent_tools
    )
    return AgentInfo(
        definition=d,
        definition_hash=definition_hash(d),
        system_prompt_hash=sha256_hex(d.system_prompt),
        tools=agent_tools,
        toolset_hash=toolset_hash(agent_tools),
        prefix_tokens=prefix + ENTRY_OVERHEAD,
    )


def toolset_hash(tools: Iterable[ToolSpec]) -> str:
    """sha256 of the canonical JSON of the tool set, in the order it is sent."""
    return sha256_hex(canonical_json([t.to_dict() for t in tools]))


class AgentInfo(NamedTuple):
    """A definition with everything derived from it that the core uses per call."""

    definition: AgentDefinition
    definition_hash: str
    system_prompt_hash: str
    tools: tuple[ToolSpec, ...]
    toolset_hash: str
    prefix_tokens: int  # estimated tokens of system prompt + tool specs


class AgentRegistry:
    """Agents by name, plus the tool specs by tool name, plus the input `limits` the
    core applies (configuration like the definitions; the shell passes the settings)."""

    __slots__ = ("_agents", "_tools", "_versions", "limits")

    def __init__(
        self,
        definitions: Iterable[AgentDefinition],
        tools: Mapping[str, ToolSpec] | None = None,
        *,
        limits: Limits | None = None,
        versions: Iterable[AgentDefinition] = (),
    ) -> None:
        self.limits = limits if limits is not None else Limits()
        specs = dict(BUILTIN_TOOL_SPECS)
        specs.update(tools or {})
        defs: dict[str, AgentDefinition] = {}
        for d in definitions:
            if d.name in defs:
                raise AgentDefinitionError(f"agent {d.name!r}: defined twice")
            defs[d.name] = d
        agents: dict[str, AgentInfo] = {}
        for d in defs.values():
            for t in d.tools:
                if t not in specs:
                    raise AgentDefinitionError(
                        f"agent {d.name!r}: tools: unknown tool {t!r} "
                        f"(known: {', '.join(sorted(specs))})"
                    )
            for target in d.handoffs:
                if target not in defs:
                    raise AgentDefinitionError(
                        f"agent {d.name!r}: handoffs: unknown agent {target!r} "
                        f"(known: {', '.join(sorted(defs))})"
                    )
            for member in d.team.members if d.team is not None else ():
                if member not in defs and not member.startswith(REMOTE_AGENT_PREFIX):
                    raise AgentDefinitionError(
                        f"agent {d.name!r}: team.members: unknown agent {member!r} "
                        f"(known: {', '.join(sorted(defs))})"
                    )
            for child in d.delegates:
                if child not in defs and not child.startswith(REMOTE_AGENT_PREFIX):
                    raise AgentDefinitionError(
                        f"agent {d.name!r}: delegates: unknown agent {child!r} "
                        f"(known: {', '.join(sorted(defs))})"
                    )
            agents[d.name] = _info(d, specs)
        # Every version a session may be pinned to, by definition hash: the served ones,
        # and older ones (from turnlog.agents) whose tools still exist here.
        by_hash = {info.definition_hash: info for info in agents.values()}
        for d in versions:
            if all(t in specs for t in d.tools):
                by_hash.setdefault(definition_hash(d), _info(d, specs))
        self._agents: Mapping[str, AgentInfo] = MappingProxyType(agents)
        self._tools: Mapping[str, ToolSpec] = MappingProxyType(specs)
        self._versions: Mapping[str, AgentInfo] = MappingProxyType(by_hash)

    def with_versions(self, versions: Iterable[AgentDefinition]) -> AgentRegistry:
        """This registry, also able to serve `versions` (older definitions, by hash)."""
        served = [i.definition for i in self._agents.values()]
        known = [i.definition for i in self._versions.values()]
        return AgentRegistry(served, self._tools, limits=self.limits, versions=[*known, *versions])

    def serving(self, agent: str, digest: str) -> AgentRegistry:
        """This registry as a worker that served version `digest` of `agent` (replay
        decides an input with the version its worker served). Itself when unknown."""
        info = self._versions.get(digest)
        if info is None or info.definition.name != agent or self._agents.get(agent) == info:
            return self
        view: AgentRegistry = object.__new__(type(self))
        view._agents = MappingProxyType({**self._agents, agent: info})
        view._tools, view._versions, view.limits = self._tools, self._versions, self.limits
        return view

    def version(self, digest: str) -> AgentInfo | None:
        """The definition version with this hash, when this registry can serve it."""
        return self._versions.get(digest)

    def versions(self) -> tuple[AgentInfo, ...]:
        return tuple(self._versions.values())

    def pinned(self, agent: str, digest: str) -> AgentInfo | None:
        """The version a session of `agent` pinned to `digest` runs on (None: unknown
        here). A session recorded before versions were pinned has no hash: served one."""
        if not digest:
            return self._agents.get(agent)
        info = self._versions.get(digest)
        return info if info is not None and info.definition.name == agent else None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._agents))

    def find(self, name: str | None) -> AgentInfo | None:
        return None if name is None else self._agents.get(name)

    def unknown_agent_reason(self, name: str | None) -> str:
        known = ", ".join(self.names()) or "none"
        if name is None:
            return f"No agent was named for the new session (known agents: {known})."
        return f"Unknown agent {name!r} (known agents: {known})."

    def info(self, name: str) -> AgentInfo:
        """The agent named `name`; ContractError listing the known agents otherwise."""
        found = self._agents.get(name)
        if found is None:
            raise ContractError(self.unknown_agent_reason(name))
        return found

    def get(self, name: str) -> AgentDefinition:
        return self.info(name).definition

    def definition_hash(self, name: str) -> str:
        return self.info(name).definition_hash

    def tool_specs(self, name: str) -> tuple[ToolSpec, ...]:
        """The tool specs of agent `name`, in the order of its definition."""
        return self.info(name).tools

    def tool(self, tool_name: str) -> ToolSpec | None:
        return self._tools.get(tool_name)

    def is_idempotent(self, tool_name: str) -> bool:
        """Whether a call of `tool_name` may run twice (unknown tools: no)."""
        spec = self._tools.get(tool_name)
        return spec is not None and spec.idempotent

    @property
    def tools(self) -> Mapping[str, ToolSpec]:
        return self._tools

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def __len__(self) -> int:
        return len(self._agents)

    def __repr__(self) -> str:
        return f"AgentRegistry(agents={list(self.names())})"
