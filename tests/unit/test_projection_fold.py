"""The pure projection fold: seq classification, rows per event, patch merging, and the
property the exactly-once projector and the rebuild rely on — the rows do not depend on
how the events are cut into batches or how sessions interleave."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.events import (
    SUPERSEDED,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ContextCompacted,
    ContextCompactionRequested,
    Event,
    LlmCallCompleted,
    LlmCallRequested,
    MessageQueued,
    PolicyAction,
    QueuedMessageDropped,
    RequestRejected,
    SessionForked,
    SessionStarted,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
    TurnStarted,
    Usage,
    UserMessageReceived,
    event_id_for,
)
from projections.fold import (
    NOT_STARTED,
    Verdict,
    classify,
    fold,
    is_started,
    unstarted_session,
)
from projections.rows import PATCH_TABLES, Changes, SessionRow
from tests.support.synthetic import generate, interleave

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def ev(sid: str, seq: int, payload: Any, turn: str | None = None) -> Event:
    return Event(
        event_id_for(sid, seq),
        sid,
        seq,
        T0 + timedelta(seconds=seq),
        "support",
        payload,
        turn_id=turn,
    )


def fold_all(events: list[Event]) -> tuple[dict[str, SessionRow], Changes]:
    sessions: dict[str, SessionRow] = {}
    changes = Changes()
    for i, e in enumerate(events):
        verdict, why = classify(sessions.get(e.session_id), e)
        assert verdict is Verdict.NEW, why
        sessions[e.session_id] = fold(
            sessions.get(e.session_id), e, changes, partition=0, offset=i, digest=f"d{i}"
        )
    return sessions, changes


def _session(last_seq: int) -> SessionRow:
    sessions, _ = fold_all([ev("s", 1, SessionStarted("support", "h"))])
    s = sessions["s"]
    s.last_seq = last_seq
    return s


# ------------------------------------------------------------------ classify

STARTED = SessionStarted("support", "h")
FORKED = SessionForked("src", 7, "support", "h")


@pytest.mark.parametrize(
    ("last_seq", "seq", "payload", "expected"),
    [
        (None, 1, STARTED, Verdict.NEW),
        (None, 8, FORKED, Verdict.NEW),  # a fork starts at at_seq + 1
        (None, 9, FORKED, Verdict.GAP),
        (None, 2, TurnStarted(1), Verdict.GAP),  # events of an unseen session before seq 1
        (5, 6, TurnStarted(1), Verdict.NEW),
        (5, 5, TurnStarted(1), Verdict.DUPLICATE),
        (5, 2, TurnStarted(1), Verdict.DUPLICATE),
        (5, 7, TurnStarted(1), Verdict.GAP),
        (5, 100, TurnStarted(1), Verdict.GAP),
    ],
)
def test_classify(last_seq: int | None, seq: int, payload: Any, expected: Verdict) -> None:
    session = None if last_seq is None else _session(last_seq)
    verdict, why = classify(session, ev("s", seq, payload))
    assert verdict is expected
    if expected is Verdict.GAP:
        assert "Session s" in why and f"seq {seq}" in why
    else:
        assert why == ""


def test_gap_message_names_the_expected_seq() -> None:
    _, why = classify(_session(5), ev("s", 9, TurnStarted(1)))
    assert "the next must be seq 6, got seq 9" in why


# ------------------------------------------------------------------ rows per event


def _turn_with_approved_tool(sid: str = "a") -> list[Event]:
    t = f"{sid}/t1"
    later = T0 + timedelta(hours=1)
    return [
        ev(sid, 1, SessionStarted("support", "h")),
        ev(sid, 2, TurnStarted(1), t),
        ev(sid, 3, UserMessageReceived("hello"), t),
        ev(
            sid,
            4,
            LlmCallCompleted(
                "c1",
                "claude-haiku-4-5",
                "let me look",
                ("k1",),
                "tool_use",
                Usage(10, 5),
                35,
                100,
                1,
            ),
            t,
        ),
        ev(
            sid,
            5,
            ToolCallRequested(
                "k1", "c1", "search", '{"q":1}', PolicyAction.REQUIRE_APPROVAL, "r1", later
            ),
            t,
        ),
        ev(sid, 6, ApprovalRequested("k1", "search", later), t),
        ev(sid, 7, ApprovalGranted("k1", "alice"), t),
        ev(sid, 8, ToolCallCompleted("k1", "found it", 12), t),
        ev(
            sid,
            9,
            LlmCallCompleted(
                "c2", "claude-haiku-4-5", "done", (), "end_turn", Usage(20, 7), 55, 80, 1
            ),
            t,
        ),
        ev(sid, 10, TurnCompleted(1, 9, Usage(30, 12), 90, 2), t),
    ]


def test_a_turn_becomes_entries_linked_in_order() -> None:
    _, changes = fold_all(_turn_with_approved_tool())
    entries = [(e[1], e[2], e[6], e[8], e[9]) for e in changes.entries]
    assert entries == [
        (3, "user", "hello", None, None),
        (4, "assistant", "let me look", "a", 3),
        (5, "tool_call", '{"q":1}', "a", 4),
        (8, "tool_result", "found it", "a", 5),
        (9, "assistant", "done", "a", 8),
    ]


def test_session_totals_count_recorded_costs_once() -> None:
    sessions, changes = fold_all(_turn_with_approved_tool())
    s = sessions["a"]
    assert (s.turns, s.turns_completed, s.llm_calls) == (1, 1, 2)
    assert (s.input_tokens, s.output_tokens, s.cost_nanos) == (30, 12, 90)
    assert (s.last_seq, s.last_entry_seq, s.phase, s.status) == (10, 9, "idle", "active")
    assert len(changes.events) == 10


def test_patches_of_one_row_merge_in_event_order() -> None:
    _, changes = fold_all(_turn_with_approved_tool())
    tool = changes.patches["tool_calls"][("a", "k1")]
    # requested -> awaiting_approval -> approved -> completed: the last one wins
    assert tool["status"] == "completed"
    assert tool["name"] == "search" and tool["result_seq"] == 8 and tool["latency_ms"] == 12
    approval = changes.patches["approvals"][("a", "k1")]
    assert approval["outcome"] == "granted" and approval["decided_by"] == "alice"


def test_a_denied_tool_call_stays_denied_and_has_one_result_entry() -> None:
    events = [
        *_turn_with_approved_tool()[:6],
        ev("a", 7, ApprovalDenied("k1", "bob", "no")),
        ev("a", 8, ToolCallFailed("k1", "Denied by bob: no")),
    ]
    for cut in (7, 8):  # the ToolCallFailed in the same batch, or in the next one
        db = _project(events, [cut])
        (status,) = [
            v[0][PATCH_TABLES["tool_calls"].columns.index("status")]
            for v in db["tool_calls"].values()
        ]
        assert status == "denied"
        results = [e for e in db["entries"].values() if e[2] == "tool_result"]
        assert [(e[1], e[6], e[7]) for e in results] == [(8, "Denied by bob: no", True)]


def test_a_summarize_compaction_completes_its_llm_call() -> None:
    events = [
        ev("a", 1, SessionStarted("support", "h")),
        ev("a", 2, ContextCompactionRequested("k", "summarize", (1,), 900, 800)),
        ev(
            "a",
            3,
            LlmCallRequested(
                "k",
                "scripted-summarizer",
                (),
                100,
                0.0,
                (1, 1),
                1,
                "s",
                "t",
                "d",
                1,
                T0,
                purpose="summarize",
            ),
        ),
        ev(
            "a",
            4,
            ContextCompacted(
                "k", "summarize", (1,), "gist", 100, Usage(50, 5), 77, "scripted-summarizer"
            ),
        ),
    ]
    sessions, changes = fold_all(events)
    call = changes.patches["llm_calls"][("a", "k")]
    assert (call["status"], call["purpose"], call["cost_nanos"]) == ("completed", "summarize", 77)
    assert (sessions["a"].llm_calls, sessions["a"].cost_nanos) == (1, 77)
    assert [(e[1], e[2], e[6]) for e in changes.entries] == [(4, "summary", "gist")]


def test_a_session_whose_first_request_was_rejected_starts_later() -> None:
    events = [
        ev("r", 1, RequestRejected("q1", "SendMessage", "Unknown agent 'x'.", "idle")),
        ev("r", 2, SessionStarted("researcher", "h2")),
    ]
    sessions, _ = fold_all(events[:1])
    # Not written to `sessions` (no phantom session), and the agent the rejected input
    # named (the envelope's "support" here) is not taken for the session's.
    assert (sessions["r"].phase, sessions["r"].agent) == (NOT_STARTED, "")
    assert not is_started(sessions["r"])
    sessions, _ = fold_all(events)
    s = sessions["r"]
    assert (s.phase, s.agent, s.definition_hash, s.first_seq) == ("idle", "researcher", "h2", 1)
    assert is_started(s)


def test_the_not_started_row_rebuilt_from_stored_events_folds_like_the_one_in_memory() -> None:
    # The store rebuilds a not-started session's row from its projected events when its
    # start arrives in a later batch: the result must not depend on where the cut fell.
    events = [
        ev("r", 1, RequestRejected("q1", "SendMessage", "Unknown agent 'x'.", "idle")),
        ev("r", 2, RequestRejected("q2", "ApproveToolCall", "Session r does not exist.", "new")),
        ev("r", 3, SessionStarted("researcher", "h2")),
        ev("r", 4, TurnStarted(1), "r/t1"),
    ]
    in_memory, _ = fold_all(events)
    for cut in (1, 2):  # after the first rejection, after both
        rebuilt = unstarted_session("r", 1, cut, events[0].occurred_at, events[cut - 1].occurred_at)
        assert rebuilt == fold_all(events[:cut])[0]["r"]
        changes = Changes()
        for i, e in enumerate(events[cut:], start=cut):
            assert classify(rebuilt, e)[0] is Verdict.NEW
            rebuilt = fold(rebuilt, e, changes, partition=0, offset=i, digest=f"d{i}")
        assert rebuilt == in_memory["r"]


def test_a_fork_into_an_id_whose_first_input_was_rejected_is_a_started_fork() -> None:
    events = [
        ev("f", 1, RequestRejected("q1", "ForkSession", "Unknown source.", "forking")),
        ev("f", 2, SessionForked("a", 1, "support", "h")),
    ]
    s = fold_all(events)[0]["f"]
    assert is_started(s)
    assert (s.phase, s.forked_from_session_id, s.forked_at_seq) == ("idle", "a", 1)


def test_first_own_entry_of_a_fork_points_at_the_branch_point() -> None:
    events = [
        ev("f", 11, SessionForked("a", 10, "support", "h")),
        ev("f", 12, TurnStarted(2), "f/t2"),
        ev("f", 13, UserMessageReceived("and now?"), "f/t2"),
    ]
    sessions, changes = fold_all(events)
    assert changes.entries[0][8:10] == ("a", 10)
    s = sessions["f"]
    assert (s.forked_from_session_id, s.forked_at_seq, s.first_seq) == ("a", 10, 11)


# ------------------------------------------------------------------ batching invariance


def _apply(
    db: dict[str, dict[Any, Any]], sessions: dict[str, SessionRow], changes: Changes
) -> None:
    """What the store's SQL does with a batch, in memory (same merge rules)."""
    for row in changes.events:
        db["events"].setdefault(row[:2], row)
    for row in changes.entries:
        assert row[:2] not in db["entries"]
        db["entries"][row[:2]] = row
    for child, link in changes.links.items():
        db["session_links"].setdefault(child, link)
    for table, spec in PATCH_TABLES.items():
        nk, nc, ni = len(spec.key), len(spec.columns), len(spec.increments)
        for row in changes.patch_rows(table):
            key, cols = row[:nk], row[nk : nk + nc]
            incs, apps = row[nk + nc : nk + nc + ni], row[nk + nc + ni :]
            old = db[table].get(key)
            if old is None:
                db[table][key] = (cols, incs, tuple(tuple(a) for a in apps))
                continue
            db[table][key] = (
                tuple(
                    o if n is None or spec.keeps(c, o, n) else n
                    for c, o, n in zip(spec.columns, old[0], cols, strict=True)
                ),
                tuple(o + n for o, n in zip(old[1], incs, strict=True)),
                tuple(o + tuple(n) for o, n in zip(old[2], apps, strict=True)),
            )
    for sid, row in sessions.items():
        db["sessions"][sid] = row.as_tuple()


def _project(events: list[Event], cuts: list[int]) -> dict[str, dict[Any, Any]]:
    db: dict[str, dict[Any, Any]] = {
        t: {} for t in ("events", "entries", "session_links", "sessions", *PATCH_TABLES)
    }
    state: dict[str, SessionRow] = {}
    bounds = [0, *sorted(set(cuts)), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        changes = Changes()
        touched: dict[str, SessionRow] = {}
        for e in events[lo:hi]:
            verdict, why = classify(state.get(e.session_id), e)
            assert verdict is Verdict.NEW, why
            state[e.session_id] = fold(
                state.get(e.session_id), e, changes, partition=0, offset=0, digest=""
            )
            touched[e.session_id] = state[e.session_id]
        _apply(db, touched, changes)
    return db


LOGS = generate(1500, seed=11, base=T0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_cuts=st.integers(0, 40))
def test_rows_do_not_depend_on_batching_or_interleaving(seed: int, n_cuts: int) -> None:
    reference = _project(list(interleave(LOGS, seed=1)), [])
    events = list(interleave(LOGS, seed=seed))
    rng = random.Random(seed)
    cuts = [rng.randrange(1, len(events)) for _ in range(n_cuts)]
    assert _project(events, cuts) == reference


def test_a_cancelled_turn_leaves_every_row_of_its_work_terminal_and_a_late_answer_costs() -> None:
    t = "a/t1"
    later = T0 + timedelta(hours=1)
    events = [
        ev("a", 1, SessionStarted("support", "h")),
        ev("a", 2, TurnStarted(1), t),
        ev("a", 3, UserMessageReceived("hello"), t),
        ev(
            "a",
            4,
            LlmCallCompleted(
                "c1", "claude-haiku-4-5", "", ("k1", "k2"), "tool_use", Usage(10, 5), 35, 100, 1
            ),
            t,
        ),
        ev(
            "a",
            5,
            ToolCallRequested("k1", "c1", "search", "{}", PolicyAction.ALLOW, None, later),
            t,
        ),
        ev(
            "a",
            6,
            ToolCallRequested(
                "k2", "c1", "shell", "{}", PolicyAction.REQUIRE_APPROVAL, "r1", later
            ),
            t,
        ),
        ev("a", 7, ApprovalRequested("k2", "shell", later), t),
        ev("a", 8, TurnCancelled(1, "stop", None, ("k1", "k2"), ("k2",)), t),
        ev("a", 9, MessageQueued("after", 1), None),
        ev("a", 10, QueuedMessageDropped(9, "r-after", "not needed"), None),
        ev(
            "a",
            11,
            LlmCallCompleted(
                "c0",
                "claude-haiku-4-5",
                "",
                (),
                "end_turn",
                Usage(7, 3),
                20,
                90,
                1,
                discarded="late",
            ),
            None,
        ),
    ]
    db = _project(events, [])
    cols = PATCH_TABLES["tool_calls"].columns
    statuses = {k[1]: v[0][cols.index("status")] for k, v in db["tool_calls"].items()}
    assert statuses == {"k1": "cancelled", "k2": "cancelled"}
    acols = PATCH_TABLES["approvals"].columns
    (approval,) = db["approvals"].values()
    assert approval[0][acols.index("outcome")] == "cancelled"
    lcols = PATCH_TABLES["llm_calls"].columns
    late = db["llm_calls"][("a", "c0")][0]
    assert late[lcols.index("discarded")] == "late" and late[lcols.index("cost_nanos")] == 20
    sessions, _ = fold_all(events)
    s = sessions["a"]
    assert (s.turns_cancelled, s.cost_nanos, s.queued) == (1, 35 + 20, 0)
    # the late answer adds no conversation entry
    assert all(e[1] != 11 for e in db["entries"].values())


@pytest.mark.parametrize("cut", [[], [4], [5]], ids=["one batch", "cut before", "cut between"])
def test_answers_of_replaced_issues_add_up_beside_the_calls_own_answer(cut: list[int]) -> None:
    t = "a/t1"
    later = T0 + timedelta(hours=1)
    requested = LlmCallRequested(
        call_id="c1",
        model="claude-haiku-4-5",
        fallbacks=(),
        max_tokens=512,
        temperature=0.0,
        context_ranges=(3, 3),
        context_entries=1,
        system_prompt_hash="p",
        toolset_hash="t",
        request_digest="d",
        iteration=1,
        deadline_at=later,
    )
    old = LlmCallCompleted(
        "c1", "claude-haiku-4-5", "", (), "end_turn", Usage(7, 3), 20, 90, 1, discarded=SUPERSEDED
    )
    own = LlmCallCompleted("c1", "claude-haiku-4-5", "hi", (), "end_turn", Usage(10, 5), 35, 80, 1)
    events = [
        ev("a", 1, SessionStarted("support", "h")),
        ev("a", 2, TurnStarted(1), t),
        ev("a", 3, requested, t),
        ev("a", 4, old, t),  # while the new issue runs
        ev("a", 5, own, t),
        ev("a", 6, old, t),  # and one after the call was answered
    ]
    db = _project(events, cut)
    spec = PATCH_TABLES["llm_calls"]
    cols, incs, _ = db["llm_calls"][("a", "c1")]
    row = cols + incs
    at = {c: i for i, c in enumerate(spec.columns + spec.increments)}
    assert row[at["cost_nanos"]] == 35 and row[at["status"]] == "completed"
    assert row[at["discarded"]] is None
    assert (row[at["superseded_answers"]], row[at["superseded_cost_nanos"]]) == (2, 40)
    assert row[at["superseded_input_tokens"]] == 14 and row[at["superseded_seq"]] == 6
    sessions, _ = fold_all(events)
    assert sessions["a"].cost_nanos == 35 + 40
