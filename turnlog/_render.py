"""Human-readable lines for events: what `send --follow`, the demo and `replay` print.

Rule: rendering is a pure function of the events seen so far (a `Describer` remembers
tool calls by id, so a result can name its tool) — no clock, no IO; the caller prints.
Amounts are shown in USD from the integer nano-dollars of the events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agents.events import (
    AdmissionDecided,
    AdmissionRequested,
    AgentHandedOff,
    AgentVersionChanged,
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    BudgetAlert,
    BudgetExceeded,
    BudgetLimitReached,
    ChildSessionCompleted,
    ChildSessionRequested,
    ContextCompacted,
    ContextCompactionRequested,
    EffectReissued,
    Event,
    GuardrailTripped,
    LlmCallCompleted,
    LlmCallFailed,
    LlmCallRequested,
    MessageQueued,
    ModelChanged,
    OrchestrationCompleted,
    OrchestrationMemberCancelled,
    OrchestrationStarted,
    ProviderCircuitOpened,
    QueuedMessageDropped,
    RequestRejected,
    SessionClosed,
    SessionForked,
    SessionStarted,
    StructuredOutputAccepted,
    StructuredOutputInvalid,
    TokenDelta,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
    UserMessageReceived,
)

__all__ = ["DESCRIBES", "Describer", "LiveRenderer", "describes", "oneline", "usd"]


def usd(nanos: int) -> str:
    return f"${nanos / 1e9:.6f}"


def oneline(text: str, limit: int = 100) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _tokens(u: Usage) -> str:
    cache = ""
    if u.cache_read_tokens or u.cache_write_tokens:
        cache = f" · cache {u.cache_read_tokens} read / {u.cache_write_tokens} written"
    thinking = f" ({u.reasoning_tokens} reasoning)" if u.reasoning_tokens else ""
    return f"{u.input_tokens} in / {u.output_tokens}{thinking} out tokens{cache}"


def _args(arguments_json: str) -> str:
    try:
        return json.dumps(json.loads(arguments_json), ensure_ascii=False)
    except ValueError:
        return arguments_json


class Describer:
    """One line per event; remembers what later events refer to (tool names, calls)."""

    def __init__(self) -> None:
        self.tools: dict[str, ToolCallRequested] = {}
        self.llm_calls = 0
        self.streamed: set[str] = set()  # LLM calls whose text was already shown live

    def describe(self, ev: Event) -> str:
        describe = DESCRIBES.get(type(ev.payload))
        return type(ev.payload).__name__ if describe is None else describe(self, ev.payload)

    def _tool(self, call_id: str) -> str:
        call = self.tools.get(call_id)
        return (
            f"{call.name} {oneline(_args(call.arguments_json), 60)}"
            if call
            else f"tool call {call_id}"
        )


# --------------------------------------------------------------------------- one line per event
# A handler per event type (the Describer remembers tool calls by id); a unit test checks
# that every event type has one.

Describe = Callable[[Describer, Any], str]
DESCRIBES: dict[type, Describe] = {}


def describes(t: type) -> Callable[[Describe], Describe]:
    def register(handler: Describe) -> Describe:
        DESCRIBES[t] = handler
        return handler

    return register


@describes(SessionStarted)
def _session_started(d: Describer, p: SessionStarted) -> str:
    parent = f" · delegated by {p.parent_session_id}" if p.parent_session_id else ""
    return f"session started · agent {p.agent}{parent}"


@describes(SessionForked)
def _session_forked(d: Describer, p: SessionForked) -> str:
    return f"forked from {p.source_session_id} at seq {p.at_seq} · agent {p.agent}"


@describes(SessionClosed)
def _session_closed(d: Describer, p: SessionClosed) -> str:
    return f"session closed{f': {p.reason}' if p.reason else ''}"


@describes(TurnStarted)
def _turn_started(d: Describer, p: TurnStarted) -> str:
    queued = f" · the message queued at seq {p.queued_seq}" if p.queued_seq else ""
    return f"turn {p.turn_no} started{queued}"


@describes(AgentVersionChanged)
def _agent_version_changed(d: Describer, p: AgentVersionChanged) -> str:
    return f"agent version {p.from_hash[:12]} → {p.to_hash[:12]} ({p.reason})"


@describes(ModelChanged)
def _model_changed(d: Describer, p: ModelChanged) -> str:
    return f"model {p.from_model} → {p.to_model} (later LLM calls)"


@describes(GuardrailTripped)
def _guardrail_tripped(d: Describer, p: GuardrailTripped) -> str:
    return f"guardrail {p.rule} ({p.kind}, {p.on}) tripped → {p.action}: {p.detail}"


@describes(StructuredOutputInvalid)
def _structured_invalid(d: Describer, p: StructuredOutputInvalid) -> str:
    return f"answer does not match output_schema (correction {p.attempt}): {oneline(p.error)}"


@describes(StructuredOutputAccepted)
def _structured_accepted(d: Describer, p: StructuredOutputAccepted) -> str:
    return f"structured answer: {oneline(p.result)}"


@describes(MessageQueued)
def _message_queued(d: Describer, p: MessageQueued) -> str:
    return f"queued (position {p.position}): {oneline(p.text)}"


@describes(QueuedMessageDropped)
def _queued_message_dropped(d: Describer, p: QueuedMessageDropped) -> str:
    why = f": {p.reason}" if p.reason else ""
    return f"queued message {p.request_id} (seq {p.queued_seq}) dropped{why}"


@describes(UserMessageReceived)
def _user_message_received(d: Describer, p: UserMessageReceived) -> str:
    files = ", ".join(f"{a.name or a.sha256[:12]} ({a.media_type})" for a in p.attachments)
    return f"user: {oneline(p.text)}" + (f" · attached: {files}" if files else "")


@describes(LlmCallRequested)
def _llm_call_requested(d: Describer, p: LlmCallRequested) -> str:
    if p.purpose == "summarize":
        return f"→ summarize call to {p.model} ({p.context_entries} entries)"
    if p.purpose == "guard":
        return f"→ guard call to {p.model} (a classifier guardrail)"
    d.llm_calls += 1
    return (
        f"→ LLM call {p.iteration} to {p.model} · "
        f"{p.context_entries} context entries · reserved {usd(p.reserved_nanos)}"
    )


@describes(LlmCallCompleted)
def _llm_call_completed(d: Describer, p: LlmCallCompleted) -> str:
    if p.discarded == "guard":  # a classifier guardrail's verdict
        return (
            f"← {p.model} guard verdict: {oneline(p.text)} · "
            f"{p.usage.input_tokens}+{p.usage.output_tokens} tokens · {usd(p.cost_nanos)}"
        )
    if p.discarded is not None:
        return (
            f"← {p.model} answer discarded ({p.discarded}, stop {p.stop_reason}) · "
            f"{p.usage.input_tokens}+{p.usage.output_tokens} tokens · "
            f"{usd(p.cost_nanos)} charged"
        )
    tools = f" · {len(p.tool_call_ids)} tool call(s)" if p.tool_call_ids else ""
    fallback = " (fallback)" if p.fallback_used else ""
    retries = f" · {p.attempts} attempts" if p.attempts > 1 else ""
    thought = f" · {len(p.thinking)} thinking block(s)" if p.thinking else ""
    if p.cached_from:
        fallback += f" (cached, from {p.cached_from})"
    return (
        f"← {p.model}{fallback} answered in {p.latency_ms} ms · {_tokens(p.usage)}"
        f" · {usd(p.cost_nanos)}{retries}{tools}{thought}"
        + (
            f"\n      assistant: {oneline(p.text, 300)}"
            if p.text and p.call_id not in d.streamed
            else ""
        )
    )


@describes(LlmCallFailed)
def _llm_call_failed(d: Describer, p: LlmCallFailed) -> str:
    return f"✗ LLM call failed after {p.attempts} attempt(s): {p.error_type}: {oneline(p.message)}"


@describes(ProviderCircuitOpened)
def _provider_circuit_opened(d: Describer, p: ProviderCircuitOpened) -> str:
    return f"circuit opened for {p.target}"


@describes(ToolCallRequested)
def _tool_call_requested(d: Describer, p: ToolCallRequested) -> str:
    d.tools[p.call_id] = p
    rule = f" (rule {p.rule})" if p.rule else ""
    return f"tool {p.name} {oneline(_args(p.arguments_json), 80)} · {p.decision.value}{rule}"


@describes(ApprovalRequested)
def _approval_requested(d: Describer, p: ApprovalRequested) -> str:
    return f"⏸ approval needed for {d._tool(p.call_id)} (call {p.call_id})"


@describes(ApprovalGranted)
def _approval_granted(d: Describer, p: ApprovalGranted) -> str:
    return f"approved by {p.decided_by}: {d._tool(p.call_id)}"


@describes(ApprovalDenied)
def _approval_denied(d: Describer, p: ApprovalDenied) -> str:
    why = "expired" if p.expired else f"denied by {p.decided_by}"
    return f"{why}: {d._tool(p.call_id)}{f' ({p.reason})' if p.reason else ''}"


@describes(ToolCallCompleted)
def _tool_call_completed(d: Describer, p: ToolCallCompleted) -> str:
    return f"{d._tool(p.call_id)} → {oneline(p.result)} ({p.latency_ms} ms)"


@describes(ToolCallFailed)
def _tool_call_failed(d: Describer, p: ToolCallFailed) -> str:
    return f"{d._tool(p.call_id)} ✗ {oneline(p.error)}"


@describes(ContextCompactionRequested)
def _context_compaction_requested(d: Describer, p: ContextCompactionRequested) -> str:
    return (
        f"compaction ({p.strategy}) of {len(p.entry_seqs)} entries: about "
        f"{p.tokens_before} tokens of a {p.context_window}-token window"
    )


@describes(ContextCompacted)
def _context_compacted(d: Describer, p: ContextCompacted) -> str:
    cost = f" · {usd(p.cost_nanos)} ({p.model})" if p.model else ""
    summary = f"\n      summary: {oneline(p.summary, 200)}" if p.summary else ""
    return (
        f"compacted ({p.strategy}): {len(p.removed_seqs)} entries out, about "
        f"{p.tokens_after} tokens left{cost}{summary}"
    )


@describes(ChildSessionRequested)
def _child_session_requested(d: Describer, p: ChildSessionRequested) -> str:
    return f"delegated to agent {p.agent} as session {p.child_session_id}: {oneline(p.task)}"


@describes(ChildSessionCompleted)
def _child_session_completed(d: Describer, p: ChildSessionCompleted) -> str:
    return f"child {p.child_session_id} {p.status.value} · {usd(p.cost_nanos)}: {oneline(p.answer)}"


@describes(AgentHandedOff)
def _agent_handed_off(d: Describer, p: AgentHandedOff) -> str:
    note = f": {oneline(p.note)}" if p.note else ""
    return f"handed off from {p.from_agent} to {p.to_agent} ({p.to_hash[:12]}){note}"


@describes(OrchestrationStarted)
def _orchestration_started(d: Describer, p: OrchestrationStarted) -> str:
    mode = f"quorum:{p.quorum}" if p.mode == "quorum" else p.mode
    return (
        f"orchestration {p.call_id} ({mode}, combine {p.combine}) over "
        f"{len(p.agents)} member(s): {', '.join(p.agents)}"
    )


@describes(OrchestrationMemberCancelled)
def _orchestration_member_cancelled(d: Describer, p: OrchestrationMemberCancelled) -> str:
    return f"stopping member {p.member_call_id} ({p.child_session_id}): {p.reason}"


@describes(OrchestrationCompleted)
def _orchestration_completed(d: Describer, p: OrchestrationCompleted) -> str:
    winner = f", winner {p.winner_call_id}" if p.winner_call_id else ""
    return (
        f"orchestration {p.call_id} {p.status} ({p.completed} completed, {p.failed} failed, "
        f"{p.cancelled} cancelled{winner}): {oneline(p.result)}"
    )


@describes(EffectReissued)
def _effect_reissued(d: Describer, p: EffectReissued) -> str:
    return f"re-issued {p.kind.value} {p.effect_id} (attempt {p.attempt})"


@describes(BudgetExceeded)
def _budget_exceeded(d: Describer, p: BudgetExceeded) -> str:
    unit = "tokens" if p.unit.value == "tokens" else "nano-USD"
    return (
        f"budget exceeded ({p.scope.value}, {unit}): limit {p.limit}, used "
        f"{p.used}, requested {p.requested}"
    )


@describes(BudgetAlert)
def _budget_alert(d: Describer, p: BudgetAlert) -> str:
    unit = "tokens" if p.unit == "tokens" else "nano-USD"
    share = f" ({p.fraction:.0%} of {p.limit})" if p.fraction is not None else ""
    period = f" on {p.period}" if p.period else ""
    return (
        f"budget alert ({p.scope} {p.key}{period}, {unit}): spent {p.spent} passed "
        f"{p.threshold}{share}"
    )


@describes(BudgetLimitReached)
def _budget_limit(d: Describer, p: BudgetLimitReached) -> str:
    return (
        f"budget spent ({p.scope} {p.key} on {p.period}): {p.spent} of {p.limit} nano-USD; "
        f"no new turns until {p.until.isoformat()}"
    )


@describes(AdmissionRequested)
def _admission_requested(d: Describer, p: AdmissionRequested) -> str:
    client = f" from {p.client}" if p.client else ""
    return f"message{client} waits for admission by shared rate limit {p.key} ({p.on_limit})"


@describes(AdmissionDecided)
def _admission_decided(d: Describer, p: AdmissionDecided) -> str:
    if p.admitted:
        waited = f" after {p.waited_ms} ms" if p.waited_ms else ""
        return f"message {p.admission_id} admitted{waited}"
    return f"message {p.admission_id} not admitted: {p.reason or p.limit or 'ended'}"


@describes(TurnCompleted)
def _turn_completed(d: Describer, p: TurnCompleted) -> str:
    return (
        f"✓ turn {p.turn_no} completed · {p.iterations} LLM call(s) · "
        f"{p.usage.total_tokens} tokens · {usd(p.cost_nanos)}"
    )


@describes(TurnFailed)
def _turn_failed(d: Describer, p: TurnFailed) -> str:
    return f"✗ turn {p.turn_no} failed ({p.error_type}): {p.reason}"


@describes(TurnCancelled)
def _turn_cancelled(d: Describer, p: TurnCancelled) -> str:
    abandoned = [
        *([f"LLM call {p.llm_call_id}"] if p.llm_call_id else []),
        *(f"tool call {c}" for c in p.tool_call_ids),
        *(f"child {c}" for c in p.child_session_ids),
    ]
    left = f" · abandoned {', '.join(abandoned)}" if abandoned else ""
    return f"turn {p.turn_no} cancelled{f': {p.reason}' if p.reason else ''}{left}"


@describes(RequestRejected)
def _request_rejected(d: Describer, p: RequestRejected) -> str:
    return f"rejected {p.request_type} {p.request_id} in {p.phase}: {p.reason}"


class LiveRenderer:
    """Prints a live stream of events and token deltas as readable progress: deltas
    stream inline under the call they belong to, approval prompts name the command
    that answers them."""

    def __init__(
        self, echo: Callable[[str], None], *, cli: str = "turnlog", show_deltas: bool = True
    ) -> None:
        self.echo = echo
        self.cli = cli
        self.show_deltas = show_deltas
        self.describer = Describer()
        self._open_call: str | None = None
        self._done_calls: set[str] = set()
        self._last_index: dict[str, int] = {}  # per call: a lower index restarts its text
        self._line = ""

    def __call__(self, item: Event | TokenDelta) -> None:
        if isinstance(item, TokenDelta):
            self._delta(item)
        else:
            self._event(item)

    def _delta(self, d: TokenDelta) -> None:
        if not self.show_deltas or d.call_id in self._done_calls:
            return
        if d.done:
            self._flush()
            return
        restarted = d.index <= self._last_index.get(d.call_id, 0)
        self._last_index[d.call_id] = d.index
        if restarted:
            # The provider retried after this much text: it was not the answer.
            if self._open_call == d.call_id:
                self._line = "      assistant ▸ "
            else:
                self._flush()
                self.echo("      assistant ▸ (the attempt above failed; the answer restarts)")
        if self._open_call != d.call_id:
            self._flush()
            self._open_call = d.call_id
            self._line = "      assistant ▸ "
        self._line += d.text
        self.describer.streamed.add(d.call_id)

    def _flush(self) -> None:
        if self._line:
            self.echo(self._line.rstrip())
        self._line = ""
        self._open_call = None

    def _event(self, ev: Event) -> None:
        p = ev.payload
        if isinstance(p, LlmCallCompleted):
            self._done_calls.add(p.call_id)
        self._flush()
        self.echo(f"  #{ev.seq:<4} {self.describer.describe(ev)}")
        if isinstance(p, ApprovalRequested):
            self.echo(f"        approve: {self.cli} approve {ev.session_id} {p.call_id}")
            self.echo(
                f"        deny:    {self.cli} deny {ev.session_id} {p.call_id} "
                f'--reason "..."  (expires {p.expires_at:%H:%M:%S} UTC)'
            )
