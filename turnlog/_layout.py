"""The guard on turnlog's top-level packages: `agents`, `schemas`, `streams`, `projections`.

turnlog keeps its fixed layout (DESIGN.md): four top-level import names besides
`turnlog`. Other distributions use some of them too (OpenAI's `openai-agents` installs
`agents`), and a project directory named `agents/` in the current directory shadows ours
under `python -m`. Either way the first symptom would be a puzzling ImportError deep in
turnlog, or worse, another library's code running under our name. So importing `turnlog`
checks first, without importing them, that each of the four resolves to this
distribution's own files:

- it is found beside the `turnlog` package (same directory on sys.path), holds the module
  that only turnlog's has (agents/fsm.py, ...), and
- where the installed distribution lists the package's __init__.py with a hash (a wheel
  install), the file on disk still has that hash (another wheel installed into the same
  site-packages overwrites it).

A clash raises `LayoutClashError` naming the package, where it came from, the other
distribution that ships it (when one does) and the fix: a virtual environment of its own
for turnlog.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from importlib import metadata
from pathlib import Path

__all__ = ["OURS", "LayoutClashError", "check_top_level_packages"]

# Top-level package -> a module only turnlog's package of that name has.
OURS: dict[str, str] = {
    "agents": "fsm.py",
    "schemas": "codec.py",
    "streams": "session_worker.py",
    "projections": "projector.py",
}
_DISTRIBUTION = "turnlog"


class LayoutClashError(ImportError):
    """One of turnlog's top-level import names resolves to code that is not turnlog's."""


def _recorded_hashes() -> dict[str, str]:
    """'agents/__init__.py' -> its sha256 as the installed wheel's RECORD has it."""
    try:
        files = metadata.distribution(_DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return {}
    wanted = {f"{name}/__init__.py" for name in OURS}
    return {
        str(f): f.hash.value
        for f in files
        if str(f) in wanted and f.hash is not None and f.hash.mode == "sha256"
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _others(name: str) -> list[str]:
    try:
        owners = metadata.packages_distributions().get(name, [])
    except Exception:
        return []
    return sorted({d for d in owners if d.lower() != _DISTRIBUTION})


def _problem(name: str, root: Path, recorded: dict[str, str]) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return f"no package {name!r} can be imported"
    origin = Path(spec.origin).resolve()
    if origin.parent.parent != root:
        return f"{name!r} is imported from {origin.parent}, not from {root}"
    if not (origin.parent / OURS[name]).is_file():
        return f"{origin.parent} has no {OURS[name]}: it is another project's {name!r}"
    expected = recorded.get(f"{name}/__init__.py")
    if expected is not None and _sha256(origin) != expected:
        return f"{origin} is not the file the turnlog wheel installed (overwritten)"
    return None


def check_top_level_packages() -> None:
    """Raise LayoutClashError unless agents, schemas, streams and projections are ours."""
    root = Path(__file__).resolve().parent.parent
    recorded = _recorded_hashes()
    for name in OURS:
        problem = _problem(name, root, recorded)
        if problem is None:
            continue
        others = _others(name)
        who = (
            f"the distribution(s) {', '.join(others)} install a top-level {name!r} package too"
            if others
            else f"something else on sys.path (a directory named {name!r} in the current "
            f"directory, or PYTHONPATH) provides {name!r}"
        )
        undo = f" or uninstall {', '.join(others)} from this one" if others else ""
        raise LayoutClashError(
            f"turnlog cannot start: {problem}. turnlog's import names are turnlog, agents, "
            f"schemas, streams and projections, and {who}. Install turnlog into a virtual "
            f"environment of its own (python -m venv ~/.turnlog && ~/.turnlog/bin/pip "
            f"install turnlog){undo}, and run it from outside a directory holding a "
            f"{name!r} package.",
            name=name,
        )
