"""Structured output: an agent's final answer checked against the JSON schema it declares.

Rule: pure — the answer text in, the canonical JSON or the validation error out. An
invalid answer gets one corrective attempt: the core records the error as a user-side
entry (StructuredOutputInvalid) and asks the model again in the same turn; a second
invalid answer fails the turn with the error (see agents.handlers.on_llm_completed).

Agent file:

    [agents.extractor.output_schema]
    type = "object"
    required = ["name", "age"]
    properties = { name = { type = "string" }, age = { type = "integer" } }
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator

from agents.llm import canonical_json

__all__ = ["MAX_CORRECTIONS", "correction_text", "validate_answer"]

MAX_CORRECTIONS = 1

# A model often wraps JSON in a Markdown code fence; the value inside is the answer.
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def validate_answer(schema: dict[str, Any], text: str) -> tuple[str | None, str | None]:
    """(the answer as canonical JSON, None) when it matches `schema`, else (None, error)."""
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        value = json.loads(body)
    except ValueError as exc:
        return None, f"the answer is not JSON: {exc}"
    errors = sorted(
        Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path)
    )
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return None, f"at {first.json_path}: {first.message}{more}"
    return canonical_json(value), None


def correction_text(error: str) -> str:
    """The user-side entry the corrective attempt sends (derived from the event alone)."""
    return (
        f"Your answer does not match the required JSON schema: {error}. "
        "Answer again with only a JSON value that matches the schema."
    )
