"""A hypothesis state machine drives one session (and its forks) with random valid and
invalid inputs: parallel tool calls, approvals, delegations, ticks past deadlines,
compaction, cancels, closes, forks, duplicates and outcomes for unknown effects.

Invariants, after every input:
- seqs are gap-free and strictly +1 across the whole log (ancestry included);
- folding the log from scratch gives the incremental state;
- decide is deterministic (same state + request -> same events);
- decide_built hands back exactly one LlmRequest per LlmCallRequested it emitted, equal
  to the request rebuilt from the state and with the digest the event records;
- an accepted input ends in a phase its transition-table row allows;
- a rejection is a single RequestRejected and changes nothing but last_seq;
- after a turn ends nothing is pending; in idle/closed nothing is pending;
- a closed session answers everything with a rejection;
- the state survives its JSON dict round trip.
"""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agents.context import build_llm_request
from agents.effects import next_deadline, pending_effects
from agents.events import (
    CancelTurn,
    ChildStatus,
    CloseSession,
    CompleteChildSession,
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    DecideApproval,
    Event,
    FailLlmCall,
    FailToolCall,
    ForkSession,
    LlmCallCompleted,
    LlmCallRequested,
    Request,
    RequestPayload,
    RequestRejected,
    SendMessage,
    SessionForked,
    SessionSnapshot,
    Tick,
    ToolUse,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
)
from agents.fold import fold, fork_base
from agents.fsm import decide, decide_and_evolve, decide_built, evolve, initial_state
from agents.llm import LlmRequest
from agents.snapshots import snapshot_of, state_of
from agents.state import CallStatus, Phase, SessionState, step_phase
from agents.state_codec import state_from_dict, state_to_dict
from agents.transitions import TRANSITIONS
from projections.fold import NOT_STARTED
from projections.fold import fold as project
from projections.rows import Changes
from schemas.codec import decode_snapshot, encode_snapshot
from tests.unit.test_fsm_support import REGISTRY, T0

BIG = "lorem ipsum " * 1_100  # ~3,300 estimated tokens: a few of them trigger compaction
TOOLS = {
    "calc": ("calculator", '{"expression": "2*21"}'),
    "time": ("current_time", "{}"),
    "ls": ("shell", '{"command": "ls"}'),
    "rm": ("shell", '{"command": "rm -rf /"}'),
    "delegate": ("delegate", '{"agent": "researcher", "task": "look it up"}'),
    "bad_delegate": ("delegate", '{"agent": "nobody", "task": "x"}'),
    "unknown": ("teleport", "{}"),
    "bad_args": ("calculator", "[1]"),
}
AGENTS = ("assistant", "summarizer", "oldest", "budgeted")
ENDS = (TurnCompleted, TurnFailed, TurnCancelled)


def check_built(events: list[Event], after: SessionState, built: dict[str, LlmRequest]) -> None:
    """The requests a decision built are those its LlmCallRequested facts record."""
    requested = [e.payload for e in events if isinstance(e.payload, LlmCallRequested)]
    assert sorted(built) == sorted(p.call_id for p in requested)
    for payload in requested:
        request = built[payload.call_id]
        assert request.digest() == payload.request_digest
        assert request == build_llm_request(after, payload, REGISTRY)


def _late(events: list[Event]) -> bool:
    """The late answer of a call a cancel abandoned: charged in whatever phase it comes."""
    p = events[0].payload
    return isinstance(p, LlmCallCompleted) and p.discarded == "late"


class FsmMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sid = "p1"
        self.state = initial_state(self.sid)
        self.log: list[Event] = []
        self.now = T0
        self.n = 0
        self.sent: list[Request] = []
        self.forks = 0

    # ------------------------------------------------------------------ plumbing

    def request(
        self, payload: RequestPayload, agent: str | None = None, advance: float = 1.0
    ) -> Request:
        self.n += 1
        self.now += timedelta(seconds=advance)
        return Request(f"q{self.n}", self.sid, self.now, payload, agent=agent)

    def send(
        self, payload: RequestPayload, agent: str | None = None, advance: float = 1.0
    ) -> list[Event]:
        return self.apply(self.request(payload, agent, advance))

    def apply(self, req: Request) -> list[Event]:
        before = self.state
        events, after, built = decide_built(before, req, REGISTRY)
        assert decide_and_evolve(before, req, REGISTRY) == (events, after)
        assert decide(before, req, REGISTRY) == events, "decide is not deterministic"
        check_built(events, after, built)
        rejected = [e for e in events if isinstance(e.payload, RequestRejected)]
        if before.phase is Phase.CLOSED:
            # Nothing but the late answer of a call the close abandoned (money spent).
            assert len(events) == 1 and (rejected or _late(events)), (
                "a closed session accepted an input"
            )
        if rejected:
            assert len(events) == 1
            assert after == before._replace(last_seq=before.last_seq + 1)
        elif events and not _late(events):
            row = TRANSITIONS[(before.phase, type(req.payload))]
            assert after.phase in row.targets, (before.phase, type(req.payload), after.phase)
        ends = [i for i, e in enumerate(events) if isinstance(e.payload, ENDS)]
        if ends:
            queued = [e for e in events[ends[-1] :] if isinstance(e.payload, TurnStarted)]
            if queued:
                # The queue's head started the next turn in the same decision.
                head = queued[0].payload
                assert head.queued_seq is not None and head.queued_seq not in {
                    q.seq for q in after.queue
                }
            else:
                assert after.turn is None and pending_effects(after) == []
                assert not after.queue or after.phase is Phase.CLOSED
        self.sent.append(req)
        self.state = after
        self.log.extend(events)
        return events

    def calls(self, status: str) -> list[str]:
        turn = self.state.turn
        return [c.call_id for c in turn.calls if c.status == status] if turn else []

    def llm_id(self, purpose: str) -> str:
        turn = self.state.turn
        if turn and turn.llm and turn.llm.request.purpose == purpose:
            return turn.llm.request.call_id
        return "no-such-call"

    # ------------------------------------------------------------------ rules
    # `advance` makes a valid move for the current phase (drawn among the valid ones),
    # and is registered four times so that sessions get deep into turns; the other
    # rules perturb: time passes, junk and duplicate inputs, cancels, closes, forks.

    def _advance(self, data: st.DataObject) -> None:
        phase = self.state.phase
        draw = data.draw
        if phase in (Phase.NEW, Phase.IDLE, Phase.CLOSED):
            text = BIG if draw(st.booleans()) else "hello"
            self.send(SendMessage(text), agent=draw(st.sampled_from(AGENTS)))
        elif phase is Phase.AWAITING_LLM:
            if draw(st.integers(0, 9)) == 0:
                self.send(FailLlmCall(self.llm_id("turn"), "overloaded", "529"))
                return
            tools = draw(st.lists(st.sampled_from(sorted(TOOLS)), max_size=4))
            uses = tuple(ToolUse(f"u{self.n}x{i}", *TOOLS[t]) for i, t in enumerate(tools))
            usage = draw(st.integers(0, 2_000))
            text = BIG if draw(st.integers(0, 3)) == 0 else "answer"
            self.send(
                CompleteLlmCall(
                    self.llm_id("turn"),
                    "scripted-small",
                    text,
                    tool_uses=uses,
                    usage=Usage(usage, usage // 10),
                )
            )
        elif phase is Phase.COMPACTING:
            outcome = draw(st.sampled_from(["summary", "empty", "fail"]))
            cid = self.llm_id("summarize")
            if outcome == "fail":
                self.send(FailLlmCall(cid, "overloaded", "529"))
            else:
                summary = "" if outcome == "empty" else "the gist"
                self.send(CompleteCompaction(cid, summary, "scripted-summarizer", Usage(300, 30)))
        else:
            turn = self.state.turn
            assert turn is not None
            call = draw(st.sampled_from(turn.calls))
            if call.status == CallStatus.APPROVAL:
                self.send(DecideApproval(call.call_id, draw(st.booleans()), "alice"))
            elif call.status == CallStatus.CHILD:
                status = draw(st.sampled_from(list(ChildStatus)))
                self.send(
                    CompleteChildSession(
                        call.call_id,
                        call.child_session_id,
                        status,
                        "child says hi",
                        Usage(5, 5),
                        777,
                    )
                )
            elif draw(st.booleans()):
                self.send(CompleteToolCall(call.call_id, "42"))
            else:
                self.send(FailToolCall(call.call_id, "boom"))

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        self._advance(data)

    @rule(data=st.data())
    def advance_more(self, data: st.DataObject) -> None:
        self._advance(data)

    @rule(data=st.data())
    def advance_even_more(self, data: st.DataObject) -> None:
        self._advance(data)

    @rule(data=st.data())
    def advance_yet_more(self, data: st.DataObject) -> None:
        self._advance(data)

    @rule(data=st.data())
    def junk(self, data: st.DataObject) -> None:
        """An input that is (almost always) illegal: an outcome for an unknown or stale
        effect, an approval for a call that awaits none, a misrouted child outcome."""
        turn = self.state.turn
        known = [c.call_id for c in turn.calls] if turn else []
        call_id = data.draw(st.sampled_from([*known, "nope", "u1x0"]))
        payload = data.draw(
            st.sampled_from(
                [
                    CompleteLlmCall("s/llm/999", "scripted-small", "x"),
                    FailLlmCall("s/llm/999", "E", "m"),
                    CompleteCompaction("s/compact/9", "gist", "scripted-small"),
                    CompleteToolCall(call_id, "x"),
                    DecideApproval(call_id, True, "mallory"),
                    CompleteChildSession(call_id, "elsewhere", ChildStatus.COMPLETED),
                    ForkSession("p0", 1),
                    SendMessage("   "),
                    SendMessage("hello"),
                    CancelTurn(),
                    CloseSession() if self.n % 9 == 0 else Tick(),
                ]
            )
        )
        self.send(payload, agent=data.draw(st.sampled_from([None, "assistant", "ghost"])))

    @rule(seconds=st.sampled_from([1, 30, 61, 100, 250]))
    def tick(self, seconds: float) -> None:
        self.send(Tick(), advance=seconds)

    @precondition(lambda self: self.state.turn is not None)
    @rule(drop=st.booleans())
    def cancel(self, drop: bool) -> None:
        self.send(CancelTurn("changed my mind", drop_queue=drop))

    @precondition(lambda self: self.state.turn is not None)
    @rule(text=st.sampled_from(["and also", BIG]))
    def queue_message(self, text: str) -> None:
        self.send(SendMessage(text))

    @precondition(lambda self: bool(self.state.queue))
    @rule(data=st.data())
    def drop_queued(self, data: st.DataObject) -> None:
        queued = data.draw(st.sampled_from(self.state.queue))
        self.send(CancelTurn(queued_request_id=queued.request_id))

    @precondition(lambda self: bool(self.state.abandoned))
    @rule(data=st.data(), tokens=st.integers(0, 500))
    def late_answer(self, data: st.DataObject, tokens: int) -> None:
        call_id, _model = data.draw(st.sampled_from(self.state.abandoned))
        spent = self.state.spent_tokens
        events = self.send(
            CompleteLlmCall(call_id, "scripted-small", "too late", usage=Usage(tokens, 1))
        )
        if not any(isinstance(e.payload, RequestRejected) for e in events):
            assert self.state.spent_tokens == spent + tokens + 1
            assert call_id not in {a[0] for a in self.state.abandoned}

    @precondition(lambda self: self.state.phase is Phase.AWAITING_LLM)
    @rule(
        stop=st.sampled_from(
            ["max_tokens", "refusal", "pause_turn", "model_context_window_exceeded"]
        ),
        with_tool=st.booleans(),
    )
    def stop_reason(self, stop: str, with_tool: bool) -> None:
        uses = (ToolUse(f"u{self.n}s", *TOOLS["calc"]),) if with_tool else ()
        self.send(
            CompleteLlmCall(
                self.llm_id("turn"),
                "scripted-small",
                "partial",
                tool_uses=uses,
                stop_reason=stop,
                usage=Usage(10, 10),
            )
        )

    @precondition(lambda self: self.n > 25 and self.n % 4 == 0)
    @rule()
    def close(self) -> None:
        self.send(CloseSession())

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from(self.sent[-20:]))
        if old.session_id == self.sid:
            # A request that was accepted is remembered and rejected when it comes again;
            # one that was rejected changed nothing, so it is decided afresh.
            remembered = old.request_id in self.state.recent_requests
            events = self.apply(old)
            if remembered:
                assert [type(e.payload) for e in events] == [RequestRejected]

    @precondition(lambda self: self.state.last_seq > 0 and self.forks < 2)
    @rule(data=st.data(), agent=st.sampled_from([None, "assistant", "ghost"]))
    def fork(self, data: st.DataObject, agent: str | None) -> None:
        at_seq = data.draw(st.integers(1, self.state.last_seq))
        prefix = [e for e in self.log if e.seq <= at_seq]
        # A seq inside a fork's shared ancestry belongs to the ancestor that wrote it.
        source = prefix[-1].session_id
        new_id = f"{self.sid}.f{self.forks}"
        base = fork_base(fold(prefix, source), new_id)
        self.n += 1
        req = Request(f"q{self.n}", new_id, self.now, ForkSession(source, at_seq, agent))
        events, after, built = decide_built(base, req, REGISTRY)
        assert decide(base, req, REGISTRY) == events
        assert built == {}  # a fork requests no LLM call
        if isinstance(events[0].payload, SessionForked):
            assert events[0].seq == at_seq + 1 and after.phase is Phase.IDLE
            assert pending_effects(after) == []
            self.forks += 1
            self.sid, self.state, self.log = new_id, after, prefix + events
        else:
            assert events[0].seq == 1 and after == initial_state(new_id)._replace(last_seq=1)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def seqs_are_gap_free(self) -> None:
        assert [e.seq for e in self.log] == list(range(1, len(self.log) + 1))
        assert self.state.last_seq == len(self.log)

    @invariant()
    def fold_equals_incremental(self) -> None:
        assert fold(self.log, self.sid) == self.state

    @invariant()
    def phase_agrees_with_pending_work(self) -> None:
        s: SessionState = self.state
        if s.phase in (Phase.NEW, Phase.IDLE, Phase.CLOSED):
            assert s.turn is None and pending_effects(s) == [] and next_deadline(s) is None
        else:
            turn = s.turn
            assert turn is not None
            if turn.llm is not None:
                expected = (
                    Phase.COMPACTING
                    if turn.llm.request.purpose == "summarize"
                    else (Phase.AWAITING_LLM)
                )
                assert s.phase is expected and not turn.calls
            else:
                assert turn.calls and s.phase is step_phase(turn.calls)
            assert next_deadline(s) is not None

    @invariant()
    def snapshot_plus_tail_equals_fold(self) -> None:
        """A restore from a snapshot taken after any event, plus the events after it,
        is the state the whole log folds into (the snapshot envelope round-trips the
        codec too)."""
        # A forked session's log starts with its ancestry: its own part begins with
        # SessionForked, and its snapshots are taken in that part.
        own = next((i for i, e in enumerate(self.log) if e.session_id == self.sid), None)
        if own is None:
            return
        n = len(self.log)
        for k in {k for k in (n // 2, n - 1, n) if k > own}:
            state = self.state if k == len(self.log) else fold(self.log[:k], self.sid)
            record = decode_snapshot(encode_snapshot(snapshot_of(state, events_offset=k, now=T0)))
            assert isinstance(record.payload, SessionSnapshot)
            assert record.payload.seq == k and record.payload.next_deadline == next_deadline(state)
            restored = state_of(record.payload)
            assert restored == state
            for ev in self.log[k:]:
                restored = evolve(restored, ev)
            assert restored == self.state

    @invariant()
    def projection_phase_is_the_core_phase(self) -> None:
        """The Postgres projection's phase (projections.fold, through agents.phases) is
        the phase evolve gives, after every input (the projection folds the session's own
        events; a fork's begin with SessionForked)."""
        row = None
        changes = Changes()
        for ev in self.log:
            if ev.session_id != self.sid:
                continue
            row = project(row, ev, changes, partition=0, offset=ev.seq, digest="")
        if row is None:
            return
        expected = NOT_STARTED if self.state.phase is Phase.NEW else self.state.phase.value
        assert row.phase == expected, (row.phase, self.state.phase, row.pending_calls)

    @invariant()
    def state_survives_json(self) -> None:
        assert state_from_dict(json.loads(json.dumps(state_to_dict(self.state)))) == self.state


FsmMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestFsmMachine = FsmMachine.TestCase
