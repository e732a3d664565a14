"""Tools: the registry, the built-in tools and custom tools by import path.

This package is an IO adapter, kept apart from the pure core: tools read files, open
sockets, start processes and read the clock. The core only ever sees their declarations
(`ToolSpec`, via `ToolRegistry.specs()`) and their outcomes (`CompleteToolCall` /
`FailToolCall`, via `ToolResult.to_request()`).

    registry = builtin_registry()
    registry.register_import_path("examples.custom_tools:word_count")
    specs = registry.specs(["calculator", "examples.custom_tools:word_count"])
    result = await registry.execute("calculator", '{"expression": "2+2"}', ctx)

Rule: executing a call never raises for anything the model can cause (see `registry`).
"""

from agents.tools.builtin import BUILTIN_NAMES, BUILTIN_TOOLS, builtin_registry
from agents.tools.context import FileLimits, HttpLimits, ShellSettings, ToolContext, ToolSettings
from agents.tools.errors import (
    ToolError,
    ToolFailed,
    ToolRefused,
    ToolRegistrationError,
    UnknownToolError,
)
from agents.tools.imports import is_import_path, load_tool
from agents.tools.registry import ToolRegistry
from agents.tools.tool import DEFAULT_TIMEOUT_S, ErrorKind, Tool, ToolResult, as_tool, tool

__all__ = [
    "BUILTIN_NAMES",
    "BUILTIN_TOOLS",
    "DEFAULT_TIMEOUT_S",
    "ErrorKind",
    "FileLimits",
    "HttpLimits",
    "ShellSettings",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolFailed",
    "ToolRefused",
    "ToolRegistrationError",
    "ToolRegistry",
    "ToolResult",
    "ToolSettings",
    "UnknownToolError",
    "as_tool",
    "builtin_registry",
    "is_import_path",
    "load_tool",
    "tool",
]
