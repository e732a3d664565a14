"""The agents/ core is pure: importing it pulls in no IO library, and its source calls
no clock, no random id generator and no file IO (agents.agentfile reads agent files)."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import agents

FORBIDDEN = ("faust", "aiokafka", "psycopg", "anthropic", "httpx", "structlog")
SHELL_PACKAGES = ("agents.providers", "agents.tools", "agents.agentfile")
AGENTS_DIR = Path(agents.__file__).parent


def core_modules() -> list[str]:
    names = [
        m.name
        for m in pkgutil.walk_packages([str(AGENTS_DIR)], prefix="agents.")
        if not m.name.startswith(SHELL_PACKAGES)
    ]
    assert {"agents.fsm", "agents.state", "agents.policy", "agents.definitions"} <= set(names)
    return sorted(names)


def test_importing_the_core_pulls_in_no_io_library() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_check_would_see_a_forbidden_import() -> None:
    # guards the test above against passing vacuously (e.g. a broken module list)
    code = "import json, sys, structlog; print(json.dumps('structlog' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is True


_CLOCKS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "time_ns"),
    ("uuid", "uuid1"),
    ("uuid", "uuid4"),
}


def test_core_source_calls_no_clock_and_no_random_ids() -> None:
    offenders = []
    for name in core_modules():
        path = AGENTS_DIR.joinpath(*name.split(".")[1:]).with_suffix(".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in _CLOCKS
            ):
                offenders.append(f"{name}:{node.lineno} {node.value.id}.{node.attr}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                if any(m.split(".")[0] in ("random", "secrets", *FORBIDDEN) for m in mods):
                    offenders.append(f"{name}:{node.lineno} imports {mods}")
    assert offenders == []


# Calls that read or write files: `open(...)`, and these methods of a path.
_FILE_IO = {"read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob", "rglob"}


def _file_io_calls(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "open":
            found.append((node.lineno, "open"))
        elif isinstance(f, ast.Attribute) and f.attr in _FILE_IO:
            found.append((node.lineno, f.attr))
    return found


def test_core_source_reads_and_writes_no_files() -> None:
    offenders = []
    for name in core_modules():
        path = AGENTS_DIR.joinpath(*name.split(".")[1:]).with_suffix(".py")
        if not path.exists():
            path = path.with_suffix("") / "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{name}:{line} {call}" for line, call in _file_io_calls(tree)]
    assert offenders == []


def test_the_file_io_check_sees_a_read() -> None:
    tree = ast.parse("from pathlib import Path\ntext = Path('a.toml').read_text()\n")
    assert _file_io_calls(tree) == [(2, "read_text")]
