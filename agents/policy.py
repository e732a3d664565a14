"""The tool-call policy engine: ordered rules, first match wins.

Rule: a policy is data (it lives in the agent file) and evaluating it is a pure function
of (tool name, arguments). A rule matches when its `tool` glob matches the tool name and
every predicate in `when` holds; its `action` is then the decision. When no rule
matches, `default` applies. Nothing here does IO.

Predicates look at one argument, addressed by a dotted path into the JSON arguments
(`"options.mode"`, `"paths.0"`), with one of a few small operators:

    equals / not_equals   the value is (not) equal to `value`
    in / not_in           the value is (not) one of the list `value`
    prefix                the value is a string starting with `value`
    glob                  the value is a string matching the fnmatch pattern `value`
    regex                 the value is a string in which the regex `value` is found
    exists                the argument is present (value true) or absent (value false)

A missing argument never matches equals/in/prefix/glob/regex and always matches
not_equals/not_in, so a rule like "deny shell unless command starts with 'ls'" cannot be
dodged by leaving the argument out. Booleans are not numbers here: `true` equals only
`true`, never `1`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents.events import PolicyAction

__all__ = ["ArgPredicate", "Policy", "PolicyDecision", "PolicyRule", "PredicateOp"]

JsonScalar = str | int | float | bool | None

_MISSING = object()

# Rule names the engine itself uses start with "@" (see agents._step); user rules may not.
RULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


class PredicateOp(str, Enum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    NOT_IN = "not_in"
    PREFIX = "prefix"
    GLOB = "glob"
    REGEX = "regex"
    EXISTS = "exists"


def _lookup(args: Any, path: str) -> Any:
    node = args
    for part in path.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                return _MISSING
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            i = int(part)
            if i >= len(node):
                return _MISSING
            node = node[i]
        else:
            return _MISSING
    return node


def _same(a: Any, b: Any) -> bool:
    # JSON true is not 1: Python's True == 1 would let a rule on a flag match a count.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


class ArgPredicate(BaseModel):
    """One condition on one argument."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arg: str = Field(min_length=1)
    op: PredicateOp = PredicateOp.EQUALS
    value: JsonScalar | tuple[JsonScalar, ...] = None

    @model_validator(mode="after")
    def _check_value(self) -> ArgPredicate:
        op, value = self.op, self.value
        if op in (PredicateOp.IN, PredicateOp.NOT_IN) and not isinstance(value, tuple):
            raise ValueError(f"op {op.value!r} needs a list value")
        if op in (PredicateOp.PREFIX, PredicateOp.GLOB, PredicateOp.REGEX) and not isinstance(
            value, str
        ):
            raise ValueError(f"op {op.value!r} needs a string value")
        if op is PredicateOp.REGEX:
            try:
                re.compile(str(value))
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from exc
        if op is PredicateOp.EXISTS and not isinstance(value, bool) and value is not None:
            raise ValueError("op 'exists' needs a boolean value (or none, meaning true)")
        return self

    def matches(self, args: Mapping[str, Any]) -> bool:
        found = _lookup(args, self.arg)
        op, value = self.op, self.value
        if op is PredicateOp.EXISTS:
            return (found is not _MISSING) == (value is not False)
        if found is _MISSING:
            return op in (PredicateOp.NOT_EQUALS, PredicateOp.NOT_IN)
        if op is PredicateOp.EQUALS:
            return _same(found, value)
        if op is PredicateOp.NOT_EQUALS:
            return not _same(found, value)
        if op is PredicateOp.IN:
            return any(_same(found, v) for v in value)  # type: ignore[union-attr]
        if op is PredicateOp.NOT_IN:
            return not any(_same(found, v) for v in value)  # type: ignore[union-attr]
        if not isinstance(found, str):
            return False
        if op is PredicateOp.PREFIX:
            return found.startswith(str(value))
        if op is PredicateOp.GLOB:
            return fnmatchcase(found, str(value))
        return re.search(str(value), found) is not None  # REGEX (re caches compiled patterns)


class PolicyRule(BaseModel):
    """`tool` is an fnmatch glob on the tool name (case-sensitive); all of `when` must
    hold. `reason` is what the model is told when the rule denies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=RULE_NAME_PATTERN)
    action: PolicyAction
    tool: str = Field(default="*", min_length=1)
    when: tuple[ArgPredicate, ...] = ()
    reason: str | None = None

    def matches(self, tool: str, args: Mapping[str, Any]) -> bool:
        return fnmatchcase(tool, self.tool) and all(p.matches(args) for p in self.when)


class PolicyDecision(NamedTuple):
    action: PolicyAction
    rule: str | None  # None when the default applied
    reason: str | None


class Policy(BaseModel):
    """Ordered rules, first match wins; `default` when none matches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: PolicyAction = PolicyAction.ALLOW
    rules: tuple[PolicyRule, ...] = ()

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[PolicyRule, ...]) -> tuple[PolicyRule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return rules

    def evaluate(self, tool: str, args: Mapping[str, Any]) -> PolicyDecision:
        for rule in self.rules:
            if rule.matches(tool, args):
                return PolicyDecision(rule.action, rule.name, rule.reason)
        return PolicyDecision(self.default, None, None)
