"""Replay: a session's log from Kafka, folded through the FSM into a timeline.

Rule: replay reads facts and folds them with the pure core (`agents.fsm.evolve`), exactly
as a session worker rebuilds its state; it never calls an LLM, a tool or the clock, and
never writes anything but the export file it is asked for. The log of a forked session
is its fork ancestry (each source's events up to the fork's at_seq, oldest first) and
then its own events, so `--to SEQ` works on the inherited prefix too.

    log = await load_session_log(bootstrap, topic_names(prefix), "s-1")
    result = replay(log, to_seq=12)          # timeline rows + the state at seq 12
    export_jsonl(log, "s-1.jsonl")           # event_to_dict per line, ancestry included
    log = load_jsonl("s-1.jsonl")            # replay without Kafka

`turnlog replay` (turnlog/cli/replay.py) prints it; `turnlog.replay_verify` re-decides
the recorded inputs against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from agents.errors import ContractError
from agents.events import (
    ApprovalRequested,
    ContextCompacted,
    Event,
    LlmCallCompleted,
    LlmCallFailed,
    SessionForked,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
)
from agents.fsm import evolve, fork_base, initial_state
from agents.state import SessionState, window_entries
from schemas.codec import decode_event, event_from_dict, event_to_dict
from streams.logread import read_keyed, topic_partitions
from streams.partitioning import partition_for
from streams.topics import TopicNames
from turnlog._render import Describer

__all__ = [
    "Replay",
    "SessionLog",
    "SessionNotFound",
    "TimelineRow",
    "Totals",
    "export_jsonl",
    "load_jsonl",
    "load_session_log",
    "replay",
    "state_summary",
]

# A fork chain deeper than this is a cycle in corrupt data, not a real history.
_MAX_FORK_DEPTH = 1000


class SessionNotFound(ContractError):
    """The events topic holds no event of that session."""


@dataclass(frozen=True, slots=True)
class SessionLog:
    """What replay folds: `events[:own_from]` is the fork ancestry, the rest the
    session's own events; `sources` is the fork chain, nearest source first."""

    session_id: str
    events: tuple[Event, ...]
    own_from: int = 0
    sources: tuple[tuple[str, int], ...] = ()

    @property
    def own(self) -> tuple[Event, ...]:
        return self.events[self.own_from :]

    @property
    def ancestry(self) -> tuple[Event, ...]:
        return self.events[: self.own_from]


async def _own_events(bootstrap: str, topic: str, partitions: int, session_id: str) -> list[Event]:
    records = await read_keyed(
        bootstrap,
        topic,
        partition_for(session_id, partitions),
        (session_id,),
        decode_event,
        session_of=lambda e: e.session_id,
        client_id="turnlog-replay",
    )
    return [r.value for r in records]


async def load_session_log(
    bootstrap: str, topics: TopicNames, session_id: str, *, partitions: int | None = None
) -> SessionLog:
    """The session's log from the events topic (read_committed), ancestry included.
    SessionNotFound when the session has no events."""
    if partitions is None:
        partitions = await topic_partitions(bootstrap, topics.events)
    own = await _own_events(bootstrap, topics.events, partitions, session_id)
    if not own:
        raise SessionNotFound(
            f"Session {session_id} has no events in {topics.events} (partition "
            f"{partition_for(session_id, partitions)} of {partitions})."
        )
    chain: list[list[Event]] = [own]
    sources: list[tuple[str, int]] = []
    first = own[0]
    while isinstance(first.payload, SessionForked):
        source, at_seq = first.payload.source_session_id, first.payload.at_seq
        while True:
            if len(sources) >= _MAX_FORK_DEPTH or source in {s for s, _ in sources}:
                raise ContractError(f"Session {session_id}: its fork chain loops at {source}.")
            source_own = await _own_events(bootstrap, topics.events, partitions, source)
            head = source_own[0] if source_own else None
            if head is not None and isinstance(head.payload, SessionForked) and at_seq < head.seq:
                # The fork point lies in the source's own ancestry: go up to its source.
                sources.append((source, at_seq))
                source = head.payload.source_session_id
                continue
            break
        sources.append((source, at_seq))
        events = [e for e in source_own if e.seq <= at_seq]
        if not events:
            raise SessionNotFound(
                f"Session {session_id} was forked from {source} at seq {at_seq}, and "
                f"{topics.events} holds no event of {source}."
            )
        chain.append(events)
        first = events[0]
    ancestry = [e for part in reversed(chain[1:]) for e in part]
    return SessionLog(session_id, tuple(ancestry + own), len(ancestry), tuple(sources))


def export_jsonl(log: SessionLog, path: str | Path) -> int:
    """Write every event of the log (ancestry first) as one JSON object per line, in the
    codec's JSON form; returns the number written."""
    with Path(path).open("w", encoding="utf-8") as out:
        for ev in log.events:
            out.write(json.dumps(event_to_dict(ev), ensure_ascii=False, sort_keys=True))
            out.write("\n")
    return len(log.events)


def load_jsonl(path: str | Path, session_id: str | None = None) -> SessionLog:
    """A log written by export_jsonl. The session is the last event's unless named."""
    events = [
        event_from_dict(json.loads(line))
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    if not events:
        raise SessionNotFound(f"{path} holds no events.")
    sid = session_id or events[-1].session_id
    own_from = next((i for i, e in enumerate(events) if e.session_id == sid), None)
    if own_from is None:
        raise SessionNotFound(f"{path} holds no event of session {sid}.")
    sources = tuple(
        (e.payload.source_session_id, e.payload.at_seq)
        for e in reversed(events)
        if isinstance(e.payload, SessionForked)
    )
    return SessionLog(sid, tuple(events), own_from, sources)


class TimelineRow(NamedTuple):
    """One event of the timeline (a NamedTuple: replay builds 10,000s of them)."""

    seq: int
    session_id: str
    occurred_at: datetime
    event_type: str
    turn_id: str | None
    phase_before: str
    phase_after: str
    text: str
    inherited: bool  # part of the fork ancestry

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "session_id": self.session_id,
            "occurred_at": self.occurred_at.isoformat(),
            "type": self.event_type,
            "turn_id": self.turn_id,
            "phase_before": self.phase_before,
            "phase_after": self.phase_after,
            "text": self.text,
            "inherited": self.inherited,
        }


@dataclass(slots=True)
class Totals:
    """Counts over the session's OWN events (a fork's ancestry is the source's spend)."""

    events: int = 0
    inherited_events: int = 0
    turns: int = 0
    turns_completed: int = 0
    turns_failed: int = 0
    turns_cancelled: int = 0
    llm_calls: int = 0
    llm_failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_nanos: int = 0
    llm_latency_ms: int = 0
    tool_calls: int = 0
    approvals: int = 0
    compactions: int = 0

    def add(self, ev: Event) -> None:
        p = ev.payload
        self.events += 1
        if isinstance(p, TurnStarted):
            self.turns += 1
        elif isinstance(p, TurnCompleted):
            self.turns_completed += 1
        elif isinstance(p, TurnFailed):
            self.turns_failed += 1
        elif isinstance(p, TurnCancelled):
            self.turns_cancelled += 1
        elif isinstance(p, LlmCallCompleted):
            self.llm_calls += 1
            self._usage(
                p.usage.input_tokens,
                p.usage.output_tokens,
                p.usage.cache_read_tokens,
                p.usage.cache_write_tokens,
            )
            self.cost_nanos += p.cost_nanos
            self.llm_latency_ms += p.latency_ms
        elif isinstance(p, LlmCallFailed):
            self.llm_failures += 1
        elif isinstance(p, ContextCompacted):
            self.compactions += 1
            self._usage(
                p.usage.input_tokens,
                p.usage.output_tokens,
                p.usage.cache_read_tokens,
                p.usage.cache_write_tokens,
            )
            self.cost_nanos += p.cost_nanos
        elif isinstance(p, ToolCallRequested):
            self.tool_calls += 1
        elif isinstance(p, ApprovalRequested):
            self.approvals += 1

    def _usage(self, i: int, o: int, cr: int, cw: int) -> None:
        self.input_tokens += i
        self.output_tokens += o
        self.cache_read_tokens += cr
        self.cache_write_tokens += cw

    @property
    def tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["tokens"] = self.tokens
        out["usd"] = round(self.cost_nanos / 1e9, 9)
        return out


@dataclass(slots=True)
class Replay:
    """A replayed log: the timeline up to `to_seq` and the state after it."""

    log: SessionLog
    rows: list[TimelineRow]
    state: SessionState
    totals: Totals
    to_seq: int | None = None
    last_event: Event | None = field(default=None)


def replay(log: SessionLog, *, to_seq: int | None = None, rows: bool = True) -> Replay:
    """Fold the log (up to seq `to_seq`) and describe every event. The state is the one
    of the session that owns the last folded event (the source, when `to_seq` lies in
    the inherited prefix). ContractError names the session and seqs when the log breaks
    its contract (a gap, a duplicate seq), or when `to_seq` lies past the log's end
    (time travel goes back, not forward: showing the end instead would mislead)."""
    end = log.events[-1].seq if log.events else 0
    if to_seq is not None and to_seq > end:
        raise ContractError(
            f"Session {log.session_id} has events up to seq {end}; --to {to_seq} is past its end."
        )
    describer = Describer()
    out: list[TimelineRow] = []
    totals = Totals()
    state: SessionState | None = None
    last: Event | None = None
    for i, ev in enumerate(log.events):
        if to_seq is not None and ev.seq > to_seq:
            break
        if state is None:
            state = initial_state(ev.session_id)
        elif ev.session_id != state.session_id and isinstance(ev.payload, SessionForked):
            state = fork_base(state, ev.session_id)
        before = state.phase.value
        state = evolve(state, ev)
        inherited = i < log.own_from
        if inherited:
            totals.inherited_events += 1
        else:
            totals.add(ev)
        if rows:
            out.append(
                TimelineRow(
                    ev.seq,
                    ev.session_id,
                    ev.occurred_at,
                    type(ev.payload).__name__,
                    ev.turn_id,
                    before,
                    state.phase.value,
                    describer.describe(ev),
                    inherited,
                )
            )
        last = ev
    if state is None:
        state = initial_state(log.session_id)
    return Replay(log, out, state, totals, to_seq, last)


def _entry_dict(e: Any) -> dict[str, Any]:
    kinds = {"u": "user", "a": "assistant", "t": "tool_call", "r": "tool_result", "s": "summary"}
    return {
        "seq": e.seq,
        "kind": kinds.get(e.kind, e.kind),
        "name": e.name or None,
        "call_id": e.call_id or None,
        "text": e.text,
        "is_error": e.is_error,
        "tokens": e.tokens,
        # Attachments by digest (their bytes are in the log's message); thinking counted.
        **(
            {"attachments": [_attachment_dict(a) for a in e.blocks]}
            if e.blocks and e.kind == "u"
            else {"thinking_blocks": len(e.blocks)}
            if e.blocks
            else {}
        ),
    }


def _attachment_dict(a: Any) -> dict[str, Any]:
    return {
        "media_type": a.media_type,
        "sha256": a.sha256,
        "name": a.name,
        "inline": a.data is not None,
    }


def state_summary(state: SessionState) -> dict[str, Any]:
    """The state as plain data: what `replay --to` shows."""
    turn = state.turn
    pending_llm = None
    calls: list[dict[str, Any]] = []
    if turn is not None:
        if turn.llm is not None:
            r = turn.llm.request
            pending_llm = {
                "call_id": r.call_id,
                "model": r.model,
                "purpose": r.purpose,
                "attempt": turn.llm.attempt,
                "deadline_at": turn.llm.deadline_at.isoformat(),
                "context_ranges": list(r.context_ranges),
                "context_entries": r.context_entries,
            }
        calls = [
            {
                "call_id": c.call_id,
                "name": c.name,
                "status": c.status,
                "arguments_json": c.arguments_json,
                "attempt": c.attempt,
                "deadline_at": c.deadline_at.isoformat() if c.deadline_at else None,
                "child_session_id": c.child_session_id or None,
            }
            for c in turn.calls
        ]
    lineage = state.lineage
    return {
        "session_id": state.session_id,
        "last_seq": state.last_seq,
        "phase": state.phase.value,
        "agent": state.agent,
        "definition_hash": state.definition_hash,
        "model": state.model or None,  # a SetModel's switch (None: the agent's own)
        "turns": state.turns,
        "turn": None
        if turn is None
        else {
            "turn_no": turn.turn_no,
            "turn_id": turn.turn_id,
            "iteration": turn.iteration,
            "cost_nanos": turn.cost_nanos,
            "usage": list(turn.usage),
        },
        "pending_llm_call": pending_llm,
        "pending_tool_calls": calls,
        "queued": [
            {"position": n, "seq": q.seq, "request_id": q.request_id, "text": q.text}
            for n, q in enumerate(state.queue, 1)
        ],
        "spent_tokens": state.spent_tokens,
        "spent_nanos": state.spent_nanos,
        "last_turn": None if state.last_turn is None else state.last_turn._asdict(),
        "lineage": lineage._asdict(),
        "window_tokens": state.history.window_tokens,
        "window": [_entry_dict(e) for e in window_entries(state.history)],
        "entries": state.history.entries.size(),
    }
