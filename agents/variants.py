"""Prompt variants (A/B tests): an agent's alternative system prompts or models, one per
session, assigned by weight from the session id.

Rule: assignment is a pure function of the session id and the variants — sha256 of the
id, read as a number in [0, 1), falls into one variant's share of the total weight — so
the same session always gets the same variant, and over many sessions each variant gets
its weight's share. The core assigns it when the session starts and records its name in
SessionStarted.variant; every later call of the session uses it (agents._turn and
agents.context build the request from `with_variant`). A variant the definition no
longer has (an upgrade, a handoff, a fork onto another agent) falls back to the agent's
own prompt and model. Nothing here does IO.

Agent file:

    [[agents.assistant.variants]]
    name = "terse"
    weight = 0.5
    system_prompt = "Answer in one sentence."   # optional: else the agent's
    model = "claude-haiku-4-5"                   # optional: else the agent's

    [[agents.assistant.variants]]
    name = "control"                             # no change: the agent as it is
    weight = 0.5
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from agents.llm import sha256_hex
from agents.tokens import estimate_tokens

if TYPE_CHECKING:  # the registry imports the definitions, which import this module
    from agents.registry import AgentInfo

__all__ = ["VARIANT_NAME_PATTERN", "Variant", "assign", "with_variant"]

VARIANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_SCALE = 2**64


class Variant(BaseModel):
    """One arm of an A/B test: `weight` relative to the others'; `system_prompt` and
    `model` replace the agent's when set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=VARIANT_NAME_PATTERN)
    weight: float = Field(gt=0, le=1_000_000)
    system_prompt: str | None = Field(default=None, min_length=1)
    model: str | None = None


def assign(session_id: str, variants: Sequence[Variant]) -> str | None:
    """The name of the variant `session_id` gets (None: the agent has no variants)."""
    if not variants:
        return None
    point = int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:8], "big") / _SCALE
    total = sum(v.weight for v in variants)
    edge = 0.0
    for v in variants:
        edge += v.weight / total
        if point < edge:
            return v.name
    return variants[-1].name  # float rounding left the last edge a hair below 1


def with_variant(info: AgentInfo, variant: str) -> AgentInfo:
    """`info` as the session with `variant` sees it: the variant's system prompt and model
    in place of the agent's (the pinned definition hash unchanged). `info` itself when
    the variant is empty, unknown to the definition, or changes nothing."""
    if not variant:
        return info
    defn = info.definition
    found = next((v for v in defn.variants if v.name == variant), None)
    if found is None or (found.system_prompt is None and found.model is None):
        return info
    prompt = found.system_prompt or defn.system_prompt
    changed = defn.model_copy(update={"system_prompt": prompt, "model": found.model or defn.model})
    return info._replace(
        definition=changed,
        system_prompt_hash=sha256_hex(prompt),
        prefix_tokens=info.prefix_tokens
        - estimate_tokens(defn.system_prompt)
        + estimate_tokens(prompt),
    )
