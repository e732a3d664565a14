"""The state diagram is rendered from the transition table."""

from __future__ import annotations

import re
import subprocess
import sys

from agents.diagram import render_mermaid
from agents.state import Phase
from agents.transitions import TRANSITIONS


def edges(text: str) -> set[tuple[str, str, str]]:
    found = set()
    for src, dst, labels in re.findall(r"^\s+(\w+) --> (\w+) : (.+)$", text, re.MULTILINE):
        for label in labels.split(", "):
            found.add((src, dst, label))
    return found


def test_every_table_row_and_target_is_an_edge_and_nothing_else() -> None:
    expected = {
        (phase.value, target.value, kind.__name__)
        for (phase, kind), t in TRANSITIONS.items()
        for target in t.targets
    }
    assert edges(render_mermaid()) == expected


def test_diagram_shape_and_determinism() -> None:
    text = render_mermaid()
    assert text.startswith("stateDiagram-v2\n    [*] --> new\n")
    assert "    closed --> [*]" in text
    assert not any(
        line.startswith(f"    {Phase.CLOSED.value} --> {p.value}")
        for p in Phase
        for line in text.splitlines()
    )
    assert render_mermaid() == text


def test_module_entry_point_prints_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agents.diagram"], capture_output=True, text=True, check=True
    )
    assert out.stdout == render_mermaid()


def test_the_readme_shows_the_diagram_the_table_renders() -> None:
    """README.md's state diagram is the generator's output, not a hand-kept copy:
    regenerate it with `python -m agents.diagram` when the transition table changes."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```mermaid\n(stateDiagram-v2\n.*?)```", readme, re.DOTALL)
    assert len(blocks) == 1, "README.md should hold exactly one state diagram"
    assert blocks[0].rstrip("\n") == render_mermaid().rstrip("\n")
