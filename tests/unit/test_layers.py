"""The packages are layers, and imports only go down:

    agents  <  schemas  <  streams, projections  <  turnlog (its console included)

The core (agents) knows nothing of encodings or IO; schemas encode the core's records;
streams (the workers) and projections (Postgres) are siblings that know neither each
other nor the front door; turnlog reads the settings and builds what the lower layers
take, typed (turnlog.wiring), and is the CLI, the client and the web console
(turnlog.console). A function-level (lazy) import counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED: dict[str, set[str]] = {
    "agents": {"agents"},
    "schemas": {"agents", "schemas"},
    "streams": {"agents", "schemas", "streams"},
    "projections": {"agents", "schemas", "projections"},
}
OURS = {"agents", "schemas", "streams", "projections", "turnlog"}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {(a.name.split(".")[0], node.lineno) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return {(name, line) for name, line in found if name in OURS}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_go_down(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name, line in sorted(imported_packages(path))
        if name not in ALLOWED[package]
    ]
    assert offenders == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from turnlog.settings import load_settings\n")
    assert imported_packages(module) == {("turnlog", 2)}
