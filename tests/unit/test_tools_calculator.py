"""`calculator` (an AST walk, never eval) and `current_time` (the one clock reader)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.tools import ToolContext, ToolRefused, builtin_registry
from agents.tools.calculator import MAX_INT_BITS, evaluate, format_number

REGISTRY = builtin_registry()


async def calc(expression: str) -> tuple[bool, str]:
    ctx = ToolContext(session_id="s", call_id="c")
    result = await REGISTRY.execute("calculator", json.dumps({"expression": expression}), ctx)
    return result.ok, result.content


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("7 / 2", "3.5"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("2 ** 10", "1024"),
        ("2 ** -1", "0.5"),
        ("-3 ** 2", "-9"),  # Python precedence: -(3 ** 2)
        ("(-3) ** 2", "9"),
        ("+-+4", "-4"),
        ("1.5e3 + 0.5", "1500.5"),
        ("sqrt(16) + abs(-2)", "6"),
        ("max(1, 5, 3) - min(4, 2)", "3"),
        ("round(2.567, 2)", "2.57"),
        ("floor(-2.5) + ceil(2.1)", "0"),
        ("hypot(3, 4)", "5"),
        ("2 ** 100", str(2**100)),
        ("10 / 4 * 4", "10"),
    ],
)
async def test_arithmetic(expression: str, expected: str) -> None:
    assert await calc(expression) == (True, expected)


async def test_constants_and_functions() -> None:
    ok, text = await calc("sin(pi / 2) + log(e) + tau / (2 * pi)")
    assert ok and float(text) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("9**9**9", "would have more than 4096 bits"),
        ("10**10**10", "would have more than 4096 bits"),
        ("(10**1000) * (10**1000) * (10**1000) * (10**1000) * (10**1000)", "more than 4096 bits"),
        ("2.0 ** 5000", "too large for the calculator"),
        ("1 / 0", "divides by zero"),
        ("5 % 0", "divides by zero"),
        ("(-8) ** 0.5", "is not a real number"),
        ("sqrt(-1)", "cannot compute sqrt(): math domain error"),
        ("sqrt(10**400)", "too large"),
        ("min()", "cannot compute min()"),
        ("__import__('os').system('true')", "has no function \"__import__('os').system\""),
        ("().__class__", "does not support Attribute syntax"),
        ("x + 1", "does not know 'x'"),
        ("'a' * 3", "only works on numbers, not 'a'"),
        ("True + 1", "only works on numbers, not True"),
        ("1j * 1j", "only works on numbers, not 1j"),
        ("1 < 2", "does not support Compare syntax"),
        ("1 << 100000", "does not support BinOp syntax"),
        ("[1, 2]", "does not support List syntax"),
        ("lambda: 1", "does not support Lambda syntax"),
        ("sqrt(x=4)", "positional arguments only"),
        ("math.sqrt(4)", "has no function 'math.sqrt'"),
        ("open('/etc/passwd')", "has no function 'open'"),
        ("1 +", "not valid arithmetic"),
        ("(1 + " * 80 + "1" + ")" * 80, "nested too deeply"),
        ("(" * 300 + "1" + ")" * 300, "not valid arithmetic"),
        ("-" * 500 + "1", "nested too deeply"),
    ],
)
async def test_refused_expressions_say_why(expression: str, message: str) -> None:
    ok, text = await calc(expression)
    assert not ok
    assert message in text


async def test_overlong_expression_is_invalid_arguments() -> None:
    ok, text = await calc("1+" * 600 + "1")
    assert not ok and "expression: String should have at most 1000 characters" in text


def test_the_bound_admits_results_just_below_it() -> None:
    assert evaluate(f"2 ** {MAX_INT_BITS - 1}") == 2 ** (MAX_INT_BITS - 1)
    with pytest.raises(ToolRefused):
        evaluate(f"2 ** {MAX_INT_BITS + 1}")


_ints = st.integers(min_value=-(10**6), max_value=10**6)


@st.composite
def int_expressions(draw: st.DrawFn, depth: int = 3) -> str:
    if depth == 0 or draw(st.booleans()):
        value = draw(_ints)
        return f"({value})" if value < 0 else str(value)
    op = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
    left = draw(int_expressions(depth - 1))
    right = draw(int_expressions(depth - 1))
    return f"({left} {op} {right})"


@settings(max_examples=150, deadline=None)
@given(int_expressions())
def test_integer_arithmetic_agrees_with_python(expression: str) -> None:
    # The generated text holds only integers, parentheses and + - * // %: eval of it is
    # the reference semantics the calculator must reproduce.
    try:
        expected = eval(expression, {"__builtins__": {}})
    except ZeroDivisionError:
        with pytest.raises(ToolRefused, match="divides by zero"):
            evaluate(expression)
        return
    assert evaluate(expression) == expected


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_formatting_round_trips(value: float) -> None:
    assert float(format_number(value)) == value


# ----------------------------------------------------------------------- current_time


def pinned(now: datetime) -> ToolContext:
    return ToolContext(session_id="s", call_id="c", clock=lambda: now)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", "2024-07-01T12:00:00+00:00 (Monday, UTC, UTC)"),
        ("Europe/Paris", "2024-07-01T14:00:00+02:00 (Monday, CEST, Europe/Paris)"),
        ("America/New_York", "2024-07-01T08:00:00-04:00 (Monday, EDT, America/New_York)"),
        ("Asia/Kolkata", "2024-07-01T17:30:00+05:30 (Monday, IST, Asia/Kolkata)"),
        ("Pacific/Kiritimati", "2024-07-02T02:00:00+14:00 (Tuesday, +14, Pacific/Kiritimati)"),
    ],
)
async def test_current_time_in_a_zone(zone: str, expected: str) -> None:
    ctx = pinned(datetime(2024, 7, 1, 12, 0, tzinfo=UTC))
    result = await REGISTRY.execute("current_time", json.dumps({"timezone": zone}), ctx)
    assert (result.ok, result.content) == (True, expected)


async def test_current_time_follows_daylight_saving() -> None:
    ctx = pinned(datetime(2024, 1, 15, 12, 0, tzinfo=UTC))
    result = await REGISTRY.execute("current_time", '{"timezone": "Europe/Paris"}', ctx)
    assert result.content.startswith("2024-01-15T13:00:00+01:00 (Monday, CET")


async def test_current_time_defaults_to_utc_and_reads_the_real_clock() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = await REGISTRY.execute("current_time", "{}", ToolContext("s", "c"))
    after = datetime.now(UTC)
    shown = datetime.fromisoformat(result.content.split(" ")[0])
    assert before <= shown <= after


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../../etc/passwd", "/etc/localtime", "utc+1"])
async def test_unknown_zone_is_refused_with_an_example(zone: str) -> None:
    ctx = pinned(datetime(2024, 7, 1, tzinfo=UTC))
    result = await REGISTRY.execute("current_time", json.dumps({"timezone": zone}), ctx)
    assert not result.ok
    assert result.content == (
        f"Unknown time zone {zone!r}; use an IANA name such as 'UTC', 'Europe/Paris' or "
        "'America/New_York'."
    )


def test_math_functions_offered_are_real() -> None:
    assert evaluate("log10(1000)") == pytest.approx(3.0)
    assert evaluate("atan2(1, 1)") == pytest.approx(math.pi / 4)
