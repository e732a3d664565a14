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
only block or warn.

A `classifier` rule asks a model (an LLM effect with purpose "guard", requested by the
core: agents._turn) whether the text passes, behind a cheap deterministic check:

    [[agents.assistant.guardrails]]
    name = "scope"
    on = "input"
    kind = "classifier"
    action = "block"                  # block | warn (a yes/no verdict locates no span)
    model = "claude-haiku-4-5"        # a catalog model
    prompt = "Answer BLOCK if the message is not about cooking, else ALLOW."
    block_if = ["(?i)bitcoin"]        # a match trips at once, no call
    allow_if = ["(?i)recipe"]         # a match passes at once, no call
    on_error = "block"                # the verdict is not BLOCK/ALLOW, or the call failed

`check` skips classifier rules (they run after the pure ones, on the recorded text):
`precheck` is the cheap check, `parse_verdict` reads the model's answer.
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

__all__ = [
    "CLASSIFIER",
    "LATER_GUARDRAIL_DEFAULTS",
    "GuardStage",
    "Guardrail",
    "Trip",
    "Verdict",
    "check",
    "classifier_rule",
    "guard_call_id",
    "parse_verdict",
    "precheck",
    "schema_problem",
]

GuardStage = Literal["input", "output"]
_REDACTABLE = ("substring", "regex", "max_length")
CLASSIFIER = "classifier"
# Fields added with the classifier kind, left out of a definition's hash at these values
# (agents.definitions.definition_hash) so existing definitions keep their hashes.
LATER_GUARDRAIL_DEFAULTS: dict[str, object] = {
    "model": None,
    "prompt": None,
    "allow_if": [],
    "block_if": [],
    "on_error": "block",
}


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
    kind: Literal[
        "substring", "regex", "max_length", "json_schema", "required_fields", "classifier"
    ]
    action: Literal["block", "redact", "warn"]
    pattern: str | None = None
    ignore_case: bool = False
    max: int | None = Field(default=None, ge=1)
    json_schema: dict[str, Any] | None = None
    fields: tuple[str, ...] = ()
    replacement: str = "[REDACTED]"
    # classifier: the model asked, its instructions (the system prompt of the call), the
    # cheap check's regexes, and what an unreadable verdict or a failed call means.
    model: str | None = None
    prompt: str | None = None
    allow_if: tuple[str, ...] = ()
    block_if: tuple[str, ...] = ()
    on_error: Literal["block", "allow"] = "block"

    _regex: re.Pattern[str] | None = PrivateAttr(default=None)
    _validator: Draft202012Validator | None = PrivateAttr(default=None)
    _allow: tuple[re.Pattern[str], ...] = PrivateAttr(default=())
    _block: tuple[re.Pattern[str], ...] = PrivateAttr(default=())

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
        if self.action == "redact" and k == CLASSIFIER:
            raise ValueError(
                "action: a classifier guardrail can block or warn, not redact (its model "
                "says yes or no, it does not locate the text to remove)"
            )
        if self.action == "redact" and k not in _REDACTABLE:
            raise ValueError(f"action: a {k} guardrail can block or warn, not redact")
        if k == CLASSIFIER:
            self._classifier_fields()
        elif self.model or self.prompt or self.allow_if or self.block_if:
            raise ValueError(
                "model: model, prompt, allow_if and block_if belong to a classifier guardrail"
            )
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

    def _classifier_fields(self) -> None:
        if not self.model:
            raise ValueError("model: a classifier guardrail needs model (a catalog model)")
        if not self.prompt or not self.prompt.strip():
            raise ValueError("prompt: a classifier guardrail needs a non-empty prompt")
        compiled: dict[str, tuple[re.Pattern[str], ...]] = {}
        for field in ("allow_if", "block_if"):
            out: list[re.Pattern[str]] = []
            for pattern in getattr(self, field):
                try:
                    out.append(re.compile(pattern))
                except re.error as exc:
                    raise ValueError(
                        f"{field}: {pattern!r} is not a valid regular expression: {exc}"
                    ) from exc
            compiled[field] = tuple(out)
        self._allow, self._block = compiled["allow_if"], compiled["block_if"]

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
        if rule.on != on or rule.kind == CLASSIFIER:
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


Precheck = Literal["block", "allow"] | None


def precheck(rule: Guardrail, text: str) -> Precheck:
    """A classifier rule's cheap check: "block" when a block_if regex matches (checked
    first), "allow" when an allow_if one does, None when inconclusive (ask the model)."""
    if any(r.search(text) for r in rule._block):
        return "block"
    if any(r.search(text) for r in rule._allow):
        return "allow"
    return None


def parse_verdict(answer: str) -> Precheck:
    """The classifier's verdict: its answer's first word, BLOCK or ALLOW in any case
    (trailing punctuation ignored); None when it is anything else."""
    words = answer.split(maxsplit=1)
    if not words:
        return None
    word = words[0].strip(".,:;!\"'*`").lower()
    return "block" if word == "block" else "allow" if word == "allow" else None


def guard_call_id(session_id: str, seq: int, index: int) -> str:
    """The id of a classifier's call: the seq of its LlmCallRequested and the index of
    its rule among the agent's guardrails (so the request can be rebuilt from the log)."""
    return f"{session_id}/guard/{seq}/{index}"


def classifier_rule(rules: tuple[Guardrail, ...], call_id: str) -> tuple[int, Guardrail] | None:
    """(index, rule) of the classifier rule a guard call id names, or None."""
    tail = call_id.rsplit("/", 1)[-1]
    if not tail.isdigit() or int(tail) >= len(rules):
        return None
    rule = rules[int(tail)]
    return (int(tail), rule) if rule.kind == CLASSIFIER else None
