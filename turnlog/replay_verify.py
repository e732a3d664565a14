"""`replay --verify`: re-decide every recorded input with the current code.

Rule: the log is the truth and the code is on trial. For each input the session worker
decided (read back from the session's partition of `turnlog.requests`, in the order the
worker consumed them), decide it again with the current FSM and agent registry on the
state folded from the RECORDED events before it, and compare the events it yields with
the recorded ones, field by field. The first difference is the report: which seq, which
input, what the current code emits vs what the log holds. Every recorded
LlmCallRequested is also rebuilt into its exact provider request (agents.context) and its
digest compared. Nothing is called, nothing is written.

Which input caused which events is known from each event's `causation_id` (= the
request id). Inputs are kept on the requests topic for days (its retention), the log
forever: an event whose input is gone cannot be re-decided — it is folded as recorded
and counted as unverified, and verification goes on with the next input still there.
An input that the log shows no event for must decide to nothing (a Tick with nothing
due) — or the worker dead-lettered it because deciding crashed.

A call of an inline tool (agents.tools.Tool.inline), and an LLM call the worker ran
inline (a fast model: TURNLOG_INLINE_LLM_MS), has no record on the requests topic: the
worker ran it inside the decision that asked for it and decided its outcome in the same
transaction. That outcome is rebuilt from the events it caused (under the outcome's
request id: ToolCallCompleted or ToolCallFailed, whose fields are the payload; an LLM
answer's LlmCallCompleted with the ToolCallRequested and ProviderCircuitOpened events
around it, agents.effects.llm_outcome_of — the worker decides an answer inline only
when that rebuilds it whole) and re-decided like any input; its result is the log's,
not called again.

Time: the worker decides an input at its ingest time (when it took the record), which
every event the input caused records as occurred_at (the input's own occurred_at, the
sender's claim, is on the events as claimed_at). So an input is re-decided at the
occurred_at of its first recorded event, never at its claim; an input with no event is
re-decided at its claim (a Tick: nothing was due then, nothing is due earlier).

This is the check that a change to the core, the context builder or an agent file will
not break sessions already in flight: a divergence means a live session would, after a
restart, be continued by code that would not have written its past.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.context import verify_llm_request
from agents.effects import llm_outcome_of
from agents.errors import ContractError
from agents.events import (
    AgentVersionChanged,
    CompleteLlmCall,
    CompleteToolCall,
    Event,
    FailToolCall,
    ForkSession,
    LlmCallCompleted,
    LlmCallRequested,
    ProviderCircuitOpened,
    Request,
    SessionForked,
    SessionStarted,
    ToolCallCompleted,
    ToolCallFailed,
)
from agents.fsm import decide_and_evolve, evolve, fold, fork_base, initial_state
from agents.registry import AgentInfo, AgentRegistry
from agents.state import SessionState
from schemas.codec import decode_request, event_to_dict
from streams.logread import read_keyed, topic_partitions
from streams.partitioning import partition_for
from streams.topics import TopicNames
from turnlog.replay import SessionLog, load_session_log

__all__ = ["Divergence", "VerifyReport", "read_session_requests", "verify_log", "verify_session"]


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first place where the current code disagrees with the log.

    kind: "event" (a different event at `seq`), "missing" (the code emits more events
    than the log holds for that input), "extra" (the log holds more), "unrecorded" (an
    input the log shows nothing for now yields events), "decide_error" (deciding
    raised), "request_digest" (a recorded LLM call cannot be rebuilt exactly)."""

    kind: str
    seq: int
    request_id: str | None
    request_type: str | None
    message: str
    expected: dict[str, Any] | None = None  # what the current code emits
    recorded: dict[str, Any] | None = None  # what the log holds
    fields: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seq": self.seq,
            "request_id": self.request_id,
            "request_type": self.request_type,
            "message": self.message,
            "fields": list(self.fields),
            "expected": self.expected,
            "recorded": self.recorded,
        }


@dataclass(slots=True)
class VerifyReport:
    session_id: str
    own_events: int = 0
    requests_read: int = 0
    decisions_checked: int = 0
    events_matched: int = 0
    unverified_events: int = 0  # their input is no longer on the requests topic
    empty_decisions: int = 0  # inputs that rightly caused nothing (ticks)
    llm_requests_checked: int = 0
    pending_requests: int = 0  # inputs after the last recorded event (not decided yet)
    notes: list[str] = field(default_factory=list)
    divergence: Divergence | None = None

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "ok": self.ok,
            "own_events": self.own_events,
            "requests_read": self.requests_read,
            "decisions_checked": self.decisions_checked,
            "events_matched": self.events_matched,
            "unverified_events": self.unverified_events,
            "empty_decisions": self.empty_decisions,
            "llm_requests_checked": self.llm_requests_checked,
            "pending_requests": self.pending_requests,
            "notes": list(self.notes),
            "divergence": None if self.divergence is None else self.divergence.as_dict(),
        }


def _diff(expected: dict[str, Any], recorded: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for key in sorted(set(expected) | set(recorded)):
        a, b = expected.get(key), recorded.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(f"{key}.{sub}" for sub in _diff(a, b))
        else:
            out.append(key)
    return tuple(out)


class CandidateRegistry(AgentRegistry):
    """The deploy question: decide every input with the definitions of a new agent file,
    whatever version the session was pinned to. Comparisons then leave the definition
    hashes out (they differ by construction): only decisions that differ are reported."""

    __slots__ = ()

    def pinned(self, agent: str, digest: str) -> AgentInfo | None:
        return self.find(agent)


_HASH_FIELDS = frozenset({"definition_hash", "from_hash", "to_hash"})


def _without_hashes(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_hashes(v) for k, v in value.items() if k not in _HASH_FIELDS}
    if isinstance(value, list):
        return [_without_hashes(v) for v in value]
    return value


def _inline_outcome(own: Sequence[Event], i: int) -> Request | None:
    """The outcome of a call run inline that `own[i]` and the events after it record
    (see the module rule), or None when `own[i]` is not the first event of such an
    outcome."""
    ev = own[i]
    p = ev.payload
    cid = ev.causation_id or ""
    head, _, attempt = cid.rpartition(":outcome:")
    if not head or not attempt.isdigit():
        return None
    payload: CompleteToolCall | FailToolCall | CompleteLlmCall | None
    if isinstance(p, ToolCallCompleted) and p.call_id == head:
        payload = CompleteToolCall(p.call_id, p.result, p.latency_ms)
    elif isinstance(p, ToolCallFailed) and p.call_id == head:
        payload = FailToolCall(p.call_id, p.error, p.latency_ms)
    elif isinstance(p, (LlmCallCompleted, ProviderCircuitOpened)) and p.call_id == head:
        end = i
        while end < len(own) and own[end].causation_id == cid:
            end += 1
        payload = llm_outcome_of(own[i:end], head, int(attempt))
    else:
        payload = None
    if payload is None:
        return None
    return Request(
        request_id=cid,
        session_id=ev.session_id,
        occurred_at=ev.claimed_at or ev.occurred_at,
        payload=payload,
        causation_id=head,
        correlation_id=ev.correlation_id,
    )


def _definition_notes(log: SessionLog, registry: AgentRegistry) -> list[str]:
    notes = []
    if isinstance(registry, CandidateRegistry):
        return [
            (
                "Every input was decided again with the agent file given instead of the "
                "version it was decided with; definition hashes are left out of the "
                "comparison, so a divergence below is a decision the new file changes."
            )
        ]
    for ev in log.own[:1]:
        p = ev.payload
        if isinstance(p, (SessionStarted, SessionForked)):
            info = registry.find(p.agent)
            if info is None:
                notes.append(
                    f"Agent {p.agent!r} of session {log.session_id} is not in the "
                    f"agent registry given (known: {', '.join(registry.names())})."
                )
            elif registry.version(p.definition_hash) is None:
                notes.append(
                    f"Agent {p.agent!r} was started with definition {p.definition_hash[:12]}; "
                    f"neither the agent file nor turnlog.agents has that version (the file "
                    f"has {info.definition_hash[:12]}): divergences below may come from "
                    f"that."
                )
    return notes


class _Verifier:
    def __init__(
        self, log: SessionLog, requests: Sequence[Request], registry: AgentRegistry
    ) -> None:
        self.log = log
        self.registry = registry
        self.requests = [r for r in requests if r.session_id == log.session_id]
        self.report = VerifyReport(
            log.session_id,
            own_events=len(log.own),
            requests_read=len(self.requests),
            notes=_definition_notes(log, registry),
        )

    def _as_served(
        self, state: SessionState, own: Sequence[Event], i: int, cid: str | None
    ) -> AgentRegistry:
        """The registry as the deciding worker served it: the version this input's
        recorded events started or moved the session to, else the session's own."""
        if isinstance(self.registry, CandidateRegistry):
            return self.registry
        agent, digest = state.agent, state.definition_hash
        k = i
        while k < len(own) and own[k].causation_id == cid:
            p = own[k].payload
            if isinstance(p, (SessionStarted, SessionForked)):
                agent, digest = p.agent, p.definition_hash
            elif isinstance(p, AgentVersionChanged):
                digest = p.to_hash
            k += 1
        return self.registry.serving(agent, digest) if agent and digest else self.registry

    def _comparable(self, event: Event) -> Any:
        d = event_to_dict(event)
        return _without_hashes(d) if isinstance(self.registry, CandidateRegistry) else d

    def _start_state(self, request: Request | None) -> SessionState:
        log = self.log
        if log.ancestry and (request is None or isinstance(request.payload, ForkSession)):
            source = fold(log.ancestry, log.ancestry[-1].session_id)
            return fork_base(source, log.session_id)
        return initial_state(log.session_id)

    def _diverge(
        self,
        kind: str,
        seq: int,
        request: Request | None,
        message: str,
        *,
        expected: Event | None = None,
        recorded: Event | None = None,
    ) -> None:
        exp = event_to_dict(expected) if expected is not None else None
        rec = event_to_dict(recorded) if recorded is not None else None
        fields = _diff(exp, rec) if exp is not None and rec is not None else ()
        self.report.divergence = Divergence(
            kind,
            seq,
            request.request_id if request else None,
            type(request.payload).__name__ if request else None,
            message,
            exp,
            rec,
            fields,
        )

    def run(self) -> VerifyReport:
        own, reqs, rep = self.log.own, self.requests, self.report
        index: dict[str, list[int]] = {}
        for k, req in enumerate(reqs):
            index.setdefault(req.request_id, []).append(k)
        state: SessionState | None = None
        i = r = 0
        while i < len(own) and rep.divergence is None:
            ev = own[i]
            cid = ev.causation_id
            j = next((k for k in index.get(cid or "", ()) if k >= r), None)
            if state is None:
                state = self._start_state(reqs[j] if j is not None else None)
            inline = _inline_outcome(own, i) if j is None else None
            if j is None and inline is None:
                # Its input is gone (retention) or was never on this partition.
                state = evolve(state, ev)
                rep.unverified_events += 1
                i += 1
                continue
            for skipped in reqs[r:j] if j is not None else ():
                # Decided before, with no event in the log.
                try:
                    events, after = decide_and_evolve(state, skipped, self.registry)
                except Exception:
                    continue
                if events:
                    self._diverge(
                        "unrecorded",
                        events[0].seq,
                        skipped,
                        f"The current code emits {len(events)} event(s) for this "
                        f"input, starting with {type(events[0].payload).__name__}; "
                        f"the log has none for it.",
                        expected=events[0],
                    )
                    return rep
                rep.empty_decisions += 1
                state = after
            if j is not None:
                request = reqs[j]
                r = j + 1
            else:
                assert inline is not None
                request = inline
            try:
                # The worker decided at its ingest time, which the log records as the
                # events' occurred_at; the request's own occurred_at is only the claim.
                events, after = decide_and_evolve(
                    state,
                    request,
                    self._as_served(state, own, i, cid),
                    ingested_at=ev.occurred_at,
                )
            except Exception as exc:
                self._diverge(
                    "decide_error",
                    ev.seq,
                    request,
                    f"Deciding this input raised {type(exc).__name__}: {exc}",
                    recorded=ev,
                )
                return rep
            rep.decisions_checked += 1
            for n, expected in enumerate(events):
                recorded = own[i + n] if i + n < len(own) else None
                if recorded is None or recorded.causation_id != cid:
                    self._diverge(
                        "missing",
                        expected.seq,
                        request,
                        f"The current code emits {len(events)} event(s) for this "
                        f"input; the log holds {n}.",
                        expected=expected,
                        recorded=recorded,
                    )
                    return rep
                if self._comparable(expected) != self._comparable(recorded):
                    self._diverge(
                        "event",
                        recorded.seq,
                        request,
                        f"At seq {recorded.seq} the current code emits "
                        f"{type(expected.payload).__name__}, the log holds "
                        f"{type(recorded.payload).__name__}.",
                        expected=expected,
                        recorded=recorded,
                    )
                    return rep
            rep.events_matched += len(events)
            i += len(events)
            nxt = own[i] if i < len(own) else None
            if (
                nxt is not None
                and nxt.causation_id == cid
                and not any(k >= r for k in index.get(cid or "", ()))
            ):
                self._diverge(
                    "extra",
                    nxt.seq,
                    request,
                    f"The log holds more events for this input than the "
                    f"{len(events)} the current code emits.",
                    recorded=nxt,
                )
                return rep
            state = after
            for e in events:
                if isinstance(e.payload, LlmCallRequested):
                    try:
                        verify_llm_request(state, e.payload, self.registry)
                    except ContractError as exc:
                        self._diverge("request_digest", e.seq, request, str(exc), recorded=e)
                        return rep
                    rep.llm_requests_checked += 1
        if rep.divergence is None:
            rep.pending_requests = len(reqs) - r
        return rep


def verify_log(
    log: SessionLog, requests: Sequence[Request], registry: AgentRegistry
) -> VerifyReport:
    """Re-decide `requests` (the session's inputs in consumption order; others are
    ignored) against `log` with `registry`; see the module rule."""
    return _Verifier(log, requests, registry).run()


async def read_session_requests(
    bootstrap: str, topics: TopicNames, session_id: str, *, partitions: int | None = None
) -> list[Request]:
    """The session's inputs still on the requests topic, in partition (= decision)
    order. Undecodable records are skipped: the worker dead-lettered them."""
    if partitions is None:
        partitions = await topic_partitions(bootstrap, topics.requests)
    records = await read_keyed(
        bootstrap,
        topics.requests,
        partition_for(session_id, partitions),
        (session_id,),
        decode_request,
        session_of=lambda r: r.session_id,
        client_id="turnlog-verify",
        skip_undecodable=True,
    )
    return [rec.value for rec in records]


async def verify_session(
    bootstrap: str,
    topics: TopicNames,
    session_id: str,
    registry: AgentRegistry,
    *,
    log: SessionLog | None = None,
) -> VerifyReport:
    """Load the session's log and inputs from Kafka and verify them."""
    if log is None:
        log = await load_session_log(bootstrap, topics, session_id)
    requests = await read_session_requests(bootstrap, topics, session_id)
    return verify_log(log, requests, registry)
