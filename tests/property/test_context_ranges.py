"""context_ranges / expand_context are exact inverses on any entry list a window can be."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agents._pvec import PVec
from agents.state import (
    EMPTY_HISTORY,
    Entry,
    EntryKind,
    History,
    context_ranges,
    context_seqs,
    expand_context,
    window_ranges,
)

KINDS = [
    EntryKind.USER,
    EntryKind.ASSISTANT,
    EntryKind.TOOL_USE,
    EntryKind.TOOL_RESULT,
    EntryKind.SUMMARY,
]


@st.composite
def histories(draw: st.DrawFn) -> History:
    gaps = draw(st.lists(st.integers(1, 4), min_size=1, max_size=60))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=len(gaps), max_size=len(gaps)))
    seq, entries = 0, PVec((), ())
    for gap, kind in zip(gaps, kinds, strict=True):
        seq += gap
        entries = entries.append(Entry(seq, kind, "x"))
    summaries = [e for e in entries.iter_from(0) if e.kind == EntryKind.SUMMARY]
    summary = draw(st.sampled_from([None, *summaries])) if summaries else None
    start = draw(st.integers(0, entries.size()))
    return EMPTY_HISTORY._replace(entries=entries, window_start=start, summary=summary)


@settings(max_examples=300)
@given(histories())
def test_a_window_round_trips_in_at_most_two_pairs(history: History) -> None:
    seqs = context_seqs(history)
    ranges = context_ranges(history, seqs)
    assert expand_context(history, ranges) == seqs
    assert len(ranges) <= 4


@settings(max_examples=300)
@given(histories(), st.data())
def test_any_increasing_entry_subsequence_round_trips(
    history: History, data: st.DataObject
) -> None:
    all_seqs = [e.seq for e in history.entries.iter_from(0)]
    picked = sorted(data.draw(st.sets(st.sampled_from(all_seqs), max_size=len(all_seqs))))
    ranges = context_ranges(history, picked)
    assert expand_context(history, ranges) == tuple(picked)


@settings(max_examples=500)
@given(histories())
def test_a_windows_ranges_are_found_without_walking_it(history: History) -> None:
    """The turn call's fast path gives exactly the general conversion."""
    assert window_ranges(history) == context_ranges(history, context_seqs(history))
