"""The soak's invariants, computed from what is on the topics, in the sandbox and in
Postgres once every worker caught up.

Rule: each check is a pure function of the final data (no Kafka, no database here) and
returns a `Check` with its figure and PASS/FAIL; the log-level invariants are the
integration tests' own (harness.seq_problems, lost_inputs, llm_completions,
test_worker_crash._assert_turn_costs_are_sums), the side-effect count is
test_rebalance_effects' (one `mktemp` file per run of a non-idempotent shell command).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.events import (
    Event,
    LlmCallFailed,
    LlmCallRequested,
    Request,
    RequestRejected,
    Tick,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCompleted,
    TurnFailed,
)
from tests.integration.test_worker_crash import _assert_turn_costs_are_sums
from tests.support.harness import llm_completions, lost_inputs, seq_problems

__all__ = ["Check", "Junk", "RequestRecord", "check_all"]

UNDECODABLE = ("random_bytes", "magic_bytes", "truncated")


@dataclass(frozen=True)
class Junk:
    """One junk input sent, where it landed on the requests topic."""

    kind: str  # UNDECODABLE kinds, "nul_text" or "oversized"
    partition: int
    offset: int
    session_id: str | None  # None for undecodable bytes
    request_id: str | None
    size: int


@dataclass(frozen=True)
class RequestRecord:
    partition: int
    offset: int
    request: Request | None  # None: does not decode


@dataclass
class Check:
    name: str
    figure: str
    ok: bool
    detail: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"  [{'PASS' if self.ok else 'FAIL'}] {self.name}: {self.figure}"


def _sample(items: Iterable[Any], n: int = 5) -> str:
    items = list(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(str(i) for i in items[:n]) + more


# --------------------------------------------------------------------------- the log


def check_turns(events: Sequence[Event], turns_sent: Mapping[str, int]) -> Check:
    ended: Counter[str] = Counter()
    failed: list[str] = []
    for e in events:
        if isinstance(e.payload, (TurnCompleted, TurnFailed)):
            ended[e.session_id] += 1
        if isinstance(e.payload, TurnFailed):
            failed.append(f"{e.session_id} turn {e.payload.turn_no}: {e.payload.reason[:120]}")
    short = {s: (ended[s], n) for s, n in turns_sent.items() if ended[s] != n}
    total = sum(turns_sent.values())
    detail = [
        f"session {s}: {got} turns ended of {n} sent" for s, (got, n) in list(short.items())[:10]
    ] + failed[:10]
    return Check(
        "every turn sent ended",
        f"{total - sum(max(0, n - ended[s]) for s, n in turns_sent.items())} of {total} turns "
        f"in {len(turns_sent)} sessions ended ({len(failed)} failed); sessions not matching "
        f"their turns sent: {len(short)}",
        not short,
        detail,
    )


def check_lost(
    records: Sequence[RequestRecord], dead_lettered: set[tuple[int, int]], events: Sequence[Event]
) -> Check:
    """Every decodable input that was not dead-lettered caused an event or a rejection.
    Ticks are left out: a Tick with nothing due causes no event by design (agents._tick)."""
    inputs = [
        r.request
        for r in records
        if r.request is not None and (r.partition, r.offset) not in dead_lettered
    ]
    ticks = [r for r in inputs if isinstance(r.payload, Tick)]
    inputs = [r for r in inputs if not isinstance(r.payload, Tick)]
    lost = lost_inputs(inputs, events)
    return Check(
        "inputs lost",
        f"{len(lost)} of {len(inputs)} decodable inputs (and {len(ticks)} ticks, not counted)",
        not lost,
        [f"lost: {_sample((r.session_id, r.request_id, type(r.payload).__name__) for r in lost)}"]
        if lost
        else [],
    )


def check_seqs(
    events: Sequence[Event], positions: Sequence[tuple[int, int]] | None = None
) -> Check:
    """`positions`: (partition, offset) of each event, to say where the copies are."""
    problems = seq_problems(events)
    sessions = len({e.session_id for e in events})
    detail = list(problems[:10])
    if problems and positions is not None:
        where: dict[tuple[str, int], list[tuple[int, int, Event]]] = defaultdict(list)
        for e, (partition, offset) in zip(events, positions, strict=True):
            where[(e.session_id, e.seq)].append((partition, offset, e))
        for (sid, seq), copies in [(k, v) for k, v in where.items() if len(v) > 1][:12]:
            same = all(c[2] == copies[0][2] for c in copies)
            detail.append(
                f"{sid} seq {seq} ({type(copies[0][2].payload).__name__}, caused by "
                f"{copies[0][2].causation_id}): at partition/offset "
                f"{[(p, o) for p, o, _ in copies]}, copies {'identical' if same else 'DIFFER'}"
            )
    return Check(
        "duplicate or missing seqs",
        f"{len(problems)} sessions of {sessions} ({len(events)} events)",
        not problems,
        detail,
    )


def check_llm(events: Sequence[Event]) -> Check:
    requested = {
        (e.session_id, e.payload.call_id) for e in events if isinstance(e.payload, LlmCallRequested)
    }
    failed = {
        (e.session_id, e.payload.call_id) for e in events if isinstance(e.payload, LlmCallFailed)
    }
    completions = llm_completions(events)
    doubled = {k: len(v) for k, v in completions.items() if len(v) > 1}
    open_calls = requested - set(completions) - failed
    return Check(
        "LLM calls completed more than once",
        f"{len(doubled)} of {len(requested)} calls ({len(completions)} completed, "
        f"{len(failed)} failed, {len(open_calls)} without an outcome)",
        not doubled and not open_calls,
        [f"doubled: {_sample(doubled.items())}"] * bool(doubled)
        + [f"no outcome: {_sample(sorted(open_calls))}"] * bool(open_calls),
    )


def check_costs(events: Sequence[Event]) -> Check:
    by_session: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_session[e.session_id].append(e)
    turns = wrong = 0
    detail: list[str] = []
    for sid, evs in by_session.items():
        n = sum(isinstance(e.payload, TurnCompleted) for e in evs)
        if not n:
            continue
        turns += n
        try:
            _assert_turn_costs_are_sums(evs)
        except AssertionError as exc:
            wrong += 1
            detail.append(f"{sid}: {exc}")
    return Check(
        "turn costs == sum of their LLM calls",
        f"{wrong} sessions wrong; {turns} completed turns checked",
        wrong == 0 and turns > 0,
        detail[:10],
    )


# --------------------------------------------------------------------------- side effects


def _mark_of(arguments_json: str) -> str | None:
    """The file stem a `mktemp -p marks <stem>.XXXXXX` call leaves (its user text)."""
    try:
        command = json.loads(arguments_json).get("command", "")
    except (ValueError, AttributeError):
        return None
    parts = command.split()
    return parts[-1].rsplit(".", 1)[0] if parts and parts[0] == "mktemp" else None


def check_shell(events: Sequence[Event], marks: Path) -> Check:
    """Each recorded shell call ran at most once; a completed one exactly once; an
    outcome-unknown one was not run again; no run without a recorded call."""
    calls: dict[tuple[str, str], str | None] = {}
    for e in events:
        p = e.payload
        if isinstance(p, ToolCallRequested) and p.name == "shell":
            calls[(e.session_id, p.call_id)] = _mark_of(p.arguments_json)
    completed = {
        (e.session_id, e.payload.call_id)
        for e in events
        if isinstance(e.payload, ToolCallCompleted)
    } & set(calls)
    failed = {
        (e.session_id, e.payload.call_id): e.payload.error
        for e in events
        if isinstance(e.payload, ToolCallFailed) and (e.session_id, e.payload.call_id) in calls
    }
    runs = (
        Counter(p.name.rsplit(".", 1)[0] for p in marks.iterdir()) if marks.exists() else Counter()
    )
    stems = Counter(calls.values())
    total_runs = sum(runs.values())
    twice = {s: n for s, n in runs.items() if n > 1}
    completed_not_once = {
        calls[k]: runs[calls[k] or ""] for k in completed if runs[calls[k] or ""] != 1
    }
    unknown = {k: err for k, err in failed.items() if "unknown" in err.lower()}
    other_failed = {k: err for k, err in failed.items() if k not in unknown}
    unknown_ran = sum(1 for k in unknown if runs[calls[k] or ""] >= 1)
    orphans = {s: n for s, n in runs.items() if s not in stems}
    ambiguous = {s for s, n in stems.items() if n > 1 or s is None}
    open_calls = set(calls) - completed - set(failed)
    ratio = total_runs / len(calls) if calls else float("nan")
    ok = not (twice or completed_not_once or orphans or ambiguous or open_calls or not calls)
    detail = (
        [f"ran more than once: {_sample(twice.items())}"] * bool(twice)
        + [f"completed but ran != 1 times: {_sample(completed_not_once.items())}"]
        * bool(completed_not_once)
        + [f"runs with no recorded call: {_sample(orphans.items())}"] * bool(orphans)
        + [f"calls naming the same mark: {_sample(ambiguous)}"] * bool(ambiguous)
        + [f"calls without an outcome: {_sample(sorted(open_calls))}"] * bool(open_calls)
        + [f"failed otherwise: {_sample(other_failed.values(), 3)}"] * bool(other_failed)
    )
    return Check(
        "tool executions per recorded shell call",
        f"{ratio:.2f} ({total_runs} runs / {len(calls)} calls); completed {len(completed)}, "
        f"each run once: {len(completed) - len(completed_not_once)}; ended 'outcome unknown' "
        f"{len(unknown)} (ran once: {unknown_ran}, never ran: {len(unknown) - unknown_ran}); "
        f"failed otherwise {len(other_failed)}; ran twice {len(twice)}",
        ok,
        detail,
    )


# --------------------------------------------------------------------------- junk


def _headers(rec: Any) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in rec.headers or ()}


def dlq_sources(dlq: Sequence[Any], requests_topic: str) -> Counter[tuple[int, int]]:
    out: Counter[tuple[int, int]] = Counter()
    for rec in dlq:
        h = _headers(rec)
        if h.get("turnlog.source.topic") == requests_topic:
            out[(int(h["turnlog.source.partition"]), int(h["turnlog.source.offset"]))] += 1
    return out


def check_junk(
    junk: Sequence[Junk], dlq: Sequence[Any], requests_topic: str, events: Sequence[Event]
) -> list[Check]:
    sources = dlq_sources(dlq, requests_topic)
    by_offset = {(j.partition, j.offset): j for j in junk}
    undecodable = [j for j in junk if j.kind in UNDECODABLE]
    missing = [j for j in undecodable if (j.partition, j.offset) not in sources]
    not_junk = [s for s in sources if s not in by_offset]
    twice = {s: n for s, n in sources.items() if n > 1}
    oversized_dlq = [
        j for j in junk if j.kind == "oversized" and (j.partition, j.offset) in sources
    ]
    nul_dlq = [j for j in junk if j.kind == "nul_text" and (j.partition, j.offset) in sources]
    kinds = Counter(_headers(r).get("turnlog.error.type", "?") for r in dlq)
    expected = len(undecodable) + len(oversized_dlq)
    dlq_check = Check(
        "DLQ records == undecodable junk sent",
        f"{len(dlq)} records == {len(undecodable)} undecodable"
        + (f" + {len(oversized_dlq)} oversized" if oversized_dlq else "")
        + f" (error types {dict(sorted(kinds.items()))})",
        len(dlq) == expected and not missing and not not_junk and not twice and not nul_dlq,
        [f"undecodable not dead-lettered: {_sample(missing)}"] * bool(missing)
        + [f"dead-lettered inputs that were not junk: {_sample(not_junk)}"] * bool(not_junk)
        + [f"dead-lettered more than once: {_sample(twice.items())}"] * bool(twice)
        + [f"NUL text dead-lettered instead of rejected: {_sample(nul_dlq)}"] * bool(nul_dlq),
    )
    rejected: dict[tuple[str, str], list[str]] = defaultdict(list)
    accepted: set[tuple[str, str]] = set()
    for e in events:
        if isinstance(e.payload, RequestRejected):
            rejected[(e.session_id, e.payload.request_id)].append(e.payload.reason)
        elif e.causation_id is not None:
            accepted.add((e.session_id, e.causation_id))
    checks = [dlq_check]
    for kind, says in (("nul_text", ("U+0000", "NUL", "\\x00", "null")), ("oversized", ("limit",))):
        sent = [j for j in junk if j.kind == kind]
        outcome: Counter[str] = Counter()
        wrong: list[str] = []
        for j in sent:
            key = (j.session_id or "", j.request_id or "")
            reasons = rejected.get(key, [])
            if (j.partition, j.offset) in sources:
                outcome["dead-lettered"] += 1
            elif key in accepted:
                outcome["ACCEPTED"] += 1
                wrong.append(f"{key} was accepted")
            elif len(reasons) == 1:
                named = any(s.lower() in reasons[0].lower() for s in says)
                outcome["rejected naming it" if named else "rejected otherwise"] += 1
            else:
                outcome[f"rejected {len(reasons)} times"] += 1
                wrong.append(f"{key}: {len(reasons)} rejections")
        label = (
            "text with NUL -> RequestRejected"
            if kind == "nul_text"
            else "oversized -> RequestRejected or DLQ"
        )
        checks.append(
            Check(
                label, f"{len(sent)} sent: {dict(sorted(outcome.items()))}", not wrong, wrong[:10]
            )
        )
    return checks


# --------------------------------------------------------------------------- all


def check_all(
    *,
    events: Sequence[Event],
    positions: Sequence[tuple[int, int]],
    records: Sequence[RequestRecord],
    dlq: Sequence[Any],
    requests_topic: str,
    junk: Sequence[Junk],
    turns_sent: Mapping[str, int],
    marks: Path,
) -> list[Check]:
    """The Kafka- and sandbox-side invariants, in the order they are printed."""
    dead = set(dlq_sources(dlq, requests_topic))
    return [
        check_turns(events, turns_sent),
        check_lost(records, dead, events),
        check_seqs(events, positions),
        check_llm(events),
        check_costs(events),
        check_shell(events, marks),
        *check_junk(junk, dlq, requests_topic, events),
    ]
