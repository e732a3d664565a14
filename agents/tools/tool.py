"""One tool: its declaration (`Tool`), its outcome (`ToolResult`) and how a plain Python
callable becomes one (`as_tool`, the `@tool` decorator).

Rule: the model sees exactly what `Tool.spec()` returns, and the arguments a tool function
receives are exactly what its input model validated: the JSON schema and the validation are
the same pydantic model, so they cannot disagree.

A callable becomes a tool in one of three shapes:

* a function with annotated parameters — each parameter becomes a field of a generated
  input model (`Annotated[int, Field(description=...)]` documents it for the model);
* a function whose one parameter is a pydantic model — that model is the input model;
* a pydantic model class with a `run` method — the class is the input model, `run` the
  body, the class docstring the description.

In the first two shapes a parameter annotated `ToolContext` receives the call's context
and is not part of the schema. Functions may be sync (run in a worker thread) or async.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, create_model

from agents.events import CompleteToolCall, FailToolCall, PolicyAction
from agents.llm import ToolSpec
from agents.tools.context import ToolContext
from agents.tools.errors import ToolRegistrationError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "INLINE_MAX_TIMEOUT_S",
    "ErrorKind",
    "Tool",
    "ToolResult",
    "as_tool",
    "render",
    "tool",
]

DEFAULT_TIMEOUT_S = 30.0
# An inline tool runs while its partition's transaction is open (Tool.inline).
INLINE_MAX_TIMEOUT_S = 5.0

# Anthropic's rule for tool names; other providers accept a superset.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

ErrorKind = Literal[
    "unknown_tool", "invalid_arguments", "timeout", "refused", "failed", "exception"
]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The outcome of one tool call. `content` is the text the model reads, whether the
    call succeeded or not. `error_kind` classifies a failure; `exception` (never shown to
    the model, not part of equality) is kept so the caller can log its traceback."""

    ok: bool
    content: str
    latency_ms: int = 0
    error_kind: ErrorKind | None = None
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def to_request(self, call_id: str) -> CompleteToolCall | FailToolCall:
        """The request payload that reports this outcome on `turnlog.requests`."""
        if self.ok:
            return CompleteToolCall(
                call_id=call_id, result=self.content, latency_ms=self.latency_ms
            )
        return FailToolCall(call_id=call_id, error=self.content, latency_ms=self.latency_ms)


def _strip_titles(schema: Any) -> Any:
    """Drop pydantic's generated `title`s: they repeat the field names and cost tokens in
    every request. Property *names* called "title" are kept."""
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(
            value, dict
        ):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


@dataclass(frozen=True, slots=True)
class Tool:
    """A declared tool.

    `func` receives the validated arguments: as keyword arguments (`takes="fields"`), as
    the input model instance (`takes="model"`), or it is the model's bound `run`
    (`takes="self"`). `context_param` names the parameter that receives the ToolContext.
    `default_action` is what the agent-definition loader uses for this tool when no policy
    rule names it (None: the agent's own default). `idempotent` says that running the tool
    twice for one call is harmless (False unless the tool says so): the core never re-runs
    a non-idempotent call whose outcome is unknown; every call also gets its effect id as
    `ToolContext.idempotency_key`. `inline` (idempotent tools only, timeout at most
    INLINE_MAX_TIMEOUT_S) says the tool is a bounded computation with no effect outside
    its result — the calculator, the clock — which the session worker may run inside the
    transaction that decided the call, recording the call and its result together
    instead of going out through the effect runner and back through the requests topic
    (a hop fewer per call; see streams._partition). `source` is the import path it was
    loaded from, if any. `declared_spec`, when set, is what the model is told instead of
    the spec generated from `input_model` (the built-ins take theirs from the pure core's
    `agents.toolspecs`, which is hashed into every request); `input_model` then only
    validates, and a test keeps the two in agreement.
    """

    name: str
    description: str
    input_model: type[BaseModel]
    func: Callable[..., Any]
    timeout_s: float = DEFAULT_TIMEOUT_S
    idempotent: bool = False
    inline: bool = False
    default_action: PolicyAction | None = None
    takes: Literal["fields", "model", "self"] = "fields"
    context_param: str | None = None
    source: str | None = None
    declared_spec: ToolSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ToolRegistrationError(
                f"Tool name {self.name!r} is invalid: use 1 to 64 letters, digits, '_' or '-'."
            )
        if not self.description.strip():
            raise ToolRegistrationError(
                f"Tool {self.name!r} has no description; the model needs one to use it."
            )
        if self.declared_spec is not None and self.declared_spec.name != self.name:
            raise ToolRegistrationError(
                f"Tool {self.name!r} declares a spec named {self.declared_spec.name!r}; "
                "the names must be equal."
            )
        if not self.timeout_s > 0:
            raise ToolRegistrationError(
                f"Tool {self.name!r} has timeout_s={self.timeout_s!r}; it must be > 0."
            )
        if self.inline and not self.idempotent:
            raise ToolRegistrationError(
                f"Tool {self.name!r} is declared inline but not idempotent; a tool run "
                "inside a decision may run again when that decision is retried."
            )
        if self.inline and self.timeout_s > INLINE_MAX_TIMEOUT_S:
            raise ToolRegistrationError(
                f"Tool {self.name!r} is declared inline with timeout_s={self.timeout_s:g}; "
                f"an inline tool holds its partition's transaction: at most "
                f"{INLINE_MAX_TIMEOUT_S:g} s."
            )

    def input_schema(self) -> dict[str, Any]:
        if self.declared_spec is not None:
            return self.declared_spec.input_schema
        return self.generated_schema()

    def generated_schema(self) -> dict[str, Any]:
        """The JSON schema of `input_model`, without pydantic's generated titles."""
        schema: dict[str, Any] = _strip_titles(self.input_model.model_json_schema())
        # A model class's docstring is already the tool's description: say it once.
        if schema.get("description") == self.description:
            del schema["description"]
        return schema

    def same_declaration(self, other: Tool) -> bool:
        """Equal but for where it was loaded from and the identity of a generated input
        model (declaring the same function twice generates two equal model classes)."""
        mine = replace(self, input_model=other.input_model, source=other.source)
        return mine == other and (
            self.input_model is other.input_model or self.input_schema() == other.input_schema()
        )

    def spec(self) -> ToolSpec:
        """What the model is told, plus what the core is told: `idempotent` (never part
        of what the model sees) is this declaration's."""
        if self.declared_spec is not None:
            if self.declared_spec.idempotent == self.idempotent:
                return self.declared_spec
            return replace(self.declared_spec, idempotent=self.idempotent)
        return ToolSpec(
            name=self.name,
            description=self.description,
            input_schema=self.input_schema(),
            idempotent=self.idempotent,
        )

    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def bind(self, args: BaseModel, ctx: ToolContext) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments `func` is called with."""
        kwargs: dict[str, Any] = {}
        positional: tuple[Any, ...] = ()
        if self.takes == "fields":
            # Attributes, not model_dump(): nested models stay model instances.
            kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        elif self.takes == "model":
            positional = (args,)
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        if self.takes == "self":
            return (args, *positional), kwargs
        return positional, kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A decorated function stays callable as itself."""
        return self.func(*args, **kwargs)


def _unwrap(doc: str) -> str:
    """A docstring as prose: hard-wrapped lines of a paragraph joined, paragraphs kept."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\-]+", name) if part)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _context_param(params: list[inspect.Parameter], hints: dict[str, Any]) -> str | None:
    names = [p.name for p in params if hints.get(p.name) is ToolContext]
    if len(names) > 1:
        raise ToolRegistrationError(f"Only one parameter may take the ToolContext, got {names}.")
    return names[0] if names else None


def _is_model_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _from_function(func: Callable[..., Any], name: str) -> dict[str, Any]:
    label = getattr(func, "__qualname__", repr(func))
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # unresolvable forward reference, typically
        raise ToolRegistrationError(
            f"The annotations of {label} cannot be resolved ({exc}); tool {name!r} needs them."
        ) from exc
    params = list(inspect.signature(func).parameters.values())
    for p in params:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ToolRegistrationError(
                f"{label} takes *{p.name}; a tool function needs named parameters only."
            )
    ctx_param = _context_param(params, hints)
    fields = [p for p in params if p.name != ctx_param]
    if len(fields) == 1 and _is_model_class(hints.get(fields[0].name)):
        return {
            "input_model": hints[fields[0].name],
            "takes": "model",
            "context_param": ctx_param,
        }
    definitions: dict[str, Any] = {}
    for p in fields:
        if p.name not in hints:
            raise ToolRegistrationError(
                f"Parameter {p.name!r} of {label} has no type annotation; tool {name!r} "
                "derives its input schema from the annotations."
            )
        default = ... if p.default is inspect.Parameter.empty else p.default
        definitions[p.name] = (hints[p.name], default)
    model = create_model(
        f"{_camel(name)}Input",
        __config__=ConfigDict(extra="forbid"),
        **definitions,
    )
    return {"input_model": model, "takes": "fields", "context_param": ctx_param}


def _from_model_class(model: type[BaseModel]) -> dict[str, Any]:
    run = getattr(model, "run", None)
    if run is None or not callable(run):
        raise ToolRegistrationError(
            f"Model {model.__qualname__} cannot be a tool: it has no run() method."
        )
    hints = typing.get_type_hints(run)
    params = list(inspect.signature(run).parameters.values())[1:]  # drop self
    ctx_param = _context_param(params, hints)
    extra = [p.name for p in params if p.name != ctx_param]
    if extra:
        raise ToolRegistrationError(
            f"{model.__qualname__}.run takes {extra}; it may only take a ToolContext, the "
            "arguments are the model's own fields."
        )
    return {"input_model": model, "func": run, "takes": "self", "context_param": ctx_param}


def as_tool(
    obj: Tool | Callable[..., Any] | type[BaseModel],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    idempotent: bool | None = None,
    default_action: PolicyAction | str | None = None,
    source: str | None = None,
    inline: bool | None = None,
) -> Tool:
    """Make a Tool of a function, a pydantic model with `run`, or an existing Tool (whose
    declaration the given keywords override). The name defaults to the function's name
    (a model class's name in snake_case), the description to the docstring."""
    overrides: dict[str, Any] = {}
    if name is not None:
        overrides["name"] = name
    if description is not None:
        overrides["description"] = inspect.cleandoc(description)
    if timeout_s is not None:
        overrides["timeout_s"] = float(timeout_s)
    if idempotent is not None:
        overrides["idempotent"] = idempotent
    if inline is not None:
        overrides["inline"] = inline
    if default_action is not None:
        overrides["default_action"] = PolicyAction(default_action)
    if source is not None:
        overrides["source"] = source
    if isinstance(obj, Tool):
        return replace(obj, **overrides) if overrides else obj
    if _is_model_class(obj):
        model = typing.cast(type[BaseModel], obj)
        tool_name = overrides.pop("name", _snake(model.__name__))
        doc = model.__dict__.get("__doc__")
        parts = _from_model_class(model)
    elif callable(obj):
        tool_name = overrides.pop("name", getattr(obj, "__name__", ""))
        doc = inspect.getdoc(obj)
        parts = {"func": obj, **_from_function(obj, tool_name)}
    else:
        raise ToolRegistrationError(
            f"{obj!r} cannot be a tool: expected a function, a pydantic model class with a "
            "run() method, or a Tool."
        )
    overrides.setdefault("description", _unwrap(doc) if doc else "")
    return Tool(name=tool_name, **parts, **overrides)


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    func: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    idempotent: bool | None = None,
    default_action: PolicyAction | str | None = None,
    inline: bool | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    idempotent: bool | None = None,
    default_action: PolicyAction | str | None = None,
    inline: bool | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorator: `@tool` or `@tool(name=..., timeout_s=..., idempotent=...)` turns the
    function into a Tool (still callable as the function). It does not register it
    anywhere: pass it to `ToolRegistry.register`, or name it by import path."""

    def wrap(f: Callable[..., Any]) -> Tool:
        return as_tool(
            f,
            name=name,
            description=description,
            timeout_s=timeout_s,
            idempotent=idempotent,
            default_action=default_action,
            inline=inline,
        )

    return wrap(func) if func is not None else wrap


def render(value: Any) -> str:
    """The text the model reads for a tool's return value."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(value, ensure_ascii=False, default=str)
