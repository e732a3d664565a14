"""One step of a turn: the model's tool uses become tool calls, each with its policy
decision and what the decision implies.

Rule: a tool use is checked in a fixed order — is the tool the agent's? are the arguments
a JSON object? what does the policy say (a built-in's own stricter default included)? is
a delegation valid? — and the first "no" answers the call at once as denied
(ToolCallFailed), so the model is always told why. Allowed calls become tool effects or
child sessions; require_approval waits for a human. Only facts are emitted, through a
Decision; ids come from the session and the call (`<session>/child/<call id>`).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from agents._decision import Decision
from agents._orchestrate import hand_off, handoff_problem, orchestration_spec, start_orchestration
from agents._turn import step_resolved
from agents.events import (
    ApprovalRequested,
    ChildSessionRequested,
    PolicyAction,
    ToolCallFailed,
    ToolCallRequested,
    ToolUse,
)
from agents.orchestration import DELEGATE_MANY, HANDOFF
from agents.policy import PolicyDecision
from agents.registry import AgentInfo
from agents.toolspecs import BUILTIN_DEFAULT_ACTIONS, DELEGATE, REMOTE_AGENT_PREFIX

__all__ = [
    "RULE_INVALID_ARGUMENTS",
    "RULE_INVALID_DELEGATION",
    "RULE_TOOL_DEFAULT",
    "RULE_UNKNOWN_TOOL",
    "child_session_id_for",
    "delegation_problem",
    "dispatch_tool_uses",
    "start_child",
    "start_delegate_many",
    "with_tool_default",
]

# Pseudo rule names for decisions the engine makes before the agent's policy is asked.
RULE_UNKNOWN_TOOL = "@unknown-tool"
RULE_INVALID_ARGUMENTS = "@invalid-arguments"
RULE_INVALID_DELEGATION = "@invalid-delegation"
RULE_TOOL_DEFAULT = "@tool-default"

_STRICTNESS = {PolicyAction.ALLOW: 0, PolicyAction.REQUIRE_APPROVAL: 1, PolicyAction.DENY: 2}


def child_session_id_for(session_id: str, call_id: str) -> str:
    return f"{session_id}/child/{call_id}"


def _denial(decision: PolicyDecision) -> str:
    if decision.rule is None:
        return "Denied: the agent's policy does not allow this tool call."
    detail = f": {decision.reason}" if decision.reason else "."
    return f"Denied by policy rule {decision.rule!r}{detail}"


def with_tool_default(decision: PolicyDecision, tool: str) -> PolicyDecision:
    """When no rule of the agent's policy matched, a built-in's own default action
    (`shell`: require_approval) applies if it is stricter than the policy's default: a
    permissive `default = "allow"` must not silently let commands run unreviewed."""
    own = BUILTIN_DEFAULT_ACTIONS.get(tool)
    if decision.rule is not None or own is None:
        return decision
    if _STRICTNESS[own] <= _STRICTNESS[decision.action]:
        return decision
    return PolicyDecision(own, RULE_TOOL_DEFAULT, f"{tool!r} asks for {own.value} by default.")


def delegation_problem(d: Decision, info: AgentInfo, args: dict[str, Any]) -> str | None:
    """Why a delegate call cannot start a child session, or None."""
    agent, task = args.get("agent"), args.get("task")
    allowed = info.definition.delegates
    if not isinstance(agent, str) or not isinstance(task, str) or not task.strip():
        return "Cannot delegate: arguments need 'agent' (a string) and a non-empty 'task'."
    # "a2a:<url>": a remote A2A agent, called by the shell; no local definition.
    remote = agent.startswith(REMOTE_AGENT_PREFIX)
    if agent not in allowed or (not remote and d.registry.find(agent) is None):
        return (
            f"Cannot delegate to {agent!r}: this agent may delegate only to "
            f"{', '.join(repr(a) for a in allowed)}."
        )
    return None


def _decide_use(
    d: Decision, info: AgentInfo, use: ToolUse
) -> tuple[PolicyDecision, str | None, dict[str, Any]]:
    """(decision, denial message or None, parsed arguments) for one tool use."""
    defn = info.definition
    if use.name not in defn.tools:
        available = ", ".join(defn.tools) or "none"
        msg = f"Tool {use.name!r} is not available to this agent (available: {available})."
        return PolicyDecision(PolicyAction.DENY, RULE_UNKNOWN_TOOL, msg), msg, {}
    try:
        args = json.loads(use.arguments_json or "{}")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        msg = f"The arguments of {use.name!r} must be a JSON object."
        return PolicyDecision(PolicyAction.DENY, RULE_INVALID_ARGUMENTS, msg), msg, {}
    decision = with_tool_default(defn.policy.evaluate(use.name, args), use.name)
    if decision.action is PolicyAction.DENY:
        return decision, _denial(decision), args
    if use.name == HANDOFF:
        problem = handoff_problem(d, info, args)
        if problem is not None:
            deny = PolicyDecision(PolicyAction.DENY, RULE_INVALID_DELEGATION, problem)
            return deny, problem, args
    if use.name == DELEGATE_MANY:
        spec = orchestration_spec(d, info, args)
        if isinstance(spec, str):
            deny = PolicyDecision(PolicyAction.DENY, RULE_INVALID_DELEGATION, spec)
            return deny, spec, args
    if use.name == DELEGATE:
        problem = delegation_problem(d, info, args)
        if problem is not None:
            return (
                PolicyDecision(PolicyAction.DENY, RULE_INVALID_DELEGATION, problem),
                problem,
                args,
            )
    return decision, None, args


def dispatch_tool_uses(
    d: Decision, info: AgentInfo, llm_call_id: str, uses: tuple[ToolUse, ...]
) -> None:
    """ToolCallRequested (with the policy decision) per use, then what the decision
    implies: ToolCallFailed (denied), ApprovalRequested, ChildSessionRequested, or
    nothing (the tool effect runs). If every call was answered at once, continue."""
    deadlines = info.definition.deadlines
    for use in uses:
        decision, denial, args = _decide_use(d, info, use)
        delegating = use.name in (DELEGATE, DELEGATE_MANY)
        allowance = deadlines.child_s if delegating else deadlines.tool_s
        d.emit(
            ToolCallRequested(
                call_id=use.call_id,
                llm_call_id=llm_call_id,
                name=use.name,
                arguments_json=use.arguments_json,
                decision=decision.action,
                rule=decision.rule,
                deadline_at=d.now + timedelta(seconds=allowance),
            )
        )
        if denial is not None:
            d.emit(ToolCallFailed(call_id=use.call_id, error=denial))
        elif decision.action is PolicyAction.REQUIRE_APPROVAL:
            d.emit(
                ApprovalRequested(
                    call_id=use.call_id,
                    tool_name=use.name,
                    expires_at=d.now + timedelta(seconds=deadlines.approval_s),
                )
            )
        elif use.name == DELEGATE:
            start_child(d, use.call_id, args)
        elif use.name == DELEGATE_MANY:
            start_delegate_many(d, info, use.call_id, args)
        elif use.name == HANDOFF:
            hand_off(d, info, use.call_id, args)
    step_resolved(d)


def start_delegate_many(d: Decision, info: AgentInfo, call_id: str, args: dict[str, Any]) -> None:
    spec = orchestration_spec(d, info, args)
    if isinstance(spec, str):  # checked before it was allowed; the agent may have changed
        d.emit(ToolCallFailed(call_id=call_id, error=spec))
        return
    start_orchestration(d, call_id, spec)


def start_child(d: Decision, call_id: str, args: dict[str, Any]) -> None:
    d.emit(
        ChildSessionRequested(
            call_id=call_id,
            child_session_id=child_session_id_for(d.state.session_id, call_id),
            agent=str(args["agent"]),
            task=str(args["task"]),
        )
    )
