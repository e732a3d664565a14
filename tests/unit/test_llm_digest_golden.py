"""The request digest is part of the log's contract: every LlmCallRequested records it,
and replay (`turnlog replay --verify`) and a restarted worker rebuild the request and
compare. A change in how the digest is computed would make every recorded call look
tampered with, so it is pinned here to the value the first release computed for one
request that exercises every block type, non-ASCII text and escapes."""

from __future__ import annotations

from agents.llm import LlmRequest, Message, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock

REQUEST = LlmRequest(
    model="claude-x",
    system='You are a careful assistant. Ünïcødé — "quotes" and \\ backslashes\n',
    messages=(
        Message("user", (TextBlock("what is 6*7? 日本語 \U0001f600"),)),
        Message(
            "assistant",
            (
                TextBlock("let me compute"),
                ToolUseBlock("toolu_1", "calculator", '{"expression": "6*7"}'),
            ),
        ),
        Message("user", (ToolResultBlock("toolu_1", "42", False),)),
        Message("assistant", (ToolUseBlock("toolu_2", "shell", '{"command": "rm -rf /"}'),)),
        Message(
            "user",
            (
                ToolResultBlock("toolu_2", "denied by policy", True),
                TextBlock("and 7*8?"),
            ),
        ),
    ),
    tools=(
        ToolSpec(
            "calculator",
            "Evaluate arithmetic.",
            {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        ),
        ToolSpec(
            "shell",
            "Run a command.",
            {
                "type": "object",
                "properties": {"command": {"type": "string"}},
            },
        ),
    ),
    max_tokens=1024,
    temperature=0.25,
)

# Computed by the code of the first release (commit e624509) for REQUEST.
RELEASED_DIGEST = "ebbc9ac76918096c40704643209f86d94ce684df715ecaf880dde88aad3833ba"


def test_the_request_digest_is_the_one_the_first_release_computed() -> None:
    assert REQUEST.digest() == RELEASED_DIGEST


def test_the_model_is_not_part_of_the_digest_but_everything_else_is() -> None:
    import dataclasses

    assert dataclasses.replace(REQUEST, model="claude-y").digest() == RELEASED_DIGEST
    for change in (
        {"max_tokens": 1025},
        {"temperature": 0.5},
        {"system": "other"},
        {"cache_prefix": False},
        {"messages": REQUEST.messages[:-2]},
    ):
        assert dataclasses.replace(REQUEST, **change).digest() != RELEASED_DIGEST, change
