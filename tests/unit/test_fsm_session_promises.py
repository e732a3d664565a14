"""Sessions keep their promises (the core's part): queued messages, a cancel that names
what it abandons, late answers charged once, and stop reasons acted on."""

from __future__ import annotations

from agents.events import (
    CancelTurn,
    CloseSession,
    CompleteLlmCall,
    LlmCallCompleted,
    LlmCallRequested,
    QueuedMessageDropped,
    RequestRejected,
    SendMessage,
    ToolUse,
    TurnCancelled,
    TurnFailed,
    TurnStarted,
    Usage,
    UserMessageReceived,
)
from agents.fold import fold
from agents.state import Phase
from tests.unit.test_fsm_support import Driver, agent, make_registry, types

CALC = ("c1", "calculator", '{"expression": "1+1"}')
LS = ("c2", "shell", '{"command": "ls"}')
DELEGATE = ("c4", "delegate", '{"agent": "researcher", "task": "find out"}')


def running() -> Driver:
    d = Driver()
    d.send(SendMessage("first"), agent="assistant")
    return d


def payload(events: list, kind: type) -> object:
    return next(e.payload for e in events if isinstance(e.payload, kind))


# --------------------------------------------------------------------------- queue


def test_a_message_during_a_turn_is_queued_and_starts_the_next_turn() -> None:
    d = running()
    events = d.send(SendMessage("second"), request_id="r-second")
    assert types(events) == ["MessageQueued"]
    assert d.state.phase is Phase.AWAITING_LLM
    assert [q.request_id for q in d.state.queue] == ["r-second"]
    queued_seq = events[0].seq

    events = d.answer("one")
    assert types(events) == [
        "LlmCallCompleted",
        "TurnCompleted",
        "TurnStarted",
        "UserMessageReceived",
        "LlmCallRequested",
    ]
    started = payload(events, TurnStarted)
    assert started.turn_no == 2 and started.queued_seq == queued_seq
    assert payload(events, UserMessageReceived).text == "second"
    # The new turn belongs to the request that sent the message.
    new_turn = events[2:]
    assert {e.causation_id for e in new_turn} == {"r-second"}
    assert {e.correlation_id for e in new_turn} == {"r-second"}
    assert d.state.queue == () and d.state.turn is not None and d.state.turn.turn_no == 2
    assert fold(d.log, "s1") == d.state


def test_the_queue_is_bounded_by_max_queued_and_the_rejection_names_it() -> None:
    d = Driver(make_registry(agent("tight", max_queued=1)))
    d.send(SendMessage("first"), agent="tight")
    assert types(d.send(SendMessage("second"))) == ["MessageQueued"]
    events = d.send(SendMessage("third"))
    assert types(events) == ["RequestRejected"]
    assert "max_queued = 1" in payload(events, RequestRejected).reason


def test_cancel_can_drop_one_queued_message_and_the_turn_goes_on() -> None:
    d = running()
    d.send(SendMessage("a"), request_id="r-a")
    d.send(SendMessage("b"), request_id="r-b")
    events = d.send(CancelTurn(queued_request_id="r-a"))
    assert types(events) == ["QueuedMessageDropped"]
    assert payload(events, QueuedMessageDropped).request_id == "r-a"
    assert d.state.phase is Phase.AWAITING_LLM
    assert [q.request_id for q in d.state.queue] == ["r-b"]


def test_a_plain_cancel_starts_the_next_queued_message_drop_queue_drops_them_all() -> None:
    d = running()
    d.send(SendMessage("next"), request_id="r-next")
    events = d.send(CancelTurn("stop this one"))
    assert types(events)[:2] == ["TurnCancelled", "TurnStarted"]
    assert d.state.turn is not None and d.state.turn.turn_no == 2

    d.send(SendMessage("x"), request_id="r-x")
    d.send(SendMessage("y"), request_id="r-y")
    events = d.send(CancelTurn("stop everything", drop_queue=True))
    assert types(events) == ["TurnCancelled", "QueuedMessageDropped", "QueuedMessageDropped"]
    assert d.state.phase is Phase.IDLE and d.state.queue == ()


def test_closing_drops_the_queue() -> None:
    d = running()
    d.send(SendMessage("later"))
    events = d.send(CloseSession())
    assert types(events) == ["TurnCancelled", "QueuedMessageDropped", "SessionClosed"]


def test_a_queued_message_shows_in_a_snapshot_and_survives_the_state_codec() -> None:
    from agents.fsm import state_from_dict, state_to_dict

    d = running()
    d.send(SendMessage("later"))
    assert state_from_dict(state_to_dict(d.state)) == d.state


# --------------------------------------------------------------------------- cancel


def test_a_cancel_names_every_piece_of_work_it_abandons() -> None:
    d = running()
    d.answer("working", tools=[CALC, LS, DELEGATE])
    events = d.send(CancelTurn("enough"))
    cancelled = payload(events, TurnCancelled)
    assert cancelled.llm_call_id is None
    assert set(cancelled.tool_call_ids) == {"c1", "c2", "c4"}
    assert cancelled.approval_call_ids == ("c2",)
    # The delegation started a child session at once (no approval needed for it).
    assert cancelled.child_session_ids == ("s1/child/c4",)


def test_a_cancel_during_an_llm_call_names_it_and_its_late_answer_is_charged_once() -> None:
    d = running()
    call_id = d.llm_call_id
    events = d.send(CancelTurn())
    assert payload(events, TurnCancelled).llm_call_id == call_id
    spent = d.state.spent_tokens, d.state.spent_nanos

    late = CompleteLlmCall(
        call_id, "scripted-small", "an answer nobody waits for", usage=Usage(100, 20)
    )
    events = d.send(late)
    assert types(events) == ["LlmCallCompleted"]
    charged = payload(events, LlmCallCompleted)
    assert charged.discarded == "late" and charged.text == "" and charged.cost_nanos > 0
    assert d.state.spent_tokens == spent[0] + 120
    assert d.state.spent_nanos == spent[1] + charged.cost_nanos
    # Not part of the conversation, and never charged twice.
    assert all(e.text != "an answer nobody waits for" for e in d.state.history.entries.items())
    assert types(d.send(late)) == ["RequestRejected"]
    assert d.state.spent_tokens == spent[0] + 120
    assert fold(d.log, "s1") == d.state


# --------------------------------------------------------------------------- stop reasons


def _stop(d: Driver, stop: str, tools: tuple = (), text: str = "partial") -> list:
    uses = tuple(ToolUse(*t) for t in tools)
    return d.send(
        CompleteLlmCall(
            d.llm_call_id,
            "scripted-small",
            text,
            tool_uses=uses,
            stop_reason=stop,
            usage=Usage(50, 50),
        )
    )


def test_a_refusal_ends_the_turn_as_refused_and_runs_no_tool() -> None:
    d = running()
    events = _stop(d, "refusal", tools=(CALC,))
    assert types(events) == ["LlmCallCompleted", "TurnFailed"]
    assert payload(events, LlmCallCompleted).tool_call_ids == ()
    assert payload(events, TurnFailed).error_type == "Refused"
    assert d.state.last_turn is not None and d.state.last_turn.outcome == "failed"
    assert d.effects() == []


def test_pause_turn_sends_the_answer_so_far_back_to_continue() -> None:
    d = running()
    events = _stop(d, "pause_turn", text="half of it")
    assert types(events) == ["LlmCallCompleted", "LlmCallRequested"]
    assert d.state.phase is Phase.AWAITING_LLM
    # the partial answer is the newest entry of the window the next call sees
    last = list(d.state.history.entries.items())[-1]
    assert last.text == "half of it"


def test_a_tool_call_cut_at_max_tokens_is_never_run_but_asked_again_with_more_tokens() -> None:
    d = running()
    asked = d.state.turn.llm.request.max_tokens
    events = _stop(d, "max_tokens", tools=(CALC,))
    assert types(events) == ["LlmCallCompleted", "LlmCallRequested"]
    assert payload(events, LlmCallCompleted).discarded == "truncated"
    assert payload(events, LlmCallRequested).max_tokens == asked * 2
    assert d.effects()[0].kind == "llm_call"  # no tool call
    # Cut again: the turn fails rather than looping.
    events = _stop(d, "max_tokens", tools=(CALC,))
    assert types(events) == ["LlmCallCompleted", "TurnFailed"]
    assert payload(events, TurnFailed).error_type == "TruncatedToolCall"
    assert fold(d.log, "s1") == d.state


def test_on_truncated_tool_call_fail_ends_the_turn_at_once() -> None:
    d = Driver(make_registry(agent("strict", on_truncated_tool_call="fail")))
    d.send(SendMessage("go"), agent="strict")
    events = _stop(d, "max_tokens", tools=(CALC,))
    assert types(events) == ["LlmCallCompleted", "TurnFailed"]
    assert "was not run" in payload(events, TurnFailed).reason


def test_a_plain_max_tokens_answer_without_tools_is_still_the_answer() -> None:
    d = running()
    events = _stop(d, "max_tokens")
    assert types(events) == ["LlmCallCompleted", "TurnCompleted"]


def test_a_context_window_stop_compacts_and_retries_once_then_fails() -> None:
    d = running()
    for i in range(3):  # some history to compact
        d.answer(f"answer {i}")
        d.send(SendMessage(f"message {i}"))
    events = _stop(d, "model_context_window_exceeded")
    assert types(events)[0] == "LlmCallCompleted"
    assert payload(events, LlmCallCompleted).discarded == "context_window"
    assert "ContextCompacted" in types(events) and types(events)[-1] == "LlmCallRequested"
    events = _stop(d, "model_context_window_exceeded")
    assert types(events) == ["LlmCallCompleted", "TurnFailed"]
    assert payload(events, TurnFailed).error_type == "ContextWindowExceeded"
    assert fold(d.log, "s1") == d.state


def test_queued_messages_are_not_lost_by_a_refused_turn() -> None:
    d = running()
    d.send(SendMessage("try again"))
    events = _stop(d, "refusal")
    assert types(events)[-3:] == ["TurnStarted", "UserMessageReceived", "LlmCallRequested"]
    assert isinstance(events[-3].payload, TurnStarted)
    assert events[-3].payload.queued_seq is not None
    assert d.state.queue == ()
