"""Codec throughput over a realistic session log of 10,000 events.

Run: .venv/bin/python bench/codec.py [--events N] [--repeat R]

Prints events/s (best of R runs) for encode, decode (the worker's path), decode through the
fastavro reference reader, the JSON dict form, and, for scale, constructing the same
records without any decoding (the dataclass validation every decode pays).

Rates are per CPU-second of this process (time.process_time), so that other work on a
shared machine does not skew them; a worker that owns a core gets the same rate.
"""

from __future__ import annotations

import argparse
import functools
import random
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from _timing import rate  # bench/ is on sys.path: these run as scripts

from agents.events import (
    ApprovalGranted,
    ApprovalRequested,
    Event,
    LlmCallCompleted,
    LlmCallRequested,
    PolicyAction,
    SessionStarted,
    ToolCallCompleted,
    ToolCallRequested,
    TurnCompleted,
    TurnStarted,
    Usage,
    UserMessageReceived,
    event_id_for,
)
from schemas import codec

_rate = functools.partial(rate, width=44)

WORDS = [
    "the",
    "agent",
    "reads",
    "the",
    "file",
    "then",
    "calls",
    "a",
    "tool",
    "and",
    "answers",
    "with",
    "a",
    "short",
    "summary",
]


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def session_log(n: int, seed: int = 7) -> list[Event]:
    """A plausible log: turns of user message -> LLM call -> parallel tool calls (some
    needing approval) -> LLM call ... -> final answer, across a few sessions."""
    rng = random.Random(seed)
    t = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    out: list[Event] = []
    sessions: dict[str, int] = {}

    def emit(session: str, payload: Any, turn: str | None) -> None:
        nonlocal t
        seq = sessions[session] = sessions.get(session, 0) + 1
        t += timedelta(milliseconds=rng.randint(1, 900))
        out.append(
            Event(
                event_id_for(session, seq),
                session,
                seq,
                t,
                "researcher",
                payload,
                turn_id=turn,
                causation_id=f"req-{rng.randrange(1 << 30):x}",
                correlation_id=f"corr-{session}",
            )
        )

    while len(out) < n:
        session = f"sess-{rng.randrange(50):03d}"
        if session not in sessions:
            emit(session, SessionStarted("researcher", "sha256:" + "ab" * 16), None)
        turn_no = rng.randint(1, 20)
        turn = f"{session}/turn-{turn_no}"
        emit(session, TurnStarted(turn_no), turn)
        emit(session, UserMessageReceived(_text(rng, 5, 60)), turn)
        # A window is the summary plus a suffix of the conversation: one or two pairs.
        window = (max(1, sessions[session] - 30), sessions[session])
        for iteration in range(rng.randint(1, 3)):
            call = f"llm-{rng.randrange(1 << 40):x}"
            emit(
                session,
                LlmCallRequested(
                    call,
                    "claude-sonnet-4",
                    ("claude-haiku-4",),
                    4096,
                    0.2,
                    window,
                    12,
                    "h" * 64,
                    "t" * 64,
                    "d" * 64,
                    iteration,
                    t + timedelta(seconds=60),
                    reserved_tokens=8000,
                    reserved_nanos=120_000_000,
                ),
                turn,
            )
            tools = [f"tool-{rng.randrange(1 << 40):x}" for _ in range(rng.randint(0, 3))]
            emit(
                session,
                LlmCallCompleted(
                    call,
                    "claude-sonnet-4",
                    _text(rng, 0, 80),
                    tuple(tools),
                    "tool_use" if tools else "end_turn",
                    Usage(rng.randint(500, 20000), rng.randint(10, 800), rng.randint(0, 9000), 0),
                    rng.randint(1000, 90_000_000),
                    rng.randint(200, 9000),
                    1,
                ),
                turn,
            )
            for tool in tools:
                action = rng.choice([PolicyAction.ALLOW] * 4 + [PolicyAction.REQUIRE_APPROVAL])
                emit(
                    session,
                    ToolCallRequested(
                        tool,
                        call,
                        "read_file",
                        '{"path": "src/app/main.py"}',
                        action,
                        None if action is PolicyAction.ALLOW else "ask-for-writes",
                        t + timedelta(seconds=30),
                    ),
                    turn,
                )
                if action is PolicyAction.REQUIRE_APPROVAL:
                    emit(
                        session, ApprovalRequested(tool, "read_file", t + timedelta(hours=1)), turn
                    )
                    emit(session, ApprovalGranted(tool, "alice"), turn)
                emit(
                    session, ToolCallCompleted(tool, _text(rng, 10, 200), rng.randint(1, 500)), turn
                )
        emit(
            session,
            TurnCompleted(turn_no, sessions[session], Usage(9000, 700, 4000, 0), 42_000_000, 2),
            turn,
        )
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    log = session_log(args.events)
    blobs = [codec.encode_event(e) for e in log]
    dicts = [codec.event_to_dict(e) for e in log]
    assert [codec.decode_event(b) for b in blobs] == log
    kinds: dict[str, int] = {}
    for e in log:
        kinds[type(e.payload).__name__] = kinds.get(type(e.payload).__name__, 0) + 1
    size = sum(map(len, blobs))
    print(
        f"{len(log)} events, {size / len(log):.0f} bytes/event on average; mix: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
    )

    n, r = len(log), args.repeat
    encode, decode = codec.encode_event, codec.decode_event
    writers = [codec._writer_of("Event", b) for b in blobs]
    reference = codec._decode_with_fastavro
    to_dict, from_dict, canonical = (
        codec.event_to_dict,
        codec.event_from_dict,
        codec.canonical_event_json,
    )
    # Re-building each record from its own field values: the dataclass share of a decode.
    shallow = [
        (
            type(e.payload),
            [getattr(e.payload, f.name) for f in fields(e.payload)],
            [getattr(e, f.name) for f in fields(e)],
        )
        for e in log
    ]

    def construct() -> None:
        for cls, pargs, eargs in shallow:
            eargs[5] = cls(*pargs)
            Event(*eargs)

    _rate("encode_event", n, r, lambda: [encode(e) for e in log] and None)
    _rate(
        "decode_event (fast reader, the worker path)",
        n,
        r,
        lambda: [decode(b) for b in blobs] and None,
    )
    _rate(
        "decode via fastavro reference reader",
        n,
        r,
        lambda: [reference("Event", b, w) for b, w in zip(blobs, writers, strict=True)] and None,
    )
    _rate("  of which: dataclass construction only", n, r, construct)
    _rate("event_to_dict", n, r, lambda: [to_dict(e) for e in log] and None)
    _rate("canonical_event_json", n, r, lambda: [canonical(e) for e in log] and None)
    _rate("event_from_dict", n, r, lambda: [from_dict(d) for d in dicts] and None)


if __name__ == "__main__":
    main()
