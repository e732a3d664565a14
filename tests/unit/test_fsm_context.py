"""How window entries become a Messages-API request (agents.context.build_messages)."""

from __future__ import annotations

from typing import Any

from agents.context import (
    OMITTED_PREAMBLE,
    SUMMARY_PREFIX,
    UNANSWERED_RESULT,
    build_messages,
    summarize_request,
)
from agents.state import Entry, EntryKind

U, A, T, R, S = (
    EntryKind.USER,
    EntryKind.ASSISTANT,
    EntryKind.TOOL_USE,
    EntryKind.TOOL_RESULT,
    EntryKind.SUMMARY,
)


def e(
    seq: int, kind: str, text: str = "", call_id: str = "", name: str = "", err: bool = False
) -> Entry:
    return Entry(seq, kind, text, call_id, name, err, 1)


def render(entries: list[Entry]) -> list[dict[str, Any]]:
    return [m.to_dict() for m in build_messages(entries)]


def test_plain_dialogue() -> None:
    assert render([e(1, U, "hi"), e(2, A, "hello"), e(3, U, "bye")]) == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
        {"role": "user", "content": [{"type": "text", "text": "bye"}]},
    ]


def test_interleaved_results_group_after_one_assistant_message() -> None:
    # a policy denial is answered right after its tool use, before the next tool use
    msgs = render(
        [
            e(1, U, "go"),
            e(2, A, "ok"),
            e(3, T, '{"a": 1}', "t1", "calc"),
            e(4, R, "denied", "t1", err=True),
            e(5, T, "{}", "t2", "clock"),
            e(6, R, "noon", "t2"),
        ]
    )
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert [b["type"] for b in msgs[1]["content"]] == ["text", "tool_use", "tool_use"]
    assert msgs[1]["content"][1]["input"] == {"a": 1}
    assert [(b["tool_use_id"], b["is_error"]) for b in msgs[2]["content"]] == [
        ("t1", True),
        ("t2", False),
    ]


def test_unanswered_uses_get_a_synthetic_error_and_results_come_before_text() -> None:
    msgs = render(
        [
            e(1, U, "go"),
            e(2, A, ""),
            e(3, T, "{}", "t1", "calc"),
            e(4, T, "{}", "t2", "calc"),
            e(5, R, "2", "t2"),
            e(6, U, "next"),
        ]
    )
    assert msgs[1]["content"][0]["type"] == "tool_use"  # empty text is not sent
    last = msgs[2]["content"]
    assert [(b["type"], b.get("tool_use_id")) for b in last] == [
        ("tool_result", "t2"),
        ("tool_result", "t1"),
        ("text", None),
    ]
    assert last[1]["content"] == UNANSWERED_RESULT and last[1]["is_error"]


def test_window_starting_with_the_assistant_gets_a_preamble() -> None:
    msgs = render([e(5, A, "earlier answer"), e(6, U, "and now?")])
    assert msgs[0] == {"role": "user", "content": [{"type": "text", "text": OMITTED_PREAMBLE}]}
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]


def test_summary_is_a_user_text_and_merges_with_the_next_user_message() -> None:
    msgs = render([e(9, S, "they talked"), e(3, U, "hi")])
    assert msgs == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": SUMMARY_PREFIX + "they talked"},
                {"type": "text", "text": "hi"},
            ],
        }
    ]


def test_empty_assistant_message_is_dropped_and_users_merge() -> None:
    msgs = render([e(1, U, "a"), e(2, A, ""), e(3, U, "b")])
    assert msgs == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_orphan_and_duplicate_results_are_not_sent() -> None:
    msgs = render(
        [
            e(1, U, "a"),
            e(2, R, "stray", "x"),
            e(3, A, "b"),
            e(4, T, "{}", "t", "c"),
            e(5, R, "one", "t"),
            e(6, R, "two", "t"),
        ]
    )
    results = [b for m in msgs for b in m["content"] if b["type"] == "tool_result"]
    assert [(b["tool_use_id"], b["content"]) for b in results] == [("t", "one")]


def test_tool_use_with_non_object_arguments_is_sent_with_empty_input() -> None:
    msgs = render([e(1, U, "a"), e(2, A, ""), e(3, T, "{oops", "t", "c"), e(4, R, "bad", "t")])
    assert msgs[1]["content"][0]["input"] == {}


def test_summarize_request_is_a_transcript_without_tools() -> None:
    req = summarize_request(
        [
            e(1, U, "hi"),
            e(2, A, "hello"),
            e(3, T, "{}", "t1", "calc"),
            e(4, R, "2", "t1", err=True),
        ],
        model="scripted-summarizer",
        max_tokens=100,
    )
    body = req.to_dict()
    assert body["tools"] == [] and body["temperature"] == 0.0 and not body["cache_prefix"]
    text = body["messages"][0]["content"][0]["text"]
    for piece in (
        "[user]\nhi",
        "[assistant]\nhello",
        "[tool call calc id=t1]",
        "[tool result error id=t1]\n2",
    ):
        assert piece in text


def test_the_window_memo_stays_within_its_bounds_and_changes_nothing() -> None:
    """build_messages remembers windows in the memo it is given (the shell's), least
    recently used first out, by count and by text. Whatever it keeps or evicts, the
    messages are those of a build from scratch (no memo)."""
    from agents.context import ContextMemo

    memo = ContextMemo(max_windows=3, max_chars=200)
    sessions = [[e(1, U, f"session {k} says hello")] for k in range(5)]
    longest = 0
    for turn in range(2, 14, 2):
        for k, entries in enumerate(sessions):
            entries += [e(turn, A, f"answer {turn}"), e(turn + 1, U, f"{k} asks {turn}")]
            assert build_messages(entries, memo) == build_messages(entries)
            assert len(memo) <= 3
            kept = list(memo._built.values())
            assert memo.chars == sum(b.chars for b in kept)
            assert memo.chars <= 200 or len(memo) == 1
            longest = max(longest, *(len(b.entries) for b in kept))
        # the same windows again, most recent first: what the memo kept is used
        for entries in reversed(sessions):
            assert build_messages(entries, memo) == build_messages(entries)
    assert longest > 3  # windows of several turns were remembered, within the bounds
