"""Wire format of the Anthropic Messages API, as the fake server speaks it.

Rule: what leaves here is byte-for-byte the shape the real API sends (JSON bodies, error
envelopes, the SSE event sequence message_start → ping → content_block_start →
content_block_delta* → content_block_stop → message_delta → message_stop), and the
requests it rejects are the ones the real API rejects with the same error type, so a
client that works against the fake works against the real thing. Nothing here does IO.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MIN_THINKING_BUDGET",
    "SAMPLING_REMOVED_IN",
    "FakeError",
    "FakeMessage",
    "FakeToolUse",
    "FakeUsage",
    "PromptCache",
    "Reply",
    "error_body",
    "estimate_tokens",
    "message_body",
    "redacted_data",
    "sign_thinking",
    "sse_events",
    "validate_request",
]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "The requested resource could not be found.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}
SAMPLING_REMOVED_IN = "2026-10-21"
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_MAX_CACHE_BREAKPOINTS = 4
MIN_THINKING_BUDGET = 1024
_DEFAULT_THINKING = "Let me think about what is asked, step by step."


def sign_thinking(thinking: str) -> str:
    """The signature the fake gives a thinking block (the real API's is opaque too): a
    block sent back with another text, or another signature, is refused."""
    return "sig_" + hashlib.sha256(f"fake-thinking/{thinking}".encode()).hexdigest()


def redacted_data(seed: str) -> str:
    """Opaque data of a redacted_thinking block, checkable by the fake like a signature."""
    body = hashlib.sha256(f"fake-redacted/{seed}".encode()).hexdigest()[:32]
    return f"rdt_{body}_{hashlib.sha256(body.encode()).hexdigest()[:16]}"


def _redacted_ok(data: Any) -> bool:
    parts = str(data).split("_")
    return (
        len(parts) == 3
        and parts[0] == "rdt"
        and hashlib.sha256(parts[1].encode()).hexdigest()[:16] == parts[2]
    )


@dataclass(frozen=True)
class FakeToolUse:
    """A tool_use block of a scripted answer. `id` defaults to a deterministic toolu_ id."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class FakeUsage:
    """Usage to report. A None field is estimated (≈ 4 characters a token), and the cache
    fields then follow the simulated prompt cache."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


@dataclass(frozen=True)
class FakeMessage:
    """A successful answer.

    Streams: text goes out in `text_chunk_chars` pieces, tool input JSON in
    `json_chunk_chars` pieces, with `event_delay_s` between SSE events. `latency_s`
    passes before the response starts. `break_after_events` cuts the stream after that
    many events: with `break_mode="error"` by an SSE `error` event of type `break_error`
    (how the real API reports overload mid-stream), with `"disconnect"` by closing the
    connection. `hold_after_events` pauses the stream after that many events until the
    test sets `release` (a threading.Event): proof that a client acts on early events
    before the stream is over.
    """

    text: str = "Hello from the fake Messages API."
    tool_uses: Sequence[FakeToolUse] = ()
    stop_reason: str | None = None
    usage: FakeUsage = field(default_factory=FakeUsage)
    text_chunk_chars: int = 8
    json_chunk_chars: int = 12
    event_delay_s: float = 0.0
    latency_s: float = 0.0
    break_after_events: int | None = None
    break_mode: str = "error"
    break_error: str = "overloaded_error"
    hold_after_events: int | None = None
    release: threading.Event | None = None
    # Extended thinking (only when the request enables it): the thinking block's text
    # (None: a default one), and whether a redacted_thinking block follows it.
    thinking: str | None = None
    redacted_thinking: bool = False


@dataclass(frozen=True)
class FakeError:
    """An error answer: HTTP `status` with the API's error envelope."""

    status: int
    error_type: str | None = None
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    latency_s: float = 0.0

    @property
    def type(self) -> str:
        return self.error_type or ERROR_TYPES.get(self.status, "api_error")


Reply = FakeMessage | FakeError


def error_body(error_type: str, message: str | None = None) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message or _DEFAULT_MESSAGES.get(error_type, "")},
    }


def estimate_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return max(1, math.ceil(len(text) / 4))


def _invalid(message: str) -> FakeError:
    return FakeError(400, "invalid_request_error", message)


def validate_request(body: Any, api_version: str = SAMPLING_REMOVED_IN) -> FakeError | None:
    """The 400 the real API would answer for `body` under the `anthropic-version` header
    `api_version`, or None when it is acceptable."""
    if not isinstance(body, dict):
        return _invalid("Request body must be a JSON object.")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return _invalid(f"{name}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return _invalid("max_tokens: Input should be greater than or equal to 1")
    for name in ("temperature", "top_p", "top_k"):
        if name in body and api_version >= SAMPLING_REMOVED_IN:
            # API version 2026-10-21 removed the sampling parameters, even at defaults.
            return _invalid(f"{name}: Extra inputs are not permitted")
    temperature = body.get("temperature")
    if temperature is not None and not 0.0 <= float(temperature) <= 1.0:
        return _invalid("temperature: Input should be less than or equal to 1")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return _invalid("messages: at least one message is required")
    thinking = body.get("thinking")
    if thinking is not None:
        problem = _thinking_problem(thinking, body["max_tokens"], messages)
        if problem is not None:
            return problem
    breakpoints = 0
    tools = body.get("tools") or []
    for i, tool in enumerate(tools):
        if not _TOOL_NAME.match(str(tool.get("name", ""))):
            return _invalid(
                f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )
        if "input_schema" not in tool:
            return _invalid(f"tools.{i}.custom.input_schema: Field required")
        breakpoints += "cache_control" in tool
    system = body.get("system")
    if isinstance(system, list):
        breakpoints += sum("cache_control" in block for block in system)
    previous_tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return _invalid(f"messages.{i}: all messages must have non-empty content")
        result_ids: set[str] = set()
        tool_ids: set[str] = set()
        for j, block in enumerate(blocks):
            kind = block.get("type")
            breakpoints += "cache_control" in block
            if kind == "text" and not block.get("text"):
                return _invalid("messages: text content blocks must be non-empty")
            if kind in ("image", "document"):
                problem = _media_problem(f"messages.{i}.content.{j}", kind, block, role)
                if problem is not None:
                    return problem
            if kind == "tool_use":
                if role != "assistant":
                    return _invalid(
                        f"messages.{i}.content.{j}: tool_use blocks must be in an assistant turn"
                    )
                tool_ids.add(str(block.get("id")))
            if kind == "tool_result":
                use_id = str(block.get("tool_use_id"))
                if use_id not in previous_tool_ids:
                    return _invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {use_id}. Each `tool_result` block must have "
                        "a corresponding `tool_use` block in the previous message."
                    )
                result_ids.add(use_id)
        missing = previous_tool_ids - result_ids
        if missing:
            return _invalid(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(missing))}. Each `tool_use` block must "
                "have a corresponding `tool_result` block in the next message."
            )
        previous_tool_ids = tool_ids
    if breakpoints > _MAX_CACHE_BREAKPOINTS:
        return _invalid(
            f"A maximum of {_MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )
    return None


_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _media_problem(where: str, kind: str, block: dict[str, Any], role: Any) -> FakeError | None:
    """The API's checks of an image or document block with a base64 source."""
    if role != "user":
        return _invalid(f"{where}: {kind} blocks are only allowed in user messages")
    source = block.get("source") or {}
    if source.get("type") != "base64":
        return None  # url / file sources: not what turnlog sends
    allowed = _IMAGE_TYPES if kind == "image" else ("application/pdf",)
    if source.get("media_type") not in allowed:
        spelled = ", ".join(f"'{t}'" for t in allowed)
        return _invalid(f"{where}.{kind}.source.base64.media_type: Input should be {spelled}")
    try:
        base64.b64decode(str(source.get("data", "")), validate=True)
    except ValueError:
        return _invalid(f"{where}.{kind}.source.base64.data: invalid base64 data")
    return None


def thinking_enabled(body: Any) -> bool:
    thinking = body.get("thinking") if isinstance(body, dict) else None
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def _thinking_problem(thinking: Any, max_tokens: int, messages: list[Any]) -> FakeError | None:
    """The real API's checks of extended thinking: the budget, every thinking block's
    signature, and the rule that with thinking on the last assistant message — the one
    whose tool uses the request answers — starts with its thinking block."""
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        return _invalid("thinking.type: Input should be 'enabled' or 'disabled'")
    if thinking["type"] == "disabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < MIN_THINKING_BUDGET:
        return _invalid(
            f"thinking.enabled.budget_tokens: Input should be greater than or equal to "
            f"{MIN_THINKING_BUDGET}"
        )
    if budget >= max_tokens:
        return _invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
    last_assistant = None
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for j, block in enumerate(content if isinstance(content, list) else ()):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "thinking" and block.get("signature") != sign_thinking(
                str(block.get("thinking", ""))
            ):
                return _invalid(
                    f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                )
            if kind == "redacted_thinking" and not _redacted_ok(block.get("data")):
                return _invalid(
                    f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
                )
        if isinstance(message, dict) and message.get("role") == "assistant":
            last_assistant = i
    if last_assistant is None:
        return None
    content = messages[last_assistant].get("content")
    blocks = content if isinstance(content, list) else [{"type": "text"}]
    uses_tools = any(isinstance(b, dict) and b.get("type") == "tool_use" for b in blocks)
    first = blocks[0].get("type") if blocks and isinstance(blocks[0], dict) else None
    if uses_tools and first not in ("thinking", "redacted_thinking"):
        return _invalid(
            f"messages.{last_assistant}.content.0.type: Expected `thinking` or "
            f"`redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final "
            "`assistant` message must start with a thinking block (preceeding the lastmost "
            "set of `tool_use` and `tool_result` blocks). We recommend you include thinking "
            "blocks from previous turns. To avoid this requirement, disable `thinking`. "
            "Please consult our documentation at "
            "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
        )
    return None


class PromptCache:
    """Simulates prompt caching the way the API documents it.

    The request is a sequence of blocks: tools, then system, then the messages' content
    blocks. A `cache_control` breakpoint caches the prefix ending at its block. On a
    request, the longest prefix already cached is looked up at each breakpoint and at up
    to `lookback` block boundaries before it (the API checks about 20); it is *read*
    (`cache_read_input_tokens`), the blocks from its end to the last breakpoint are
    *written* (`cache_creation_input_tokens`), and only what follows the last breakpoint
    is uncached input (`input_tokens`). The `cache_control` markers themselves are not
    part of the cached content: moving a breakpoint forward still hits the older prefix.

    Simplifications: tokens are estimated (~4 characters each, per block); one minimum
    cacheable length for every model (`min_tokens`, default 0: the real API's is 1,024
    to 4,096 depending on the model; a shorter prefix is neither written nor read); and
    entries never expire (the API's last 5 minutes, refreshed on every hit: a test or a
    benchmark session is shorter). Not thread-safe; the server calls it under its lock.
    """

    def __init__(self, *, min_tokens: int = 0, lookback: int = 20) -> None:
        self.min_tokens = min_tokens
        self.lookback = lookback
        self._seen: set[str] = set()

    @staticmethod
    def blocks(body: Mapping[str, Any]) -> list[Any]:
        parts: list[Any] = list(body.get("tools") or [])
        system = body.get("system")
        if isinstance(system, str):
            parts.append({"type": "text", "text": system})
        elif isinstance(system, list):
            parts.extend(system)
        for message in body.get("messages") or []:
            content = message.get("content")
            parts.extend(content if isinstance(content, list) else [{"text": content}])
        return parts

    def split(self, body: Mapping[str, Any]) -> tuple[int, int, int]:
        """(uncached input tokens, cache write tokens, cache read tokens) of `body`."""
        parts = self.blocks(body)
        tokens = [estimate_tokens(_without_marker(p)) for p in parts]
        total = sum(tokens) or 1
        breakpoints = [i for i, p in enumerate(parts) if "cache_control" in p]
        if not breakpoints:
            return total, 0, 0
        keys: list[str] = []
        running = hashlib.sha256(str(body.get("model")).encode())
        for part in parts:
            running.update(json.dumps(_without_marker(part), sort_keys=True).encode())
            keys.append(running.copy().hexdigest())
        prefix_tokens = [0]
        for t in tokens:
            prefix_tokens.append(prefix_tokens[-1] + t)
        hit = -1  # index of the last block of the longest prefix read from the cache
        for point in breakpoints:
            for end in range(point, max(-1, point - self.lookback - 1), -1):
                if keys[end] in self._seen:
                    hit = max(hit, end)
                    break
        last = breakpoints[-1]
        if prefix_tokens[last + 1] < self.min_tokens:
            return total, 0, 0
        for point in breakpoints:
            if prefix_tokens[point + 1] >= self.min_tokens:
                self._seen.add(keys[point])
        read = prefix_tokens[hit + 1]
        written = prefix_tokens[last + 1] - read
        uncached = max(1, total - prefix_tokens[last + 1])
        return uncached, written, read


def _without_marker(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _tool_id(reply_id: str, index: int, tool: FakeToolUse) -> str:
    if tool.id:
        return tool.id
    return "toolu_" + hashlib.sha256(f"{reply_id}/{index}".encode()).hexdigest()[:24]


def _stop_reason(reply: FakeMessage) -> str:
    return reply.stop_reason or ("tool_use" if reply.tool_uses else "end_turn")


def _thinking_blocks(reply: FakeMessage, message_id: str) -> list[dict[str, Any]]:
    """The thinking blocks an answer starts with when the request enables thinking."""
    text = reply.thinking if reply.thinking is not None else _DEFAULT_THINKING
    blocks: list[dict[str, Any]] = [
        {"type": "thinking", "thinking": text, "signature": sign_thinking(text)}
    ]
    if reply.redacted_thinking:
        blocks.append({"type": "redacted_thinking", "data": redacted_data(message_id)})
    return blocks


def _usage(
    reply: FakeMessage,
    split: tuple[int, int, int],
    thinking: Sequence[dict[str, Any]] = (),
) -> dict[str, int]:
    uncached, written, read = split
    out = reply.usage.output_tokens
    if out is None:
        # Thinking is billed as output, like the real API bills it.
        out = estimate_tokens(
            reply.text
            + "".join(json.dumps(dict(t.input)) for t in reply.tool_uses)
            + "".join(str(b.get("thinking") or b.get("data")) for b in thinking)
        )
    return {
        "input_tokens": reply.usage.input_tokens
        if reply.usage.input_tokens is not None
        else uncached,
        "cache_creation_input_tokens": (
            reply.usage.cache_creation_input_tokens
            if reply.usage.cache_creation_input_tokens is not None
            else written
        ),
        "cache_read_input_tokens": (
            reply.usage.cache_read_input_tokens
            if reply.usage.cache_read_input_tokens is not None
            else read
        ),
        "output_tokens": out,
    }


def message_body(
    reply: FakeMessage,
    *,
    model: str,
    message_id: str,
    split: tuple[int, int, int],
    thinking: bool = False,
) -> dict[str, Any]:
    """The JSON body of a non-streamed answer (`thinking`: the request enabled it)."""
    content: list[dict[str, Any]] = _thinking_blocks(reply, message_id) if thinking else []
    thought = list(content)
    if reply.text or not reply.tool_uses:
        content.append({"type": "text", "text": reply.text})
    for i, tool in enumerate(reply.tool_uses):
        content.append(
            {
                "type": "tool_use",
                "id": _tool_id(message_id, i, tool),
                "name": tool.name,
                "input": dict(tool.input),
            }
        )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": _usage(reply, split, thought),
    }


def _chunks(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _thinking_events(
    block: dict[str, Any], index: int, chunk: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    def delta(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}

    if block["type"] == "redacted_thinking":
        start = {"type": "content_block_start", "index": index, "content_block": block}
        yield "content_block_start", start
    else:
        empty = {"type": "thinking", "thinking": "", "signature": ""}
        start = {"type": "content_block_start", "index": index, "content_block": empty}
        yield "content_block_start", start
        for piece in _chunks(block["thinking"], chunk):
            yield delta({"type": "thinking_delta", "thinking": piece})
        yield delta({"type": "signature_delta", "signature": block["signature"]})
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def sse_events(
    reply: FakeMessage,
    *,
    model: str,
    message_id: str,
    split: tuple[int, int, int],
    thinking: bool = False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) of a streamed answer, in the order the real API sends them
    (`thinking`: the request enabled it, so thinking blocks come first)."""
    thought = _thinking_blocks(reply, message_id) if thinking else []
    usage = _usage(reply, split, thought)
    start_usage = dict(usage, output_tokens=1)
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )
    yield "ping", {"type": "ping"}
    index = 0
    for block in thought:
        yield from _thinking_events(block, index, reply.text_chunk_chars)
        index += 1
    if reply.text or not reply.tool_uses:
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for piece in _chunks(reply.text, reply.text_chunk_chars):
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
        index += 1
    for i, tool in enumerate(reply.tool_uses):
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {
                    "type": "tool_use",
                    "id": _tool_id(message_id, i, tool),
                    "name": tool.name,
                    "input": {},
                },
            },
        )
        # The real API opens every tool input with an empty partial_json.
        for piece in ["", *_chunks(json.dumps(dict(tool.input)), reply.json_chunk_chars)]:
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
        index += 1
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}
