"""Provider-neutral LLM request and response types. Nothing here does IO.

The core builds an `LlmRequest` from the session state (system prompt, the entries of the
context window, the tool set) and records only its sha256 digest in `LlmCallRequested`.
An executor is handed that very object when it runs the call right after its decision
(agents.fsm.decide_built), or otherwise rebuilds the same `LlmRequest` from the same
state and checks the digest; it hands it to a provider adapter (agents/providers), which
translates it to its SDK and returns an `LlmResponse`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any, Literal

from agents.events import ThinkingBlock, ToolUse, Usage

__all__ = [
    "ContentBlock",
    "LlmRequest",
    "LlmResponse",
    "MediaBlock",
    "Message",
    "StopReason",
    "TextBlock",
    "ThinkingContent",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "canonical_json",
    "canonical_messages",
    "sha256_hex",
]


class StopReason:
    """Why a model stopped: the provider-neutral vocabulary of `LlmResponse.stop_reason`.

    The names are the Messages API's; every provider adapter maps its vendor's reasons
    onto these (OpenAI's "length" is MAX_TOKENS, "content_filter" REFUSAL, "tool_calls"
    TOOL_USE; Gemini's "MAX_TOKENS", "SAFETY"...). A reason outside this set is kept as
    the vendor said it and treated like END_TURN by the core.
    """

    END_TURN = "end_turn"  # the answer is complete
    TOOL_USE = "tool_use"  # the answer asks for tool calls
    STOP_SEQUENCE = "stop_sequence"  # a stop sequence ended the answer
    MAX_TOKENS = "max_tokens"  # cut at max_tokens: a tool call in it may be truncated
    REFUSAL = "refusal"  # the model (or a vendor filter) declined to answer
    PAUSE_TURN = "pause_turn"  # the vendor paused a long turn: send it back to continue
    CONTEXT_WINDOW = "model_context_window_exceeded"  # the context window is full

    ALL = frozenset(
        {END_TURN, TOOL_USE, STOP_SEQUENCE, MAX_TOKENS, REFUSAL, PAUSE_TURN, CONTEXT_WINDOW}
    )


# One encoder for every call: json.dumps with these options would build a new one each time.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace, UTF-8 kept. Equal values, equal text."""
    return _CANONICAL.encode(value)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# canonical_json of a request body, written directly (no dicts built, no keys sorted):
# each record's keys are spelled out in sorted order, strings are quoted by the very
# function json.dumps(ensure_ascii=False) quotes them with, and every other value goes
# through canonical_json itself. Equal text by construction (a property test checks).


def _cj_str(value: object) -> str:
    return encode_basestring(value) if type(value) is str else canonical_json(value)


def _cj_block(block: object) -> str:
    kind = type(block)
    if kind is TextBlock:
        return f'{{"text":{_cj_str(block.text)},"type":"text"}}'  # type: ignore[attr-defined]
    if kind is ToolUseBlock:
        b: ToolUseBlock = block  # type: ignore[assignment]
        arguments = canonical_json(json.loads(b.arguments_json or "{}"))
        return (
            f'{{"id":{_cj_str(b.call_id)},"input":{arguments},"name":{_cj_str(b.name)},'
            f'"type":"tool_use"}}'
        )
    if kind is ToolResultBlock:
        r: ToolResultBlock = block  # type: ignore[assignment]
        return (
            f'{{"content":{_cj_str(r.content)},"is_error":{_cj_scalar(r.is_error)},'
            f'"tool_use_id":{_cj_str(r.call_id)},"type":"tool_result"}}'
        )
    return canonical_json(block.to_dict())  # type: ignore[attr-defined]


def _cj_message(m: Message) -> str:
    text = m._canonical
    if text is None:
        content = ",".join([_cj_block(b) for b in m.content])
        text = f'{{"content":[{content}],"role":{_cj_str(m.role)}}}'
        # Frozen, and the text is a pure function of its fields (see Message).
        object.__setattr__(m, "_canonical", text)
    return text


def canonical_messages(messages: Sequence[Message]) -> str:
    """The messages' part of a request's canonical body: each message's canonical JSON,
    comma-separated (what LlmRequest.digest_continuing hashes after its start)."""
    return ",".join([_cj_message(m) for m in messages])


def _cj_tool(t: ToolSpec) -> str:
    text = t._canonical
    if text is None:
        text = (
            f'{{"description":{_cj_str(t.description)},'
            f'"input_schema":{canonical_json(t.input_schema)},"name":{_cj_str(t.name)}}}'
        )
        object.__setattr__(t, "_canonical", text)
    return text


def _cj_scalar(value: object) -> str:
    """canonical_json of a value that is mostly an int, a bool or None (as json writes
    them), without the encoder's call for those."""
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return canonical_json(value)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the model is told about a tool. `input_schema` is a JSON Schema object.

    `idempotent` is what the core is told: whether running the tool twice for one call
    is harmless. It is not part of what the model sees (`to_dict`), so it changes no
    request digest; a non-idempotent call whose outcome is unknown is never re-run
    blindly (agents._tick)."""

    name: str
    description: str
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    idempotent: bool = False
    # Its canonical JSON, made once per object: every LLM request digests its tools (the
    # input schema is the definition's and is not changed after the spec is made).
    _canonical: str | None = field(default=None, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


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


@dataclass(frozen=True, slots=True)
class ThinkingContent:
    """A thinking block of an earlier answer, sent back as the model gave it (Anthropic
    wants it, signature and all, before the tool uses it led to)."""

    block: ThinkingBlock
    type: Literal["thinking"] = "thinking"

    def to_dict(self) -> dict[str, Any]:
        b = self.block
        if b.provider != "anthropic":
            return {"type": "thought_signature", "provider": b.provider, "signature": b.signature}
        if b.redacted_data is not None:
            return {"type": "redacted_thinking", "data": b.redacted_data}
        return {"type": "thinking", "thinking": b.thinking, "signature": b.signature}

    @property
    def anthropic(self) -> bool:
        return self.block.provider == "anthropic"


@dataclass(frozen=True, slots=True)
class MediaBlock:
    """An image or document of a user message. The request (and its digest) names it by
    `sha256`, which pins the bytes; `data` (base64) is what adapters send, None when the
    attachment is a reference the executor has not resolved from the blob store yet."""

    media_type: str
    sha256: str
    data: str | None = None
    type: Literal["media"] = "media"

    def to_dict(self) -> dict[str, Any]:
        return {"type": "media", "media_type": self.media_type, "sha256": self.sha256}

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")


ContentBlock = TextBlock | ToolUseBlock | ToolResultBlock | ThinkingContent | MediaBlock


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["user", "assistant"]
    content: tuple[ContentBlock, ...]
    # Its canonical JSON, written once: agents.context.build_messages hands the same
    # Message objects to each call of a window, so a request's digest costs only the
    # messages that are new.
    _canonical: str | None = field(default=None, init=False, repr=False, compare=False)

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
    # Extended thinking: the token budget (0: off). In the digest only when on, so the
    # digests of requests without it are what they always were.
    thinking_budget: int = 0
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
            **({"thinking_budget": self.thinking_budget} if self.thinking_budget else {}),
        }

    def canonical_body(self) -> str:
        """canonical_json of to_dict() without the model (what digest() hashes)."""
        messages = canonical_messages(self.messages)
        return f"{self.canonical_head()}{messages}{self.canonical_tail()}"

    def canonical_head(self) -> str:
        """canonical_body up to its first message: the keys that sort before it."""
        return (
            f'{{"cache_prefix":{_cj_scalar(self.cache_prefix)},'
            f'"max_tokens":{_cj_scalar(self.max_tokens)},"messages":['
        )

    def canonical_tail(self) -> str:
        """canonical_body after its last message: the keys that sort after it."""
        tools = ",".join([_cj_tool(t) for t in self.tools])
        thinking = (
            f'"thinking_budget":{_cj_scalar(self.thinking_budget)},' if self.thinking_budget else ""
        )
        return (
            f'],"system":{_cj_str(self.system)},"temperature":{_cj_scalar(self.temperature)},'
            f'{thinking}"tools":[{tools}]}}'
        )

    def digest_continuing(self, start: Any, hashed: int) -> str:
        """digest() given `start`, a sha256 that has taken this request's canonical head
        and its first `hashed` messages (with the commas between them): only the rest is
        hashed. The caller vouches for `start` (agents.context keeps one per window,
        checked against the messages it covers)."""
        digest = self._digest
        if digest is None:
            h = start.copy()
            rest = canonical_messages(self.messages[hashed:])
            h.update(f"{',' if hashed and rest else ''}{rest}{self.canonical_tail()}".encode())
            digest = h.hexdigest()
            object.__setattr__(self, "_digest", digest)
        return digest

    def digest(self) -> str:
        """sha256 of the canonical request. The model is excluded so that a fallback model
        serves the *same* request; the model is recorded beside the digest."""
        digest = self._digest
        if digest is None:
            digest = sha256_hex(self.canonical_body())
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
    thinking: tuple[ThinkingBlock, ...] = ()  # the answer's thinking blocks, in order
