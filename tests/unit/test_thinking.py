"""Extended thinking, end to end: an agent's thinking budget reaches the Messages API
through the real anthropic SDK, the answer's thinking blocks (signatures, redacted ones)
are kept in the session's events, and the request after the tool results sends them back
the way the API requires — which the fake Messages API checks as the real one does."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator

import anthropic
import pytest

from agents.context import build_llm_request
from agents.definitions import AgentDefinition
from agents.errors import AgentDefinitionError
from agents.events import (
    CompleteLlmCall,
    CompleteToolCall,
    LlmCallCompleted,
    SendMessage,
    ThinkingBlock,
    ToolUse,
    Usage,
)
from agents.llm import (
    LlmRequest,
    Message,
    TextBlock,
    ThinkingContent,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)
from agents.pricing import cost_nanos, model_info
from agents.providers import ProviderError, RetryPolicy
from agents.providers.anthropic import AnthropicProvider, build_params
from agents.providers.gemini import GeminiProvider
from agents.state_codec import state_from_dict, state_to_dict
from schemas import codec
from tests.fakes._messages_api import redacted_data, sign_thinking, validate_request
from tests.fakes.anthropic_server import (
    FAKE_API_KEY,
    FakeAnthropicServer,
    FakeMessage,
    FakeToolUse,
)
from tests.fakes.gemini_server import (
    FAKE_GEMINI_KEY,
    FakeFunctionCall,
    FakeGeminiServer,
    FakeGeneration,
    thought_signature,
)
from tests.unit.test_fsm_support import Driver, agent, make_registry

ASYNC = pytest.mark.asyncio(loop_scope="session")

MODEL = "claude-sonnet-4-5"  # thinks, by the catalog
ONCE = RetryPolicy(max_attempts=1)
CALC = ToolSpec(
    "calculator",
    "Evaluate arithmetic.",
    {"type": "object", "properties": {"expression": {"type": "string"}}},
)


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key=FAKE_API_KEY) as server:
        yield server


@pytest.fixture
def server(module_server: FakeAnthropicServer) -> FakeAnthropicServer:
    module_server.reset()
    return module_server


@pytest.fixture(params=[True, False], ids=["streamed", "not-streamed"])
async def provider(
    request: pytest.FixtureRequest, server: FakeAnthropicServer
) -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider(
        api_key=FAKE_API_KEY, base_url=server.base_url, retry=ONCE, streaming=request.param
    )
    yield p
    await p.aclose()


def thinking_agent(**overrides: object) -> AgentDefinition:
    fields: dict[str, object] = {
        "model": MODEL,
        "tools": ["calculator"],
        "delegates": [],
        "max_tokens": 4096,
        "thinking_budget": 2048,
    }
    return agent("thinker", **{**fields, **overrides})


def ask(*messages: Message, budget: int = 2048) -> LlmRequest:
    return LlmRequest(
        model=MODEL,
        system="You think before you answer.",
        messages=messages or (Message("user", (TextBlock("what is 17*23?"),)),),
        tools=(CALC,),
        max_tokens=4096,
        temperature=0.0,
        thinking_budget=budget,
    )


# --------------------------------------------------------------------------- provider


@ASYNC
async def test_the_budget_is_sent_and_the_thinking_blocks_come_back_verbatim(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    server.enqueue(FakeMessage("391", thinking="17*23 = 17*20 + 17*3.", redacted_thinking=True))
    response = await provider.complete(ask())
    body = server.requests[-1].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "temperature" not in body
    assert response.text == "391"
    first, second = response.thinking
    assert first == ThinkingBlock("17*23 = 17*20 + 17*3.", sign_thinking("17*23 = 17*20 + 17*3."))
    assert second.redacted_data is not None and second.redacted_data.startswith("rdt_")
    # Thinking is billed as output (the fake counts it there, as the API does).
    assert response.usage.output_tokens > len("391") // 4 + 5


@ASYNC
async def test_a_tool_result_follow_up_without_the_thinking_block_is_refused(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    use = ToolUseBlock("toolu_1", "calculator", '{"expression":"17*23"}')
    question = Message("user", (TextBlock("what is 17*23?"),))
    answer = Message("user", (ToolResultBlock("toolu_1", "391"),))
    # What the API refuses: thinking on, and the tool-calling message without its block
    # (sent through the SDK itself: our adapter never builds such a request).
    signed = ThinkingBlock("Use the calculator.", sign_thinking("Use the calculator."))
    params = build_params(
        ask(question, Message("assistant", (ThinkingContent(signed), use)), answer), MODEL
    )
    del params["messages"][1]["content"][0]
    refusal = validate_request(params)
    assert refusal is not None and "must start with a thinking block" in str(refusal.message)
    with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
        await provider._client.messages.create(**params)

    signed = ThinkingBlock(
        "I should use the calculator.", sign_thinking("I should use the calculator.")
    )
    thought = ThinkingContent(signed)
    server.enqueue(FakeMessage("It is 391."))
    ok = await provider.complete(ask(question, Message("assistant", (thought, use)), answer))
    assert ok.text == "It is 391."
    sent = server.requests[-1].body["messages"][1]["content"][0]
    assert sent == {"type": "thinking", "thinking": signed.thinking, "signature": signed.signature}

    forged = ThinkingContent(dataclasses.replace(signed, thinking="I changed my mind."))
    with pytest.raises(ProviderError) as caught:
        await provider.complete(ask(question, Message("assistant", (forged, use)), answer))
    assert "Invalid `signature`" in str(caught.value)


def test_thinking_is_only_sent_to_models_that_think() -> None:
    request = ask(Message("user", (TextBlock("hi"),)))
    assert "thinking" in build_params(request, MODEL)
    assert "thinking" not in build_params(request, "claude-3-5-haiku")  # catalog: no thinking
    assert "thinking" not in build_params(dataclasses.replace(request, thinking_budget=0), MODEL)
    # Without thinking the blocks of earlier answers are left out: the API takes them
    # only while thinking is on.
    block = ThinkingContent(ThinkingBlock("t", sign_thinking("t")))
    history = ask(
        Message("user", (TextBlock("hi"),)),
        Message("assistant", (block, TextBlock("hello"))),
        Message("user", (TextBlock("again"),)),
    )
    off = build_params(history, "claude-3-5-haiku")
    assert off["messages"][1]["content"] == [{"type": "text", "text": "hello"}]
    on = build_params(history, MODEL)
    assert on["messages"][1]["content"][0]["type"] == "thinking"


def test_a_request_without_thinking_keeps_its_digest() -> None:
    plain = dataclasses.replace(ask(), thinking_budget=0)
    assert '"thinking_budget"' not in plain.canonical_body()
    assert '"thinking_budget":2048' in ask().canonical_body()
    assert plain.digest() != ask().digest()


# --------------------------------------------------------------------------- core


def test_thinking_blocks_are_kept_in_the_log_and_sent_back_with_the_tool_results() -> None:
    registry = make_registry(thinking_agent())
    d = Driver(registry)
    d.send(SendMessage("what is 17*23?"), agent="thinker")
    first = build_llm_request(d.state, d.state.turn.llm.request, registry)  # type: ignore[union-attr]
    assert first.thinking_budget == 2048
    blocks = (
        ThinkingBlock("Use the calculator.", sign_thinking("Use the calculator.")),
        ThinkingBlock(redacted_data=redacted_data("x")),
    )
    events = d.send(
        CompleteLlmCall(
            call_id=d.llm_call_id,
            model=MODEL,
            text="",
            tool_uses=(ToolUse("toolu_1", "calculator", '{"expression":"17*23"}'),),
            stop_reason="tool_use",
            usage=Usage(10, 50),
            thinking=blocks,
        )
    )
    completed = next(e for e in events if isinstance(e.payload, LlmCallCompleted))
    assert completed.payload.thinking == blocks
    # The event survives the wire and the snapshot.
    assert codec.decode_event(codec.encode_event(completed)) == completed
    assert state_from_dict(state_to_dict(d.state)) == d.state
    d.send(CompleteToolCall("toolu_1", "391"))
    again = build_llm_request(d.state, d.state.turn.llm.request, registry)  # type: ignore[union-attr]
    assistant = again.messages[1]
    assert [type(b).__name__ for b in assistant.content] == [
        "ThinkingContent",
        "ThinkingContent",
        "ToolUseBlock",
    ]
    assert assistant.content[0] == ThinkingContent(blocks[0])
    # ... and the Messages API takes it (the fake checks signature and placement).
    assert validate_request(build_params(again, MODEL)) is None


@ASYNC
async def test_the_core_request_after_tool_results_is_accepted_by_the_api(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    """The whole circle: the core asks, the SDK answers with thinking and a tool use, the
    core records it and builds the next request, and the API accepts it."""
    registry = make_registry(thinking_agent())
    d = Driver(registry)
    d.send(SendMessage("what is 17*23?"), agent="thinker")
    first = build_llm_request(d.state, d.state.turn.llm.request, registry)  # type: ignore[union-attr]
    server.enqueue(FakeMessage("", tool_uses=[FakeToolUse("calculator", {"expression": "17*23"})]))
    answer = await provider.complete(first)
    assert answer.thinking and answer.tool_uses
    d.send(
        CompleteLlmCall(
            call_id=d.llm_call_id,
            model=answer.model,
            text=answer.text,
            tool_uses=tuple(ToolUse(u.call_id, u.name, u.arguments_json) for u in answer.tool_uses),
            stop_reason=answer.stop_reason,
            usage=answer.usage,
            thinking=answer.thinking,
        )
    )
    d.send(CompleteToolCall(answer.tool_uses[0].call_id, "391"))
    second = build_llm_request(d.state, d.state.turn.llm.request, registry)  # type: ignore[union-attr]
    assert second.digest() == d.state.turn.llm.request.request_digest  # type: ignore[union-attr]
    server.enqueue(FakeMessage("17*23 is 391."))
    final = await provider.complete(second)
    assert final.text == "17*23 is 391."
    assert server.requests[-1].status == 200


def test_thinking_tokens_are_priced_as_output() -> None:
    info = model_info(MODEL)
    usage = Usage(input_tokens=100, output_tokens=900)  # thinking is inside output
    assert cost_nanos(info, usage) == 100 * info.input_nanos + 900 * info.output_nanos


# --------------------------------------------------------------------------- definitions


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"thinking_budget": 512}, "at least 1024"),
        ({"thinking_budget": 4096}, "must be < max_tokens"),
        ({"model": "claude-3-5-haiku", "max_tokens": 8000}, "does not think"),
    ],
)
def test_a_bad_thinking_budget_names_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises((AgentDefinitionError, ValueError)) as caught:
        thinking_agent(**overrides)
    assert "thinking_budget" in str(caught.value)
    assert message in str(caught.value)


@ASYNC
async def test_a_tool_call_answered_by_a_vendor_without_thinking_is_continued_without_it(
    server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    """A fallback (or a switched model) answered the tool call: there is no thinking block
    to send back, so the request goes without thinking instead of being refused."""
    use = ToolUseBlock("call_1", "calculator", '{"expression":"17*23"}')
    question = Message("user", (TextBlock("what is 17*23?"),))
    answer = Message("user", (ToolResultBlock("call_1", "391"),))
    request = ask(question, Message("assistant", (use,)), answer)
    assert "thinking" not in build_params(request, MODEL)
    server.enqueue(FakeMessage("It is 391."))
    assert (await provider.complete(request)).text == "It is 391."


# --------------------------------------------------------------------------- gemini

GEMINI_3 = "gemini-3-pro-preview"


@pytest.fixture(scope="module")
def gemini_server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as server:
        yield server


@ASYNC
async def test_gemini_thought_signatures_are_kept_and_sent_back(
    gemini_server: FakeGeminiServer,
) -> None:
    gemini_server.reset()
    question = Message("user", (TextBlock("what is 17*23?"),))
    gemini_server.enqueue(
        FakeGeneration("", function_calls=[FakeFunctionCall("calculator", {"expression": "17*23"})])
    )
    async with GeminiProvider(
        api_key=FAKE_GEMINI_KEY, base_url=gemini_server.base_url, retry=ONCE
    ) as gemini:
        first = await gemini.complete(dataclasses.replace(ask(question), model=GEMINI_3))
        (kept,) = first.thinking
        assert kept == ThinkingBlock(signature=thought_signature("calculator"), provider="gemini")
        (use,) = first.tool_uses
        step = Message(
            "assistant",
            (ThinkingContent(kept), ToolUseBlock(use.call_id, use.name, use.arguments_json)),
        )
        answer = Message("user", (ToolResultBlock(use.call_id, "391"),))
        gemini_server.enqueue(FakeGeneration("It is 391."))
        second = await gemini.complete(
            dataclasses.replace(ask(question, step, answer), model=GEMINI_3)
        )
        assert second.text == "It is 391."
        sent = gemini_server.requests[-1].body["contents"][1]["parts"][0]
        assert sent["thoughtSignature"].rstrip("=").replace("-", "+").replace(
            "_", "/"
        ) == kept.signature.rstrip("=")
        forged = ThinkingContent(dataclasses.replace(kept, signature=thought_signature("shell")))
        with pytest.raises(ProviderError, match="Corrupted thought signature"):
            await gemini.complete(
                dataclasses.replace(
                    ask(question, Message("assistant", (forged, *step.content[1:])), answer),
                    model=GEMINI_3,
                )
            )
    # Claude never sees another vendor's signature, and does not think past it.
    params = build_params(ask(question, step, answer), MODEL)
    assert "thinking" not in params
    assert [b["type"] for b in params["messages"][1]["content"]] == ["tool_use"]
