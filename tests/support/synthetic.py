"""Realistic synthetic session logs, for the projector's tests and benchmark.

Rule: deterministic from the seed and the base time (no clock, no uuid4), and every
session log obeys the event contract the session worker guarantees: seqs 1, 2, 3, … per
session, a fork starts with SessionForked at at_seq + 1, each piece of content in exactly
one event, and every LlmCallCompleted carries the cost of its usage at catalog prices
(agents.pricing) — so tests can recompute costs independently from the usage.

Shapes produced: plain turns, tool calls (allowed, denied by policy, approved, denied by
a human, expired), failing tools, retried/failed LLM calls with fallbacks and opened
circuits, re-issued effects, summarize compactions (priced) and sliding-window ones,
delegation to child sessions (linked both ways), and forks of finished sessions.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.events import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ChildSessionCompleted,
    ChildSessionRequested,
    ChildStatus,
    ContextCompacted,
    ContextCompactionRequested,
    EffectKind,
    EffectReissued,
    Event,
    LlmCallCompleted,
    LlmCallFailed,
    LlmCallRequested,
    PolicyAction,
    ProviderCircuitOpened,
    SessionClosed,
    SessionForked,
    SessionStarted,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCompleted,
    TurnStarted,
    Usage,
    UserMessageReceived,
    event_id_for,
)
from agents.pricing import cost_nanos

__all__ = ["AGENTS", "MODELS", "SessionLog", "generate", "interleave"]

MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "scripted-medium")
AGENTS = ("support", "researcher", "coder")
_TOOLS = ("search", "read_file", "write_file", "run_tests", "http_get")


@dataclass(slots=True)
class SessionLog:
    """One session's events in seq order."""

    session_id: str
    agent: str
    events: list[Event] = field(default_factory=list)
    clock: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    # seqs at which a turn had just completed: safe fork points
    fork_points: list[int] = field(default_factory=list)

    @property
    def next_seq(self) -> int:
        return (self.events[-1].seq + 1) if self.events else 1

    def emit(self, payload: Any, turn_id: str | None = None, step_ms: int = 40) -> Event:
        self.clock += timedelta(milliseconds=step_ms)
        seq = (
            self.next_seq
            if self.events or not isinstance(payload, SessionForked)
            else (payload.at_seq + 1)
        )
        event = Event(
            event_id=event_id_for(self.session_id, seq),
            session_id=self.session_id,
            seq=seq,
            occurred_at=self.clock,
            agent=self.agent,
            payload=payload,
            turn_id=turn_id,
            causation_id=f"req-{self.session_id}-{seq}",
            correlation_id=self.session_id,
        )
        self.events.append(event)
        return event


class _Gen:
    def __init__(self, rng: random.Random, base: datetime) -> None:
        self.rng = rng
        self.base = base
        self.logs: list[SessionLog] = []
        self.n = 0

    def new_log(self, sid: str, agent: str) -> SessionLog:
        offset = timedelta(seconds=self.rng.randrange(0, 3 * 24 * 3600))
        log = SessionLog(sid, agent, clock=self.base + offset)
        self.logs.append(log)
        return log

    def usage(self) -> Usage:
        r = self.rng
        return Usage(
            r.randrange(200, 4000),
            r.randrange(20, 800),
            r.choice((0, 0, 1500)),
            r.choice((0, 0, 0, 900)),
        )

    def llm_call(
        self, log: SessionLog, turn: str, iteration: int, tools: int, purpose: str = "turn"
    ) -> tuple[LlmCallCompleted | None, list[str]]:
        r = self.rng
        self.n += 1
        call_id = f"llm-{self.n}"
        model = r.choice(MODELS)
        fallbacks = tuple(m for m in MODELS if m != model)[:1]
        log.emit(
            LlmCallRequested(
                call_id=call_id,
                model=model,
                fallbacks=fallbacks,
                max_tokens=1024,
                temperature=0.2,
                context_entries=6,
                context_ranges=(max(1, log.next_seq - 6), max(1, log.next_seq - 1)),
                system_prompt_hash="sp" * 8,
                toolset_hash="ts" * 8,
                request_digest=f"{self.n:064x}",
                iteration=iteration,
                deadline_at=log.clock + timedelta(seconds=60),
                reserved_tokens=5000,
                reserved_nanos=50_000_000,
                purpose=purpose,
            ),
            turn,
        )
        if r.random() < 0.04:
            log.emit(
                EffectReissued(call_id, EffectKind.LLM_CALL, 2, log.clock + timedelta(seconds=60)),
                turn,
            )
        fallback = r.random() < 0.08
        if fallback:
            log.emit(ProviderCircuitOpened(call_id, f"anthropic/{model}"), turn)
            model = fallbacks[0]
        if r.random() < 0.03:
            log.emit(
                LlmCallFailed(call_id, "overloaded", "provider overloaded (529)", 3, 900), turn
            )
            return None, []
        usage = self.usage()
        tool_ids = [f"tool-{self.n}-{i}" for i in range(tools)]
        done = LlmCallCompleted(
            call_id=call_id,
            model=model,
            text=""
            if tools and r.random() < 0.5
            else f"Answer {self.n}: " + "lorem " * r.randrange(3, 40),
            tool_call_ids=tuple(tool_ids),
            stop_reason="tool_use" if tools else "end_turn",
            usage=usage,
            cost_nanos=cost_nanos(model, usage),
            latency_ms=r.randrange(200, 9000),
            attempts=2 if fallback else 1,
            fallback_used=fallback,
        )
        log.emit(done, turn, step_ms=r.randrange(200, 3000))
        return done, tool_ids

    def tool(self, log: SessionLog, turn: str, llm_call: str, call_id: str) -> None:
        r = self.rng
        name = r.choice(_TOOLS)
        args = f'{{"q":"item {call_id}","n":{r.randrange(1, 9)}}}'
        roll = r.random()
        decision = (
            PolicyAction.DENY
            if roll < 0.05
            else PolicyAction.REQUIRE_APPROVAL
            if roll < 0.25
            else PolicyAction.ALLOW
        )
        log.emit(
            ToolCallRequested(
                call_id,
                llm_call,
                name,
                args,
                decision,
                None if decision is PolicyAction.ALLOW else f"rule-{name}",
                log.clock + timedelta(seconds=30),
            ),
            turn,
        )
        if decision is PolicyAction.DENY:
            log.emit(ToolCallFailed(call_id, f"Policy rule-{name} denies {name}."), turn)
            return
        if decision is PolicyAction.REQUIRE_APPROVAL:
            log.emit(ApprovalRequested(call_id, name, log.clock + timedelta(minutes=10)), turn)
            outcome = r.random()
            # As the session worker does: the denial, then the tool result saying so.
            if outcome < 0.15:
                log.emit(
                    ApprovalDenied(call_id, "alice", "not today"),
                    turn,
                    step_ms=r.randrange(1000, 60000),
                )
                log.emit(ToolCallFailed(call_id, "Denied by alice: not today"), turn)
                return
            if outcome < 0.2:
                log.emit(
                    ApprovalDenied(call_id, "deadline", "Nobody decided.", expired=True),
                    turn,
                    step_ms=600_000,
                )
                log.emit(ToolCallFailed(call_id, "Denied: the approval expired."), turn)
                return
            log.emit(
                ApprovalGranted(call_id, r.choice(("alice", "bob"))),
                turn,
                step_ms=r.randrange(1000, 60000),
            )
        if r.random() < 0.03:
            log.emit(
                EffectReissued(call_id, EffectKind.TOOL_CALL, 2, log.clock + timedelta(seconds=30)),
                turn,
            )
        if r.random() < 0.1:
            log.emit(ToolCallFailed(call_id, f"{name} timed out", r.randrange(10, 30000)), turn)
        else:
            log.emit(
                ToolCallCompleted(
                    call_id,
                    f"result of {name}: " + "data " * r.randrange(1, 30),
                    r.randrange(5, 3000),
                ),
                turn,
            )

    def turn(self, log: SessionLog, turn_no: int, *, may_delegate: bool) -> None:
        r = self.rng
        turn = f"{log.session_id}/t{turn_no}"
        log.emit(TurnStarted(turn_no), turn)
        log.emit(
            UserMessageReceived(
                f"Question {turn_no} of {log.session_id}: " + "why " * r.randrange(1, 20)
            ),
            turn,
        )
        usage_total = Usage()
        cost_total = 0
        answer_seq = 0
        for iteration in range(1, r.randrange(2, 5)):
            if r.random() < 0.05:
                self.compaction(log, turn)
            tools = r.choice((0, 0, 1, 1, 2, 3)) if iteration < 3 else 0
            done, tool_ids = self.llm_call(log, turn, iteration, tools)
            if done is None:
                continue
            u = done.usage
            usage_total = Usage(
                usage_total.input_tokens + u.input_tokens,
                usage_total.output_tokens + u.output_tokens,
                usage_total.cache_read_tokens + u.cache_read_tokens,
                usage_total.cache_write_tokens + u.cache_write_tokens,
            )
            cost_total += done.cost_nanos
            answer_seq = log.events[-1].seq
            for call_id in tool_ids:
                if may_delegate and r.random() < 0.15:
                    self.delegate(log, turn, done.call_id, call_id)
                else:
                    self.tool(log, turn, done.call_id, call_id)
            if not tool_ids:
                break
        log.emit(TurnCompleted(turn_no, max(answer_seq, 1), usage_total, cost_total, 1), turn)
        log.fork_points.append(log.events[-1].seq)

    def compaction(self, log: SessionLog, turn: str) -> None:
        r = self.rng
        self.n += 1
        cid = f"cmp-{self.n}"
        seqs = tuple(e.seq for e in log.events[:4])
        if r.random() < 0.5:
            log.emit(ContextCompactionRequested(cid, "sliding_window", seqs, 9000, 8000), turn)
            log.emit(ContextCompacted(cid, "sliding_window", seqs, None, 6000), turn)
            return
        log.emit(ContextCompactionRequested(cid, "summarize", seqs, 9000, 8000), turn)
        model = "scripted-summarizer"
        # The summary is an LLM call with the compaction's id; ContextCompacted is its
        # outcome (with usage and cost), as the session worker records it.
        log.emit(
            LlmCallRequested(
                call_id=cid,
                model=model,
                fallbacks=(),
                max_tokens=512,
                temperature=0.0,
                context_ranges=(min(seqs), max(seqs)) if seqs else (),
                context_entries=len(seqs),
                system_prompt_hash="sum" * 4,
                toolset_hash="none",
                request_digest=f"{self.n:064x}",
                iteration=1,
                deadline_at=log.clock + timedelta(seconds=60),
                purpose="summarize",
            ),
            turn,
        )
        usage = self.usage()
        log.emit(
            ContextCompacted(
                cid,
                "summarize",
                seqs,
                "Summary: " + "gist " * 10,
                2000,
                usage,
                cost_nanos(model, usage),
                model,
            ),
            turn,
        )

    def delegate(self, parent: SessionLog, turn: str, llm_call: str, call_id: str) -> None:
        r = self.rng
        child_id = f"{parent.session_id}.{call_id}"
        agent = r.choice(AGENTS)
        parent.emit(
            ToolCallRequested(
                call_id,
                llm_call,
                "delegate",
                '{"task":"sub"}',
                PolicyAction.ALLOW,
                None,
                parent.clock + timedelta(minutes=5),
            ),
            turn,
        )
        parent.emit(ChildSessionRequested(call_id, child_id, agent, "sub task"), turn)
        child = self.new_log(child_id, agent)
        child.clock = parent.clock
        child.emit(SessionStarted(agent, "def" * 4, parent.session_id, call_id))
        self.turn(child, 1, may_delegate=False)
        # The child's cost is its own; the parent's view rolls it up through the link.
        finished = child.events[-1].payload
        assert isinstance(finished, TurnCompleted)
        parent.clock = max(parent.clock, child.clock)
        parent.emit(
            ChildSessionCompleted(
                call_id,
                child_id,
                ChildStatus.COMPLETED,
                "child answer " + child_id,
                finished.usage,
                finished.cost_nanos,
            ),
            turn,
        )


def generate(
    n_events: int, *, seed: int = 7, base: datetime, fork_ratio: float = 0.1, prefix: str = "s"
) -> list[SessionLog]:
    """Session logs with about `n_events` events in all (a little more, never less)."""
    rng = random.Random(seed)
    gen = _Gen(rng, base)
    k = 0
    total = 0
    while total < n_events:
        k += 1
        roots = [log for log in gen.logs if log.fork_points]
        if roots and rng.random() < fork_ratio:
            source = rng.choice(roots)
            at = rng.choice(source.fork_points)
            log = gen.new_log(f"{prefix}{k}", source.agent)
            log.clock = source.events[at - source.events[0].seq].occurred_at
            log.emit(SessionForked(source.session_id, at, source.agent, "def" * 4))
            first_turn = (
                sum(1 for e in source.events if e.seq <= at and isinstance(e.payload, TurnStarted))
                + 1
            )
        else:
            log = gen.new_log(f"{prefix}{k}", rng.choice(AGENTS))
            log.emit(SessionStarted(log.agent, "def" * 4))
            first_turn = 1
        for t in range(first_turn, first_turn + rng.randrange(1, 4)):
            gen.turn(log, t, may_delegate=True)
        if rng.random() < 0.2:
            log.emit(SessionClosed("done"))
        total = sum(len(x.events) for x in gen.logs)
    return gen.logs


def interleave(logs: list[SessionLog], *, seed: int = 7) -> Iterator[Event]:
    """All events, each session's in seq order, sessions randomly interleaved."""
    rng = random.Random(seed)
    cursors = [[log.events, 0] for log in logs if log.events]
    while cursors:
        i = rng.randrange(len(cursors))
        events, pos = cursors[i]
        assert isinstance(events, list) and isinstance(pos, int)
        yield events[pos]
        if pos + 1 == len(events):
            cursors[i] = cursors[-1]
            cursors.pop()
        else:
            cursors[i][1] = pos + 1
