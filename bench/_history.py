"""Synthetic but faithful session history for bench/restore.py: a million real events of
the `calc` agent in one events partition, in seconds rather than the hours a live run
would take.

Rule: every event is one the real core decided. A few template sessions are driven
through `decide_built` with the real scripted provider (tests/data/calc.script.yaml)
and the real calculator, as the effect runner drives them (outcome request ids from
`outcome_request_id`, LLM requests checked by digest). Each session of the history is
a template re-keyed to its own id: the template's encoded records are patched byte for
byte — session ids have the template id's width, so every Avro length prefix stays
right — and each event id becomes `event_id_for(session, seq)`. `check_rekeying`
proves the shortcut on sample sessions: their patched records decode to exactly the
events the core decides when driven with their own ids, and their patched snapshots
hold exactly the state those events fold into.

Layout of the partition: sessions run `concurrency` at a time, their turns interleaved
round-robin (concurrent sessions interleave so in a real partition); the live sessions'
open turns (user message received, LLM call requested, no outcome) come last, as the
turns in progress are the newest entries of a real log. Sessions that share a template
share its timestamps (only the ids differ); the live templates' open turns are stamped
`open_at`, so their LLM deadlines lie ahead of the benchmark, not behind it.

Headers are the worker's: the event type and a traceparent in the trace of the turn's
user message. No INPUT_NEXT header and no requests topic history: the partition is one
whose inputs were all decided.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agents.agentfile import registry_from_file
from agents.context import ContextMemo, build_llm_request
from agents.effects import LlmCallEffect, ToolCallEffect, outcome_request_id, pending_effects
from agents.events import (
    CompleteLlmCall,
    CompleteToolCall,
    Event,
    Request,
    RequestPayload,
    SendMessage,
    Snapshot,
    event_id_for,
)
from agents.fsm import decide_built, initial_state
from agents.providers import ScriptedProvider
from agents.snapshots import restore_point, snapshot_of
from agents.state import SessionState
from agents.state_codec import state_from_dict, state_to_dict
from agents.tools import builtin_registry
from schemas.codec import decode_event, encode_event, encode_snapshot
from streams.effects import tool_context
from streams.tracing import TRACEPARENT

__all__ = [
    "AGENT",
    "History",
    "Template",
    "check_rekeying",
    "history",
    "session_id",
    "templates",
]

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
AGENT = "calc"
ID_WIDTH = 10  # every session id of a history, and every template id

# The shell's memo of built messages, as the session worker keeps one (agents.context).
MEMO = ContextMemo()


def session_id(i: int) -> str:
    return f"h{i:0{ID_WIDTH - 1}d}"


def _template_id(k: int) -> str:
    return f"T{k:0{ID_WIDTH - 1}d}"


@dataclass(frozen=True, slots=True)
class Template:
    """One session driven through the real core: its encoded events by turn (the first
    turn's include SessionStarted) and its state after each completed turn."""

    session_id: str
    turns: tuple[tuple[tuple[int, bytes, str], ...], ...]  # (seq, encoded, event type)
    turn_states: tuple[str, ...]  # state_to_dict JSON after each completed turn
    events: tuple[Event, ...]
    live: bool  # the last turn is open
    state: SessionState  # after its last event

    @property
    def completed(self) -> int:
        return len(self.turns) - 1 if self.live else len(self.turns)

    def n_events(self) -> int:
        return sum(len(t) for t in self.turns)


class _Driver:
    """Decides a session's requests with the real core, and runs its effects as the
    effect runner does (scripted provider, real calculator), without Kafka."""

    def __init__(self) -> None:
        self.registry = registry_from_file(DATA / "agents.toml")
        self.provider = ScriptedProvider.from_file(DATA / "calc.script.yaml")
        self.tools = builtin_registry()

    async def drive(
        self, sid: str, turns: int, start: datetime, *, open_at: datetime | None
    ) -> Template:
        """`turns` turns from `start`, 40 s apart; with `open_at`, the last turn starts
        then and stays open (its LLM call requested, no outcome)."""
        state = initial_state(sid)
        t = start
        by_turn: list[list[Event]] = []
        states: list[str] = []
        for turn_no in range(1, turns + 1):
            last_open = open_at is not None and turn_no == turns
            if last_open:
                assert open_at is not None
                t = open_at
            req = Request(
                request_id=f"{sid}-m{turn_no}",
                session_id=sid,
                occurred_at=t,
                payload=SendMessage(f"What is 6*7, take {turn_no}?"),
                agent=AGENT if turn_no == 1 else None,
            )
            events, state, built = decide_built(state, req, self.registry, ingested_at=t, memo=MEMO)
            turn = list(events)
            while not last_open and (effects := pending_effects(state)):
                effect = effects[0]
                payload = await self._outcome(state, effect, built)
                t += timedelta(milliseconds=700)
                req = Request(
                    request_id=outcome_request_id(effect),
                    session_id=sid,
                    occurred_at=t,
                    payload=payload,
                )
                events, state, built = decide_built(
                    state, req, self.registry, ingested_at=t, memo=MEMO
                )
                turn.extend(events)
            by_turn.append(turn)
            if not last_open:
                states.append(
                    json.dumps(state_to_dict(state), separators=(",", ":"), ensure_ascii=False)
                )
            t += timedelta(seconds=40)
        return Template(
            session_id=sid,
            turns=tuple(
                tuple((e.seq, encode_event(e), type(e.payload).__name__) for e in turn)
                for turn in by_turn
            ),
            turn_states=tuple(states),
            events=tuple(e for turn in by_turn for e in turn),
            live=open_at is not None,
            state=state,
        )

    async def _outcome(
        self, state: SessionState, effect: Any, built: dict[str, Any]
    ) -> RequestPayload:
        if isinstance(effect, LlmCallEffect):
            request = built.get(effect.effect_id) or build_llm_request(
                state, effect, self.registry, MEMO
            )
            assert request.digest() == effect.request_digest, "the digest the core recorded"
            resp = await self.provider.complete(request, fallbacks=tuple(effect.fallbacks))
            return CompleteLlmCall(
                call_id=effect.effect_id,
                model=resp.model,
                text=resp.text,
                tool_uses=tuple(resp.tool_uses),
                stop_reason=resp.stop_reason,
                usage=resp.usage,
                latency_ms=640,
            )
        assert isinstance(effect, ToolCallEffect), f"calc runs no {type(effect).__name__}"
        ctx = tool_context(None, state.session_id, effect)
        result = await self.tools.execute(effect.tool_name, effect.arguments_json, ctx)
        assert result.ok, result.content
        return CompleteToolCall(call_id=effect.effect_id, result=result.content, latency_ms=1)


def _turn_counts(turns: int) -> list[int]:
    """About `turns` turns a session: a spread around it, mean `turns`."""
    if turns < 3:
        return [turns]
    return [turns + d for d in (-2, 1, 0, -1, 2, 0)]


async def templates(
    turns: int, start: datetime, open_at: datetime
) -> tuple[list[Template], list[Template]]:
    """(idle templates, live templates): one of each per turn count around `turns`."""
    driver = _Driver()
    counts = _turn_counts(turns)
    idle = [
        await driver.drive(_template_id(k), n, start + timedelta(minutes=k), open_at=None)
        for k, n in enumerate(counts)
    ]
    live = [
        await driver.drive(
            _template_id(100 + k),
            n,
            start + timedelta(minutes=k),
            open_at=open_at + timedelta(milliseconds=k),
        )
        for k, n in enumerate(counts)
    ]
    return idle, live


def _traceparent(sid: str, turn_no: int, event_id: str) -> bytes:
    """The worker's: a user message without trace context starts a trace derived from its
    request id; each event is a span of it; effects report in the same trace."""
    trace = hashlib.sha256(f"trace:{sid}-m{turn_no}".encode()).hexdigest()[:32]
    span = hashlib.sha256(event_id.encode()).hexdigest()[:16]
    return f"00-{trace}-{span}-01".encode()


@dataclass(slots=True)
class History:
    """A history's plan: which template each session follows, and, filled in while its
    records are generated, where each session's turns landed."""

    n_sessions: int
    n_live: int
    idle: list[Template]
    live: list[Template]
    concurrency: int
    # per session: offset of the first event of its last completed turn (-1: none)
    last_done_at: list[int] = field(default_factory=list)
    # offset of the first event of the earliest open turn (the restore point)
    first_open_at: int = -1
    events: int = 0

    def template(self, i: int) -> Template:
        if i >= self.n_sessions - self.n_live:
            return self.live[i % len(self.live)]
        return self.idle[i % len(self.idle)]

    def _order(self) -> Iterator[tuple[int, int]]:
        """(session, turn) in log order: `concurrency` sessions at a time round-robin,
        the live sessions' open turns last."""
        starting = iter(range(self.n_sessions))
        slots: deque[tuple[int, int]] = deque()
        deferred: list[int] = []
        for _ in range(self.concurrency):
            i = next(starting, None)
            if i is not None:
                slots.append((i, 0))
        while slots:
            i, turn = slots.popleft()
            tpl = self.template(i)
            if turn < tpl.completed:
                yield i, turn
                turn += 1
            if turn < tpl.completed:
                slots.append((i, turn))
                continue
            if tpl.live:
                deferred.append(i)
            nxt = next(starting, None)
            if nxt is not None:
                slots.append((nxt, 0))
        for i in deferred:
            yield i, len(self.template(i).turns) - 1

    def records(self) -> Iterator[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
        """(key, value, headers) of every event, in log order (offsets from 0)."""
        self.last_done_at = [-1] * self.n_sessions
        offset = 0
        for i, turn in self._order():
            tpl = self.template(i)
            sid = session_id(i)
            sid_b, tpl_b = sid.encode(), tpl.session_id.encode()
            if turn == tpl.completed:  # an open turn
                if self.first_open_at < 0:
                    self.first_open_at = offset
            else:
                self.last_done_at[i] = offset
            for seq, value, kind in tpl.turns[turn]:
                eid = event_id_for(sid, seq)
                patched = value.replace(
                    event_id_for(tpl.session_id, seq).encode(), eid.encode()
                ).replace(tpl_b, sid_b)
                yield (
                    sid_b,
                    patched,
                    [
                        ("event_type", kind.encode()),
                        (TRACEPARENT, _traceparent(sid, turn + 1, eid)),
                    ],
                )
                offset += 1
        self.events = offset

    def snapshots(self, now: datetime) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of what a worker would have left in the compacted snapshots
        topic: each session's state after its last completed turn (stamped with the
        offset its last turn started at: a lower bound of anything later), then the
        partition's restore point. Call after `records()` is exhausted."""
        order = sorted(range(self.n_sessions), key=lambda i: self.last_done_at[i])
        for i in order:
            at = self.last_done_at[i]
            if at < 0:
                continue
            yield session_id(i).encode(), encode_snapshot(self.snapshot(i, at, now))
        restore_from = self.first_open_at if self.first_open_at >= 0 else self.events
        point = restore_point(restore_from, 0, now)
        yield point.session_id.encode(), encode_snapshot(point)

    def snapshot(self, i: int, events_offset: int, now: datetime) -> Snapshot:
        tpl = self.template(i)
        body = tpl.turn_states[tpl.completed - 1].replace(tpl.session_id, session_id(i))
        return snapshot_of(state_from_dict(json.loads(body)), events_offset=events_offset, now=now)


def history(
    *,
    live_fraction: float,
    idle: list[Template],
    live: list[Template],
    events: int | None = None,
    sessions: int | None = None,
) -> History:
    """A plan of `sessions` sessions, or of as many as make about `events` events, of
    the templates' shape; `live_fraction` of them live (at least one), as many running
    at once as there are live ones."""
    if sessions is None:
        assert events is not None, "events or sessions"
        per = (sum(t.n_events() for t in idle) / len(idle)) * (1 - live_fraction) + (
            sum(t.n_events() for t in live) / len(live)
        ) * live_fraction
        sessions = max(1, round(events / per))
    n_live = max(1, round(sessions * live_fraction))
    return History(sessions, n_live, idle, live, concurrency=n_live)


async def check_rekeying(
    plan: History, samples: Sequence[int], start: datetime, open_at: datetime
) -> str:
    """Drive sample sessions of `plan` through the real core with their own ids and
    compare: events (decoded from the patched records) and the snapshot state."""
    driver = _Driver()
    wanted = set(samples)
    got: dict[int, list[bytes]] = {i: [] for i in wanted}
    for _key, value, _headers in History(
        plan.n_sessions, plan.n_live, plan.idle, plan.live, plan.concurrency
    ).records():
        sid = _key.decode()
        i = int(sid[1:])
        if i in wanted:
            got[i].append(value)
    for i in samples:
        tpl = plan.template(i)
        k = int(tpl.session_id[1:])
        offset_k = k - 100 if tpl.live else k
        real = await driver.drive(
            session_id(i),
            len(tpl.turns),
            start + timedelta(minutes=offset_k),
            open_at=open_at + timedelta(milliseconds=offset_k) if tpl.live else None,
        )
        decoded = [decode_event(v) for v in got[i]]
        if decoded != list(real.events):
            return f"session {session_id(i)}: the patched events differ from the core's"
        if tpl.completed:
            mine = plan.snapshot(i, 0, start)
            theirs = snapshot_of(
                state_from_dict(json.loads(real.turn_states[-1])), events_offset=0, now=start
            )
            if zlib.decompress(mine.payload.state) != zlib.decompress(theirs.payload.state):  # type: ignore[union-attr]
                return f"session {session_id(i)}: the patched snapshot differs from the core's"
    return f"re-keying checked on {len(samples)} sessions: events and snapshots equal the core's"
