"""Walking the standalone Avro schemas: names, the named types a schema defines, and the
rule that every record mirrors a dataclass of agents.events. Shared by the generated
converters (`_convert`) and the generated fast readers (`_fastread`)."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from agents.errors import ContractError

__all__ = ["check_mirror", "full_name", "index_named", "short_name"]


def full_name(schema: dict[str, Any]) -> str:
    name: str = schema["name"]
    if "." in name or "namespace" not in schema:
        return name
    return f"{schema['namespace']}.{name}"


def short_name(full: str) -> str:
    return full.rpartition(".")[2]


def index_named(schema: Any, named: dict[str, dict[str, Any]]) -> None:
    """Record in `named` every named type defined inside `schema`, by full name."""
    if isinstance(schema, list):
        for branch in schema:
            index_named(branch, named)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "enum", "fixed"):
            named[full_name(schema)] = schema
            for f in schema.get("fields", ()):
                index_named(f["type"], named)
        elif kind == "array":
            index_named(schema["items"], named)
        elif kind == "map":
            index_named(schema["values"], named)


def _python_default(f: dataclasses.Field[Any]) -> tuple[bool, Any]:
    if f.default is not dataclasses.MISSING:
        return True, f.default
    if f.default_factory is not dataclasses.MISSING:
        return True, f.default_factory()
    return False, None


def _as_avro_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _as_avro_default(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_as_avro_default(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


def check_mirror(full: str, fields: list[dict[str, Any]], cls: type) -> None:
    py_fields = dataclasses.fields(cls)
    avro_names = [f["name"] for f in fields]
    py_names = [f.name for f in py_fields]
    if avro_names != py_names:
        raise ContractError(
            f"Avro record {full} has fields {avro_names}, but agents.events.{cls.__name__} "
            f"has {py_names}; they must be the same, in the same order."
        )
    for af, pf in zip(fields, py_fields, strict=True):
        has, value = _python_default(pf)
        if has and ("default" not in af or af["default"] != _as_avro_default(value)):
            raise ContractError(
                f"Field {full}.{af['name']} has the default {value!r} in agents.events but "
                f"{af.get('default', 'none')!r} in Avro; give it the same default in both."
            )
        if "default" in af and not has and af["default"] is not None:
            raise ContractError(
                f"Field {full}.{af['name']} has an Avro default but no default in "
                f"agents.events.{cls.__name__}."
            )
