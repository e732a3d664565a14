"""The built-in tools and their declarations, in one table.

Rule: this table is the single source of the built-in tools' names, descriptions, input
schemas, timeouts, idempotency and default policy actions. `builtin_registry()` builds a
fresh registry from it (a registry is mutable: custom tools get added per process), and
`BUILTIN_TOOLS` is the table itself, for whoever needs the declarations without a registry.

Idempotent means "safe to run again when the effect is re-issued after a crash": reading,
computing and fetching are; an atomic overwrite is; a shell command and a delegation are
not.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from agents.tools.calculator import calculator
from agents.tools.clock import current_time
from agents.tools.delegate import delegate
from agents.tools.files import read_file, write_file
from agents.tools.http_get import http_get
from agents.tools.registry import ToolRegistry
from agents.tools.shell import SHELL_DEFAULT_ACTION, SHELL_TOOL_TIMEOUT_S, shell
from agents.tools.tool import Tool, as_tool

__all__ = ["BUILTIN_NAMES", "BUILTIN_TOOLS", "builtin_registry"]

_TOOLS: tuple[Tool, ...] = (
    as_tool(calculator, timeout_s=5, idempotent=True),
    as_tool(current_time, timeout_s=5, idempotent=True),
    as_tool(read_file, timeout_s=30, idempotent=True),
    as_tool(write_file, timeout_s=30, idempotent=True),
    # The fetch bounds itself with HttpLimits.timeout_s; this is the outer bound.
    as_tool(http_get, timeout_s=120, idempotent=True),
    as_tool(
        shell,
        timeout_s=SHELL_TOOL_TIMEOUT_S,
        idempotent=False,
        default_action=SHELL_DEFAULT_ACTION,
    ),
    as_tool(delegate, timeout_s=5, idempotent=False),
)

BUILTIN_TOOLS: Mapping[str, Tool] = MappingProxyType({t.name: t for t in _TOOLS})
BUILTIN_NAMES: tuple[str, ...] = tuple(t.name for t in _TOOLS)


def builtin_registry(**options: int) -> ToolRegistry:
    """A new registry holding every built-in tool (options go to ToolRegistry)."""
    return ToolRegistry(_TOOLS, **options)
