"""Provider-neutral LLM request and response types. Nothing here does IO.

The core builds an `LlmRequest` from the session state (system prompt, the entries of the
context window, the tool set) and records only its sha256 digest in `LlmCallRequested`.
An executor rebuilds the same `LlmRequest` from the same state, checks the digest, and
hands it to a provider adapter (agents/providers), which translates it to its SDK and
returns an `LlmResponse`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from agents.events import ToolUse, Usage

__all__ = [
    "ToolSpec",
    "TextBlock",
    "ToolUseBlock",
    "ToolResultBlock",
    "ContentBlock",
    "Message",
    "LlmRequest",
    "LlmResponse",
    "canonical_json",
    "sha256_hex",
]


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 kept. Equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the model is told about a tool. `input_schema` is a JSON Schema object."""

    name: str
    description: str
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


@dataclass(frozen=True, slots=True)
class TextBlock:
    text: str
    type: Literal["text"] = "text"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass(frozen=True, slots=True)
class ToolUseBlock:
    call_id: str
    name: str
    arguments_json: str
    type: Literal["tool_use"] = "tool_use"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "tool_use",
            "id": self.call_id,
            "name": self.name,
            "input": json.loads(self.arguments_json or "{}"),
        }


@dataclass(frozen=True, slots=True)
class ToolResultBlock:
    call_id: str
    content: str
    is_error: bool = False
    type: Literal["tool_result"] = "tool_result"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "tool_result",
            "tool_use_id": self.call_id,
            "content": self.content,
            "is_error": self.is_error,
        }


ContentBlock = Union[TextBlock, ToolUseBlock, ToolResultBlock]


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["user", "assistant"]
    content: tuple[ContentBlock, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "content": [b.to_dict() for b in self.content]}


@dataclass(frozen=True, slots=True)
class LlmRequest:
    """The exact request an LLM call sends (minus credentials and transport).

    `messages` alternate user/assistant and start with a user message, as the Messages
    API requires. `cache_prefix` asks the provider to cache the stable prefix (system
    prompt and tools) when it supports prompt caching.
    """

    model: str
    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]
    max_tokens: int
    temperature: float
    cache_prefix: bool = True
    # digest() computed once per object: the core digests a request when it records the
    # call, and the effect runner that is handed the same object checks that digest again.
    _digest: str | None = field(default=None, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "system": self.system,
            "messages": [m.to_dict() for m in self.messages],
            "tools": [t.to_dict() for t in self.tools],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "cache_prefix": self.cache_prefix,
        }

    def digest(self) -> str:
        """sha256 of the canonical request. The model is excluded so that a fallback model
        serves the *same* request; the model is recorded beside the digest."""
        digest = self._digest
        if digest is None:
            body = self.to_dict()
            del body["model"]
            digest = sha256_hex(canonical_json(body))
            # The object is frozen and the value a pure function of its fields.
            object.__setattr__(self, "_digest", digest)
        return digest


@dataclass(frozen=True, slots=True)
class LlmResponse:
    """What a provider returns for one call (after its own retries and fallbacks)."""

    model: str
    text: str
    tool_uses: tuple[ToolUse, ...]
    stop_reason: str
    usage: Usage
    attempts: int = 1
    fallback_used: bool = False
    circuits_opened: tuple[str, ...] = ()
