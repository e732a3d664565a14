"""An LLM call issued more than once (agents._reissue): a takeover re-issues it through
the core, only the pending issue's answer is the call's answer, and the answer of every
replaced issue — a previous owner's, the billed part of an aborted stream — is charged
exactly once, whatever the phase."""

from __future__ import annotations

from agents._reissue import MAX_ISSUES_ON_TAKEOVER
from agents.events import (
    ABORTED,
    SUPERSEDED,
    CompleteLlmCall,
    EffectReissued,
    FailLlmCall,
    LlmCallCompleted,
    LlmCallFailed,
    ReissueEffect,
    RequestRejected,
    SendMessage,
    Tick,
    Usage,
)
from agents.fold import fold
from agents.fsm import state_from_dict, state_to_dict
from agents.state import Phase
from tests.unit.test_fsm_support import Driver, types

BILLED = Usage(100, 20)


def running() -> Driver:
    d = Driver()
    d.send(SendMessage("hello"), agent="assistant")
    return d


def answer(d: Driver, attempt: int, text: str = "done", usage: Usage = BILLED) -> CompleteLlmCall:
    return CompleteLlmCall(
        call_id=d.llm_call_id,
        model="scripted-small",
        text=text,
        usage=usage,
        effect_attempt=attempt,
    )


def reissued(d: Driver) -> Driver:
    events = d.send(ReissueEffect(d.llm_call_id, 1), request_id="takeover-1")
    assert types(events) == ["EffectReissued"]
    (ev,) = events
    assert isinstance(ev.payload, EffectReissued) and ev.payload.attempt == 2
    return d


def spent(d: Driver) -> int:
    return d.state.spent_nanos


def test_a_takeover_reissue_makes_attempt_two_with_a_fresh_deadline() -> None:
    d = running()
    before = d.state.turn.llm  # type: ignore[union-attr]
    reissued(d)
    after = d.state.turn.llm  # type: ignore[union-attr]
    assert after is not None and before is not None
    assert after.attempt == 2 and after.deadline_at > before.deadline_at
    assert d.state.phase is Phase.AWAITING_LLM


def test_a_stale_reissue_is_rejected_and_changes_nothing() -> None:
    d = running()
    call = d.llm_call_id
    reissued(d)
    events = d.send(ReissueEffect(call, 1))  # a second owner saw attempt 1 too
    assert types(events) == ["RequestRejected"]
    assert "not pending at issue 1" in events[0].payload.reason  # type: ignore[union-attr]
    assert d.state.turn is not None and d.state.turn.llm is not None
    assert d.state.turn.llm.attempt == 2
    d.answer("fine")
    events = d.send(ReissueEffect(call, 2))  # answered meanwhile
    assert types(events) == ["RequestRejected"]


def test_the_old_owners_answer_while_the_new_issue_runs_is_charged_not_taken() -> None:
    d = running()
    reissued(d)
    base = spent(d)
    events = d.send(answer(d, 1, "from the old owner"))
    assert types(events) == ["LlmCallCompleted"]
    charged = events[0].payload
    assert isinstance(charged, LlmCallCompleted)
    assert charged.discarded == SUPERSEDED and charged.text == "" and charged.cost_nanos > 0
    assert spent(d) == base + charged.cost_nanos
    # Still waiting for its own issue, whose answer is the call's answer.
    assert d.state.phase is Phase.AWAITING_LLM and d.state.turn is not None
    events = d.send(answer(d, 2, "from the new owner"))
    assert types(events)[:2] == ["LlmCallCompleted", "TurnCompleted"]
    assert events[0].payload.discarded is None  # type: ignore[union-attr]
    assert fold(d.log, "s1") == d.state


def test_the_old_owners_answer_after_the_call_resolved_is_charged_once() -> None:
    d = running()
    call = d.llm_call_id
    reissued(d)
    d.send(answer(d, 2, "from the new owner"))
    assert d.state.phase is Phase.IDLE
    assert d.state.superseded == ((call, "scripted-small", 2),)
    base = spent(d)
    late = CompleteLlmCall(call, "scripted-small", "old", usage=BILLED, effect_attempt=1)
    events = d.send(late, request_id="old-owner")
    assert types(events) == ["LlmCallCompleted"]
    assert events[0].payload.discarded == SUPERSEDED  # type: ignore[union-attr]
    assert spent(d) > base and d.state.superseded == ()
    # The same report again (same request id): a duplicate; another copy under another
    # id: nothing is left to charge.
    assert types(d.send(late, request_id="old-owner")) == ["RequestRejected"]
    assert types(d.send(late, request_id="old-owner-2")) == ["RequestRejected"]
    assert spent(d) == base + events[0].payload.cost_nanos  # type: ignore[union-attr]
    assert fold(d.log, "s1") == d.state


def test_a_copy_of_the_answering_issues_outcome_is_a_duplicate_not_a_charge() -> None:
    d = running()
    call = d.llm_call_id
    reissued(d)
    d.send(answer(d, 2, "from the new owner"))
    base = spent(d)
    copy = CompleteLlmCall(call, "scripted-small", "again", usage=BILLED, effect_attempt=2)
    assert types(d.send(copy, request_id="zombie-copy")) == ["RequestRejected"]
    assert spent(d) == base and len(d.state.superseded) == 1


def test_an_aborted_stream_of_the_pending_issue_is_charged_and_the_call_stays_pending() -> None:
    d = running()
    call = d.llm_call_id
    aborted = FailLlmCall(call, ABORTED, "partition moved", usage=BILLED, effect_attempt=1)
    events = d.send(aborted)
    assert types(events) == ["LlmCallCompleted"]
    assert events[0].payload.discarded == SUPERSEDED  # type: ignore[union-attr]
    assert d.state.phase is Phase.AWAITING_LLM  # not failed: the new owner re-issues
    reissued(d)
    assert types(d.send(answer(d, 2)))[:2] == ["LlmCallCompleted", "TurnCompleted"]


def test_a_deadline_reissue_then_the_aborted_old_issue_does_not_fail_the_turn() -> None:
    d = running()
    call = d.llm_call_id
    llm = d.state.turn.llm  # type: ignore[union-attr]
    assert llm is not None
    d.now = llm.deadline_at
    assert types(d.send(Tick(), advance=1)) == ["EffectReissued"]
    aborted = FailLlmCall(call, ABORTED, "re-issued", usage=BILLED, effect_attempt=1)
    assert [e.payload.discarded for e in d.send(aborted)] == [SUPERSEDED]  # type: ignore[union-attr]
    # A replaced issue's failure with nothing billed is ignored, it fails nothing.
    quiet = FailLlmCall(call, "Timeout", "gone", effect_attempt=1)
    assert types(d.send(quiet)) == ["RequestRejected"]
    assert d.state.phase is Phase.AWAITING_LLM
    assert types(d.send(answer(d, 2)))[:2] == ["LlmCallCompleted", "TurnCompleted"]


def test_an_outcome_that_does_not_name_its_issue_is_the_pending_ones() -> None:
    d = running()
    reissued(d)
    events = d.send(answer(d, 0, "unnamed"))
    assert types(events)[:2] == ["LlmCallCompleted", "TurnCompleted"]
    assert events[0].payload.discarded is None  # type: ignore[union-attr]


def test_replaced_issues_survive_the_state_codec() -> None:
    d = running()
    reissued(d)
    d.send(answer(d, 2))
    assert d.state.superseded
    assert state_from_dict(state_to_dict(d.state)) == d.state


def test_a_rejected_reissue_is_a_request_rejected_naming_the_call() -> None:
    d = Driver()
    events = d.send(ReissueEffect("nope", 1), agent="assistant")
    assert types(events) == ["RequestRejected"]
    assert isinstance(events[0].payload, RequestRejected)
    assert "nope" in events[0].payload.reason


def test_a_reissue_past_the_bound_fails_the_call_instead_of_climbing() -> None:
    # Takeovers that keep losing the call's worker re-issue it until MAX_ISSUES_ON_TAKEOVER
    # issues were made (more than the agent's deadlines.max_attempts); the next
    # ReissueEffect fails it.
    d = running()
    call = d.llm_call_id
    limit = max(d.registry.get("assistant").deadlines.max_attempts, MAX_ISSUES_ON_TAKEOVER)
    assert limit > d.registry.get("assistant").deadlines.max_attempts
    for attempt in range(1, limit):
        events = d.send(ReissueEffect(call, attempt), request_id=f"takeover-{attempt}")
        assert types(events) == ["EffectReissued"]
    events = d.send(ReissueEffect(call, limit), request_id="takeover-last")
    assert types(events) == ["LlmCallFailed", "TurnFailed"]
    failed = events[0].payload
    assert isinstance(failed, LlmCallFailed)
    assert failed.attempts == limit and failed.error_type == "DeadlineExceeded"
    assert d.state.turn is None
