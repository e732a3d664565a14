"""SessionState <-> JSON-safe dict, and the persistent vector behind the history."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents._pvec import CHUNK, PVec, pvec_of
from agents.errors import ContractError
from agents.events import (
    ChildStatus,
    CompleteChildSession,
    CompleteCompaction,
    CompleteToolCall,
    DecideApproval,
    SendMessage,
    Usage,
)
from agents.state import Phase, initial_state
from agents.state_codec import state_from_dict, state_to_dict
from tests.unit.test_fsm_support import Driver

BIG = "word " * 2_500


def roundtrip(state):  # type: ignore[no-untyped-def]
    return state_from_dict(json.loads(json.dumps(state_to_dict(state))))


def test_every_state_of_a_rich_session_roundtrips() -> None:
    d = Driver()
    states = [d.state]
    d.send(SendMessage("hello"), agent="summarizer")
    states.append(d.state)
    d.answer(
        "mixed",
        tools=[
            ("c1", "calculator", '{"expression": "1"}'),
            ("c2", "shell", '{"command": "ls"}'),
            ("c4", "delegate", '{"agent": "researcher", "task": "t"}'),
        ],
    )
    states.append(d.state)
    d.send(CompleteToolCall("c1", "1"))
    d.send(CompleteChildSession("c4", "s1/child/c4", ChildStatus.FAILED, "x", Usage(1, 1), 5))
    states.append(d.state)
    d.send(DecideApproval("c2", True, "alice"))
    states.append(d.state)
    d.send(CompleteToolCall("c2", "files"))
    d.answer("ok")
    for _ in range(3):
        d.send(SendMessage(BIG))
        states.append(d.state)
        if d.state.phase is Phase.COMPACTING:
            d.send(CompleteCompaction(d.llm_call_id, "gist", "scripted-summarizer"))
            states.append(d.state)
        d.answer("ok")
        states.append(d.state)
    assert d.state.history.summary is not None  # the session did compact with a summary
    for state in states:
        assert roundtrip(state) == state


def test_unknown_format_and_garbage_are_contract_errors() -> None:
    data = state_to_dict(initial_state("s1"))
    with pytest.raises(ContractError, match="format 99"):
        state_from_dict({**data, "v": 99})
    with pytest.raises(ContractError, match="malformed"):
        state_from_dict({**data, "entries": [[1]]})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(), max_size=5 * CHUNK + 3), st.integers(0, 6 * CHUNK))
def test_pvec_behaves_like_a_tuple(items: list[int], start: int) -> None:
    v: PVec[int] = PVec((), ())
    for i, x in enumerate(items):
        prev = v
        v = v.append(x)
        assert prev.size() == i  # appends never change the old vector
    assert v.size() == len(items)
    assert list(v.items()) == items
    assert list(v.iter_from(start)) == items[start:]
    assert all(v.get(i) == x for i, x in enumerate(items))
    assert v == pvec_of(items)  # canonical: equal contents, equal vectors
    assert v.last() == (items[-1] if items else None)
    with pytest.raises(IndexError):
        v.get(len(items))
