"""SessionState to and from compact JSON-safe dicts (for changelog-backed tables, caches,
debugging).

Rule: `state_from_dict(state_to_dict(s)) == s` for every reachable state, and the dict
holds only JSON types (str, int, bool, None, lists, dicts), so it survives json.dumps.
Compact: records are positional lists, datetimes are integer microseconds since the
epoch (UTC), and the conversation content appears once (the active summary is stored as
a seq into the entries). The dict carries a format version `v`; an unknown version is a
ContractError. Nothing here does IO.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agents._pvec import pvec_of
from agents.errors import ContractError
from agents.events import (
    AdmissionRequested,
    Attachment,
    BudgetLimitReached,
    ContextCompactionRequested,
    LlmCallRequested,
    ThinkingBlock,
)
from agents.state import (
    Entry,
    History,
    Lineage,
    PendingCall,
    PendingLlm,
    Phase,
    Queued,
    SessionState,
    TurnState,
    TurnSummary,
    find_entry,
)

__all__ = ["READABLE_FORMATS", "STATE_FORMAT", "state_from_dict", "state_to_dict"]

STATE_FORMAT = 2
# Format 1 had no abandoned calls and no queue: it reads as a state with neither.
READABLE_FORMATS = frozenset({1, STATE_FORMAT})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _t(dt: datetime) -> int:
    return (dt - _EPOCH) // _US


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _llm_req(r: LlmCallRequested) -> list[Any]:
    return [
        r.call_id,
        r.model,
        list(r.fallbacks),
        r.max_tokens,
        r.temperature,
        list(r.context_ranges),
        r.system_prompt_hash,
        r.toolset_hash,
        r.request_digest,
        r.iteration,
        _t(r.deadline_at),
        r.reserved_tokens,
        r.reserved_nanos,
        r.purpose,
        r.context_entries,
    ]


def _llm_req_back(v: list[Any]) -> LlmCallRequested:
    return LlmCallRequested(
        call_id=v[0],
        model=v[1],
        fallbacks=tuple(v[2]),
        max_tokens=v[3],
        temperature=float(v[4]),
        context_ranges=tuple(v[5]),
        context_entries=v[14],
        system_prompt_hash=v[6],
        toolset_hash=v[7],
        request_digest=v[8],
        iteration=v[9],
        deadline_at=_dt(v[10]),
        reserved_tokens=v[11],
        reserved_nanos=v[12],
        purpose=v[13],
    )


def _compaction(c: ContextCompactionRequested) -> list[Any]:
    return [c.compaction_id, c.strategy, list(c.entry_seqs), c.tokens_before, c.context_window]


def _compaction_back(v: list[Any]) -> ContextCompactionRequested:
    return ContextCompactionRequested(v[0], v[1], tuple(v[2]), v[3], v[4])


def _call(c: PendingCall) -> list[Any]:
    return [
        c.call_id,
        c.name,
        c.arguments_json,
        c.status,
        c.requested_seq,
        None if c.deadline_at is None else _t(c.deadline_at),
        c.attempt,
        c.timeout_us,
        c.child_session_id,
        c.child_agent,
        c.task,
    ]


def _call_back(v: list[Any]) -> PendingCall:
    return PendingCall(
        v[0],
        v[1],
        v[2],
        v[3],
        v[4],
        None if v[5] is None else _dt(v[5]),
        v[6],
        v[7],
        v[8],
        v[9],
        v[10],
    )


def _turn(t: TurnState) -> dict[str, Any]:
    llm = t.llm
    return {
        "no": t.turn_no,
        "id": t.turn_id,
        "corr": t.correlation_id,
        "start": t.started_seq,
        "it": t.iteration,
        "llm": None
        if llm is None
        else [_llm_req(llm.request), llm.seq, llm.attempt, _t(llm.deadline_at), llm.timeout_us],
        "comp": None if t.compaction is None else _compaction(t.compaction),
        "calls": [_call(c) for c in t.calls],
        "usage": list(t.usage),
        "cost": t.cost_nanos,
        "ans": t.answer_seq,
        "ci": t.compacted_iteration,
    }


def _turn_back(d: dict[str, Any]) -> TurnState:
    llm = d["llm"]
    u = d["usage"]
    return TurnState(
        turn_no=d["no"],
        turn_id=d["id"],
        correlation_id=d["corr"],
        started_seq=d["start"],
        iteration=d["it"],
        llm=None
        if llm is None
        else PendingLlm(_llm_req_back(llm[0]), llm[1], llm[2], _dt(llm[3]), llm[4]),
        compaction=None if d["comp"] is None else _compaction_back(d["comp"]),
        calls=tuple(_call_back(c) for c in d["calls"]),
        usage=(u[0], u[1], u[2], u[3]),
        cost_nanos=d["cost"],
        answer_seq=d["ans"],
        compacted_iteration=d["ci"],
    )


def state_to_dict(state: SessionState) -> dict[str, Any]:
    """A compact, JSON-safe dict of `state`."""
    h = state.history
    last = state.last_turn
    lin = state.lineage
    return {
        "v": STATE_FORMAT,
        "sid": state.session_id,
        "seq": state.last_seq,
        "phase": state.phase.value,
        "agent": state.agent,
        "dh": state.definition_hash,
        "turn": None if state.turn is None else _turn(state.turn),
        "entries": [
            [e.seq, e.kind, e.text, e.call_id, e.name, int(e.is_error), e.tokens]
            + ([_blocks(e.blocks)] if e.blocks else [])
            for e in h.entries.items()
        ],
        "ws": h.window_start,
        "summary": None if h.summary is None else h.summary.seq,
        "wt": h.window_tokens,
        "spent": [state.spent_tokens, state.spent_nanos],
        "turns": state.turns,
        "recent": list(state.recent_requests),
        "lineage": [lin.parent_session_id, lin.parent_call_id, lin.forked_from, lin.fork_at_seq],
        "last": None
        if last is None
        else [
            last.turn_no,
            last.outcome,
            last.answer_seq,
            list(last.usage),
            last.cost_nanos,
            last.reason,
        ],
        "ab": [list(a) for a in state.abandoned],
        "q": [
            [q.seq, q.request_id, q.text] + ([_blocks(q.attachments)] if q.attachments else [])
            for q in state.queue
        ],
        **({"m": state.model} if state.model else {}),
        **({"sp": [list(a) for a in state.superseded]} if state.superseded else {}),
        **({"bb": _block(state.budget_block)} if state.budget_block else {}),
        **({"vr": state.variant} if state.variant else {}),
        **({"cl": state.client} if state.client else {}),
        **({"ad": _admission(state.admission)} if state.admission else {}),
        **({"rl": [list(r) for r in state.rate]} if state.rate else {}),
    }


# Entry blocks (attachments of a user message, thinking blocks of an answer) and queued
# attachments, as lists tagged by kind; entries without any keep their 7-item form.


def _blocks(blocks: tuple[Any, ...]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for b in blocks:
        if isinstance(b, ThinkingBlock):
            out.append(
                ["k", b.thinking, b.signature, b.redacted_data]
                + ([b.provider] if b.provider != "anthropic" else [])
            )
        else:
            out.append(["a", b.media_type, b.sha256, b.data, b.name])
    return out


def _blocks_back(v: list[list[Any]]) -> tuple[Any, ...]:
    return tuple(
        (ThinkingBlock(b[1], b[2], b[3], *b[4:5]) if b[0] == "k" else Attachment(*b[1:5]))
        for b in v
    )


def _block(b: BudgetLimitReached) -> list[Any]:
    return [b.scope, b.key, b.period, b.unit, b.limit, b.spent, _t(b.until)]


def _admission(a: AdmissionRequested) -> list[Any]:
    return [
        a.admission_id,
        a.key,
        a.text,
        a.window_ms,
        a.requests_per_minute,
        a.tokens_per_minute,
        a.on_limit,
        a.max_wait_ms,
        _blocks(a.attachments),
        a.client,
    ]


def _admission_back(v: list[Any]) -> AdmissionRequested:
    return AdmissionRequested(
        admission_id=v[0],
        key=v[1],
        text=v[2],
        window_ms=v[3],
        requests_per_minute=v[4],
        tokens_per_minute=v[5],
        on_limit=v[6],
        max_wait_ms=v[7],
        attachments=_blocks_back(v[8]),
        client=v[9],
    )


def _block_back(v: list[Any]) -> BudgetLimitReached:
    return BudgetLimitReached(v[0], v[1], v[2], v[3], v[4], v[5], _dt(v[6]))


def state_from_dict(data: dict[str, Any]) -> SessionState:
    """The state `data` (from state_to_dict) describes; ContractError if it cannot."""
    if not isinstance(data, dict) or data.get("v") not in READABLE_FORMATS:
        found = data.get("v") if isinstance(data, dict) else type(data).__name__
        raise ContractError(
            f"Cannot restore a session state of format {found!r}; this code reads format "
            f"{STATE_FORMAT}."
        )
    try:
        entries = pvec_of(
            Entry(e[0], e[1], e[2], e[3], e[4], bool(e[5]), e[6])
            if len(e) == 7
            else Entry(e[0], e[1], e[2], e[3], e[4], bool(e[5]), e[6], _blocks_back(e[7]))
            for e in data["entries"]
        )
        history = History(entries, data["ws"], None, data["wt"])
        if data["summary"] is not None:
            summary = find_entry(history, data["summary"])
            if summary is None:
                raise ContractError(f"the summary seq {data['summary']} holds no entry")
            history = history._replace(summary=summary)
        last = data["last"]
        lin = data["lineage"]
        return SessionState(
            session_id=data["sid"],
            last_seq=data["seq"],
            phase=Phase(data["phase"]),
            agent=data["agent"],
            definition_hash=data["dh"],
            turn=None if data["turn"] is None else _turn_back(data["turn"]),
            history=history,
            spent_tokens=data["spent"][0],
            spent_nanos=data["spent"][1],
            turns=data["turns"],
            recent_requests=tuple(data["recent"]),
            lineage=Lineage(lin[0], lin[1], lin[2], lin[3]),
            last_turn=None
            if last is None
            else TurnSummary(
                last[0],
                last[1],
                last[2],
                (last[3][0], last[3][1], last[3][2], last[3][3]),
                last[4],
                last[5],
            ),
            abandoned=tuple((a[0], a[1]) for a in data.get("ab", ())),
            queue=tuple(
                Queued(q[0], q[1], q[2], _blocks_back(q[3]) if len(q) > 3 else ())
                for q in data.get("q", ())
            ),
            model=data.get("m", ""),
            superseded=tuple((a[0], a[1], a[2]) for a in data.get("sp", ())),
            budget_block=_block_back(data["bb"]) if "bb" in data else None,
            variant=data.get("vr", ""),
            client=data.get("cl", ""),
            admission=_admission_back(data["ad"]) if "ad" in data else None,
            rate=tuple((r[0], r[1], r[2]) for r in data.get("rl", ())),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ContractError(
            f"Cannot restore session state {data.get('sid')!r}: malformed dict ({exc!r})."
        ) from exc
