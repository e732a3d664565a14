"""Following a sent request: from the events it causes to its outcome.

Rule: how a request ended is decided from facts only. The first event whose
`causation_id` is the request id marks the start; the turn of that event is followed
until it completes, fails or is cancelled — or the request was rejected, the session
closed, the fork made. Events of other sessions and of earlier inputs are skipped, and
everything read starts at the end offset noted BEFORE the request was produced, so
nothing it caused can be missed. Used through `turnlog.Client` (`watch`, `outcome`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from agents.errors import ExternalError
from agents.events import (
    REFUSED,
    AdmissionDecided,
    AdmissionRequested,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    ChildSessionCompleted,
    ChildSessionRequested,
    ContextCompacted,
    Event,
    LlmCallCompleted,
    LlmCallFailed,
    LlmCallRequested,
    MessageQueued,
    OrchestrationCompleted,
    PolicyAction,
    QueuedMessageDropped,
    Request,
    RequestRejected,
    SendMessage,
    SessionClosed,
    SessionForked,
    StructuredOutputAccepted,
    TokenDelta,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    Usage,
)
from schemas.codec import decode_delta, decode_event

if TYPE_CHECKING:
    from turnlog.client import Client

__all__ = [
    "EXIT_CODES",
    "TIMEOUT_EXIT_CODE",
    "Outcome",
    "OutcomeTimeout",
    "Sent",
    "TurnWatch",
    "Until",
    "waiting_for",
]

Until = Literal["turn", "accepted"]

# How a followed request ended -> process exit code of the CLI (0 is success).
EXIT_CODES: Mapping[str, int] = {
    "completed": 0,
    "accepted": 0,
    "closed": 0,
    "forked": 0,
    "queued": 0,
    "failed": 3,
    "cancelled": 4,
    "dropped": 4,
    "rejected": 5,
    "refused": 7,
}
TIMEOUT_EXIT_CODE = 6


class OutcomeTimeout(ExternalError):
    """No outcome within the time allowed (is a session worker running?)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """A produced request, and where to look for what it causes."""

    request: Request
    partition: int
    events_from: int  # end offset of the session's events partition before the send
    deltas_from: int

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def session_id(self) -> str:
        return self.request.session_id


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a request ended. `status`: completed | failed | cancelled (the turn it
    started or continued ended so), rejected (RequestRejected: `reason` says why),
    closed, forked, or accepted (the request was taken and nothing more was awaited).
    `events` are the session's events from the first one the request caused."""

    status: str
    session_id: str
    request_id: str
    turn_id: str | None
    events: tuple[Event, ...]
    answer: str | None = None
    reason: str | None = None
    usage: Usage | None = None
    cost_nanos: int = 0

    @property
    def ok(self) -> bool:
        return EXIT_CODES.get(self.status, 1) == 0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0

    @property
    def structured(self) -> Any:
        """The answer as JSON (an agent with an output_schema: the value it matched, the
        last StructuredOutputAccepted of these events); None otherwise."""
        for ev in reversed(self.events):
            if isinstance(ev.payload, StructuredOutputAccepted):
                return json.loads(ev.payload.result)
        return None


_TURN_END = (TurnCompleted, TurnFailed, TurnCancelled)


def waiting_for(session_id: str, events: tuple[Event, ...] | list[Event]) -> str:
    """What a turn that has not ended waits for, from the events seen (a sentence for the
    timeout message): a pending approval (with the commands that answer it), a child
    session, a tool, an LLM call, or — when nothing was seen — a session worker."""
    approvals: dict[str, tuple[Event, ApprovalRequested]] = {}
    children: dict[str, tuple[Event, ChildSessionRequested]] = {}
    asked: dict[str, tuple[Event, ToolCallRequested]] = {}  # every tool call requested
    tools: dict[str, tuple[Event, ToolCallRequested]] = {}  # those allowed to run
    calls: dict[str, tuple[Event, LlmCallRequested]] = {}
    admission: tuple[Event, AdmissionRequested] | None = None
    for ev in events:
        p = ev.payload
        if isinstance(p, AdmissionRequested):
            admission = (ev, p)
        elif isinstance(p, AdmissionDecided):
            admission = None
        elif isinstance(p, ApprovalRequested):
            approvals[p.call_id] = (ev, p)
        elif isinstance(p, ApprovalGranted):
            approvals.pop(p.call_id, None)
            if p.call_id in asked:
                tools[p.call_id] = asked[p.call_id]
        elif isinstance(p, ApprovalDenied):
            approvals.pop(p.call_id, None)
        elif isinstance(p, ChildSessionRequested):
            tools.pop(p.call_id, None)  # a delegation: the child does the work
            children[p.call_id] = (ev, p)
        elif isinstance(p, ChildSessionCompleted):
            children.pop(p.call_id, None)
        elif isinstance(p, ToolCallRequested):
            asked[p.call_id] = (ev, p)
            if p.decision is PolicyAction.ALLOW:
                tools[p.call_id] = (ev, p)
        elif isinstance(p, ToolCallCompleted | ToolCallFailed):
            tools.pop(p.call_id, None)
        elif isinstance(p, LlmCallRequested):
            calls[p.call_id] = (ev, p)
        elif isinstance(p, LlmCallCompleted | LlmCallFailed):
            calls.pop(p.call_id, None)
        elif isinstance(p, ContextCompacted):
            calls.pop(p.compaction_id, None)
        elif isinstance(p, _TURN_END):
            for pending in (approvals, children, asked, tools, calls):
                pending.clear()
    worker = "Is a session worker running (`turnlog worker session` or `turnlog worker all`)?"
    if admission is not None:
        ev, adm = admission
        return (
            f"The message waits for its admission by the shared rate limit {adm.key} "
            f"({adm.on_limit}, asked at seq {ev.seq}): the effect runner asks Postgres "
            f"(DATABASE_URL); cancel it with `turnlog cancel {session_id}`. {worker}"
        )
    if approvals:
        lines = []
        for call_id, (ev, p) in approvals.items():
            lines.append(
                f"The turn is waiting for approval of tool call {call_id} ({p.tool_name}, "
                f"asked at seq {ev.seq}, expires {p.expires_at:%Y-%m-%d %H:%M:%S} UTC): "
                f"grant it with `turnlog approve {session_id} {call_id}` or refuse it with "
                f"`turnlog deny {session_id} {call_id} --reason ...`."
            )
        return " ".join(lines)
    if children:
        named = ", ".join(
            f"{p.child_session_id} (agent {p.agent}, asked at seq {ev.seq})"
            for ev, p in children.values()
        )
        return (
            f"The turn is waiting for its child session(s) {named}: follow them with "
            f"`turnlog events CHILD --follow`."
        )
    if tools:
        named = ", ".join(
            f"{p.name} (call {call_id}, asked at seq {ev.seq})"
            for call_id, (ev, p) in tools.items()
        )
        return f"The turn is waiting for tool call(s) {named}. {worker}"
    if calls:
        named = ", ".join(
            f"{call_id} ({p.model}, asked at seq {ev.seq})" for call_id, (ev, p) in calls.items()
        )
        return f"The turn is waiting for LLM call(s) {named}. {worker}"
    return worker


class _Tracker:
    """Decides, event by event, whether a request's outcome is known (module doc)."""

    def __init__(
        self, session_id: str, request_id: str, until: Until, *, starts_turn: bool = False
    ) -> None:
        self.session_id = session_id
        self.request_id = request_id
        self.until = until
        # A SendMessage always ends in a turn or a rejection: never take its SessionStarted
        # alone (a fetch may split one decision's events) for the whole answer.
        self.starts_turn = starts_turn
        self.caused = False
        self.turn_id: str | None = None
        self.admitted = False  # a shared rate limit admitted the message (its turn follows)
        self.queued: int | None = None  # position, when the message waits in the queue
        self.events: list[Event] = []
        self.outcome: Outcome | None = None

    def feed(self, ev: Event) -> None:
        if self.outcome is not None or ev.session_id != self.session_id:
            return
        mine = ev.causation_id == self.request_id
        if not self.caused:
            if not mine:
                return  # a fact of an earlier input
            self.caused = True
        self.events.append(ev)
        p = ev.payload
        if (mine or self.admitted) and self.turn_id is None and ev.turn_id is not None:
            self.turn_id = ev.turn_id
        if mine and isinstance(p, RequestRejected) and p.request_id == self.request_id:
            self._finish("rejected", reason=p.reason)
        elif isinstance(p, AdmissionDecided) and p.admission_id == self.request_id:
            # A shared rate limit's answer (agents.ratelimit): the turn follows, or not.
            if p.admitted:
                self.admitted = True
            else:
                self._finish("rejected", reason=p.reason or p.limit or "Not admitted.")
        elif mine and isinstance(p, MessageQueued):
            self.queued = p.position
        elif isinstance(p, QueuedMessageDropped) and p.request_id == self.request_id:
            self._finish("dropped", reason=p.reason or "The queued message was dropped.")
        elif mine and isinstance(p, SessionForked):
            self._finish("forked")
        elif isinstance(p, SessionClosed):
            self._finish("closed", reason=p.reason)
        elif isinstance(p, _TURN_END) and ev.turn_id is not None and ev.turn_id == self.turn_id:
            if isinstance(p, TurnCompleted):
                self._finish(
                    "completed", answer=self._answer(p.answer_seq), usage=p.usage, cost=p.cost_nanos
                )
            elif isinstance(p, TurnFailed):
                self._finish("refused" if p.error_type == REFUSED else "failed", reason=p.reason)
            else:
                self._finish("cancelled", reason=p.reason)

    def batch_end(self) -> None:
        """A poll batch was fully fed: the first decision's events have arrived (all of
        them, unless the fetch split the decision: see `starts_turn`)."""
        if self.outcome is not None or not self.caused:
            return
        if self.starts_turn:
            if self.until == "accepted" and self.turn_id is not None:
                self._finish("accepted")
            elif self.until == "accepted" and self.queued is not None:
                self._finish("queued", reason=f"queued (position {self.queued})")
        elif self.until == "accepted" or self.turn_id is None:
            self._finish("accepted")

    def _answer(self, seq: int) -> str | None:
        for ev in self.events:
            if ev.seq == seq and isinstance(ev.payload, LlmCallCompleted):
                return ev.payload.text
            if ev.seq == seq and isinstance(ev.payload, OrchestrationCompleted):
                return ev.payload.result  # a team agent's answer
        return None

    def _finish(
        self,
        status: str,
        *,
        reason: str | None = None,
        answer: str | None = None,
        usage: Usage | None = None,
        cost: int = 0,
    ) -> None:
        self.outcome = Outcome(
            status,
            self.session_id,
            self.request_id,
            self.turn_id,
            tuple(self.events),
            answer,
            reason,
            usage,
            cost,
        )


class TurnWatch:
    """Async iterator over what a sent request causes — its session's events and (when
    asked) token deltas — ending when its outcome is known; then `outcome` is set.
    Raises OutcomeTimeout past `timeout` seconds."""

    def __init__(
        self,
        client: Client,
        sent: Sent,
        *,
        until: Until = "turn",
        deltas: bool = True,
        timeout: float | None = 300.0,
    ) -> None:
        self._client = client
        self._sent = sent
        self._deltas = deltas
        self._timeout = timeout
        self._tracker = _Tracker(
            sent.session_id,
            sent.request_id,
            until,
            starts_turn=isinstance(sent.request.payload, SendMessage),
        )

    @property
    def outcome(self) -> Outcome | None:
        return self._tracker.outcome

    async def __aiter__(self) -> AsyncIterator[Event | TokenDelta]:
        sent, topics = self._sent, self._client.topics
        events_tp = TopicPartition(topics.events, sent.partition)
        deltas_tp = TopicPartition(topics.deltas, sent.partition)
        consumer = self._client._reader("turnlog-follow")
        await consumer.start()
        try:
            consumer.assign([events_tp, deltas_tp] if self._deltas else [events_tp])
            consumer.seek(events_tp, sent.events_from)
            if self._deltas:
                consumer.seek(deltas_tp, sent.deltas_from)
            loop = asyncio.get_running_loop()
            deadline = None if self._timeout is None else loop.time() + self._timeout
            tracker = self._tracker
            while tracker.outcome is None:
                if deadline is not None and loop.time() > deadline:
                    seen = tracker.events[-1].seq if tracker.events else None
                    raise OutcomeTimeout(
                        f"Session {sent.session_id}: no outcome for request "
                        f"{sent.request_id} ({type(sent.request.payload).__name__}) within "
                        f"{self._timeout:g} s (last event seen: "
                        f"{'none' if seen is None else f'seq {seen}'}). "
                        f"{waiting_for(sent.session_id, tracker.events)}"
                    )
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                for rec in batch.get(deltas_tp, ()):
                    if rec.key is None or rec.key.decode() == sent.session_id:
                        delta = decode_delta(rec.value)
                        if delta.session_id == sent.session_id:
                            yield delta
                for rec in batch.get(events_tp, ()):
                    if rec.key is not None and rec.key.decode() != sent.session_id:
                        continue
                    ev = decode_event(rec.value)
                    before = len(tracker.events)
                    tracker.feed(ev)
                    if len(tracker.events) > before:
                        yield ev
                    if tracker.outcome is not None:
                        return
                if batch.get(events_tp):
                    tracker.batch_end()
        except KafkaError as exc:
            raise ExternalError(f"Following session {sent.session_id} failed: {exc}") from exc
        finally:
            await consumer.stop()
