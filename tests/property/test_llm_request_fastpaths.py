"""The request a call sends, and its digest, written the fast way equal the plain way.

- `LlmRequest.canonical_body()` (what digest() hashes, written without building dicts)
  is exactly `canonical_json(to_dict())` without the model, for any request;
- `build_messages` gives exactly what its previous, plainer implementation (kept here as
  the reference) gave, for any entry list — including orphan and duplicate results,
  tool uses with no assistant text, non-object arguments, summaries and empty texts.

A digest that changed would make every recorded call unverifiable on replay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agents.context import (
    OMITTED_PREAMBLE,
    SUMMARY_PREFIX,
    UNANSWERED_RESULT,
    ContextMemo,
    _tool_input,
    build_messages,
)
from agents.llm import (
    ContentBlock,
    LlmRequest,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    canonical_json,
    sha256_hex,
)
from agents.state import Entry, EntryKind

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
TEXT = st.text(max_size=30)  # any code point but surrogates: quotes, controls, non-ASCII
ARGUMENTS = st.one_of(
    st.just(""),
    st.builds(
        lambda v, indent: json.dumps(v, indent=indent, ensure_ascii=indent is None),
        JSON,
        st.sampled_from([None, 1]),
    ),
)
BLOCKS = st.one_of(
    st.builds(TextBlock, TEXT),
    st.builds(ToolUseBlock, TEXT, TEXT, ARGUMENTS),
    st.builds(ToolResultBlock, TEXT, TEXT, st.booleans()),
)
REQUESTS = st.builds(
    LlmRequest,
    model=TEXT,
    system=TEXT,
    messages=st.lists(
        st.builds(
            Message, st.sampled_from(["user", "assistant"]), st.lists(BLOCKS, max_size=4).map(tuple)
        ),
        max_size=5,
    ).map(tuple),
    tools=st.lists(
        st.builds(ToolSpec, TEXT, TEXT, st.dictionaries(st.text(max_size=5), JSON, max_size=3)),
        max_size=3,
    ).map(tuple),
    max_tokens=st.integers(),
    temperature=st.floats(allow_nan=True) | st.integers(-2, 2),
    cache_prefix=st.booleans(),
)


@settings(max_examples=400)
@given(REQUESTS)
def test_canonical_body_is_canonical_json_of_the_request_without_its_model(
    request: LlmRequest,
) -> None:
    body = request.to_dict()
    del body["model"]
    assert request.canonical_body() == canonical_json(body)
    assert request.digest() == sha256_hex(canonical_json(body))


def test_a_tool_use_whose_arguments_are_not_json_fails_both_ways_alike() -> None:
    request = LlmRequest(
        "m", "s", (Message("assistant", (ToolUseBlock("c", "n", "{bad"),)),), (), 1, 0.0
    )
    for write in (request.canonical_body, request.to_dict):
        try:
            write()
        except ValueError:
            continue
        raise AssertionError(f"{write.__name__} accepted arguments that are not JSON")


# ---------------------------------------------------------------- build_messages


def _reference_result_block(e: Entry) -> ToolResultBlock:
    return ToolResultBlock(e.call_id, e.text, e.is_error)


def reference_build_messages(entries: Sequence[Entry]) -> tuple[Message, ...]:
    out: list[tuple[str, list[ContentBlock]]] = []

    def add(role: str, blocks: list[ContentBlock]) -> None:
        if not blocks:
            return
        if out and out[-1][0] == role:
            out[-1][1].extend(blocks)
        else:
            out.append((role, list(blocks)))

    step: list[ContentBlock] | None = None  # the open assistant message
    uses: list[str] = []  # its tool use ids, in order
    results: dict[str, ToolResultBlock] = {}

    def close_step() -> None:
        nonlocal step, uses, results
        if step is not None:
            add("assistant", step)
            answered: list[ContentBlock] = [
                results.get(cid) or ToolResultBlock(cid, UNANSWERED_RESULT, True) for cid in uses
            ]
            # Results keep their arrival order; synthetic ones go last.
            order = {cid: i for i, cid in enumerate(results)}
            answered.sort(key=lambda b: order.get(b.call_id, len(order)))  # type: ignore[union-attr]
            add("user", answered)
        step, uses, results = None, [], {}

    for e in entries:
        kind = e.kind
        if kind == EntryKind.ASSISTANT:
            close_step()
            step = [TextBlock(e.text)] if e.text else []
        elif kind == EntryKind.TOOL_USE:
            if step is None:
                step = []
            step.append(ToolUseBlock(e.call_id, e.name, _tool_input(e.text)))
            uses.append(e.call_id)
        elif kind == EntryKind.TOOL_RESULT:
            # A result with no open use of that id cannot be sent; compaction never
            # creates one, so this only guards hand-made histories.
            if e.call_id in uses and e.call_id not in results:
                results[e.call_id] = _reference_result_block(e)
        elif kind == EntryKind.SUMMARY:
            close_step()
            add("user", [TextBlock(SUMMARY_PREFIX + e.text)])
        else:  # user message
            close_step()
            add("user", [TextBlock(e.text)])
    close_step()
    if not out or out[0][0] != "user":
        out.insert(0, ("user", [TextBlock(OMITTED_PREAMBLE)]))
    messages = []
    for role, blocks in out:
        if role == "user":  # the API wants tool results before any text in a message
            blocks = [b for b in blocks if isinstance(b, ToolResultBlock)] + [
                b for b in blocks if not isinstance(b, ToolResultBlock)
            ]
        messages.append(Message(role, tuple(blocks)))  # type: ignore[arg-type]
    return tuple(messages)


CALL_IDS = st.sampled_from(["c1", "c2"])
USE = st.builds(
    lambda a, c, n: (EntryKind.TOOL_USE, a, c, n),
    st.sampled_from(["{}", '{"a": 1}', "[1]", "{bad", ""]),
    CALL_IDS,
    st.sampled_from(["calc", "clock"]),
)
RESULT = st.builds(
    lambda t, c: (EntryKind.TOOL_RESULT, t, c, ""), st.sampled_from(["42", ""]), CALL_IDS
)
# Tool uses and results drawn three times as often as the rest: steps with several uses
# whose results come in another order, late, twice or never.
ENTRIES = st.lists(
    st.one_of(
        st.builds(lambda t: (EntryKind.USER, t, "", ""), st.sampled_from(["", "hi", "x"])),
        st.builds(lambda t: (EntryKind.ASSISTANT, t, "", ""), st.sampled_from(["", "ok"])),
        USE,
        USE,
        USE,
        RESULT,
        RESULT,
        RESULT,
        st.builds(lambda t: (EntryKind.SUMMARY, t, "", ""), st.sampled_from(["so far"])),
    ),
    max_size=25,
)


U, A, T, R = EntryKind.USER, EntryKind.ASSISTANT, EntryKind.TOOL_USE, EntryKind.TOOL_RESULT


@settings(max_examples=500)
@given(ENTRIES, st.lists(st.booleans(), min_size=25, max_size=25))
# results in another order than their uses, one missing (synthetic, last), one twice
@example(
    [
        (U, "go", "", ""),
        (A, "ok", "", ""),
        (T, "{}", "c1", "calc"),
        (T, "{}", "c2", "calc"),
        (R, "2", "c2", ""),
        (R, "1", "c1", ""),
        (U, "next", "", ""),
    ],
    [False] * 25,
)
@example(
    [
        (A, "", "", ""),
        (T, "{}", "c1", "calc"),
        (T, "[1]", "c2", "calc"),
        (R, "2", "c2", ""),
        (R, "again", "c2", ""),
    ],
    [False] * 25,
)
def test_build_messages_equals_the_reference(
    drawn: list[tuple[str, str, str, str]], errors: list[bool]
) -> None:
    entries = [
        Entry(i + 1, kind, text, call_id, name, errors[i], 1)
        for i, (kind, text, call_id, name) in enumerate(drawn)
    ]
    assert build_messages(entries) == reference_build_messages(entries)


# ------------------------------------------------- build_messages, from its memo


@settings(max_examples=500)
@given(
    ENTRIES,
    ENTRIES,
    st.lists(st.booleans(), min_size=50, max_size=50),
    st.integers(0, 25),
    st.booleans(),
)
def test_a_window_built_again_after_it_grew_equals_the_reference(
    drawn: list[tuple[str, str, str, str]],
    more: list[tuple[str, str, str, str]],
    errors: list[bool],
    cut: int,
    equal_copies: bool,
) -> None:
    """A session's next call sends its window again plus what happened since: the
    memo's messages (and their cached canonical text) must be exactly what building
    the longer window from scratch gives. Also when the next window holds equal copies
    of the entries rather than the same objects, and when a second window (a fork)
    starts with the same entries and then differs."""
    every = [
        Entry(i + 1, kind, text, call_id, name, errors[i], 1)
        for i, (kind, text, call_id, name) in enumerate([*drawn, *more])
    ]
    first, later = every[: len(drawn)], every
    memo = ContextMemo()  # the shell's, as the session worker keeps one
    build_messages(first, memo)
    if equal_copies:
        later = [e._replace() for e in later]  # equal values, other objects
    built = build_messages(later, memo)
    assert built == reference_build_messages(later)
    request = LlmRequest("m", "s", built, (), 10, 0.0)
    assert request.canonical_body() == canonical_json(
        {k: v for k, v in request.to_dict().items() if k != "model"}
    )
    # A fork: the same first entries, then other ones.
    fork = [
        *every[: min(cut, len(every))],
        *[
            Entry(100 + i, kind, text + "!", call_id, name, not errors[i], 1)
            for i, (kind, text, call_id, name) in enumerate(more)
        ],
    ]
    assert build_messages(fork, memo) == reference_build_messages(fork)
    assert build_messages(later, memo) == reference_build_messages(later)


@settings(max_examples=300)
@given(
    ENTRIES,
    st.lists(st.integers(0, 25), min_size=1, max_size=4),
    st.lists(st.booleans(), min_size=25, max_size=25),
    st.lists(st.sampled_from([10, 11]), min_size=4, max_size=4),
)
def test_a_digest_continued_from_the_memo_equals_the_whole_one(
    drawn: list[tuple[str, str, str, str]],
    cuts: list[int],
    errors: list[bool],
    max_tokens: list[int],
) -> None:
    """A window's requests as it grows (and shrinks: a compaction's new window, a
    fork), some with another head (max_tokens): each digest the memo continues from its
    kept sha256 is the digest of the whole canonical body."""
    every = [
        Entry(i + 1, kind, text, call_id, name, errors[i], 1)
        for i, (kind, text, call_id, name) in enumerate(drawn)
    ]
    memo = ContextMemo()
    for cut, tokens in zip(sorted(cuts) + cuts, max_tokens * 2, strict=False):
        window = every[: max(1, cut)]
        if not window:
            continue
        request = LlmRequest("m", "s", build_messages(window, memo), (), tokens, 0.0)
        memo.digest(request, id(window[0]))
        body = {k: v for k, v in request.to_dict().items() if k != "model"}
        assert request.digest() == sha256_hex(canonical_json(body))
