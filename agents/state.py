"""The immutable session state the turn FSM folds events into.

Rule: a state is a value. Every record here is an immutable NamedTuple (construction and
`_replace` are several times cheaper than frozen dataclasses, and a state is evolved
100k+ times a second), compared by value, so `fold(log) == incremental state` is a plain
`==`. The conversation history is a persistent vector of entries: appending shares every
earlier entry, so evolving never copies the history. Nothing here does IO.

Vocabulary:

- An *entry* is one piece of conversation content, at the seq of the event that carried
  it: a user message, an assistant text, a tool use, a tool result, a summary. Entries
  are what `LlmCallRequested.context_seqs` refer to.
- The *window* is what the next LLM call sees: the active summary (if any) followed by
  the non-summary entries from `History.window_start` on. Compaction moves
  `window_start` forward and may install a new summary.
- The *phase* is derived from the active turn: an LLM call pending → awaiting_llm (or
  compacting when it is a summarize call); otherwise the tool calls of the current step
  decide, with this precedence: any call awaiting approval → awaiting_approval; else any
  tool running → awaiting_tools; else any child session running → awaiting_children.
  (A human is the slowest and most visible dependency, so a step that needs one says so.)
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from datetime import datetime
from enum import Enum
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

from agents._pvec import CHUNK, PVec
from agents.errors import ContractError
from agents.events import (
    AdmissionRequested,
    BudgetLimitReached,
    ContextCompactionRequested,
    LlmCallRequested,
    Usage,
)

__all__ = [
    "RECENT_REQUESTS",
    "STEP_PHASES",
    "TURN_PHASES",
    "ZERO_USAGE",
    "CallStatus",
    "Entry",
    "EntryKind",
    "History",
    "Lineage",
    "PendingCall",
    "PendingLlm",
    "Phase",
    "Queued",
    "SessionState",
    "TurnState",
    "TurnSummary",
    "add_usage",
    "context_ranges",
    "context_seqs",
    "entry_index",
    "expand_context",
    "find_entry",
    "initial_state",
    "replaced",
    "step_phase",
    "turn_id_for",
    "usage_of",
    "window_entries",
    "window_ranges",
]


class Phase(str, Enum):
    """`new`: no session yet. `forking`: a fork base (see fsm.fork_base), transient.
    `admitting`: no turn, a message waits for its admission by a shared rate limit
    (agents._admission) — live, so a takeover restarts its admission effect."""

    NEW = "new"
    IDLE = "idle"
    AWAITING_LLM = "awaiting_llm"
    COMPACTING = "compacting"
    AWAITING_TOOLS = "awaiting_tools"
    AWAITING_APPROVAL = "awaiting_approval"
    AWAITING_CHILDREN = "awaiting_children"
    CLOSED = "closed"
    FORKING = "forking"
    ADMITTING = "admitting"


TURN_PHASES = frozenset(
    {
        Phase.AWAITING_LLM,
        Phase.COMPACTING,
        Phase.AWAITING_TOOLS,
        Phase.AWAITING_APPROVAL,
        Phase.AWAITING_CHILDREN,
    }
)
STEP_PHASES = frozenset({Phase.AWAITING_TOOLS, Phase.AWAITING_APPROVAL, Phase.AWAITING_CHILDREN})

# How many recent request ids a session remembers to reject duplicates. Duplicates come
# from client retries and executor restarts, i.e. within seconds; older ones are not
# detected by id (an effect outcome is still folded once, by effect id).
RECENT_REQUESTS = 128


class EntryKind:
    """Entry kinds, as short strings: they are stored once per entry in every state."""

    USER = "u"
    ASSISTANT = "a"
    TOOL_USE = "t"
    TOOL_RESULT = "r"
    SUMMARY = "s"


class Entry(NamedTuple):
    """`text` is the content: user/assistant text, tool arguments (JSON), tool result,
    or summary. `name` is the tool name (tool use) or the model (assistant)."""

    seq: int
    kind: str
    text: str
    call_id: str = ""
    name: str = ""
    is_error: bool = False
    tokens: int = 0
    # What the entry carries besides its text: a user message's attachments, an
    # assistant answer's thinking blocks (agents.events.Attachment / ThinkingBlock).
    blocks: tuple[Any, ...] = ()


class History(NamedTuple):
    entries: PVec[Entry]
    window_start: int  # index into entries: the first entry still in the window
    summary: Entry | None  # the active summary, shown before the window's entries
    window_tokens: int  # estimated tokens of the window (summary included)


class CallStatus:
    APPROVAL = "approval"
    TOOL = "tool"
    CHILD = "child"
    # A delegate_many call waiting for its members (agents.orchestration), and a member
    # that has settled but stays until the orchestration combines the answers.
    ORCHESTRATION = "orchestration"
    MEMBER_DONE = "member_done"


class PendingCall(NamedTuple):
    """An unresolved tool call of the current step. `deadline_at` is the approval's
    expiry while status is approval, else the running effect's deadline. `timeout_us`
    is the effect's allowance: a call that waited for approval gets its deadline from
    the grant time plus this."""

    call_id: str
    name: str
    arguments_json: str
    status: str
    requested_seq: int
    deadline_at: datetime | None
    attempt: int
    timeout_us: int
    child_session_id: str = ""
    child_agent: str = ""
    task: str = ""


class PendingLlm(NamedTuple):
    """The LLM call in flight (a turn call or a summarize call), as requested."""

    request: LlmCallRequested
    seq: int
    attempt: int
    deadline_at: datetime
    timeout_us: int


class TurnState(NamedTuple):
    turn_no: int
    turn_id: str
    correlation_id: str
    started_seq: int
    iteration: int  # turn LLM calls requested so far
    llm: PendingLlm | None
    compaction: ContextCompactionRequested | None
    calls: tuple[PendingCall, ...]
    usage: tuple[int, int, int, int]  # input, output, cache read, cache write
    cost_nanos: int
    answer_seq: int  # seq of the last LlmCallCompleted (0: none yet)
    compacted_iteration: int  # iteration at the last compaction (-1: none this turn)


class TurnSummary(NamedTuple):
    """How the last turn ended (what a child session reports to its parent)."""

    turn_no: int
    outcome: str  # "completed" | "failed" | "cancelled"
    answer_seq: int
    usage: tuple[int, int, int, int]
    cost_nanos: int
    reason: str


class Lineage(NamedTuple):
    parent_session_id: str | None = None
    parent_call_id: str | None = None
    forked_from: str | None = None
    fork_at_seq: int = 0


class Queued(NamedTuple):
    """A message waiting for the turn in progress to end (MessageQueued at `seq`)."""

    seq: int
    request_id: str
    text: str
    attachments: tuple[Any, ...] = ()  # agents.events.Attachment


# How many LLM calls abandoned by cancels a session remembers, to charge their late
# outcomes: a worker aborts them at once, so a late outcome is one already on its way.
ABANDONED_KEPT = 8


class SessionState(NamedTuple):
    session_id: str
    last_seq: int
    phase: Phase
    agent: str
    definition_hash: str
    turn: TurnState | None
    history: History
    spent_tokens: int  # session spend, actual (reservations are in turn.llm)
    spent_nanos: int
    turns: int  # turns started
    recent_requests: tuple[str, ...]
    lineage: Lineage
    last_turn: TurnSummary | None
    # (call id, requested model) of LLM calls a cancel abandoned, newest last.
    abandoned: tuple[tuple[str, str], ...] = ()
    queue: tuple[Queued, ...] = ()  # messages waiting for the next turn, oldest first
    model: str = ""  # the model a SetModel switched to ("": the agent's own)
    # (call id, requested model, the issue that answered it), once per issue of an LLM
    # call that a re-issue replaced and that may still answer (its answer is charged,
    # once), newest last.
    superseded: tuple[tuple[str, str, int], ...] = ()
    # A spent budget across sessions (agents.budget.block_reason), until its end.
    budget_block: BudgetLimitReached | None = None
    variant: str = ""  # the prompt variant it was assigned ("": none; agents.variants)
    client: str = ""  # the requester identity it started with ("": none stated)
    # A message waiting for its admission by a shared rate limit (agents.ratelimit).
    admission: AdmissionRequested | None = None
    # The last minute's messages and LLM tokens, oldest first (agents.ratelimit).
    rate: tuple[tuple[int, int, int], ...] = ()


ZERO_USAGE: tuple[int, int, int, int] = (0, 0, 0, 0)

_FIELD_INDEX: dict[type, dict[str, int]] = {}
_T = TypeVar("_T", bound=tuple[Any, ...])


def replaced(record: _T, /, **changes: Any) -> _T:
    """`record._replace(**changes)` for about two thirds of the cost: a NamedTuple's
    `_replace` maps `dict.pop` over every field, and evolve replaces on every event."""
    cls = type(record)
    index = _FIELD_INDEX.get(cls)
    if index is None:
        index = _FIELD_INDEX[cls] = {name: i for i, name in enumerate(cls._fields)}  # type: ignore[attr-defined]
    values = list(record)
    try:
        for name, value in changes.items():
            values[index[name]] = value
    except KeyError as exc:
        raise ValueError(f"{cls.__name__} has no field {exc.args[0]!r}.") from None
    result: _T = tuple.__new__(cls, values)
    return result


EMPTY_HISTORY = History(PVec((), ()), 0, None, 0)
NO_LINEAGE = Lineage()


def initial_state(session_id: str) -> SessionState:
    """The state of a session that has no events."""
    return SessionState(
        session_id=session_id,
        last_seq=0,
        phase=Phase.NEW,
        agent="",
        definition_hash="",
        turn=None,
        history=EMPTY_HISTORY,
        spent_tokens=0,
        spent_nanos=0,
        turns=0,
        recent_requests=(),
        lineage=NO_LINEAGE,
        last_turn=None,
    )


def turn_id_for(session_id: str, turn_no: int) -> str:
    return f"{session_id}:t{turn_no}"


def step_phase(calls: tuple[PendingCall, ...]) -> Phase:
    """The phase of a step with these unresolved calls (precedence in the module doc).
    No calls left: awaiting_llm (the next LLM call follows in the same decision)."""
    # Evolve asks this on most events: one pass, no set, the phases as module constants.
    phase = _AWAITING_LLM
    for c in calls:
        status = c.status
        if status == _APPROVAL:
            return _AWAITING_APPROVAL
        if status == _TOOL:
            phase = _AWAITING_TOOLS
        elif phase is _AWAITING_LLM and status in _WAITING_FOR_CHILDREN:
            phase = _AWAITING_CHILDREN
    return phase


# `Phase.X` goes through EnumType.__getattr__'s slow attribute hook (CPython 3.11).
_AWAITING_LLM, _AWAITING_TOOLS = Phase.AWAITING_LLM, Phase.AWAITING_TOOLS
_AWAITING_APPROVAL, _AWAITING_CHILDREN = Phase.AWAITING_APPROVAL, Phase.AWAITING_CHILDREN
_APPROVAL, _TOOL = CallStatus.APPROVAL, CallStatus.TOOL
_WAITING_FOR_CHILDREN = (CallStatus.CHILD, CallStatus.ORCHESTRATION)


def usage_of(u: tuple[int, int, int, int]) -> Usage:
    return Usage(u[0], u[1], u[2], u[3])


def add_usage(u: tuple[int, int, int, int], usage: Usage) -> tuple[int, int, int, int]:
    return (
        u[0] + usage.input_tokens,
        u[1] + usage.output_tokens,
        u[2] + usage.cache_read_tokens,
        u[3] + usage.cache_write_tokens,
    )


def entry_index(history: History, seq: int) -> int:
    """Index of the first entry with entry.seq >= seq (binary search; entries are in seq
    order). Equal to the number of entries when every entry is older."""
    # The vector's chunks by their last entry, then bisect in C within one chunk: a
    # decision looks entries up by seq several times, and PVec.get is a Python call.
    chunks, tail = history.entries
    lo, hi = 0, len(chunks)
    while lo < hi:
        mid = (lo + hi) >> 1
        if chunks[mid][-1][0] < seq:  # [0]: Entry.seq
            lo = mid + 1
        else:
            hi = mid
    block = chunks[lo] if lo < len(chunks) else tail
    return lo * CHUNK + bisect_left(block, seq, key=_SEQ)


_SEQ = itemgetter(0)  # Entry.seq


def find_entry(history: History, seq: int) -> Entry | None:
    i = entry_index(history, seq)
    if i < history.entries.size():
        e = history.entries.get(i)
        if e.seq == seq:
            return e
    return None


def window_entries(history: History) -> Iterator[Entry]:
    """The window in request order: the active summary, then the window's entries."""
    # Built as a list from slices of the vector's chunks (every LLM call reads the whole
    # window: a generator's resume per entry cost more than the rest of that walk).
    chunks, tail = history.entries
    start = max(history.window_start, 0)
    c = start // CHUNK
    window: list[Entry] = []
    if c < len(chunks):
        window += chunks[c][start % CHUNK :]
        for chunk in chunks[c + 1 :]:
            window += chunk
        window += tail
    else:
        window += tail[start - len(chunks) * CHUNK :]
    if EntryKind.SUMMARY in map(_KIND, window):  # inactive summaries stay in entries
        window = [e for e in window if e.kind != EntryKind.SUMMARY]
    if history.summary is not None:
        window.insert(0, history.summary)
    return iter(window)


_KIND = itemgetter(1)  # Entry.kind


def context_seqs(history: History) -> tuple[int, ...]:
    return tuple(e.seq for e in window_entries(history))


def context_ranges(history: History, seqs: Sequence[int]) -> tuple[int, ...]:
    """`seqs` (entries of `history`, in request order) as inclusive seq pairs: a run of
    consecutive non-summary entries becomes one pair, anything else a pair of its own.
    Exact inverse of `expand_context`; a window (summary + suffix) is at most 2 pairs."""
    entries = history.entries
    size = entries.size()
    out: list[int] = []
    i, n = 0, len(seqs)
    while i < n:
        lo = seqs[i]
        idx = entry_index(history, lo)
        if idx >= size or entries.get(idx).seq != lo:
            raise ContractError(f"context refers to seq {lo}, which holds no entry.")
        hi = lo
        i += 1
        if entries.get(idx).kind != EntryKind.SUMMARY:
            idx += 1
            while i < n:
                while idx < size and entries.get(idx).kind == EntryKind.SUMMARY:
                    idx += 1
                if idx < size and entries.get(idx).seq == seqs[i] > hi:
                    hi = seqs[i]
                    i += 1
                    idx += 1
                else:
                    break
        out += (lo, hi)
    return tuple(out)


def window_ranges(history: History) -> tuple[int, ...]:
    """`context_ranges(history, context_seqs(history))` without walking the window: the
    active summary is a pair of its own, and the window's entries are every non-summary
    entry from `window_start` on, so they are one run from the first to the last."""
    out: tuple[int, ...] = ()
    if history.summary is not None:
        out = (history.summary.seq, history.summary.seq)
    entries = history.entries
    first = next(
        (e for e in entries.iter_from(history.window_start) if e.kind != EntryKind.SUMMARY),
        None,
    )
    if first is None:
        return out
    i = entries.size() - 1
    last = entries.get(i)
    while last.kind == EntryKind.SUMMARY:  # stops at `first` at the latest
        i -= 1
        last = entries.get(i)
    return (*out, first.seq, last.seq)


def expand_context(history: History, ranges: Sequence[int]) -> tuple[int, ...]:
    """The entry seqs named by `ranges` (see LlmCallRequested.context_ranges)."""
    entries = history.entries
    size = entries.size()
    out: list[int] = []
    for k in range(0, len(ranges), 2):
        lo, hi = ranges[k], ranges[k + 1]
        if lo == hi:
            out.append(lo)
            continue
        idx = entry_index(history, lo)
        while idx < size:
            e = entries.get(idx)
            if e.seq > hi:
                break
            if e.kind != EntryKind.SUMMARY:
                out.append(e.seq)
            idx += 1
    return tuple(out)
