"""The turn loop: start a turn, request the next LLM call (guards, compaction, budget),
finish a step. (How a step's tool uses become tool calls: agents._step.)

Rule: these functions only emit facts through a Decision; they never reject (handlers
validate the input before calling them). Ids are derived from the session and the seq
of the fact that creates them (`<session>/llm/<seq>`, `<session>/compact/<seq>`), so
replaying a decision reproduces them exactly.

Pre-call order: max iterations → compaction (if the estimate exceeds trigger_ratio of
the context window; at most once per iteration) → context must fit the window with
max_tokens of output → budget reservation → LlmCallRequested.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agents._decision import Decision
from agents._orchestrate import team_turn
from agents.budget import (
    Spend,
    block_reason,
    check_budget,
    estimate_reservation,
    session_alerts,
)
from agents.compaction import CompactionPlan, apply_compaction, plan_compaction, summary_entry
from agents.context import (
    EMPTY_TOOLSET_HASH,
    SUMMARIZE_SYSTEM_HASH,
    entries_for,
    guard_request,
    summarize_request,
    turn_request,
)
from agents.definitions import AgentDefinition, CompactionStrategy
from agents.events import (
    ContextCompacted,
    ContextCompactionRequested,
    GuardrailTripped,
    LlmCallRequested,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
    UserMessageReceived,
)
from agents.guardrails import (
    CLASSIFIER,
    Guardrail,
    GuardStage,
    Precheck,
    Verdict,
    check,
    classifier_rule,
    guard_call_id,
    precheck,
)
from agents.llm import sha256_hex
from agents.pricing import model_info
from agents.registry import AgentInfo
from agents.state import (
    SessionState,
    context_ranges,
    find_entry,
    usage_of,
    window_entries,
    window_ranges,
)
from agents.tokens import ENTRY_OVERHEAD, estimate_tokens
from agents.variants import with_variant
from agents.versions import settle_follow

__all__ = [
    "GUARDRAIL_BLOCKED",
    "alert_budget",
    "classify",
    "complete_turn",
    "drop_instead_of_summary",
    "fail_turn",
    "guard",
    "guard_decided",
    "model_chain",
    "next_llm_call",
    "start_queued",
    "start_turn",
    "step_resolved",
    "summarized",
]


def fail_turn(d: Decision, reason: str, error_type: str) -> None:
    d.emit(TurnFailed(turn_no=d.turn.turn_no, reason=reason, error_type=error_type))


def start_turn(
    d: Decision,
    text: str,
    queued_seq: int | None = None,
    attachments: tuple[Any, ...] = (),
    *,
    guarded: bool = False,
) -> None:
    """`guarded`: the input guardrails already ran (a queued message, when it queued)."""
    if d.state.turns:  # a new session starts on the served version anyway
        settle_follow(d)
    d.emit(TurnStarted(turn_no=d.state.turns + 1, queued_seq=queued_seq))
    if not guarded:
        info = d.registry.pinned(d.state.agent, d.state.definition_hash)
        verdict = guard(d, info.definition.guardrails if info else (), "input", text)
        if verdict.blocked is not None:
            # The message is not recorded: a blocked text never reaches the log.
            b = verdict.blocked
            fail_turn(
                d,
                f"Guardrail {b.rule!r} ({b.kind}) blocked the user's message: {b.detail}.",
                GUARDRAIL_BLOCKED,
            )
            return
        text = verdict.text
    client = d.request.client if queued_seq is None else None
    received = d.emit(UserMessageReceived(text=text, attachments=attachments, client=client))
    classify(d, "input", received.seq)


GUARDRAIL_BLOCKED = "GuardrailBlocked"


def guard(
    d: Decision,
    rules: tuple[Guardrail, ...],
    on: GuardStage,
    text: str,
    call_id: str | None = None,
) -> Verdict:
    """Run the `on` guardrails over `text`, recording every trip (GuardrailTripped)."""
    verdict = check(rules, on, text)
    for t in verdict.trips:
        d.emit(GuardrailTripped(t.rule, t.kind, t.action, t.on, t.detail, call_id=call_id))
    return verdict


# --------------------------------------------------------------------------- classifiers
# A classifier guardrail judges text already recorded (the user's message, the model's
# final answer): its cheap check first, then, when that is inconclusive, an LLM call
# with purpose "guard" whose context is that one entry. Its verdict comes back through
# guard_decided, which goes on with the next classifier rule, then with the turn.

GUARD_MAX_TOKENS = 16  # a verdict is one word


def complete_turn(d: Decision) -> None:
    """The final answer (the turn's answer_seq) passed every check: the turn completes."""
    turn = d.turn
    d.emit(
        TurnCompleted(
            turn_no=turn.turn_no,
            answer_seq=turn.answer_seq,
            usage=usage_of(turn.usage),
            cost_nanos=turn.cost_nanos,
            iterations=turn.iteration,
        )
    )


def classify(d: Decision, on: GuardStage, seq: int, start: int = 0) -> None:
    """Run the agent's `on` classifier rules, from rule index `start`, over the entry at
    `seq`; when none is left, go on (input: the turn's LLM call; output: complete)."""
    info = d.registry.pinned(d.state.agent, d.state.definition_hash)
    rules = info.definition.guardrails if info is not None else ()
    entry = find_entry(d.state.history, seq)
    text = entry.text if entry is not None else ""
    for i in range(start, len(rules)):
        rule = rules[i]
        if rule.kind != CLASSIFIER or rule.on != on:
            continue
        pre = precheck(rule, text)
        # No text (a message of attachments only): nothing a text classifier can judge.
        if pre == "allow" or (pre is None and not text.strip()):
            continue
        if pre == "block":
            if _classifier_tripped(d, rule, "a block_if pattern matched", None):
                return
            continue
        assert info is not None
        _request_guard(d, info, i, rule, seq)
        return
    if on == "input":
        next_llm_call(d)
    else:
        complete_turn(d)


def _classifier_tripped(d: Decision, rule: Guardrail, detail: str, call_id: str | None) -> bool:
    """Record the trip; True when it blocks (the turn failed)."""
    d.emit(GuardrailTripped(rule.name, CLASSIFIER, rule.action, rule.on, detail, call_id=call_id))
    if rule.action != "block":
        return False
    what = "the user's message" if rule.on == "input" else "the model's answer"
    fail_turn(
        d, f"Guardrail {rule.name!r} (classifier) blocked {what}: {detail}.", GUARDRAIL_BLOCKED
    )
    return True


def _request_guard(d: Decision, info: AgentInfo, index: int, rule: Guardrail, seq: int) -> None:
    model = rule.model or ""
    prompt = rule.prompt or ""
    entries = entries_for(d.state.history, (seq,), where=f"session {d.state.session_id}")
    max_tokens = min(GUARD_MAX_TOKENS, model_info(model).max_output_tokens)
    request = guard_request(prompt, entries, model=model, max_tokens=max_tokens)
    context_tokens = sum(e.tokens for e in entries) + estimate_tokens(prompt) + ENTRY_OVERHEAD
    reserved = _reserve_or_fail(d, (model,), context_tokens, max_tokens, info)
    if reserved is None:
        return
    d.request_llm(
        LlmCallRequested(
            call_id=guard_call_id(d.state.session_id, d.next_seq, index),
            model=model,
            fallbacks=(),
            max_tokens=max_tokens,
            temperature=0.0,
            context_ranges=context_ranges(d.state.history, (seq,)),
            context_entries=1,
            system_prompt_hash=sha256_hex(prompt),
            toolset_hash=EMPTY_TOOLSET_HASH,
            request_digest=request.digest(),
            iteration=d.turn.iteration,
            deadline_at=d.now + _seconds(info.definition.deadlines.llm_s),
            reserved_tokens=reserved[0],
            reserved_nanos=reserved[1],
            purpose="guard",
        ),
        request,
    )


def guard_decided(
    d: Decision, request: LlmCallRequested, verdict: Precheck, error: str | None = None
) -> None:
    """A guard call ended (its LlmCallCompleted or LlmCallFailed is recorded): `verdict`
    is the parsed answer, None when unreadable or the call failed (`error`); the rule's
    on_error decides those. Then the next classifier rule, or the turn goes on."""
    info = d.registry.pinned(d.state.agent, d.state.definition_hash)
    found = classifier_rule(info.definition.guardrails, request.call_id) if info else None
    if found is None:  # the pinned definition always has the rule that asked
        fail_turn(d, f"The guard call {request.call_id} names no classifier rule.", "UnknownAgent")
        return
    index, rule = found
    detail = "the classifier answered BLOCK"
    if verdict is None:
        verdict = rule.on_error
        detail = (
            error or "the classifier's answer was neither BLOCK nor ALLOW"
        ) + f" (on_error = {rule.on_error})"
    if verdict == "block" and _classifier_tripped(d, rule, detail, request.call_id):
        return
    classify(d, rule.on, request.context_ranges[0], index + 1)


def alert_budget(d: Decision, before: SessionState) -> None:
    """The decision charged spend (an LLM call, a summary, a child's cost): a BudgetAlert
    per soft threshold of the session's budget that the charges crossed."""
    s = d.state
    info = d.registry.pinned(s.agent, s.definition_hash)
    if info is None:
        return
    was = Spend(before.spent_tokens, before.spent_nanos)
    for alert in session_alerts(
        info.definition.budget, s.session_id, was, Spend(s.spent_tokens, s.spent_nanos)
    ):
        d.emit(alert)


def start_queued(d: Decision) -> None:
    """The turn ended and a message waits: start its turn, in the same decision, on behalf
    of the request that sent it. (A turn that ends at once — a guard, a budget — lets the
    next message start, so the loop ends with an empty queue or a running turn.)"""
    while d.state.turn is None and d.state.queue and d.state.phase.value == "idle":
        head = d.state.queue[0]
        d.behalf = head.request_id
        try:
            start_turn(
                d, head.text, queued_seq=head.seq, attachments=head.attachments, guarded=True
            )
        finally:
            d.behalf = None


def _seconds(s: float) -> timedelta:
    return timedelta(seconds=s)


def model_chain(state: SessionState, defn: AgentDefinition) -> tuple[str, ...]:
    """The models a turn call of the session tries: the one a SetModel switched to (else
    the agent's), then the agent's fallbacks."""
    if not state.model or state.model == defn.model:
        return defn.model_chain
    return (state.model, *(m for m in defn.model_chain if m != state.model))


def _context_window(d: Decision, info: AgentInfo) -> int:
    # A fallback may serve the call: the context must fit the smallest window of the chain.
    return min(model_info(m).context_window for m in model_chain(d.state, info.definition))


def next_llm_call(
    d: Decision, *, max_tokens: int | None = None, force_compaction: bool = False
) -> None:
    """Continue the turn: request its next LLM call, or end it if a guard says so.

    `max_tokens`: ask for more than the agent's (a retry of an answer cut off inside a
    tool call). `force_compaction`: the model said its context window is full, whatever
    our estimate says: compact as if the window were the estimate."""
    info = d.registry.pinned(d.state.agent, d.state.definition_hash)
    if info is None:
        fail_turn(d, d.registry.unknown_agent_reason(d.state.agent), "UnknownAgent")
        return
    info = with_variant(info, d.state.variant)  # an A/B variant's prompt and model
    defn = info.definition
    turn = d.turn
    if defn.team is not None:  # a team agent: its members answer, no model is asked
        team_turn(d, info)
        return
    if turn.iteration >= defn.max_iterations:
        fail_turn(
            d,
            f"The turn reached its limit of {defn.max_iterations} LLM calls "
            f"(max_iterations) without a final answer.",
            "MaxIterationsExceeded",
        )
        return
    window = _context_window(d, info)
    tokens = info.prefix_tokens + d.state.history.window_tokens
    config = defn.compaction
    out = defn.max_tokens if max_tokens is None else max_tokens
    if force_compaction:
        window = min(window, tokens)
    if (
        force_compaction or tokens > config.trigger_ratio * window
    ) and turn.compacted_iteration != turn.iteration:
        plan = plan_compaction(
            d.state.history, config, context_window=window, prefix_tokens=info.prefix_tokens
        )
        if plan is not None:
            if plan.strategy is CompactionStrategy.SUMMARIZE:
                _request_summary(d, info, plan, tokens, window)
                return
            _compact_now(d, plan, info.prefix_tokens, tokens, window)
            tokens = info.prefix_tokens + d.state.history.window_tokens
        elif force_compaction:
            fail_turn(
                d,
                "The model stopped because its context window was full, and nothing is "
                "left to compact.",
                "ContextWindowExceeded",
            )
            return
    window = _context_window(d, info)
    if tokens + out > window:
        fail_turn(
            d,
            f"The context (about {tokens} tokens) plus max_tokens {out} does not "
            f"fit the context window of {window} tokens, even after compaction.",
            "ContextWindowExceeded",
        )
        return
    _request_turn_call(d, info, tokens, out)


def _reserve_or_fail(
    d: Decision, models: tuple[str, ...], context_tokens: int, max_tokens: int, info: AgentInfo
) -> tuple[int, int] | None:
    reservation = estimate_reservation([model_info(m) for m in models], context_tokens, max_tokens)
    blocked = block_reason(d.state.budget_block, d.now)
    if blocked is not None:  # a budget across sessions is spent (BudgetLimitReached)
        fail_turn(d, blocked, "BudgetExceeded")
        return None
    turn = d.turn
    exceeded = check_budget(
        info.definition.budget,
        turn=Spend(sum(turn.usage), turn.cost_nanos),
        session=Spend(d.state.spent_tokens, d.state.spent_nanos),
        requested=reservation,
    )
    if exceeded is not None:
        d.emit(exceeded)
        unit = "tokens" if exceeded.unit.value == "tokens" else "nano-dollars"
        fail_turn(
            d,
            f"The {exceeded.scope.value} budget of {exceeded.limit} {unit} does not cover "
            f"the next LLM call: {exceeded.used} used + {exceeded.requested} reserved.",
            "BudgetExceeded",
        )
        return None
    return reservation.tokens, reservation.nanos


def _request_turn_call(d: Decision, info: AgentInfo, tokens: int, max_tokens: int) -> None:
    defn = info.definition
    chain = model_chain(d.state, defn)
    reserved = _reserve_or_fail(d, chain, tokens, max_tokens, info)
    if reserved is None:
        return
    # The window's entries as they are (context_seqs order), not looked up again by seq.
    entries = list(window_entries(d.state.history))
    request = turn_request(
        info,
        entries,
        model=chain[0],
        max_tokens=max_tokens,
        temperature=defn.temperature,
        memo=d.memo,
    )
    d.request_llm(
        LlmCallRequested(
            call_id=f"{d.state.session_id}/llm/{d.next_seq}",
            model=chain[0],
            fallbacks=chain[1:],
            max_tokens=max_tokens,
            temperature=defn.temperature,
            context_ranges=window_ranges(d.state.history),
            context_entries=len(entries),
            system_prompt_hash=info.system_prompt_hash,
            toolset_hash=info.toolset_hash,
            request_digest=request.digest(),
            iteration=d.turn.iteration + 1,
            deadline_at=d.now + _seconds(defn.deadlines.llm_s),
            reserved_tokens=reserved[0],
            reserved_nanos=reserved[1],
            purpose="turn",
        ),
        request,
    )


def _request_compaction(d: Decision, plan: CompactionPlan, tokens_before: int, window: int) -> str:
    """Emit ContextCompactionRequested for `plan`; its id names the compaction."""
    compaction_id = f"{d.state.session_id}/compact/{d.next_seq}"
    d.emit(
        ContextCompactionRequested(
            compaction_id=compaction_id,
            strategy=plan.strategy.value,
            entry_seqs=plan.removed_seqs,
            tokens_before=tokens_before,
            context_window=window,
        )
    )
    return compaction_id


def _compact_now(
    d: Decision, plan: CompactionPlan, prefix_tokens: int, tokens_before: int, window: int
) -> None:
    compaction_id = _request_compaction(d, plan, tokens_before, window)
    d.emit(
        ContextCompacted(
            compaction_id=compaction_id,
            strategy=plan.strategy.value,
            removed_seqs=plan.removed_seqs,
            summary=None,
            tokens_after=prefix_tokens + plan.window_tokens_after,
        )
    )


def _request_summary(
    d: Decision, info: AgentInfo, plan: CompactionPlan, tokens_before: int, window: int
) -> None:
    defn = info.definition
    model = defn.summarize_model
    max_tokens = min(defn.compaction.summary_max_tokens, model_info(model).max_output_tokens)
    entries = entries_for(d.state.history, plan.removed_seqs, where=f"session {d.state.session_id}")
    request = summarize_request(entries, model=model, max_tokens=max_tokens)
    context_tokens = (
        sum(e.tokens for e in entries) + estimate_tokens(request.system) + ENTRY_OVERHEAD
    )
    reserved = _reserve_or_fail(d, (model,), context_tokens, max_tokens, info)
    if reserved is None:
        return
    compaction_id = _request_compaction(d, plan, tokens_before, window)
    # The summarize effect is an LLM call with purpose "summarize" and the compaction's
    # id: its context is the entries to summarize, its outcome is CompleteCompaction.
    d.request_llm(
        LlmCallRequested(
            call_id=compaction_id,
            model=model,
            fallbacks=(),
            max_tokens=max_tokens,
            temperature=0.0,
            context_ranges=context_ranges(d.state.history, plan.removed_seqs),
            context_entries=len(plan.removed_seqs),
            system_prompt_hash=SUMMARIZE_SYSTEM_HASH,
            toolset_hash=EMPTY_TOOLSET_HASH,
            request_digest=request.digest(),
            iteration=d.turn.iteration,
            deadline_at=d.now + _seconds(defn.deadlines.llm_s),
            reserved_tokens=reserved[0],
            reserved_nanos=reserved[1],
            purpose="summarize",
        ),
        request,
    )


def summarized(d: Decision, summary: str, usage: Usage, cost: int, model: str) -> None:
    """A summarize compaction completed: install the summary, continue the turn."""
    compaction = d.turn.compaction
    assert compaction is not None
    info = d.registry.pinned(d.state.agent, d.state.definition_hash)
    prefix = info.prefix_tokens if info is not None else 0
    after = apply_compaction(
        d.state.history, compaction.entry_seqs, summary_entry(d.next_seq, summary)
    )
    d.emit(
        ContextCompacted(
            compaction_id=compaction.compaction_id,
            strategy=CompactionStrategy.SUMMARIZE.value,
            removed_seqs=compaction.entry_seqs,
            summary=summary,
            tokens_after=prefix + after.window_tokens,
            usage=usage,
            cost_nanos=cost,
            model=model,
        )
    )
    next_llm_call(d)


def drop_instead_of_summary(d: Decision) -> None:
    """A summarize compaction failed: drop the same entries (sliding_window), continue."""
    compaction = d.turn.compaction
    assert compaction is not None
    info = d.registry.pinned(d.state.agent, d.state.definition_hash)
    prefix = info.prefix_tokens if info is not None else 0
    after = apply_compaction(d.state.history, compaction.entry_seqs, None)
    d.emit(
        ContextCompacted(
            compaction_id=compaction.compaction_id,
            strategy=CompactionStrategy.SLIDING_WINDOW.value,
            removed_seqs=compaction.entry_seqs,
            summary=None,
            tokens_after=prefix + after.window_tokens,
        )
    )
    next_llm_call(d)


def step_resolved(d: Decision) -> None:
    """If the current step has no unresolved call left, request the next LLM call."""
    turn = d.state.turn
    if turn is not None and not turn.calls and turn.llm is None:
        next_llm_call(d)
