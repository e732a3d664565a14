"""Custom tools named by import path: `"package.module:attribute"`.

Rule: an agent file may name a tool it does not ship with by import path; the object found
there becomes a tool through `as_tool` (a `@tool`-decorated function, a plain function with
annotated parameters, or a pydantic model with `run`). A path that does not lead to a tool
fails at load time with a sentence that names the path and what was wrong, never at the
first call.

Where modules are found: `sys.path` first; when the module is not there, the given
`search_paths` (by default the current directory, as `uvicorn app:app` does) are added to
`sys.path` and the import is retried, so `turnlog` started from a project directory finds
that project's `tools.py` without installing it.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.tools.errors import ToolRegistrationError
from agents.tools.tool import Tool, as_tool

__all__ = ["is_import_path", "load_object", "load_tool"]

_PATH = re.compile(
    r"^(?P<module>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r":(?P<attr>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$"
)


def is_import_path(text: str) -> bool:
    """True for `module:attribute` (tool names never contain ':')."""
    return _PATH.match(text) is not None


def _import(module: str, path: str, search_paths: Sequence[Path]) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only retry when the named module itself is missing, not one it imports.
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise ToolRegistrationError(
                f"Custom tool {path!r}: importing {module!r} failed: {exc}."
            ) from exc
        added = False
        for directory in search_paths:
            entry = str(Path(directory).resolve())
            if entry not in sys.path:
                sys.path.insert(0, entry)
                added = True
        if not added:
            raise ToolRegistrationError(
                f"Custom tool {path!r}: module {module!r} was not found on sys.path."
            ) from exc
        importlib.invalidate_caches()
        return _import(module, path, ())
    except Exception as exc:
        raise ToolRegistrationError(
            f"Custom tool {path!r}: importing {module!r} raised {type(exc).__name__}: {exc}."
        ) from exc


def load_object(path: str, search_paths: Sequence[Path] | None = None) -> Any:
    """The object at `module:attribute` (attribute may be dotted)."""
    match = _PATH.match(path)
    if match is None:
        raise ToolRegistrationError(
            f"Custom tool {path!r} is not an import path; expected 'package.module:function'."
        )
    module_name, attr = match.group("module"), match.group("attr")
    obj = _import(module_name, path, [Path.cwd()] if search_paths is None else search_paths)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ToolRegistrationError(
                f"Custom tool {path!r}: {module_name!r} has no attribute {attr!r}."
            ) from None
    return obj


def load_tool(
    path: str,
    *,
    search_paths: Sequence[Path] | None = None,
    **overrides: Any,
) -> Tool:
    """Import the object at `path` and make it a Tool; keyword arguments override its
    declaration as in `as_tool` (name, description, timeout_s, idempotent,
    default_action)."""
    obj = load_object(path, search_paths)
    try:
        return as_tool(obj, source=path, **overrides)
    except ToolRegistrationError as exc:
        raise ToolRegistrationError(f"Custom tool {path!r}: {exc}") from exc
