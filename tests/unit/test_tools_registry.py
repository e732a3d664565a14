"""The tool registry: declarations, schemas, validation, timeouts, failures, import paths."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, Field

from agents.events import CompleteToolCall, FailToolCall, PolicyAction, ToolUse
from agents.llm import ToolSpec
from agents.tools import (
    BUILTIN_NAMES,
    BUILTIN_TOOLS,
    Tool,
    ToolContext,
    ToolFailed,
    ToolRefused,
    ToolRegistrationError,
    ToolRegistry,
    ToolResult,
    UnknownToolError,
    as_tool,
    builtin_registry,
    load_tool,
    tool,
)

REPO = Path(__file__).resolve().parents[2]
CTX = ToolContext(session_id="s-1", call_id="c-1")


def add(a: int, b: Annotated[int, Field(description="Second term.")] = 1) -> int:
    """Add two integers."""
    return a + b


class Point(BaseModel):
    x: float
    y: float


async def norm(p: Point) -> float:
    """Euclidean norm of a point."""
    return (p.x**2 + p.y**2) ** 0.5


class Echo(BaseModel):
    """Echo the text back, with the session id."""

    text: str

    def run(self, ctx: ToolContext) -> str:
        return f"{ctx.session_id}: {self.text}"


# ----------------------------------------------------------------------- declaring


def test_function_with_annotated_params_becomes_a_tool_with_its_schema() -> None:
    t = as_tool(add)
    assert t.name == "add"
    assert t.description == "Add two integers."
    assert t.spec() == ToolSpec(
        name="add",
        description="Add two integers.",
        input_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "a": {"type": "integer"},
                "b": {"type": "integer", "default": 1, "description": "Second term."},
            },
            "required": ["a"],
        },
    )


def test_function_taking_a_model_uses_that_model_as_its_schema() -> None:
    t = as_tool(norm)
    assert t.input_model is Point
    assert t.takes == "model"
    assert t.input_schema()["required"] == ["x", "y"]


def test_model_with_run_becomes_a_tool_named_in_snake_case() -> None:
    t = as_tool(Echo)
    assert (t.name, t.description, t.context_param) == (
        "echo",
        "Echo the text back, with the session id.",
        "ctx",
    )
    assert "description" not in t.input_schema()  # said once, as the tool's description


def test_context_parameter_is_injected_and_hidden_from_the_schema() -> None:
    async def who(ctx: ToolContext, greeting: str = "hi") -> str:
        """Say who is calling."""
        return f"{greeting} {ctx.session_id}/{ctx.call_id}"

    t = as_tool(who)
    assert list(t.input_schema()["properties"]) == ["greeting"]


def test_decorator_keeps_the_function_callable_and_records_metadata() -> None:
    @tool(name="twice", timeout_s=2, idempotent=True, default_action="require_approval")
    def double(n: int) -> int:
        """Double a number."""
        return 2 * n

    assert isinstance(double, Tool)
    assert double(4) == 8
    assert (double.name, double.timeout_s, double.idempotent) == ("twice", 2.0, True)
    assert double.default_action is PolicyAction.REQUIRE_APPROVAL

    @tool
    def bare(n: int) -> int:
        """Identity."""
        return n

    assert bare.name == "bare" and bare.timeout_s == 30.0 and not bare.idempotent


def test_inline_tools_are_the_pure_built_ins() -> None:
    registry = builtin_registry()
    inline = {t.name for t in registry if t.inline}
    assert inline == {"calculator", "current_time"}
    assert all(registry.is_inline(n) for n in inline)
    assert not registry.is_inline("shell") and not registry.is_inline("no_such_tool")
    assert registry.register(add, name="add2", inline=True, idempotent=True, timeout_s=2).inline


@pytest.mark.parametrize(
    ("obj", "kwargs", "message"),
    [
        (lambda x: x, {}, "no type annotation"),
        (add, {"name": "has space"}, "Tool name 'has space' is invalid"),
        (add, {"timeout_s": -1}, "must be > 0"),
        (add, {"inline": True}, "declared inline but not idempotent"),
        (add, {"inline": True, "idempotent": True, "timeout_s": 6}, "at most 5 s"),
        (add, {"description": "   "}, "has no description"),
        (BaseModel, {}, "no run() method"),
        (42, {}, "cannot be a tool"),
    ],
)
def test_invalid_declarations_are_refused_at_registration(
    obj: object, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(
        ToolRegistrationError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        ToolRegistry().register(obj, **kwargs)  # type: ignore[arg-type]


def test_varargs_function_is_refused() -> None:
    def spread(*items: int) -> int:
        """Sum."""
        return sum(items)

    with pytest.raises(ToolRegistrationError, match="named parameters only"):
        as_tool(spread)


def test_names_are_unique_but_reregistering_the_same_tool_is_a_no_op() -> None:
    registry = ToolRegistry([as_tool(add)])
    registry.register(add)  # same declaration
    with pytest.raises(ToolRegistrationError, match="different tool named 'add'"):
        registry.register(norm, name="add")
    assert registry.names() == ("add",)


def test_resolve_unknown_name_lists_the_known_tools() -> None:
    registry = ToolRegistry([as_tool(add), as_tool(norm)])
    with pytest.raises(UnknownToolError, match=r"'nope'.*known tools: add, norm"):
        registry.resolve("nope")


def test_specs_follow_the_order_asked_for() -> None:
    registry = builtin_registry()
    assert [s.name for s in registry.specs(["shell", "calculator"])] == ["shell", "calculator"]
    assert [s.name for s in registry.specs()] == sorted(BUILTIN_NAMES)


def test_builtins_declare_the_expected_metadata() -> None:
    assert set(BUILTIN_NAMES) == {
        "calculator",
        "current_time",
        "read_file",
        "write_file",
        "http_get",
        "shell",
        "delegate",
        "delegate_many",
        "handoff",
    }
    assert BUILTIN_TOOLS["shell"].default_action == "require_approval"
    assert {n for n, t in BUILTIN_TOOLS.items() if t.default_action is not None} == {"shell"}
    assert not BUILTIN_TOOLS["shell"].idempotent and not BUILTIN_TOOLS["delegate"].idempotent
    assert BUILTIN_TOOLS["read_file"].idempotent and BUILTIN_TOOLS["http_get"].idempotent
    for spec in builtin_registry().specs():
        assert spec.input_schema["type"] == "object"
        assert spec.input_schema["additionalProperties"] is False
        assert spec.description and "\n" not in spec.description


# ----------------------------------------------------------------------- executing


async def test_execute_validates_then_runs_sync_async_and_model_tools() -> None:
    registry = ToolRegistry([as_tool(add), as_tool(norm), as_tool(Echo)])
    assert (await registry.execute("add", '{"a": 2, "b": 3}', CTX)).content == "5"
    assert (await registry.execute("add", '{"a": 2}', CTX)).content == "3"
    assert (await registry.execute("norm", '{"x": 3, "y": 4}', CTX)).content == "5.0"
    echoed = await registry.execute("echo", '{"text": "hello"}', CTX)
    assert echoed == ToolResult(True, "s-1: hello", echoed.latency_ms)
    assert echoed.latency_ms >= 0


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("{not json", "the arguments are not valid JSON"),
        ("[1, 2]", "arguments: Input should be an object"),
        ('{"b": 1}', "a: Field required"),
        ('{"a": "three"}', "a: Input should be a valid integer"),
        ('{"a": 1, "c": 2}', "c: Extra inputs are not permitted"),
    ],
)
async def test_invalid_arguments_go_back_to_the_model_as_a_failed_result(
    arguments: str, expected: str
) -> None:
    result = await ToolRegistry([as_tool(add)]).execute("add", arguments, CTX)
    assert not result.ok
    assert result.error_kind == "invalid_arguments"
    assert result.content.startswith("Invalid arguments for tool 'add': ")
    assert expected in result.content
    assert result.content.endswith("Expected an object with a (integer, required), b (integer).")


async def test_empty_arguments_mean_an_empty_object() -> None:
    result = await ToolRegistry([as_tool(add)]).execute("add", "", CTX)
    assert "a: Field required" in result.content
    assert (await builtin_registry().execute("current_time", "", CTX)).ok


async def test_unknown_tool_is_a_failed_result_naming_the_available_tools() -> None:
    result = await ToolRegistry([as_tool(add)]).execute("rm_rf", "{}", CTX)
    assert result == ToolResult(
        False, "Unknown tool 'rm_rf'; available tools: add.", result.latency_ms, "unknown_tool"
    )


async def test_async_tool_past_its_timeout_is_cancelled() -> None:
    cancelled = asyncio.Event()

    @tool(timeout_s=0.05)
    async def hang() -> str:
        """Never returns."""
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "unreachable"

    result = await ToolRegistry([hang]).execute("hang", "{}", CTX)
    assert result.content == "Tool 'hang' timed out after 0.05s and was stopped."
    assert (result.ok, result.error_kind) == (False, "timeout")
    assert cancelled.is_set()


async def test_sync_tool_past_its_timeout_fails_without_blocking_the_loop() -> None:
    release = threading.Event()

    @tool(timeout_s=0.05)
    def block() -> str:
        """Blocks its thread."""
        release.wait(10)
        return "late"

    try:
        result = await ToolRegistry([block]).execute("block", "{}", CTX)
    finally:
        release.set()
    assert (result.ok, result.error_kind) == (False, "timeout")
    assert "timed out after 0.05s" in result.content


async def test_a_timeout_raised_by_the_tool_itself_is_not_mistaken_for_ours() -> None:
    @tool(timeout_s=10)
    async def own_timeout() -> str:
        """Raises TimeoutError on its own."""
        raise TimeoutError("upstream took too long")

    result = await ToolRegistry([own_timeout]).execute("own_timeout", "{}", CTX)
    assert (result.ok, result.error_kind) == (False, "exception")
    assert result.content == "TimeoutError: upstream took too long"


async def test_exception_in_a_tool_is_reported_by_type_and_message_without_traceback() -> None:
    @tool
    def boom(n: int) -> int:
        """Divides by n."""
        return 1 // n

    result = await ToolRegistry([boom]).execute("boom", '{"n": 0}', CTX)
    assert result.content == "ZeroDivisionError: integer division or modulo by zero"
    assert "Traceback" not in result.content
    assert isinstance(result.exception, ZeroDivisionError)
    assert result.exception.__traceback__ is not None  # for the caller's log


async def test_tool_errors_reach_the_model_verbatim_with_their_kind() -> None:
    @tool
    def refuse() -> str:
        """Refuses."""
        raise ToolRefused("That is not allowed here.")

    @tool
    async def fail() -> str:
        """Fails."""
        raise ToolFailed("The upstream service answered 503.")

    registry = ToolRegistry([refuse, fail])
    refused = await registry.execute("refuse", "{}", CTX)
    failed = await registry.execute("fail", "{}", CTX)
    assert (refused.content, refused.error_kind) == ("That is not allowed here.", "refused")
    assert (failed.content, failed.error_kind) == ("The upstream service answered 503.", "failed")


async def test_results_render_as_text_and_are_capped() -> None:
    @tool
    def data() -> dict[str, object]:
        """Structured."""
        return {"n": 1, "names": ["å"]}

    @tool
    def big() -> str:
        """Large."""
        return "x" * 150

    registry = ToolRegistry([data, big], max_content_chars=100)
    assert (await registry.execute("data", "{}", CTX)).content == '{"n": 1, "names": ["å"]}'
    capped = (await registry.execute("big", "{}", CTX)).content
    assert capped == "x" * 100 + "\n[truncated: 50 more characters]"


async def test_parallel_calls_of_one_step_run_concurrently() -> None:
    # Each tool waits for the other: run one after the other, they would deadlock.
    first, second = asyncio.Event(), asyncio.Event()

    @tool(timeout_s=5)
    async def ping() -> str:
        """Sets first, waits for second."""
        first.set()
        await second.wait()
        return "ping"

    @tool(timeout_s=5)
    async def pong() -> str:
        """Sets second, waits for first."""
        second.set()
        await first.wait()
        return "pong"

    registry = ToolRegistry([ping, pong])
    calls = [ToolUse("c1", "ping"), ToolUse("c2", "pong"), ToolUse("c3", "nope")]
    results = await registry.execute_all(
        calls, lambda use: ToolContext(session_id="s", call_id=use.call_id)
    )
    assert [r.content for r in results[:2]] == ["ping", "pong"]
    assert results[2].error_kind == "unknown_tool"


def test_result_becomes_the_outcome_request() -> None:
    assert ToolResult(True, "42", 7).to_request("c9") == CompleteToolCall("c9", "42", 7)
    assert ToolResult(False, "no", 3, "refused").to_request("c9") == FailToolCall("c9", "no", 3)


async def test_delegate_is_declared_but_not_executed_here() -> None:
    result = await builtin_registry().execute("delegate", '{"agent": "a", "task": "t"}', CTX)
    assert not result.ok
    assert result.content.startswith("delegate is handled by the session worker")


# ----------------------------------------------------------------------- import paths


async def test_custom_tool_by_import_path_registers_under_its_own_name() -> None:
    registry = builtin_registry()
    spec = registry.specs(["calculator", "examples.custom_tools:word_count"])[1]
    assert spec.name == "word_count"
    assert registry.resolve("word_count").source == "examples.custom_tools:word_count"
    result = await registry.execute("word_count", '{"text": "to be or not to be"}', CTX)
    assert result.content == '{"words": 6, "characters": 18}'
    # resolving the path again returns the same tool, no duplicate error
    assert registry.resolve("examples.custom_tools:word_count") is registry.resolve("word_count")


async def test_every_shape_of_custom_tool_loads_from_the_example_module() -> None:
    registry = ToolRegistry()
    for path in ("examples.custom_tools:slugify", "examples.custom_tools:UnitConversion"):
        registry.register_import_path(path, search_paths=[REPO])
    assert registry.names() == ("slugify", "unit_conversion")
    assert registry.resolve("slugify").timeout_s == 2.0
    assert (await registry.execute("slugify", '{"title": "Hello, World!"}', CTX)).content == (
        "hello-world"
    )
    converted = await registry.execute(
        "unit_conversion", '{"value": 1, "source": "mi", "target": "km"}', CTX
    )
    assert converted.content == "1 mi = 1.60934 km"


def test_import_path_overrides_apply() -> None:
    t = load_tool("examples.custom_tools:word_count", search_paths=[REPO], name="wc", timeout_s=3)
    assert (t.name, t.timeout_s, t.source) == ("wc", 3.0, "examples.custom_tools:word_count")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("examples/custom_tools.py", "is not an import path"),
        ("examples.custom_tools:nope", "has no attribute 'nope'"),
        ("examples.no_such_module:f", "was not found on sys.path"),
        ("examples.custom_tools:_FACTORS", "cannot be a tool"),
    ],
)
def test_bad_import_paths_fail_at_load_time_naming_the_path(path: str, message: str) -> None:
    with pytest.raises(ToolRegistrationError, match=message) as caught:
        load_tool(path, search_paths=[REPO])
    assert repr(path) in str(caught.value)


async def test_a_tool_calling_sys_exit_does_not_stop_the_caller() -> None:
    import sys

    @tool
    def quit_now() -> str:
        """Exits."""
        sys.exit(3)

    result = await ToolRegistry([quit_now]).execute("quit_now", "{}", CTX)
    assert (result.ok, result.content, result.error_kind) == (False, "SystemExit: 3", "exception")
