"""Shared helpers for the FSM tests (no tests here): a test registry and a session driver.

The driver feeds requests through `decide_and_evolve`, keeps the session log, and checks
on every step the invariants every decision must keep (seq +1, the incremental state
equals the state evolved from the emitted events, a rejection changes nothing else).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.definitions import AgentDefinition
from agents.effects import pending_effects
from agents.events import (
    CompleteLlmCall,
    Event,
    Request,
    RequestPayload,
    RequestRejected,
    ToolUse,
    Usage,
)
from agents.evolve import evolve
from agents.fsm import decide_and_evolve, initial_state
from agents.registry import AgentRegistry
from agents.state import SessionState

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DEFAULT_USAGE = Usage(100, 10)

SHELL_RULES: list[dict[str, Any]] = [
    {
        "name": "no-rm",
        "tool": "shell",
        "action": "deny",
        "reason": "destructive",
        "when": [{"arg": "command", "op": "regex", "value": r"\brm\b"}],
    },
    {"name": "shell-approval", "tool": "shell", "action": "require_approval"},
]


def agent(name: str, **overrides: Any) -> AgentDefinition:
    body: dict[str, Any] = {
        "name": name,
        "model": "scripted-small",
        "system_prompt": f"You are {name}.",
        "tools": ["calculator", "shell", "current_time", "delegate"],
        "delegates": ["researcher"],
        "policy": {"default": "allow", "rules": SHELL_RULES},
        "max_iterations": 4,
        "max_tokens": 256,
        "compaction": {"strategy": "sliding_window", "keep_last": 2},
        "deadlines": {
            "llm_s": 60,
            "tool_s": 30,
            "approval_s": 100,
            "child_s": 200,
            "max_attempts": 2,
        },
    }
    body.update(overrides)
    return AgentDefinition.model_validate(body)


def make_registry(*extra: AgentDefinition) -> AgentRegistry:
    defs = {
        "assistant": agent("assistant"),
        "researcher": agent("researcher", tools=["calculator"], delegates=[]),
        "summarizer": agent(
            "summarizer",
            compaction={
                "strategy": "summarize",
                "keep_last": 2,
                "summarize_model": "scripted-summarizer",
            },
        ),
        "oldest": agent("oldest", compaction={"strategy": "oldest_first", "keep_last": 1}),
        "budgeted": agent("budgeted", budget={"turn_tokens": 3000, "session_usd": "0.001"}),
    }
    for d in extra:
        defs[d.name] = d
    return AgentRegistry(defs.values())


REGISTRY = make_registry()


class Driver:
    """One session, driven request by request."""

    def __init__(
        self,
        registry: AgentRegistry = REGISTRY,
        session_id: str = "s1",
        state: SessionState | None = None,
    ) -> None:
        self.registry = registry
        self.session_id = session_id
        self.state = state if state is not None else initial_state(session_id)
        self.log: list[Event] = []
        self.n = 0
        self.now = T0

    def request(
        self,
        payload: RequestPayload,
        *,
        agent: str | None = None,
        request_id: str | None = None,
        advance: float = 1.0,
    ) -> Request:
        self.n += 1
        self.now = self.now + timedelta(seconds=advance)
        return Request(
            request_id=request_id or f"{self.session_id}-r{self.n}",
            session_id=self.session_id,
            occurred_at=self.now,
            payload=payload,
            agent=agent,
            correlation_id=None,
        )

    def send(self, payload: RequestPayload, **kw: Any) -> list[Event]:
        return self.send_request(self.request(payload, **kw))

    def send_request(self, req: Request) -> list[Event]:
        before = self.state
        events, after = decide_and_evolve(before, req, self.registry)
        check_decision(before, events, after)
        self.state = after
        self.log.extend(events)
        return events

    # ---- conveniences

    @property
    def llm_call_id(self) -> str:
        turn = self.state.turn
        assert turn is not None and turn.llm is not None, (
            f"no LLM call pending in {self.state.phase}"
        )
        return turn.llm.request.call_id

    def answer(
        self,
        text: str = "done",
        tools: Sequence[tuple[str, str, str]] = (),
        usage: Usage = DEFAULT_USAGE,
        **kw: Any,
    ) -> list[Event]:
        uses = tuple(ToolUse(cid, name, args) for cid, name, args in tools)
        return self.send(
            CompleteLlmCall(
                call_id=self.llm_call_id,
                model="scripted-small",
                text=text,
                tool_uses=uses,
                usage=usage,
            ),
            **kw,
        )

    def effects(self) -> list[Any]:
        return pending_effects(self.state)


def types(events: Sequence[Event]) -> list[str]:
    return [type(e.payload).__name__ for e in events]


def check_decision(before: SessionState, events: Sequence[Event], after: SessionState) -> None:
    """Invariants of every decision."""
    state = before
    for i, ev in enumerate(events):
        assert ev.seq == (1 if i == 0 and _restarts(before, ev) else state.last_seq + 1)
        state = evolve(state, ev)
    assert state == after
    if any(isinstance(e.payload, RequestRejected) for e in events):
        assert len(events) == 1, "a rejection is the only event of its decision"
        base = initial_state(before.session_id) if _restarts(before, events[0]) else before
        assert after == base._replace(last_seq=events[0].seq)


def _restarts(before: SessionState, ev: Event) -> bool:
    return before.phase.value == "forking" and type(ev.payload).__name__ != "SessionForked"
