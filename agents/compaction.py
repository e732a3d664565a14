"""Context compaction: which entries leave the window, and the window afterwards.

Rule: compaction removes a *prefix* of the window (the active summary first, then the
oldest entries) and only cuts where a Messages-API conversation may start: before a user
message or before an assistant message. It never separates a tool result from the tool
use it answers, so a compacted window is always a valid request. Pure functions of the
history; nothing here does IO.

Strategies (see definitions.CompactionConfig):

- sliding_window: keep the last `keep_last` entries (at least), drop the rest.
- oldest_first: drop the fewest oldest entries that bring the estimate under
  `target_ratio` of the context window, but keep at least `keep_last` entries.
- summarize: like sliding_window, but the dropped entries (and the old summary) are
  replaced by a summary that an LLM effect writes (ContextCompacted carries it).
"""

from __future__ import annotations

from typing import NamedTuple

from agents.definitions import CompactionConfig, CompactionStrategy
from agents.state import Entry, EntryKind, History, entry_index, window_entries
from agents.tokens import ENTRY_OVERHEAD, estimate_tokens

__all__ = ["CompactionPlan", "apply_compaction", "plan_compaction", "summary_entry"]


class CompactionPlan(NamedTuple):
    strategy: CompactionStrategy
    removed_seqs: tuple[int, ...]  # a prefix of the window, in window order
    window_tokens_after: int  # estimate of the window after (without any new summary)


def summary_entry(seq: int, text: str) -> Entry:
    return Entry(seq, EntryKind.SUMMARY, text, tokens=estimate_tokens(text) + ENTRY_OVERHEAD)


def plan_compaction(
    history: History,
    config: CompactionConfig,
    *,
    context_window: int,
    prefix_tokens: int,
) -> CompactionPlan | None:
    """What to remove, or None when nothing can be removed under the rules."""
    summary = history.summary
    entries = [e for e in window_entries(history) if e is not summary]
    n = len(entries)
    # suffix[i] = tokens of entries[i:]
    suffix = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        suffix[i] = suffix[i + 1] + entries[i].tokens
    limit = n - config.keep_last
    cuts = [
        i
        for i in range(1, max(limit, 0) + 1)
        if i < n and entries[i].kind in (EntryKind.USER, EntryKind.ASSISTANT)
    ]
    strategy = config.strategy
    cut: int | None
    if strategy is CompactionStrategy.OLDEST_FIRST:
        candidates = ([0] if summary is not None else []) + cuts
        if not candidates:
            return None
        target = int(config.target_ratio * context_window) - prefix_tokens
        cut = next((i for i in candidates if suffix[i] <= target), candidates[-1])
    else:
        cut = cuts[-1] if cuts else None
        if cut is None:
            if strategy is CompactionStrategy.SUMMARIZE or summary is None:
                return None
            cut = 0  # sliding_window with nothing to cut: at least drop the old summary
    removed = ((summary.seq,) if summary is not None else ()) + tuple(e.seq for e in entries[:cut])
    return CompactionPlan(strategy, removed, suffix[cut])


def apply_compaction(
    history: History, removed_seqs: tuple[int, ...], summary: Entry | None
) -> History:
    """The history after `removed_seqs` left the window and `summary` (if any) became
    the active summary. The summary entry is also appended to the entries, so that old
    requests that referred to it can still be rebuilt."""
    old = history.summary
    removed = set(removed_seqs)
    active = old if old is not None and old.seq not in removed else None
    start = history.window_start
    entry_seqs = [s for s in removed_seqs if old is None or s != old.seq]
    if entry_seqs:
        start = max(start, entry_index(history, max(entry_seqs)) + 1)
    entries = history.entries
    if summary is not None:
        entries = entries.append(summary)
        active = summary
    kept = History(entries, start, active, 0)
    tokens = sum(e.tokens for e in window_entries(kept))
    return kept._replace(window_tokens=tokens)
