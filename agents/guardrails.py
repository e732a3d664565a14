"""Guardrails: deterministic checks on the user's input and the model's output, per agent.

Rule: a guardrail is data and its check is a pure function of the rule and the text —
no IO, no clock. The core evaluates the input rules before the user's message is
recorded and the output rules before the model's answer is recorded, so a `redact`
rule's match never reaches the log and a `block` rule's text is never stored at all.
A trip's `detail` says what tripped without quoting the text (it is stored).

Agent file:

    [[agents.assistant.guardrails]]
    name = "no-card-numbers"
    on = "input"                      # input | output
    kind = "regex"                    # substring | regex | max_length | json_schema |
                                      # required_fields
    pattern = '\\b(?:\\d[ -]?){13,16}\\b'
    action = "redact"                 # block | redact | warn

Rules run in file order on the text the previous ones left (a redaction is seen by
the rules after it); the first `block` ends the evaluation. `redact` replaces every
match with `replacement` (substring, regex) or cuts the text to `max` characters
(max_length); json_schema and required_fields judge the whole text as JSON and can
only block or warn. (A classifier-backed guard, an LLM effect, is not here.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

__all__ = ["GuardStage", "Guardrail", "Trip", "Verdict", "check", "schema_problem"]

GuardStage = Literal["input", "output"]
_REDACTABLE = ("substring", "regex", "max_length")


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why `schema` is not a valid JSON Schema (2020-12), or None."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    return None


class Guardrail(BaseModel):
    """One rule (see the module docstring). `pattern`: the substring or regex;
    `ignore_case` for both; `max`: the length limit in characters; `json_schema`: the
    schema the text (as JSON) must match; `fields`: the keys a JSON object must have."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    on: GuardStage
    kind: Literal["substring", "regex", "max_length", "json_schema", "required_fields"]
    action: Literal["block", "redact", "warn"]
    pattern: str | None = None
    ignore_case: bool = False
    max: int | None = Field(default=None, ge=1)
    json_schema: dict[str, Any] | None = None
    fields: tuple[str, ...] = ()
    replacement: str = "[REDACTED]"

    _regex: re.Pattern[str] | None = PrivateAttr(default=None)
    _validator: Draft202012Validator | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _by_kind(self) -> Guardrail:
        k = self.kind
        if k in ("substring", "regex") and not self.pattern:
            raise ValueError(f"pattern: a {k} guardrail needs a non-empty pattern")
        if k == "max_length" and self.max is None:
            raise ValueError("max: a max_length guardrail needs max (characters)")
        if k == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema: a json_schema guardrail needs json_schema (a table)")
        if k == "required_fields" and not self.fields:
            raise ValueError("fields: a required_fields guardrail needs at least one field")
        if self.action == "redact" and k not in _REDACTABLE:
            raise ValueError(f"action: a {k} guardrail can block or warn, not redact")
        flags = re.IGNORECASE if self.ignore_case else 0
        if k == "regex":
            try:
                self._regex = re.compile(self.pattern or "", flags)
            except re.error as exc:
                raise ValueError(f"pattern: not a valid regular expression: {exc}") from exc
        elif k == "substring":
            self._regex = re.compile(re.escape(self.pattern or ""), flags)
        if self.json_schema is not None:
            problem = schema_problem(self.json_schema)
            if problem is not None:
                raise ValueError(f"json_schema: {problem}")
            self._validator = Draft202012Validator(self.json_schema)
        return self

    def test(self, text: str) -> tuple[str | None, str]:
        """(why it trips, or None; the text with this rule's redaction applied)."""
        k = self.kind
        if k == "substring" and not self.ignore_case:  # str's search: no regex needed
            pattern = self.pattern or ""
            n = text.count(pattern)
            if not n:
                return None, text
            return f"{n} match(es) of the substring", text.replace(pattern, self.replacement)
        if self._regex is not None:
            found, n = self._regex.subn(self.replacement, text)
            if not n:
                return None, text
            return f"{n} match(es) of the {k}", found
        if k == "max_length":
            limit = self.max or 0
            if len(text) <= limit:
                return None, text
            return f"{len(text)} characters, over the limit of {limit}", text[:limit]
        try:
            value = json.loads(text)
        except ValueError as exc:
            return f"not JSON ({type(exc).__name__} at position {getattr(exc, 'pos', 0)})", text
        if k == "required_fields":
            if not isinstance(value, dict):
                return f"a JSON {type(value).__name__}, not an object with fields", text
            missing = [f for f in self.fields if f not in value]
            return (f"missing field(s) {', '.join(missing)}" if missing else None), text
        assert self._validator is not None
        error = next(iter(self._validator.iter_errors(value)), None)
        if error is None:
            return None, text
        # The keyword and the place, never the value (a trip's detail is stored).
        return f"fails the schema's {error.validator!r} at {error.json_path}", text


@dataclass(frozen=True, slots=True)
class Trip:
    rule: str
    kind: str
    action: str
    on: str
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """`text`: what may be recorded (redacted); `blocked`: the trip that blocks it."""

    text: str
    trips: tuple[Trip, ...]
    blocked: Trip | None = None


def check(rules: Iterable[Guardrail], on: GuardStage, text: str) -> Verdict:
    """Run the `on` rules over `text` in order (see the module docstring)."""
    trips: list[Trip] = []
    for rule in rules:
        if rule.on != on:
            continue
        why, redacted = rule.test(text)
        if why is None:
            continue
        trip = Trip(rule.name, rule.kind, rule.action, on, why)
        trips.append(trip)
        if rule.action == "block":
            return Verdict(text, tuple(trips), trip)
        if rule.action == "redact":
            text = redacted
    return Verdict(text, tuple(trips))
