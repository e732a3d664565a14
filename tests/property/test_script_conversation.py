"""The scripted model's view of a request (agents/providers/_script.Conversation.of),
computed in one pass, equals the plain definition of each field."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.llm import LlmRequest, Message, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock
from agents.providers._script import Conversation

IDS = st.sampled_from(["c1", "c2", "c3"])  # few ids: repeated calls of an id happen
TEXT = st.sampled_from(["", "hi", "2+2"])
BLOCKS = st.one_of(
    st.builds(TextBlock, TEXT),
    st.builds(ToolUseBlock, IDS, st.sampled_from(["calc", "search"]), st.just("{}")),
    st.builds(ToolResultBlock, IDS, TEXT, st.booleans()),
)
MESSAGES = st.lists(
    st.builds(
        Message, st.sampled_from(["user", "assistant"]), st.lists(BLOCKS, max_size=3).map(tuple)
    ),
    max_size=8,
).map(tuple)


def reference(request: LlmRequest, model: str) -> Conversation:
    """Each field as its definition says (the implementation before the one pass)."""
    names: dict[str, str] = {}
    user_index, turn = -1, 0
    for i, message in enumerate(request.messages):
        for block in message.content:
            if isinstance(block, ToolUseBlock):
                names[block.call_id] = block.name
        if message.role == "user" and any(
            isinstance(b, TextBlock) and b.text for b in message.content
        ):
            user_index, turn = i, turn + 1
    user_text = ""
    if user_index >= 0:
        user_text = "\n".join(
            b.text for b in request.messages[user_index].content if isinstance(b, TextBlock)
        )
    last = request.messages[-1] if request.messages else None
    results = tuple(
        (names.get(b.call_id, ""), b.content, b.is_error)
        for b in (last.content if last is not None and last.role == "user" else ())
        if isinstance(b, ToolResultBlock)
    )
    return Conversation(
        model=model,
        system=request.system,
        tools=frozenset(t.name for t in request.tools),
        user_text=user_text,
        last_is_tool_result=bool(results),
        tool_results=results,
        iteration=sum(1 for m in request.messages[user_index + 1 :] if m.role == "assistant"),
        llm_call=sum(1 for m in request.messages if m.role == "assistant"),
        turn=turn,
    )


@settings(max_examples=300)
@given(MESSAGES)
def test_conversation_of_equals_the_definition(messages: tuple[Message, ...]) -> None:
    request = LlmRequest(
        model="m",
        system="s",
        messages=messages,
        tools=(ToolSpec("calc", "d"),),
        max_tokens=10,
        temperature=0.0,
    )
    assert Conversation.of(request, "m") == reference(request, "m")
