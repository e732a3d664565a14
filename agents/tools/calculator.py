"""`calculator`: arithmetic on numbers, evaluated by walking the expression's AST.

Rule: nothing is ever `eval`ed. Only numeric literals, + - * / // % **, unary +/-,
parentheses, the constants pi/e/tau and a short list of math functions are accepted;
any other syntax (names, attributes, subscripts, comparisons, strings, lambdas) is refused
with the offending construct named. Work is bounded before it is done: an integer result
may not exceed `MAX_INT_BITS` bits, so `9**9**9` or `10**10**10` is refused up front
instead of pinning a core for minutes.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from agents.tools.errors import ToolRefused

__all__ = ["MAX_INT_BITS", "CalculatorInput", "calculator", "evaluate", "format_number"]

MAX_EXPRESSION_CHARS = 1000
MAX_INT_BITS = 4096  # about 1233 decimal digits
_MAX_DEPTH = 64

Number = int | float

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "hypot": math.hypot,
    "floor": math.floor,
    "ceil": math.ceil,
}

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
           ast.Mod: "%", ast.Pow: "**"}  # fmt: skip


class CalculatorInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expression: Annotated[
        str,
        Field(
            description=(
                "An arithmetic expression, e.g. '(2 + 3) * 4 ** 2 / 7' or 'sqrt(2) * pi'. "
                "Operators: + - * / // % ** and parentheses; functions: "
                + ", ".join(sorted(_FUNCTIONS))
                + "; constants: pi, e, tau."
            ),
            min_length=1,
            max_length=MAX_EXPRESSION_CHARS,
        ),
    ]


def _bits(value: Number) -> int:
    if isinstance(value, int):
        return value.bit_length()
    return 0  # floats are bounded by their format; overflow raises OverflowError


def _check_size(op: type[ast.operator], left: Number, right: Number) -> None:
    """Refuse an integer operation whose result would exceed MAX_INT_BITS, before
    computing it (estimates err on the generous side by at most a bit or two)."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if op is ast.Pow:
        if right < 0 or abs(left) <= 1:
            return
        estimate = right * (abs(left).bit_length() - 1)
    elif op is ast.Mult:
        estimate = left.bit_length() + right.bit_length() - 1
    else:
        return
    if estimate > MAX_INT_BITS:
        raise ToolRefused(
            f"The calculator refuses this expression: the result of "
            f"{_short(left)} {_SYMBOL[op]} {_short(right)} would have more than "
            f"{MAX_INT_BITS} bits."
        )


def _short(value: Number) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"


class _Evaluator:
    def eval(self, node: ast.AST, depth: int = 0) -> Number:
        if depth > _MAX_DEPTH:
            raise ToolRefused("The calculator refuses this expression: it is nested too deeply.")
        if isinstance(node, ast.Expression):
            return self.eval(node.body, depth + 1)
        if isinstance(node, ast.Constant):
            # bool is an int subclass; True + 1 is not arithmetic a user meant.
            if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                return node.value
            raise ToolRefused(f"The calculator only works on numbers, not {node.value!r}.")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.eval(node.operand, depth + 1)
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left = self.eval(node.left, depth + 1)
            right = self.eval(node.right, depth + 1)
            _check_size(type(node.op), left, right)
            result = _BINARY[type(node.op)](left, right)
            if isinstance(result, complex):  # (-8) ** 0.5
                raise ToolRefused(
                    f"{_short(left)} {_SYMBOL[type(node.op)]} {_short(right)} is not a real "
                    "number; the calculator works on real numbers only."
                )
            return result
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise ToolRefused(
                f"The calculator does not know {node.id!r}; constants are pi, e and tau."
            )
        if isinstance(node, ast.Call):
            return self.call(node, depth)
        raise ToolRefused(
            f"The calculator does not support {type(node).__name__} syntax; use numbers, "
            "+ - * / // % **, parentheses and its functions."
        )

    def call(self, node: ast.Call, depth: int) -> Number:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            shown = ast.unparse(node.func)
            raise ToolRefused(
                f"The calculator has no function {shown!r}; it has "
                + ", ".join(sorted(_FUNCTIONS))
                + "."
            )
        if node.keywords:
            raise ToolRefused("The calculator's functions take positional arguments only.")
        args = [self.eval(a, depth + 1) for a in node.args]
        name = node.func.id
        try:
            result = _FUNCTIONS[name](*args)
        except TypeError as exc:
            raise ToolRefused(f"The calculator cannot compute {name}(): {exc}.") from None
        except ValueError as exc:
            raise ToolRefused(f"The calculator cannot compute {name}(): {exc}.") from None
        if isinstance(result, int) and _bits(result) > MAX_INT_BITS:
            raise ToolRefused(f"The result of {name}() has more than {MAX_INT_BITS} bits.")
        return result


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression; ToolRefused says why one cannot be."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolRefused(
            f"The expression is {len(expression)} characters long; the calculator accepts "
            f"at most {MAX_EXPRESSION_CHARS}."
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolRefused(f"The expression is not valid arithmetic: {exc.msg}.") from None
    except (RecursionError, MemoryError):
        raise ToolRefused(
            "The calculator refuses this expression: it is nested too deeply."
        ) from None
    try:
        return _Evaluator().eval(tree)
    except ZeroDivisionError:
        raise ToolRefused("The expression divides by zero.") from None
    except OverflowError as exc:
        raise ToolRefused(f"The result is too large for the calculator ({exc}).") from None


def format_number(value: Number) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


async def calculator(args: CalculatorInput) -> str:
    """Evaluate an arithmetic expression exactly as written and return the number.
    Integer arithmetic is exact (up to about 1200 digits); '/' always gives a float."""
    return format_number(evaluate(args.expression))
