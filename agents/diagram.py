"""Render the turn FSM's state diagram (Mermaid) from the transition table.

Rule: the diagram is generated, never drawn by hand: every edge is a (phase, input)
row of agents.transitions.TRANSITIONS and one of its target phases, so the README's
picture cannot drift from the code. Self-loops are drawn too (an input that leaves the
phase unchanged). Run `python -m agents.diagram` to print it.
"""

from __future__ import annotations

from collections import defaultdict

from agents.state import Phase
from agents.transitions import PHASE_ORDER, TRANSITIONS

__all__ = ["main", "render_mermaid"]


def render_mermaid() -> str:
    """A Mermaid `stateDiagram-v2` with one edge per (from, to), labelled with the
    inputs that can take it, in a fixed order (the output is deterministic)."""
    labels: dict[tuple[Phase, Phase], list[str]] = defaultdict(list)
    for (phase, kind), transition in TRANSITIONS.items():
        for target in transition.targets:
            name = kind.__name__
            if name not in labels[(phase, target)]:
                labels[(phase, target)].append(name)
    rank = {p: i for i, p in enumerate(PHASE_ORDER)}
    lines = ["stateDiagram-v2", f"    [*] --> {Phase.NEW.value}"]
    for src, dst in sorted(labels, key=lambda e: (rank[e[0]], rank[e[1]])):
        names = ", ".join(sorted(labels[(src, dst)]))
        lines.append(f"    {src.value} --> {dst.value} : {names}")
    lines.append(f"    {Phase.CLOSED.value} --> [*]")
    lines.append(
        f"    note right of {Phase.FORKING.value} : fork_base(source state) of a new session id"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    print(render_mermaid(), end="")


if __name__ == "__main__":
    main()
