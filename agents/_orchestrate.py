"""The decisions of an orchestration: start it, move it on when a member settles, end it.

Rule: every decision is made from the state alone, right after the fact that makes it
possible (a member's outcome, a member's deadline), in the same decision — so a worker
killed at any point finds either the fact and its consequences or neither, and the
deterministic ids (member i is `<call id>.m<i>`, its child session
`<session>/child/<call id>.m<i>`) make a re-issued start a duplicate the child rejects.
A member that is no longer needed is stopped (OrchestrationMemberCancelled: the shell
sends its child a CancelTurn); the orchestration completes only once every started
member has settled, so the cost of a stopped member is in the parent's log before the
combined result is. Nothing here does IO.
"""

from __future__ import annotations

from typing import Any

from agents._decision import Decision
from agents.events import (
    AgentHandedOff,
    ChildSessionRequested,
    OrchestrationCompleted,
    OrchestrationMemberCancelled,
    OrchestrationStarted,
    ToolCallCompleted,
    ToolCallFailed,
    TurnCompleted,
    TurnFailed,
)
from agents.orchestration import (
    COMBINES,
    MAX_MEMBERS,
    STOPPING,
    Spec,
    combine,
    default_combine,
    member_call_id,
    members_of,
    outcome_of,
    parse_mode,
    spec_of,
    team_call_id,
)
from agents.registry import AgentInfo
from agents.state import CallStatus, EntryKind, find_entry, usage_of
from agents.toolspecs import REMOTE_AGENT_PREFIX

__all__ = [
    "advance",
    "advance_all",
    "hand_off",
    "handoff_problem",
    "orchestration_spec",
    "start_orchestration",
    "team_turn",
]


def _strings(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def orchestration_spec(d: Decision, info: AgentInfo, args: dict[str, Any]) -> Spec | str:
    """The spec of a delegate_many call's arguments, or why they cannot start one."""
    agents = _strings(args.get("agents"))
    if not agents:
        return "Cannot delegate_many: 'agents' must be a non-empty list of agent names."
    if len(agents) > MAX_MEMBERS:
        return f"Cannot delegate_many: at most {MAX_MEMBERS} members, not {len(agents)}."
    allowed = info.definition.delegates
    for agent in agents:
        remote = agent.startswith(REMOTE_AGENT_PREFIX)
        if agent not in allowed or (not remote and d.registry.find(agent) is None):
            return (
                f"Cannot delegate_many to {agent!r}: this agent may delegate only to "
                f"{', '.join(repr(a) for a in allowed)}."
            )
    mode = parse_mode(str(args.get("mode", "all")), len(agents))
    if isinstance(mode, str):
        return f"Cannot delegate_many: {mode}"
    tasks = _strings(args.get("tasks"))
    task = args.get("task")
    if tasks is not None:
        if len(tasks) != len(agents) or not all(t.strip() for t in tasks):
            return "Cannot delegate_many: 'tasks' needs one non-empty task per agent."
    elif isinstance(task, str) and task.strip():
        tasks = [task] * len(agents)
    else:
        return "Cannot delegate_many: give a non-empty 'task' (or 'tasks', one per agent)."
    how = args.get("combine") or default_combine(mode[0])
    if how not in COMBINES:
        return f"Cannot delegate_many: combine must be one of {', '.join(COMBINES)}."
    timeout_s = args.get("timeout_s", info.definition.deadlines.child_s)
    if not isinstance(timeout_s, int | float) or not 0 < timeout_s <= 7 * 86400:
        return "Cannot delegate_many: timeout_s must be a number of seconds (0, 604800]."
    fail_fast = args.get("fail_fast", False)
    if not isinstance(fail_fast, bool):
        return "Cannot delegate_many: fail_fast must be true or false."
    timeout_us = int(timeout_s * 1_000_000)
    return Spec(mode[0], mode[1], how, tuple(agents), tuple(tasks), timeout_us, fail_fast)


def _start_member(d: Decision, call_id: str, index: int, agent: str, task: str) -> None:
    # Imported here: agents._step imports this module for dispatch.
    from agents._step import child_session_id_for

    member = member_call_id(call_id, index)
    d.emit(
        ChildSessionRequested(
            call_id=member,
            child_session_id=child_session_id_for(d.state.session_id, member),
            agent=agent,
            task=task,
        )
    )


def start_orchestration(d: Decision, call_id: str, spec: Spec) -> None:
    d.emit(
        OrchestrationStarted(
            call_id=call_id,
            mode=spec.mode,
            quorum=spec.quorum,
            combine=spec.combine,
            agents=spec.agents,
            tasks=spec.tasks,
            member_timeout_ms=spec.timeout_us // 1000,
            fail_fast=spec.fail_fast,
        )
    )
    first = 1 if spec.mode == "sequential" else len(spec.agents)
    for i in range(first):
        _start_member(d, call_id, i, spec.agents[i], spec.tasks[i])


def advance(d: Decision, call_id: str) -> bool:
    """Move orchestration `call_id` on after a member settled: start the next member of a
    sequence, stop members no longer needed, or complete. True when it completed."""
    turn = d.state.turn
    parent = next((c for c in turn.calls if c.call_id == call_id), None) if turn else None
    if turn is None or parent is None or parent.status != CallStatus.ORCHESTRATION:
        return False
    spec = spec_of(parent)
    members = members_of(turn.calls, call_id)
    outcomes = [outcome_of(m) for m in members]
    running = [m for m, o in zip(members, outcomes, strict=True) if o == "running"]
    if spec.mode == "sequential":
        if running:
            return False
        last = members[-1]
        if outcome_of(last) == "completed" and len(members) < len(spec.agents):
            i = len(members)
            task = f"{spec.tasks[i]}\n\nThe previous step's result:\n{last.task}"
            _start_member(d, call_id, i, spec.agents[i], task)
            return False
    elif spec.mode in ("race", "quorum") or spec.fail_fast:
        # fail_fast (mode all): needed = every member, so the first failure puts it out
        # of reach.
        ok = outcomes.count("completed")
        if running and (ok >= spec.needed or ok + len(running) < spec.needed):
            why = (
                f"{ok} of {spec.needed} needed answers are in"
                if ok >= spec.needed
                else f"{spec.needed} answers can no longer be reached"
            )
            for m in running:
                d.emit(
                    OrchestrationMemberCancelled(
                        call_id=call_id,
                        member_call_id=m.call_id,
                        child_session_id=m.child_session_id,
                        reason=f"Not needed: {why} ({spec.mode}).",
                    )
                )
            return False
    if any(o in ("running", STOPPING) for o in outcomes):
        return False
    done = combine(spec, members)
    d.emit(
        OrchestrationCompleted(
            call_id=call_id,
            status=done.status,
            result=done.result,
            winner_call_id=done.winner_call_id,
            completed=done.completed,
            failed=done.failed,
            cancelled=done.cancelled,
        )
    )
    return True


def advance_all(d: Decision) -> bool:
    """`advance` every orchestration of the step (after a Tick settled members)."""
    turn = d.state.turn
    if turn is None:
        return False
    ids = [c.call_id for c in turn.calls if c.status == CallStatus.ORCHESTRATION]
    completed = [advance(d, i) for i in ids]  # every one advances: no short circuit
    return any(completed)


def team_turn(d: Decision, info: AgentInfo) -> None:
    """A team agent's turn, in place of its LLM calls: start its members on the user's
    message; once they are combined, end the turn with the result as its answer."""
    team = info.definition.team
    assert team is not None
    turn = d.turn
    if turn.answer_seq:
        entry = find_entry(d.state.history, turn.answer_seq)
        if entry is None or entry.is_error:
            reason = entry.text if entry is not None else "The team gave no result."
            d.emit(TurnFailed(turn_no=turn.turn_no, reason=reason, error_type="TeamFailed"))
            return
        d.emit(
            TurnCompleted(
                turn_no=turn.turn_no,
                answer_seq=turn.answer_seq,
                usage=usage_of(turn.usage),
                cost_nanos=turn.cost_nanos,
                iterations=0,
            )
        )
        return
    last = d.state.history.entries.last()
    text = last.text if last is not None and last.kind == EntryKind.USER else ""
    mode = parse_mode(team.mode, len(team.members))
    assert not isinstance(mode, str)  # validated with the definition
    timeout_s = team.timeout_s or info.definition.deadlines.child_s
    spec = Spec(
        mode[0],
        mode[1],
        team.combine or default_combine(mode[0]),
        team.members,
        (text or "(no text)",) * len(team.members),
        int(timeout_s * 1_000_000),
        team.fail_fast,
    )
    start_orchestration(d, team_call_id(turn.turn_no), spec)


def handoff_problem(d: Decision, info: AgentInfo, args: dict[str, Any]) -> str | None:
    """Why a handoff call cannot hand the session over, or None."""
    agent, note = args.get("agent"), args.get("note", "")
    allowed = info.definition.handoffs
    if not isinstance(agent, str) or not isinstance(note, str):
        return "Cannot hand off: arguments need 'agent' (a string) and an optional 'note'."
    if agent not in allowed or d.registry.find(agent) is None:
        return (
            f"Cannot hand off to {agent!r}: this agent may hand off only to "
            f"{', '.join(repr(a) for a in allowed)}."
        )
    return None


def hand_off(d: Decision, info: AgentInfo, call_id: str, args: dict[str, Any]) -> None:
    """Answer the handoff call, then move the session to the other agent (its served
    version): the step's next LLM call is that agent's, with the conversation so far."""
    problem = handoff_problem(d, info, args)
    target = d.registry.find(str(args.get("agent", "")))
    if problem is not None or target is None:  # checked before; the agent may have changed
        d.emit(ToolCallFailed(call_id=call_id, error=problem or "Cannot hand off."))
        return
    note = str(args.get("note", ""))
    name = target.definition.name
    d.emit(ToolCallCompleted(call_id=call_id, result=f"Handed off to {name}."))
    d.emit(
        AgentHandedOff(
            call_id=call_id,
            from_agent=d.state.agent,
            to_agent=name,
            from_hash=d.state.definition_hash,
            to_hash=target.definition_hash,
            note=note,
        )
    )
