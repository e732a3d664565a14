"""Orchestrations: one call fans out to member child sessions and combines their answers.

Rule: an orchestration is data in the session's state, never code waiting somewhere. The
`delegate_many` call stays pending (status `orchestration`) while its members run; member
i is the call `<call id>.m<i>`, a child session like a `delegate` call's (so starting,
re-issuing, timing out and cancelling a member is what it is for any child session), and
a settled member stays in the step (status `member_done`, its outcome and answer kept)
until the orchestration combines the answers into the call's one result. Everything here
is pure: what a spec means, how the state holds it, how answers combine. The decisions
(start, stop the members no longer needed, complete) are in agents._orchestrate.

Modes: `all` (every member; completed when every member completed; with `fail_fast`
the first failure stops the others), `race` (the first
completed answer wins; the others are stopped), `quorum:N` (N completed answers; the
others are stopped, and so are all once N is out of reach), `sequential` (one after
another, each member given the previous member's answer; the first failure ends it).
Combine: `concatenate` (every completed answer, with who gave it), `first` (the first
completed), `last` (the last member's, a pipeline's result), `vote` (the most frequent
answer; ties go to the earliest).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from agents.events import ChildSessionCompleted, ChildSessionRequested, ChildStatus
from agents.state import CallStatus, PendingCall

__all__ = [
    "COMBINES",
    "DELEGATE_MANY",
    "HANDOFF",
    "MAX_MEMBERS",
    "MODES",
    "STOPPING",
    "TEAM",
    "Combined",
    "Spec",
    "combine",
    "default_combine",
    "member_added",
    "member_call_id",
    "member_settled",
    "member_stopping",
    "members_of",
    "orchestration_of",
    "orchestration_removed",
    "orchestration_started",
    "outcome_of",
    "parse_mode",
    "spec_of",
    "team_call_id",
]

DELEGATE_MANY = "delegate_many"
HANDOFF = "handoff"
MODES = ("all", "race", "quorum", "sequential")
COMBINES = ("concatenate", "first", "last", "vote")
MAX_MEMBERS = 256
# A running member's arguments_json once the orchestration sent it a cancel.
STOPPING = "stopping"
# The name of a team agent's orchestration call (no model asked for it).
TEAM = "@team"
_SEP = ".m"


class Spec(NamedTuple):
    mode: str
    quorum: int
    combine: str
    agents: tuple[str, ...]
    tasks: tuple[str, ...]
    timeout_us: int
    fail_fast: bool = False  # mode all: the first failure stops the others

    @property
    def needed(self) -> int:
        """Completed answers the orchestration needs to succeed."""
        if self.mode == "race":
            return 1
        if self.mode == "quorum":
            return self.quorum
        return len(self.agents)


def team_call_id(turn_no: int) -> str:
    return f"{TEAM}:{turn_no}"


def member_call_id(call_id: str, index: int) -> str:
    return f"{call_id}{_SEP}{index}"


def default_combine(mode: str) -> str:
    return {"race": "first", "sequential": "last"}.get(mode, "concatenate")


def parse_mode(text: str, members: int) -> tuple[str, int] | str:
    """(mode, quorum) from `all` | `race` | `quorum:N` | `sequential`, or why not."""
    mode, _, n = text.partition(":")
    if mode not in MODES or (mode == "quorum") != bool(n):
        return f"mode must be one of all, race, quorum:N, sequential (not {text!r})."
    if mode != "quorum":
        return mode, 0
    if not n.isdigit() or not 1 <= int(n) <= members:
        return f"quorum:N needs 1 <= N <= {members} (the number of members), not {n!r}."
    return mode, int(n)


# --------------------------------------------------------------------------- state


def spec_of(call: PendingCall) -> Spec:
    """The spec an orchestration call keeps in its `task` field (see orchestration_started)."""
    raw: dict[str, Any] = json.loads(call.task)
    return Spec(
        raw["mode"],
        raw["quorum"],
        raw["combine"],
        tuple(raw["agents"]),
        tuple(raw["tasks"]),
        raw["timeout_us"],
        raw.get("fail_fast", False),
    )


def orchestration_started(
    calls: tuple[PendingCall, ...], call_id: str, spec: Spec
) -> tuple[PendingCall, ...]:
    """The call becomes an orchestration: no deadline of its own (each member has one).
    A team agent's turn has no call yet: the orchestration is a call of its own."""
    task = json.dumps(spec._asdict(), separators=(",", ":"))
    if not any(c.call_id == call_id for c in calls):
        team = PendingCall(call_id, TEAM, "", CallStatus.ORCHESTRATION, 0, None, 1, 0, task=task)
        return (*calls, team)
    return tuple(
        c._replace(status=CallStatus.ORCHESTRATION, deadline_at=None, task=task)
        if c.call_id == call_id
        else c
        for c in calls
    )


def orchestration_of(calls: Sequence[PendingCall], member_id: str) -> PendingCall | None:
    """The orchestration call `member_id` belongs to, or None (not a member)."""
    head, sep, index = member_id.rpartition(_SEP)
    if not sep or not index.isdigit():
        return None
    for c in calls:
        if c.call_id == head and c.status == CallStatus.ORCHESTRATION:
            return c
    return None


def members_of(calls: Sequence[PendingCall], call_id: str) -> list[PendingCall]:
    """The started members of orchestration `call_id`, by index."""
    prefix = call_id + _SEP
    found = [
        c
        for c in calls
        if c.call_id.startswith(prefix)
        and c.call_id[len(prefix) :].isdigit()
        and c.status != CallStatus.ORCHESTRATION
    ]
    return sorted(found, key=lambda c: int(c.call_id[len(prefix) :]))


def member_added(
    calls: tuple[PendingCall, ...],
    parent: PendingCall,
    p: ChildSessionRequested,
    seq: int,
    at: datetime,
) -> tuple[PendingCall, ...]:
    timeout = spec_of(parent).timeout_us
    member = PendingCall(
        p.call_id,
        DELEGATE_MANY,
        "",
        CallStatus.CHILD,
        seq,
        at + timedelta(microseconds=timeout),
        1,
        timeout,
        p.child_session_id,
        p.agent,
        p.task,
    )
    return (*calls, member)


def member_settled(
    calls: tuple[PendingCall, ...], p: ChildSessionCompleted, seq: int
) -> tuple[PendingCall, ...]:
    """The member keeps its outcome in `arguments_json` (completed | failed | cancelled;
    a member that was being stopped counts as cancelled whatever it answered), its
    answer in `task`, and the seq it settled at in `requested_seq` (the order answers
    came in: a race's winner is the first)."""

    def settle(c: PendingCall) -> PendingCall:
        if c.arguments_json == STOPPING:
            outcome = "cancelled"
        elif p.status is ChildStatus.COMPLETED:
            outcome = "completed"
        else:
            outcome = "failed"
        return c._replace(
            status=CallStatus.MEMBER_DONE,
            arguments_json=outcome,
            requested_seq=seq,
            deadline_at=None,
            task=p.answer,
        )

    return tuple(settle(c) if c.call_id == p.call_id else c for c in calls)


def member_stopping(calls: tuple[PendingCall, ...], member_id: str) -> tuple[PendingCall, ...]:
    return tuple(
        c._replace(arguments_json=STOPPING) if c.call_id == member_id else c for c in calls
    )


def orchestration_removed(calls: tuple[PendingCall, ...], call_id: str) -> tuple[PendingCall, ...]:
    gone = {call_id} | {m.call_id for m in members_of(calls, call_id)}
    return tuple(c for c in calls if c.call_id not in gone)


def outcome_of(member: PendingCall) -> str:
    """running | stopping | completed | failed | cancelled."""
    if member.status == CallStatus.MEMBER_DONE:
        return member.arguments_json
    return STOPPING if member.arguments_json == STOPPING else "running"


# --------------------------------------------------------------------------- combine


class Combined(NamedTuple):
    status: str  # completed | failed
    result: str
    winner_call_id: str | None
    completed: int
    failed: int
    cancelled: int


def _label(m: PendingCall) -> str:
    return f"{m.child_agent} ({m.call_id})"


def combine(spec: Spec, members: Sequence[PendingCall]) -> Combined:
    """The call's result from its settled members."""
    ok = sorted((m for m in members if outcome_of(m) == "completed"), key=lambda m: m.requested_seq)
    failed = [m for m in members if outcome_of(m) == "failed"]
    cancelled = [m for m in members if outcome_of(m) == "cancelled"]
    counts = (len(ok), len(failed), len(cancelled))
    notes = [f"{_label(m)} failed: {m.task}" for m in failed]
    if len(ok) < spec.needed:
        head = (
            f"The {spec.mode} orchestration failed: {len(ok)} of {len(spec.agents)} "
            f"members completed, {spec.needed} needed."
        )
        parts = [head, *notes, *(f"{_label(m)} answered: {m.task}" for m in ok)]
        return Combined("failed", "\n\n".join(parts), None, *counts)
    winner: PendingCall | None
    if spec.combine == "concatenate":
        ordered = sorted(ok, key=lambda m: members.index(m))
        parts = [f"[{_label(m)}]\n{m.task}" for m in ordered]
        return Combined("completed", "\n\n".join(parts + notes), None, *counts)
    if spec.combine == "first":
        winner = ok[0]
        text = winner.task
    elif spec.combine == "last":
        winner = max(ok, key=lambda m: members.index(m))
        text = winner.task
    else:  # vote
        tally: dict[str, list[PendingCall]] = {}
        for m in ok:
            tally.setdefault(" ".join(m.task.split()).casefold(), []).append(m)
        best = max(tally.values(), key=len)  # max keeps the first of equals: the earliest
        winner = best[0]
        text = f"{winner.task}\n\n({len(best)} of {len(ok)} answers agree.)"
    return Combined("completed", text, winner.call_id, *counts)
