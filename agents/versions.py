"""Which version of its agent a session runs on.

Rule: a session runs on the agent definition it started with (its hash, recorded in
SessionStarted/SessionForked) until an AgentVersionChanged moves it, so a changed agent
file never changes a session silently and replay decides every input with the version
it was decided with. A session moves:

- on UpgradeAgent (idle sessions only; `to_hash` or the served version): reason upgrade;
- at the start of a turn, when its agent says on_change = "follow" and the served
  version differs: reason follow;
- before deciding anything, when the pinned version is known to no worker any more (its
  content was never published to turnlog.agents, or its tools are gone): reason
  unavailable, to the served version — recorded, never silent.

Nothing here does IO: the versions a worker can serve are in its AgentRegistry.
"""

from __future__ import annotations

from agents._decision import Decision, Rejected
from agents.events import AgentVersionChanged, UpgradeAgent
from agents.state import Phase

__all__ = [
    "FOLLOW",
    "UNAVAILABLE",
    "UPGRADE",
    "on_upgrade",
    "settle_follow",
    "settle_unavailable",
]

UPGRADE, FOLLOW, UNAVAILABLE = "upgrade", "follow", "unavailable"
_SETTLED = frozenset({Phase.NEW, Phase.FORKING, Phase.CLOSED})


def settle_unavailable(d: Decision) -> None:
    """Before a decision: a session pinned to a version nobody serves moves to the served
    one (the only alternative is a session that can never decide again)."""
    s = d.state
    if s.phase in _SETTLED or not s.agent:
        return
    if d.registry.pinned(s.agent, s.definition_hash) is not None:
        return
    served = d.registry.find(s.agent)
    if served is not None:
        d.emit(AgentVersionChanged(s.definition_hash, served.definition_hash, UNAVAILABLE))


def settle_follow(d: Decision) -> None:
    """At a turn start: an agent that follows its file moves the session to the served
    version."""
    s = d.state
    served = d.registry.find(s.agent)
    if (
        served is not None
        and served.definition.on_change == "follow"
        and served.definition_hash != s.definition_hash
    ):
        d.emit(AgentVersionChanged(s.definition_hash, served.definition_hash, FOLLOW))


def on_upgrade(d: Decision, p: UpgradeAgent) -> None:
    s = d.state
    served = d.registry.find(s.agent)
    to = p.to_hash or (served.definition_hash if served is not None else None)
    target = d.registry.pinned(s.agent, to) if to else None
    if to is None or target is None:
        known = (
            ", ".join(
                i.definition_hash[:12]
                for i in d.registry.versions()
                if i.definition.name == s.agent
            )
            or "none"
        )
        raise Rejected(
            f"Session {s.session_id}: agent {s.agent!r} has no version {to or '(served)'} "
            f"that this worker can serve (known: {known})."
        )
    if target.definition_hash == s.definition_hash:
        raise Rejected(f"Session {s.session_id} already runs on version {to[:12]} of {s.agent!r}.")
    d.emit(AgentVersionChanged(s.definition_hash, target.definition_hash, UPGRADE))
