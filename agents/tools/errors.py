"""Errors of the tool layer, split by blame like the rest of turnlog.

Rule: a tool *call* never raises out of `ToolRegistry.execute`: whatever goes wrong becomes
a `ToolResult(ok=False)` whose text the model can act on. These exceptions exist so that
the tools themselves can say *why* in a full sentence, and so that a broken tool
*declaration* (a programming or configuration error) fails loudly at registration time.

    TurnlogError
    ├── ContractError
    │   ├── ToolRegistrationError   a tool cannot be declared, imported or resolved
    │   │   └── UnknownToolError    no tool of that name (lists the known ones)
    │   └── ToolRefused             the call asks for something the tool does not allow
    │                               (path outside the sandbox, host not allowed, bad maths)
    └── ExternalError
        └── ToolFailed              the outside world failed (file missing, HTTP error,
                                    command not found)

`ToolRefused` and `ToolFailed` share the `ToolError` mixin: their message is written for
the model and is passed to it verbatim; any other exception escaping a tool is reported as
"<ExceptionType>: <message>".
"""

from __future__ import annotations

from agents.errors import ContractError, ExternalError

__all__ = [
    "ToolError",
    "ToolFailed",
    "ToolRefused",
    "ToolRegistrationError",
    "UnknownToolError",
]


class ToolRegistrationError(ContractError):
    """A tool declaration is invalid, or an import path does not lead to a tool."""


class UnknownToolError(ToolRegistrationError):
    """No tool is registered under the requested name."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        listed = ", ".join(known) if known else "none"
        super().__init__(f"No tool named {name!r} is registered; known tools: {listed}.")
        self.name = name
        self.known = known


class ToolError(Exception):
    """Mixin: an error raised *by a tool* whose message is meant for the model."""


class ToolRefused(ToolError, ContractError):
    """The call was refused: its arguments ask for something outside the tool's rules."""


class ToolFailed(ToolError, ExternalError):
    """The call was allowed but the outside world failed (IO, network, a process)."""
