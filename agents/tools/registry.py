"""The tool registry: which tools exist, what the model is told about them, and running
one call.

Rule: `ToolRegistry.execute` never raises for anything a model can cause. An unknown
tool, arguments that are not JSON or do not fit the schema, a tool that runs past its
timeout, a tool that refuses or crashes: each becomes `ToolResult(ok=False)` whose
`content` tells the model what happened in one sentence, so it can correct itself on
its next step. Only cancellation of the caller propagates. The registry does not log;
the caller (the effect executor) logs failures with `ToolResult.exception`.

Timeouts cancel an async tool. A sync tool runs in a worker thread that Python cannot
stop: its result is discarded, but the thread runs on until the function returns — which
is why the built-in tools are all async.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from agents.definitions import AgentDefinition
from agents.errors import AgentDefinitionError
from agents.events import PolicyAction, ToolUse
from agents.llm import ToolSpec
from agents.tools.context import ToolContext
from agents.tools.errors import (
    ToolError,
    ToolRefused,
    ToolRegistrationError,
    UnknownToolError,
)
from agents.tools.imports import is_import_path, load_tool
from agents.tools.tool import ErrorKind, Tool, ToolResult, as_tool, render

__all__ = ["DEFAULT_MAX_CONTENT_CHARS", "ToolRegistry", "bind_agent_tools"]

# A tool result enters the session log once and every later LLM request: cap it.
DEFAULT_MAX_CONTENT_CHARS = 100_000
_MAX_ERRORS_SHOWN = 8


class ToolRegistry:
    """Named tools. Registration validates the declaration; names are unique."""

    def __init__(
        self,
        tools: Iterable[Tool] = (),
        *,
        max_content_chars: int = DEFAULT_MAX_CONTENT_CHARS,
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self._by_path: dict[str, Tool] = {}
        self._max_content_chars = max_content_chars
        for t in tools:
            self.register(t)

    # ----------------------------------------------------------------- declaring

    def register(self, obj: Tool | Callable[..., Any] | type[BaseModel], **overrides: Any) -> Tool:
        """Register a Tool, a function or a pydantic model with `run` (see `as_tool` for
        the keyword overrides). Registering the same declaration twice is a no-op; a
        different tool under a taken name is a ToolRegistrationError."""
        new = as_tool(obj, **overrides)
        existing = self._tools.get(new.name)
        if existing is not None and not existing.same_declaration(new):
            where = f" (from {existing.source})" if existing.source else ""
            raise ToolRegistrationError(
                f"A different tool named {new.name!r} is already registered{where}."
            )
        chosen = existing if existing is not None else new
        self._tools[chosen.name] = chosen
        if new.source is not None:
            self._by_path[new.source] = chosen
        return chosen

    def put(self, tool: Tool) -> None:
        """Register `tool`, replacing any tool of its name: an MCP server's tool bound
        again after a re-discovery (its schema may have changed)."""
        self._tools[tool.name] = tool

    def tool(self, **overrides: Any) -> Callable[[Callable[..., Any]], Tool]:
        """Decorator: `@registry.tool(timeout_s=5)` declares and registers in one step."""

        def wrap(func: Callable[..., Any]) -> Tool:
            return self.register(func, **overrides)

        return wrap

    def register_import_path(
        self, path: str, *, search_paths: Sequence[Path] | None = None, **overrides: Any
    ) -> Tool:
        """Import `module:attribute` and register it (once per path)."""
        known = self._by_path.get(path)
        if known is not None and not overrides:
            return known
        return self.register(load_tool(path, search_paths=search_paths, **overrides))

    # ----------------------------------------------------------------- looking up

    def resolve(self, name: str) -> Tool:
        """The tool registered as `name`; an import path is loaded and registered first.
        Raises UnknownToolError (a ToolRegistrationError) listing the known tools."""
        found = self._tools.get(name)
        if found is not None:
            return found
        if is_import_path(name):
            return self.register_import_path(name)
        raise UnknownToolError(name, self.names())

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._tools))

    def specs(self, names: Iterable[str] | None = None) -> tuple[ToolSpec, ...]:
        """What the model is told, in the order asked for (all tools, by name, if None).
        Names may be import paths: the spec then carries the tool's own name."""
        chosen = self.names() if names is None else tuple(names)
        return tuple(self.resolve(n).spec() for n in chosen)

    def spec_map(self, names: Iterable[str]) -> dict[str, ToolSpec]:
        """Listed name -> spec, for `agents.registry.AgentRegistry(tools=...)`: an agent
        file may list a custom tool by import path, and the core looks it up by that
        string, while the model sees the spec's own name."""
        return {n: self.resolve(n).spec() for n in names}

    def default_actions(self) -> dict[str, PolicyAction]:
        """Tool name -> the policy action to apply when no rule of the agent names the
        tool (only tools that declare one: `shell` -> require_approval)."""
        return {t.name: t.default_action for t in self if t.default_action is not None}

    def idempotent_tools(self) -> frozenset[str]:
        """Names of the tools that declare themselves idempotent (safe to run twice for
        one call); the core learns the same from each tool's spec (`ToolSpec.idempotent`)."""
        return frozenset(t.name for t in self if t.idempotent)

    def is_inline(self, name: str) -> bool:
        """Whether calls of `name` may run inside the decision (Tool.inline)."""
        found = self._tools.get(name)
        return found is not None and found.inline

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter([self._tools[n] for n in self.names()])

    def __len__(self) -> int:
        return len(self._tools)

    # ----------------------------------------------------------------- running

    async def execute(self, name: str, arguments_json: str, ctx: ToolContext) -> ToolResult:
        """Validate the arguments and run one call under the tool's timeout."""
        started = time.perf_counter()

        def done(
            ok: bool,
            content: str,
            kind: ErrorKind | None = None,
            exc: BaseException | None = None,
        ) -> ToolResult:
            latency_ms = int((time.perf_counter() - started) * 1000)
            return ToolResult(ok, self._cap(content), latency_ms, kind, exc)

        found = self._tools.get(name)
        if found is None:
            listed = ", ".join(self.names()) or "none"
            return done(False, f"Unknown tool {name!r}; available tools: {listed}.", "unknown_tool")
        try:
            args = found.input_model.model_validate_json(arguments_json.strip() or "{}")
        except ValidationError as exc:
            return done(False, _invalid_arguments(found, exc), "invalid_arguments", exc)

        try:
            async with asyncio.timeout(found.timeout_s) as scope:
                value = await _invoke(found, args, ctx)
        except TimeoutError as exc:
            if scope.expired():
                return done(
                    False,
                    f"Tool {name!r} timed out after {_seconds(found.timeout_s)}s and was stopped.",
                    "timeout",
                    exc,
                )
            return done(False, f"TimeoutError: {exc}".rstrip(": "), "exception", exc)
        except ToolError as exc:
            kind: ErrorKind = "refused" if isinstance(exc, ToolRefused) else "failed"
            return done(False, str(exc), kind, exc)
        # SystemExit too: a custom tool calling sys.exit() must not stop the worker.
        except (Exception, SystemExit) as exc:
            return done(False, _describe(exc), "exception", exc)

        if isinstance(value, ToolResult):
            return done(value.ok, value.content, value.error_kind, value.exception)
        return done(True, render(value))

    async def execute_all(
        self, calls: Sequence[ToolUse], context_for: Callable[[ToolUse], ToolContext]
    ) -> list[ToolResult]:
        """Run the tool calls of one LLM step concurrently; results in call order."""
        runs: list[Awaitable[ToolResult]] = [
            self.execute(c.name, c.arguments_json, context_for(c)) for c in calls
        ]
        return list(await asyncio.gather(*runs))

    def _cap(self, content: str) -> str:
        limit = self._max_content_chars
        if len(content) <= limit:
            return content
        return content[:limit] + f"\n[truncated: {len(content) - limit} more characters]"


def bind_agent_tools(
    definitions: Iterable[AgentDefinition],
    tools: ToolRegistry,
    *,
    source: str | Path | None = None,
    search_paths: Sequence[Path] | None = None,
) -> tuple[tuple[AgentDefinition, ...], dict[str, ToolSpec]]:
    """Import every custom tool the agents name by import path into `tools` (the
    registry the effect runner executes with) and return the definitions with each
    such entry renamed to the tool's own name, plus those tools' specs by name, for
    `AgentRegistry(definitions, specs)`.

    Why rename: the model calls a tool by the name in its spec (`word_count`), and the
    core checks that name against the agent's `tools`, its policy rules and the spec
    table; the import path only says where the code lives. A policy rule whose `tool`
    is exactly the import path is renamed too. The shell calls this (it imports code);
    the core never sees an import path. A path that cannot be imported, or two entries
    that end up as the same tool, is an AgentDefinitionError naming the file, the
    agent, the tool and the problem."""
    where = f"{source}: " if source is not None else ""
    out: list[AgentDefinition] = []
    specs: dict[str, ToolSpec] = {}
    for d in definitions:
        renamed: dict[str, str] = {}
        for listed in d.tools:
            if not is_import_path(listed):
                continue
            try:
                spec = tools.register_import_path(listed, search_paths=search_paths).spec()
            except ToolRegistrationError as exc:
                problem = str(exc).removeprefix(f"Custom tool {listed!r}: ")
                raise AgentDefinitionError(
                    f"{where}agent {d.name!r}: tools: the custom tool {listed!r} cannot be "
                    f"loaded: {problem}"
                ) from exc
            renamed[listed] = spec.name
            specs[spec.name] = spec
        if not renamed:
            out.append(d)
            continue
        names = tuple(renamed.get(t, t) for t in d.tools)
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            paths = ", ".join(f"{p!r} is the tool {n!r}" for p, n in renamed.items())
            raise AgentDefinitionError(
                f"{where}agent {d.name!r}: tools: {', '.join(map(repr, twice))} is listed "
                f"twice ({paths})."
            )
        rules = tuple(
            r.model_copy(update={"tool": renamed[r.tool]}) if r.tool in renamed else r
            for r in d.policy.rules
        )
        out.append(
            d.model_copy(
                update={"tools": names, "policy": d.policy.model_copy(update={"rules": rules})}
            )
        )
    return tuple(out), specs


async def _invoke(found: Tool, args: BaseModel, ctx: ToolContext) -> Any:
    positional, kwargs = found.bind(args, ctx)
    if found.is_async():
        value = await found.func(*positional, **kwargs)
    else:
        value = await asyncio.to_thread(found.func, *positional, **kwargs)
    if inspect.isawaitable(value):  # a callable object with an async __call__
        value = await value
    return value


def _seconds(value: float) -> str:
    return f"{value:g}"


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _invalid_arguments(found: Tool, exc: ValidationError) -> str:
    """One sentence per problem, then the expected shape, so the model can retry."""
    problems: list[str] = []
    for error in exc.errors(include_url=False)[:_MAX_ERRORS_SHOWN]:
        if error["type"] == "json_invalid":
            problems.append(f"the arguments are not valid JSON ({error['ctx']['error']})")
            continue
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(problems)
    if more > 0:
        problems.append(f"and {more} more")
    return (
        f"Invalid arguments for tool {found.name!r}: {'; '.join(problems)}. "
        f"Expected {_expected(found.input_schema())}."
    )


def _expected(schema: dict[str, Any]) -> str:
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return "an empty object {}"
    required = set(schema.get("required", []))
    fields = []
    for name, sub in properties.items():
        kind = sub.get("type") or ("|".join(a.get("type", "?") for a in sub.get("anyOf", [])))
        fields.append(f"{name} ({kind or 'any'}{', required' if name in required else ''})")
    return "an object with " + ", ".join(fields)
