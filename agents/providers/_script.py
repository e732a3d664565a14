"""The script language of the scripted provider: its schema, its loader and its matcher.

Rule: a scripted answer is a pure function of the request. The provider never counts
calls or remembers sessions; it reads what it needs from the `LlmRequest` itself (the
last user text, whether the last message is a tool result and of which tool, how many
model calls this turn or this conversation already has), so a re-issued or replayed call
gets the same answer, tool-call ids included.

A script (YAML or JSON):

    defaults: {latency_ms: 0, chunks: 3}       # optional
    rules:                                     # first match wins
      - name: calculator-call
        when: {user_contains: "17*23", last: user}
        respond:
          text: "Let me calculate that."
          tool_calls: [{name: calculator, arguments: {expression: "17*23"}}]
      - when: {tool_result_of: calculator}
        respond: {text: "17 * 23 = {{tool_result}}."}
    steps:                                     # step k answers the call after k answers
      - {text: "first answer"}
    otherwise: {text: "I have no scripted answer for that."}

Templates in text and in string tool arguments: {{user}} (the last user text),
{{tool_result}} (the last tool results' content), {{tool_name}}, {{model}}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.llm import LlmRequest, TextBlock, ToolResultBlock, ToolUseBlock
from agents.providers.base import ProviderConfigError

__all__ = [
    "Conversation",
    "Rule",
    "Script",
    "ScriptError",
    "ScriptedError",
    "ScriptedReply",
    "ScriptedToolCall",
    "When",
    "load_script",
    "parse_script",
    "render",
]


class ScriptError(ProviderConfigError):
    """A script file is unreadable or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    # Typos in a script must fail loudly, not silently match everything.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScriptedToolCall(_Strict):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptedUsage(_Strict):
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)


class ScriptedError(_Strict):
    """Fail the attempt with this provider-neutral error type (e.g. "overloaded")."""

    type: str = Field(min_length=1)
    message: str = "Scripted failure."
    retryable: bool = True


class ScriptedReply(_Strict):
    """One answer. `usage` None: estimated from the request and answer sizes."""

    text: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    stop_reason: str | None = None
    usage: ScriptedUsage | None = None
    latency_ms: int | None = Field(default=None, ge=0)
    chunks: int | None = Field(default=None, ge=1)
    error: ScriptedError | None = None


class When(_Strict):
    """Conditions on the request; all given ones must hold. Text matches ignore case."""

    model: str | None = None
    system_contains: str | None = None
    has_tool: str | None = None
    user_contains: str | list[str] | None = None  # a list: any of them
    user_matches: str | None = None  # a regular expression, searched
    last: Literal["user", "tool_result"] | None = None
    tool_result_of: str | None = None
    tool_result_contains: str | None = None
    tool_result_is_error: bool | None = None
    iteration: int | None = Field(default=None, ge=0)  # model answers so far this turn
    llm_call: int | None = Field(default=None, ge=0)  # model answers so far, whole context
    turn: int | None = Field(default=None, ge=1)  # user text messages so far

    @field_validator("user_matches")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class Rule(_Strict):
    name: str | None = None
    when: When = Field(default_factory=When)
    respond: ScriptedReply


class Defaults(_Strict):
    latency_ms: int = Field(default=0, ge=0)
    chunks: int = Field(default=3, ge=1)


class Script(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    rules: tuple[Rule, ...] = ()
    steps: tuple[ScriptedReply, ...] = ()
    otherwise: ScriptedReply | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    """What a rule can see of a request, computed once per call."""

    model: str
    system: str
    tools: frozenset[str]
    user_text: str  # the most recent user message that has text
    last_is_tool_result: bool
    tool_results: tuple[tuple[str, str, bool], ...]  # (tool name, content, is_error)
    iteration: int
    llm_call: int
    turn: int

    @classmethod
    def of(cls, request: LlmRequest, model: str) -> Conversation:
        # One pass over the roles (a scripted model answers every call of a benchmark, so
        # this runs per call over the whole window); blocks are looked at only in user
        # messages and, for the names of the last message's tool results, from the end.
        messages = request.messages
        user_index = -1
        turn = llm_call = iteration = 0
        for i, message in enumerate(messages):
            if message.role == "assistant":
                llm_call += 1
                iteration += 1
            elif message.role == "user":
                for b in message.content:
                    if isinstance(b, TextBlock) and b.text:
                        user_index = i
                        turn += 1
                        iteration = 0  # assistant messages after the latest user text
                        break
        user_text = ""
        if user_index >= 0:
            user_text = "\n".join(
                b.text for b in messages[user_index].content if isinstance(b, TextBlock)
            )
        last = messages[-1] if messages else None
        asked = [
            b
            for b in (last.content if last is not None and last.role == "user" else ())
            if isinstance(b, ToolResultBlock)
        ]
        names: dict[str, str] = {}
        wanted = {b.call_id for b in asked}
        for message in reversed(messages):  # the latest call of an id names it
            if not wanted:
                break
            for block in reversed(message.content):
                if isinstance(block, ToolUseBlock) and block.call_id in wanted:
                    names[block.call_id] = block.name
                    wanted.discard(block.call_id)
        results = tuple((names.get(b.call_id, ""), b.content, b.is_error) for b in asked)
        return cls(
            model=model,
            system=request.system,
            tools=frozenset(t.name for t in request.tools),
            user_text=user_text,
            last_is_tool_result=bool(results),
            tool_results=results,
            iteration=iteration,
            llm_call=llm_call,
            turn=turn,
        )

    def matches(self, when: When) -> bool:
        def has(haystack: str, needle: str) -> bool:
            return needle.casefold() in haystack.casefold()

        checks: list[bool] = []
        if when.model is not None:
            checks.append(self.model == when.model)
        if when.system_contains is not None:
            checks.append(has(self.system, when.system_contains))
        if when.has_tool is not None:
            checks.append(when.has_tool in self.tools)
        if when.user_contains is not None:
            needles = (
                [when.user_contains] if isinstance(when.user_contains, str) else when.user_contains
            )
            checks.append(any(has(self.user_text, n) for n in needles))
        if when.user_matches is not None:
            checks.append(re.search(when.user_matches, self.user_text, re.IGNORECASE) is not None)
        if when.last is not None:
            checks.append(self.last_is_tool_result == (when.last == "tool_result"))
        if when.tool_result_of is not None:
            checks.append(any(name == when.tool_result_of for name, _, _ in self.tool_results))
        if when.tool_result_contains is not None:
            checks.append(any(has(c, when.tool_result_contains) for _, c, _ in self.tool_results))
        if when.tool_result_is_error is not None:
            checks.append(
                self.last_is_tool_result
                and any(err == when.tool_result_is_error for _, _, err in self.tool_results)
            )
        if when.iteration is not None:
            checks.append(self.iteration == when.iteration)
        if when.llm_call is not None:
            checks.append(self.llm_call == when.llm_call)
        if when.turn is not None:
            checks.append(self.turn == when.turn)
        return all(checks)

    def variables(self) -> dict[str, str]:
        return {
            "user": self.user_text,
            "tool_result": "\n".join(c for _, c, _ in self.tool_results),
            "tool_name": ", ".join(n for n, _, _ in self.tool_results),
            "model": self.model,
        }


_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def render(value: Any, variables: Mapping[str, str]) -> Any:
    """`value` with {{name}} placeholders filled in, recursively through lists and dicts;
    an unknown name is left as it is."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    return value


def parse_script(data: Any, source: str = "<script>") -> Script:
    """Validate already-parsed script data. ScriptError names `source` and the field."""
    if not isinstance(data, dict):
        raise ScriptError(f"{source}: a script must be a mapping with rules/steps/otherwise.")
    try:
        script = Script.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ScriptError(f"{source}: invalid script: {problems}") from None
    if not (script.rules or script.steps or script.otherwise):
        raise ScriptError(f"{source}: the script has no rules, no steps and no otherwise.")
    return script


def load_script(path: str | Path) -> Script:
    """Read a .yaml/.yml/.json script file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"{file}: cannot read the script file ({exc.strerror}).") from None
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ScriptError(f"{file}: not valid {file.suffix or 'YAML'}: {exc}") from None
    return parse_script(data, str(file))
