"""A deterministic LLM for demos, tests and benchmarks, driven by a script.

Rule: same request, same answer — text, tool calls (with ids derived from a hash of the
request's content and the call's index, so a re-issued call reproduces them and no two calls of one
conversation share one), usage and stop reason. Nothing is remembered between calls; see
`agents.providers._script` for the script language.

Failures are scriptable too (`error: {type: overloaded}`), and go through the same
retry/fallback loop as a real provider, so the core's LlmCallFailed and fallback paths
can be driven without HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from pathlib import Path
from typing import Any

from agents.events import ToolUse, Usage
from agents.llm import (
    LlmRequest,
    LlmResponse,
    MediaBlock,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    canonical_json,
)
from agents.providers._adapter import FallbackAdapter
from agents.providers._deltas import DeltaSink
from agents.providers._script import (
    Conversation,
    Script,
    ScriptedReply,
    load_script,
    parse_script,
    render,
)
from agents.providers.base import ErrorType
from agents.providers.breaker import BreakerRegistry
from agents.providers.retry import AttemptFailed, RetryPolicy, Sleep

__all__ = ["ScriptedProvider", "request_fingerprint", "split_chunks", "tool_call_id"]


def request_fingerprint(request: LlmRequest) -> str:
    """The request's digest (`LlmRequest.digest()`: sha256 of its canonical form, model
    excluded). The core computed it when it decided the call and the request memoizes it,
    so the worker's scripted calls hash nothing again."""
    return request.digest()


def tool_call_id(request_fingerprint: str, index: int) -> str:
    """Deterministic tool-call id from `request_fingerprint()` and the call's position.

    Unique within a conversation (each call's request differs from the previous ones).
    Two sessions that send byte-identical requests get the same ids (as they get the
    same answer): key anything cross-session by (session_id, call_id).
    """
    digest = hashlib.sha256(f"{request_fingerprint}/{index}".encode()).hexdigest()
    return f"toolu_{digest[:24]}"


def split_chunks(text: str, chunks: int) -> list[str]:
    """`text` cut into at most `chunks` pieces at word boundaries; "".join() gives it back."""
    if not text:
        return []
    words = text.split(" ")
    per = max(1, math.ceil(len(words) / chunks))
    pieces = [" ".join(words[i : i + per]) for i in range(0, len(words), per)]
    return [p + " " for p in pieces[:-1]] + [pieces[-1]]


def _estimate(value: str) -> int:
    return max(1, math.ceil(len(value) / 4))


def _estimate_request(request: LlmRequest) -> int:
    # ≈ 4 characters a token, counted without serializing the whole request again.
    size = len(request.system) + sum(
        len(t.name) + len(t.description) + len(canonical_json(t.input_schema))
        for t in request.tools
    )
    for message in request.messages:
        for block in message.content:
            if isinstance(block, TextBlock):
                size += len(block.text)
            elif isinstance(block, ToolUseBlock):
                size += len(block.name) + len(block.arguments_json)
            elif isinstance(block, ToolResultBlock):
                size += len(block.content)
            elif isinstance(block, MediaBlock):
                size += 1600 * 4  # an image's worth (agents.tokens.IMAGE_TOKENS)
    return max(1, math.ceil(size / 4))


class ScriptedProvider(FallbackAdapter):
    """`Provider` answering from a `Script`. Build it with `from_file`, `from_dict` or
    `tool_then_answer`. `latency_ms` of the script (or of a reply) passes before the
    first delta; zero latency means no sleep at all. `calls` counts answered attempts."""

    name = "scripted"

    def __init__(
        self,
        script: Script,
        *,
        retry: RetryPolicy | None = None,
        breakers: BreakerRegistry | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.script = script
        # A deterministic script fails the same way twice: one attempt per model, then
        # the next fallback model (whose rules may differ).
        self.retry = retry or RetryPolicy(max_attempts=1, base_delay_s=0.0, jitter=0.0)
        self.breakers = breakers
        self._sleep = sleep
        self.calls = 0

    def __repr__(self) -> str:
        s = self.script
        return (
            f"ScriptedProvider(rules={len(s.rules)}, steps={len(s.steps)}, "
            f"otherwise={s.otherwise is not None}, calls={self.calls})"
        )

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> ScriptedProvider:
        return cls(load_script(path), **options)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>", **options: Any) -> ScriptedProvider:
        return cls(parse_script(data, source), **options)

    @classmethod
    def tool_then_answer(
        cls,
        tool: str,
        arguments: dict[str, Any] | None = None,
        answer: str = "Done: {{tool_result}}",
        *,
        latency_ms: int = 0,
        **options: Any,
    ) -> ScriptedProvider:
        """Every turn: call `tool` once, then answer (the benchmark's turn shape)."""
        return cls.from_dict(
            {
                "defaults": {"latency_ms": latency_ms},
                "rules": [
                    {
                        "name": "call-tool",
                        "when": {"iteration": 0},
                        "respond": {
                            "text": "",
                            "tool_calls": [{"name": tool, "arguments": arguments or {}}],
                        },
                    },
                ],
                "otherwise": {"text": answer},
            },
            source="tool_then_answer",
            **options,
        )

    # ------------------------------------------------------------------ answering

    def select(
        self, request: LlmRequest, model: str, conversation: Conversation | None = None
    ) -> tuple[str, ScriptedReply] | None:
        """(rule name, reply) answering `request` sent to `model`, or None."""
        conversation = conversation or Conversation.of(request, model)
        for i, rule in enumerate(self.script.rules):
            if conversation.matches(rule.when):
                return rule.name or f"rules[{i}]", rule.respond
        if conversation.llm_call < len(self.script.steps):
            return f"steps[{conversation.llm_call}]", self.script.steps[conversation.llm_call]
        if self.script.otherwise is not None:
            return "otherwise", self.script.otherwise
        return None

    def respond(self, request: LlmRequest, model: str | None = None) -> LlmResponse:
        """The scripted answer, synchronously, without latency or deltas.

        Raises AttemptFailed for a scripted error or when nothing matches.
        """
        model = model or request.model
        conversation = Conversation.of(request, model)
        return self._answer(request, conversation, self.select(request, model, conversation))

    def _answer(
        self,
        request: LlmRequest,
        conversation: Conversation,
        picked: tuple[str, ScriptedReply] | None,
    ) -> LlmResponse:
        model = conversation.model
        if picked is None:
            raise AttemptFailed(
                f"No rule, step or otherwise of the script answers this request to "
                f"scripted/{model} (last user text: {conversation.user_text[:80]!r}).",
                error_type=ErrorType.NO_SCRIPTED_RESPONSE,
                retryable=False,
            )
        rule, reply = picked
        if reply.error is not None:
            raise AttemptFailed(
                f"{reply.error.message} (scripted by {rule} for scripted/{model})",
                error_type=_error_type(reply.error.type),
                retryable=reply.error.retryable,
            )
        variables = conversation.variables()
        text = str(render(reply.text, variables))
        fingerprint = request_fingerprint(request) if reply.tool_calls else ""
        tool_uses = tuple(
            ToolUse(
                call_id=tool_call_id(fingerprint, i),
                name=call.name,
                arguments_json=canonical_json(render(call.arguments, variables)),
            )
            for i, call in enumerate(reply.tool_calls)
        )
        if reply.usage is not None:
            usage = Usage(**reply.usage.model_dump())
        else:
            usage = Usage(
                input_tokens=_estimate_request(request),
                output_tokens=_estimate(text + "".join(t.arguments_json for t in tool_uses)),
            )
        return LlmResponse(
            model=model,
            text=text,
            tool_uses=tool_uses,
            stop_reason=reply.stop_reason or ("tool_use" if tool_uses else "end_turn"),
            usage=usage,
        )

    async def attempt(
        self, request: LlmRequest, model: str, deltas: DeltaSink, budget: float | None
    ) -> LlmResponse:
        """ONE scripted answer for `model` (see `agents.providers.routing.Adapter`), so a
        fallback chain may go from a scripted model to a real one and back."""
        conversation = Conversation.of(request, model)
        picked = self.select(request, model, conversation)
        latency_ms = self.script.defaults.latency_ms
        chunks = self.script.defaults.chunks
        if picked is not None:
            reply = picked[1]
            latency_ms = reply.latency_ms if reply.latency_ms is not None else latency_ms
            chunks = reply.chunks or chunks
        if latency_ms:
            await self._sleep(latency_ms / 1000.0)
        response = self._answer(request, conversation, picked)
        self.calls += 1
        for piece in split_chunks(response.text, chunks):
            await deltas(piece)
        return response


def _error_type(name: str) -> ErrorType:
    try:
        return ErrorType(name)
    except ValueError:
        return ErrorType.UNKNOWN
