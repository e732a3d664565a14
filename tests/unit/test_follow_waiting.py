"""What a turn that has not ended waits for, as the timeout of `--follow` says it
(turnlog._follow.waiting_for): a case table over the events seen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.events import (
    ApprovalGranted,
    ApprovalRequested,
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    Event,
    LlmCallCompleted,
    LlmCallRequested,
    PolicyAction,
    ToolCallCompleted,
    ToolCallRequested,
    TurnStarted,
    Usage,
    event_id_for,
)
from turnlog._follow import waiting_for

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WORKER = "Is a session worker running (`turnlog worker session` or `turnlog worker all`)?"


def ev(seq: int, payload: Any) -> Event:
    return Event(
        event_id_for("s", seq),
        "s",
        seq,
        T0 + timedelta(seconds=seq),
        "assistant",
        payload,
        turn_id="s:t1",
    )


def llm(call: str) -> LlmCallRequested:
    return LlmCallRequested(
        call, "scripted-small", (), 100, 0.0, (1, 1), 1, "s", "t", "d", 1, T0 + timedelta(minutes=2)
    )


def done(call: str) -> LlmCallCompleted:
    return LlmCallCompleted(call, "scripted-small", "ok", ("c1",), "tool_use", Usage(1, 1), 1, 5, 1)


def tool(call: str, decision: PolicyAction, name: str = "shell") -> ToolCallRequested:
    return ToolCallRequested(call, "l1", name, "{}", decision, None, T0 + timedelta(minutes=2))


STARTED = [ev(1, TurnStarted(1)), ev(2, llm("l1")), ev(3, done("l1"))]
APPROVAL = [
    *STARTED,
    ev(4, tool("c1", PolicyAction.REQUIRE_APPROVAL)),
    ev(5, ApprovalRequested("c1", "shell", T0 + timedelta(minutes=15))),
]
CHILD = [
    *STARTED,
    ev(4, tool("c1", PolicyAction.ALLOW, "delegate")),
    ev(5, ChildSessionRequested("c1", "s/c1", "researcher", "find out")),
]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], WORKER),
        (
            STARTED[:2],
            (f"The turn is waiting for LLM call(s) l1 (scripted-small, asked at seq 2). {WORKER}"),
        ),
        (
            APPROVAL,
            (
                "The turn is waiting for approval of tool call c1 (shell, asked at seq 5, expires "
                "2026-03-01 00:15:00 UTC): grant it with `turnlog approve s c1` or refuse it with "
                "`turnlog deny s c1 --reason ...`."
            ),
        ),
        (
            [*APPROVAL, ev(6, ApprovalGranted("c1", "alice"))],
            f"The turn is waiting for tool call(s) shell (call c1, asked at seq 4). {WORKER}",
        ),
        (
            [
                *APPROVAL,
                ev(6, ApprovalGranted("c1", "alice")),
                ev(7, ToolCallCompleted("c1", "ok")),
                ev(8, llm("l2")),
            ],
            f"The turn is waiting for LLM call(s) l2 (scripted-small, asked at seq 8). {WORKER}",
        ),
        (
            CHILD,
            (
                "The turn is waiting for its child session(s) s/c1 (agent researcher, asked at seq "
                "5): follow them with `turnlog events CHILD --follow`."
            ),
        ),
        (
            [
                *CHILD,
                ev(
                    6,
                    ChildSessionCompleted(
                        "c1", "s/c1", ChildStatus.COMPLETED, "done", Usage(1, 1), 1
                    ),
                ),
            ],
            WORKER,
        ),
    ],
    ids=[
        "nothing-seen",
        "llm",
        "approval",
        "approved-tool-runs",
        "next-llm",
        "child",
        "child-done",
    ],
)
def test_waiting_for_names_the_pending_work(events: list[Event], expected: str) -> None:
    assert waiting_for("s", events) == expected


def test_waiting_for_names_a_pending_admission() -> None:
    from agents.events import AdmissionDecided, AdmissionRequested

    asked = ev(2, AdmissionRequested("r1", "agent:assistant", "hi", 60_000, 5, on_limit="queue"))
    assert waiting_for("s", [asked]) == (
        "The message waits for its admission by the shared rate limit agent:assistant "
        "(queue, asked at seq 2): the effect runner asks Postgres (DATABASE_URL); cancel it "
        f"with `turnlog cancel s`. {WORKER}"
    )
    assert waiting_for("s", [asked, ev(3, AdmissionDecided("r1", True))]) == WORKER
