"""Loads the shipped Avro schema sets: the current one and every released one.

The rule: a schema set is a directory of `.avsc` files, one named type per file, each file
named `<namespace>.<name>.avsc`; records refer to other named types by full name. Loading a
set expands each envelope (`Request`, `Event`, `TokenDelta`, `AuditCheckpoint`) into one
standalone schema in which every named type is defined inline at its first use and referred
to by name afterwards, which is the form that Avro's parsing canonical form (hence the
fingerprint) and every other Avro implementation expect.

`schemas/avro/` is the current set; `schemas/released/<version>/` holds a frozen copy of
each released set, so that bytes written by an old producer still decode, and so that the
evolution gate can compare the current set with the last release. Nothing here does IO
beyond reading these files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.errors import ContractError

__all__ = [
    "CURRENT_DIR",
    "CURRENT_VERSION",
    "ENVELOPES",
    "NAMESPACE",
    "RELEASED_DIR",
    "SchemaSet",
    "all_sets",
    "current_set",
    "expand",
    "load_definitions",
    "load_schema_set",
    "released_sets",
]

NAMESPACE = "turnlog.v1"
# Envelope name -> the topic it is the value schema of.
ENVELOPES: dict[str, str] = {
    "Request": "turnlog.requests",
    "Event": "turnlog.events",
    "TokenDelta": "turnlog.deltas",
    "AuditCheckpoint": "turnlog.audit.checkpoints",
    "Snapshot": "turnlog.snapshots",
    "AgentVersion": "turnlog.agents",
    "ScheduleRecord": "turnlog.schedules",
}

_HERE = Path(__file__).resolve().parent
CURRENT_DIR = _HERE / "avro"
RELEASED_DIR = _HERE / "released"
# Label of the working set; released sets are labelled by their directory name.
CURRENT_VERSION = "current"

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)$")

Schema = Any  # JSON-shaped Avro schema: str | list | dict


@dataclass(frozen=True, slots=True)
class SchemaSet:
    """One version of the contract: each envelope as a standalone JSON schema."""

    version: str
    directory: Path
    envelopes: dict[str, dict[str, Any]]


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name else f"{namespace}.{name}"


def load_definitions(directory: Path) -> dict[str, dict[str, Any]]:
    """Read every `.avsc` in `directory` into {full name: JSON schema}."""
    defs: dict[str, dict[str, Any]] = {}
    files = sorted(directory.glob("*.avsc"))
    if not files:
        raise ContractError(f"Schema directory {directory} holds no .avsc files.")
    for path in files:
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ContractError(f"Schema file {path} is not valid JSON: {exc}.") from exc
        if not isinstance(schema, dict) or "name" not in schema:
            raise ContractError(f"Schema file {path} must hold one named type (a JSON object).")
        full = _fullname(schema["name"], schema.get("namespace", ""))
        if path.name != f"{full}.avsc":
            # The file name is how a reader finds a referenced type; keep them in step.
            raise ContractError(f"Schema file {path} defines {full}; it must be named {full}.avsc.")
        defs[full] = schema
    return defs


def expand(name: str, defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The standalone schema of `name`: named references resolved from `defs`, each named
    type inlined at its first use (depth first, in field order) and referenced later."""
    defined: set[str] = set()

    def walk(schema: Schema, namespace: str, where: str) -> Schema:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema
            full = _fullname(schema, namespace)
            if full in defined:
                return full
            if full not in defs:
                raise ContractError(f"{where} refers to {full}, which no .avsc file defines.")
            return walk(defs[full], namespace, full)
        if isinstance(schema, list):
            return [walk(branch, namespace, where) for branch in schema]
        kind = schema["type"]
        if kind in ("record", "error", "enum", "fixed"):
            ns = schema.get("namespace", namespace)
            full = _fullname(schema["name"], ns)
            if full in defined:
                raise ContractError(f"{where} defines {full} a second time; refer to it by name.")
            defined.add(full)
            out = dict(schema)
            if kind in ("record", "error"):
                ns = full.rpartition(".")[0]
                out["fields"] = [
                    {**f, "type": walk(f["type"], ns, f"{full}.{f['name']}")}
                    for f in schema["fields"]
                ]
            return out
        if kind == "array":
            return {**schema, "items": walk(schema["items"], namespace, where)}
        if kind == "map":
            return {**schema, "values": walk(schema["values"], namespace, where)}
        return dict(schema)

    full = _fullname(name, NAMESPACE)
    if full not in defs:
        raise ContractError(f"No .avsc file defines {full}.")
    result = walk(defs[full], NAMESPACE, full)
    assert isinstance(result, dict)
    return result


def load_schema_set(directory: Path, version: str) -> SchemaSet:
    """Load one schema set and expand its envelopes. The working set defines every
    envelope; a released set, those that existed when it was released (an envelope added
    later, such as Snapshot after v1.0, has no older writer to stay compatible with)."""
    defs = load_definitions(directory)
    envelopes = {
        name: expand(name, defs)
        for name in ENVELOPES
        if version == CURRENT_VERSION or _fullname(name, NAMESPACE) in defs
    }
    return SchemaSet(version=version, directory=directory, envelopes=envelopes)


def current_set() -> SchemaSet:
    """The schema set this code writes."""
    return load_schema_set(CURRENT_DIR, CURRENT_VERSION)


def _version_key(path: Path) -> tuple[int, int]:
    match = _VERSION_RE.match(path.name)
    if match is None:
        raise ContractError(
            f"Released schema directory {path} must be named v<major>.<minor>, e.g. v1.0."
        )
    return int(match.group(1)), int(match.group(2))


def released_sets() -> list[SchemaSet]:
    """Every released schema set kept in the repo, oldest first."""
    if not RELEASED_DIR.is_dir():
        return []
    dirs = sorted((p for p in RELEASED_DIR.iterdir() if p.is_dir()), key=_version_key)
    return [load_schema_set(d, d.name) for d in dirs]


def all_sets() -> list[SchemaSet]:
    """The current set followed by the released ones, newest release first: the order in
    which a reader prefers a writer schema when two versions share a fingerprint."""
    return [current_set(), *reversed(released_sets())]
