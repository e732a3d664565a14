"""The built-in tools and their declarations, in one table.

Rule: what the model is told about a built-in (name, description, JSON schema) comes
from the pure core's `agents.toolspecs`, because it is hashed into every LLM request;
everything about *running* it (the validating input model, timeout, idempotency, default
policy action) is declared here. A unit test proves each core schema and the input model
that validates its arguments agree, property by property.

`builtin_registry()` builds a fresh registry from the table (a registry is mutable: custom
tools get added per process); `BUILTIN_TOOLS` is the table itself.

Idempotent means "safe to run again when the effect is re-issued after a crash": reading,
computing and fetching are; a shell command, a delegation and a write are not (an overwrite
run again late can undo what a later call wrote). The core's copy is
`agents.toolspecs.BUILTIN_IDEMPOTENT`; a unit test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from agents.tools.calculator import calculator
from agents.tools.clock import current_time
from agents.tools.delegate import delegate
from agents.tools.delegate_many import delegate_many, handoff
from agents.tools.files import read_file, write_file
from agents.tools.http_get import http_get
from agents.tools.registry import ToolRegistry
from agents.tools.shell import SHELL_DEFAULT_ACTION, SHELL_TOOL_TIMEOUT_S, shell
from agents.tools.tool import Tool, as_tool
from agents.toolspecs import BUILTIN_TOOL_SPECS

__all__ = ["BUILTIN_NAMES", "BUILTIN_TOOLS", "builtin_registry"]


def _declared(func: Callable[..., Any], **declaration: Any) -> Tool:
    """A built-in: validated by its own input model, described to the model by the core's
    spec of the same name."""
    generated = as_tool(func, **declaration)
    spec = BUILTIN_TOOL_SPECS[generated.name]
    return replace(generated, description=spec.description, declared_spec=spec)


_TOOLS: tuple[Tool, ...] = (
    # Inline: pure computations, run inside the decision that asked for them.
    _declared(calculator, timeout_s=5, idempotent=True, inline=True),
    _declared(current_time, timeout_s=5, idempotent=True, inline=True),
    _declared(read_file, timeout_s=30, idempotent=True),
    _declared(write_file, timeout_s=30, idempotent=False),
    # The fetch bounds itself with HttpLimits.timeout_s; this is the outer bound.
    _declared(http_get, timeout_s=120, idempotent=True),
    _declared(
        shell,
        timeout_s=SHELL_TOOL_TIMEOUT_S,
        idempotent=False,
        default_action=SHELL_DEFAULT_ACTION,
    ),
    _declared(delegate, timeout_s=5, idempotent=False),
    _declared(delegate_many, timeout_s=5, idempotent=False),
    _declared(handoff, timeout_s=5, idempotent=False),
)

BUILTIN_TOOLS: Mapping[str, Tool] = MappingProxyType({t.name: t for t in _TOOLS})
BUILTIN_NAMES: tuple[str, ...] = tuple(t.name for t in _TOOLS)


def builtin_registry(**options: int) -> ToolRegistry:
    """A new registry holding every built-in tool (options go to ToolRegistry)."""
    return ToolRegistry(_TOOLS, **options)
