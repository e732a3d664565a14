"""The CLI's live view of a call's streamed text: a restarted stream replaces the text of
the failed attempt rather than adding to it."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.events import TokenDelta
from turnlog._render import LiveRenderer


def _delta(index: int, text: str, *, call: str = "c1", done: bool = False) -> TokenDelta:
    return TokenDelta(
        session_id="s",
        call_id=call,
        index=index,
        text=text,
        occurred_at=datetime.now(UTC),
        done=done,
    )


def _shown(items: list[TokenDelta]) -> list[str]:
    lines: list[str] = []
    renderer = LiveRenderer(lines.append)
    for item in items:
        renderer(item)
    return lines


def test_a_call_streams_on_one_line() -> None:
    lines = _shown([_delta(1, "Hello, "), _delta(2, "world."), _delta(3, "", done=True)])
    assert lines == ["      assistant ▸ Hello, world."]


def test_a_restarted_stream_drops_the_failed_attempts_text() -> None:
    lines = _shown(
        [
            _delta(1, "This attempt "),
            _delta(2, "breaks"),
            _delta(1, "The whole "),
            _delta(2, "answer."),
            _delta(3, "", done=True),
        ]
    )
    assert lines == ["      assistant ▸ The whole answer."]


def test_a_restart_after_the_text_was_shown_says_so() -> None:
    other = _delta(1, "other call", call="c2")
    lines = _shown([_delta(1, "Broken"), other, _delta(1, "Answer"), _delta(2, "", done=True)])
    assert lines == [
        "      assistant ▸ Broken",
        "      assistant ▸ other call",
        "      assistant ▸ (the attempt above failed; the answer restarts)",
        "      assistant ▸ Answer",
    ]
