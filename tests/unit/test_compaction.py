"""Compaction: planning (which prefix leaves the window), applying, and the three
strategies inside the turn loop."""

from __future__ import annotations

from agents._pvec import pvec_of
from agents.compaction import apply_compaction, plan_compaction, summary_entry
from agents.context import SUMMARY_PREFIX, build_llm_request, verify_llm_request
from agents.definitions import CompactionConfig
from agents.effects import CompactionEffect, pending_effects
from agents.events import (
    CompleteCompaction,
    ContextCompacted,
    ContextCompactionRequested,
    FailLlmCall,
    LlmCallRequested,
    SendMessage,
    Tick,
    Usage,
)
from agents.fold import fold
from agents.pricing import cost_nanos
from agents.state import Entry, EntryKind, History, Phase, context_seqs, expand_context
from tests.unit.test_fsm_support import REGISTRY, Driver, agent, make_registry, types

U, A, T, R = EntryKind.USER, EntryKind.ASSISTANT, EntryKind.TOOL_USE, EntryKind.TOOL_RESULT
BIG = "word " * 2_500  # ~3,100 estimated tokens


def history(kinds: str, tokens: int = 100) -> History:
    entries = [
        Entry(i + 1, k, "x", "c" if k in (T, R) else "", "", False, tokens)
        for i, k in enumerate(kinds)
    ]
    return History(pvec_of(entries), 0, None, tokens * len(entries))


def plan(h: History, **config: object) -> tuple[int, ...] | None:
    p = plan_compaction(
        h, CompactionConfig.model_validate(config), context_window=1000, prefix_tokens=0
    )
    return None if p is None else p.removed_seqs


def test_sliding_window_keeps_at_least_keep_last_and_cuts_at_message_starts() -> None:
    h = history("uatrauatr")  # seqs 1..9
    assert plan(h, keep_last=2) == (1, 2, 3, 4, 5, 6)  # keeps 7..9: a tool use needs its text
    assert plan(h, keep_last=4) == (1, 2, 3, 4, 5)  # cut before the user message at 6
    assert plan(h, keep_last=6) == (1,)  # 4..9 would start at a tool result: cut before 2
    assert plan(h, keep_last=8) == (1,)
    assert plan(h, keep_last=9) is None


def test_never_separates_a_tool_result_from_its_use() -> None:
    h = history("uatrrrr")
    assert plan(h, keep_last=1) == (1,)  # the only cut: before the assistant


def test_oldest_first_drops_just_enough() -> None:
    h = history("uauauaua")  # 8 x 100 tokens; target 0.5 * 1000 = 500
    assert plan(h, strategy="oldest_first", keep_last=1) == (1, 2, 3)
    assert plan(h, strategy="oldest_first", keep_last=1, target_ratio=0.2, trigger_ratio=0.5) == (
        1,
        2,
        3,
        4,
        5,
        6,
    )
    assert plan(h, strategy="oldest_first", keep_last=7) == (1,)


def test_summary_goes_first_and_apply_moves_the_window() -> None:
    h = history("uauau")
    s = summary_entry(9, "old summary")
    h = apply_compaction(h._replace(entries=h.entries.append(s)), (), s)
    assert context_seqs(h) == (9, 1, 2, 3, 4, 5)
    assert plan(h, strategy="summarize", keep_last=2) == (9, 1, 2, 3)
    assert plan(h, strategy="oldest_first", keep_last=1) == (9,)  # the summary alone suffices
    after = apply_compaction(h, (9, 1, 2, 3), summary_entry(10, "new"))
    assert context_seqs(after) == (10, 4, 5)
    assert after.window_tokens == 200 + after.summary.tokens
    dropped = apply_compaction(h, (9, 1, 2), None)
    assert context_seqs(dropped) == (3, 4, 5) and dropped.summary is None


def _long_session(agent_name: str) -> Driver:
    d = Driver()
    d.send(SendMessage("hello"), agent=agent_name)
    d.answer("ok")
    d.send(SendMessage(BIG))
    d.answer("ok")
    return d


def test_sliding_window_compacts_inside_the_decision() -> None:
    d = _long_session("assistant")
    events = d.send(SendMessage(BIG))
    assert types(events) == [
        "TurnStarted",
        "UserMessageReceived",
        "ContextCompactionRequested",
        "ContextCompacted",
        "LlmCallRequested",
    ]
    requested, compacted, call = (events[2].payload, events[3].payload, events[4].payload)
    assert isinstance(requested, ContextCompactionRequested)
    assert isinstance(compacted, ContextCompacted) and isinstance(call, LlmCallRequested)
    assert requested.strategy == compacted.strategy == "sliding_window"
    assert requested.tokens_before > 0.8 * requested.context_window
    assert compacted.tokens_after < requested.tokens_before
    window = expand_context(d.state.history, call.context_ranges)
    assert len(window) == call.context_entries
    assert not set(compacted.removed_seqs) & set(window)
    assert window[-1] == events[1].seq
    verify_llm_request(d.state, call, REGISTRY)
    assert fold(d.log, "s1") == d.state


def test_oldest_first_compacts_inside_the_decision() -> None:
    d = _long_session("oldest")
    events = d.send(SendMessage(BIG))
    assert types(events)[2:] == [
        "ContextCompactionRequested",
        "ContextCompacted",
        "LlmCallRequested",
    ]
    assert events[3].payload.strategy == "oldest_first"


def test_summarize_is_an_llm_effect_then_the_summary_leads_the_context() -> None:
    d = _long_session("summarizer")
    events = d.send(SendMessage(BIG))
    assert types(events)[2:] == ["ContextCompactionRequested", "LlmCallRequested"]
    assert d.state.phase is Phase.COMPACTING
    summarize = events[-1].payload
    assert summarize.purpose == "summarize" and summarize.model == "scripted-summarizer"
    assert summarize.call_id == events[2].payload.compaction_id
    assert expand_context(d.state.history, summarize.context_ranges) == events[2].payload.entry_seqs
    effect = pending_effects(d.state)[0]
    assert isinstance(effect, CompactionEffect) and effect.effect_id == summarize.call_id
    built = verify_llm_request(d.state, effect, REGISTRY)
    assert built.tools == () and "Summarize this conversation" in built.messages[0].content[0].text

    events = d.send(
        CompleteCompaction(
            summarize.call_id, "They said hello; BIG text.", "scripted-summarizer", Usage(500, 20)
        )
    )
    assert types(events) == ["ContextCompacted", "LlmCallRequested"]
    compacted, call = events[0].payload, events[1].payload
    assert compacted.summary == "They said hello; BIG text." and compacted.model
    assert compacted.cost_nanos == cost_nanos("scripted-summarizer", Usage(500, 20))
    # the summary is an entry at its own seq, named by a pair of its own
    assert call.context_ranges[:2] == (events[0].seq, events[0].seq)
    assert expand_context(d.state.history, call.context_ranges)[0] == events[0].seq
    request = build_llm_request(d.state, call, REGISTRY).to_dict()
    assert request["messages"][0]["content"][0]["text"] == SUMMARY_PREFIX + compacted.summary
    assert d.state.turn.cost_nanos == compacted.cost_nanos
    assert fold(d.log, "s1") == d.state


def test_failed_or_empty_summary_falls_back_to_dropping_the_entries() -> None:
    for outcome in ("fail", "empty"):
        d = _long_session("summarizer")
        d.send(SendMessage(BIG))
        cid = d.llm_call_id
        payload = (
            FailLlmCall(cid, "overloaded", "529")
            if outcome == "fail"
            else CompleteCompaction(cid, "  ", "scripted-summarizer")
        )
        events = d.send(payload)
        assert types(events) == ["LlmCallFailed", "ContextCompacted", "LlmCallRequested"]
        assert events[1].payload.strategy == "sliding_window"
        assert events[1].payload.summary is None


def test_overdue_summary_is_reissued_then_dropped() -> None:
    d = _long_session("summarizer")
    d.send(SendMessage(BIG))
    cid = d.llm_call_id
    events = d.send(Tick(), advance=60)
    assert types(events) == ["EffectReissued"] and events[0].payload.kind.value == "compaction"
    events = d.send(Tick(), advance=60)
    assert types(events) == ["LlmCallFailed", "ContextCompacted", "LlmCallRequested"]
    assert events[0].payload.call_id == cid


def test_context_that_cannot_fit_fails_the_turn() -> None:
    registry = make_registry(agent("tiny", max_tokens=1024))
    d = Driver(registry=registry)
    events = d.send(SendMessage("word " * 6_000), agent="tiny")  # ~7,500 tokens, one entry
    assert types(events)[-1] == "TurnFailed"
    assert events[-1].payload.error_type == "ContextWindowExceeded"
