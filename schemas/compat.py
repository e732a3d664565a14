"""The schema evolution gate: is a new schema backward AND forward compatible with an old one?

The rule: every released schema set is kept in `schemas/released/`, and the current set
must stay compatible with the last release in both directions:

- backward: data written with the OLD schema is read with the NEW one (old producers,
  the existing log);
- forward: data written with the NEW schema is read with the OLD one (workers not yet
  upgraded during a rolling deploy).

Two independent checks, both reported as full sentences naming the record and field:

- `static_problems` applies Avro's schema resolution rules to the two schemas (a reader
  field missing from the writer needs a default; a writer union branch or enum symbol
  needs a counterpart in the reader; types must be equal or promotable);
- `dynamic_problems` writes `exemplars` (values that take every union branch and every
  enum symbol of the writer schema) with fastavro and reads them back through fastavro's
  schema resolution.

Nothing here does IO.
"""

from __future__ import annotations

import io
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

__all__ = ["dynamic_problems", "evolution_problems", "exemplars", "static_problems"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# writer type -> reader types it resolves into (Avro spec, "Schema Resolution").
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"int", "long", "float", "double"}),
    "long": frozenset({"long", "float", "double"}),
    "float": frozenset({"float", "double"}),
    "string": frozenset({"string", "bytes"}),
    "bytes": frozenset({"bytes", "string"}),
}

Named = dict[str, dict[str, Any]]


def _full(schema: dict[str, Any], namespace: str) -> str:
    name: str = schema["name"]
    if "." in name:
        return name
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _index(schema: Any, namespace: str, named: Named) -> None:
    """Collect every named type in a standalone schema, by full name."""
    if isinstance(schema, list):
        for branch in schema:
            _index(branch, namespace, named)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "error", "enum", "fixed"):
            full = _full(schema, namespace)
            named[full] = schema
            for f in schema.get("fields", ()):
                _index(f["type"], full.rpartition(".")[0], named)
        elif kind == "array":
            _index(schema["items"], namespace, named)
        elif kind == "map":
            _index(schema["values"], namespace, named)


def _named_index(schema: dict[str, Any]) -> Named:
    named: Named = {}
    _index(schema, "", named)
    return named


def _resolve(schema: Any, named: Named) -> Any:
    if isinstance(schema, str):
        return named.get(schema, {"type": schema})
    if isinstance(schema, dict) and schema["type"] in _PRIMITIVES:
        return {"type": schema["type"]}  # logical types resolve as their underlying type
    return schema


def _label(schema: Any, named: Named) -> str:
    s = _resolve(schema, named)
    if isinstance(s, list):
        return "a union"
    if "name" in s:
        return f"{s['name'].rpartition('.')[2]} ({s['type']})"
    return str(s["type"])


def _short(full: str) -> str:
    return full.rpartition(".")[2]


class _Checker:
    def __init__(self, writer: dict[str, Any], reader: dict[str, Any]) -> None:
        self.wn = _named_index(writer)
        self.rn = _named_index(reader)
        self.problems: list[str] = []
        self.seen: set[tuple[str, str]] = set()

    def same_kind(self, w: Any, r: Any) -> bool:
        """Would the reader pick `r` for data of `w` (the shallow test unions use)?"""
        w, r = _resolve(w, self.wn), _resolve(r, self.rn)
        if isinstance(w, list) or isinstance(r, list):
            return False
        if w["type"] in _PRIMITIVES:
            return r["type"] in _PROMOTIONS.get(w["type"], frozenset({w["type"]}))
        if w["type"] != r["type"]:
            return False
        if "name" in w:
            aliases = {_short(a) for a in r.get("aliases", ())}
            return _short(w["name"]) == _short(r["name"]) or _short(w["name"]) in aliases
        return True

    def check(self, w: Any, r: Any, path: str) -> None:
        w, r = _resolve(w, self.wn), _resolve(r, self.rn)
        if isinstance(w, list):
            for branch in w:
                if isinstance(r, list):
                    match = next((rb for rb in r if self.same_kind(branch, rb)), None)
                else:
                    match = r if self.same_kind(branch, r) else None
                if match is None:
                    self.problems.append(
                        f"{path}: the writer's union branch {_label(branch, self.wn)} has no "
                        f"counterpart in the reader, so a value of that branch cannot be read."
                    )
                else:
                    self.check(branch, match, path)
            return
        if isinstance(r, list):
            match = next((rb for rb in r if self.same_kind(w, rb)), None)
            if match is None:
                self.problems.append(
                    f"{path}: the writer's {_label(w, self.wn)} matches no branch of the "
                    f"reader's union."
                )
            else:
                self.check(w, match, path)
            return
        if not self.same_kind(w, r):
            self.problems.append(
                f"{path}: the writer's type {_label(w, self.wn)} does not resolve to the "
                f"reader's type {_label(r, self.rn)}."
            )
            return
        kind = w["type"]
        if kind in ("record", "error"):
            self.record(w, r, path)
        elif kind == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and "default" not in r:
                self.problems.append(
                    f"{path}: enum {_short(r['name'])} has symbol(s) {missing} in the writer "
                    f"that the reader lacks, and the reader's enum has no default."
                )
        elif kind == "array":
            self.check(w["items"], r["items"], f"{path}[]")
        elif kind == "map":
            self.check(w["values"], r["values"], f"{path}{{}}")
        elif kind == "fixed" and w["size"] != r["size"]:
            self.problems.append(
                f"{path}: fixed {_short(r['name'])} has size {w['size']} in the writer but "
                f"{r['size']} in the reader."
            )

    def record(self, w: dict[str, Any], r: dict[str, Any], path: str) -> None:
        key = (w["name"], r["name"])
        if key in self.seen:
            return
        self.seen.add(key)
        record = _short(r["name"])
        writer_fields = {f["name"]: f for f in w["fields"]}
        for rf in r["fields"]:
            names = [rf["name"], *rf.get("aliases", ())]
            wf = next((writer_fields[n] for n in names if n in writer_fields), None)
            where = f"{path} -> {record}.{rf['name']}" if path else f"{record}.{rf['name']}"
            if wf is None:
                if "default" not in rf:
                    self.problems.append(
                        f"{where}: the reader's record {record} has field {rf['name']!r} that "
                        f"the writer lacks, and it has no default; give it a default."
                    )
                continue
            self.check(wf["type"], rf["type"], where)


def static_problems(writer: dict[str, Any], reader: dict[str, Any]) -> list[str]:
    """Avro resolution rules applied to two standalone schemas; [] when `reader` can read
    everything `writer` can write."""
    checker = _Checker(writer, reader)
    checker.check(writer, reader, "")
    return checker.problems


def exemplars(schema: dict[str, Any]) -> list[Any]:
    """Values of `schema` (fastavro's shape; a union of records takes `(name, value)`)
    that between them take every union branch and every enum symbol at least once."""
    named = _named_index(schema)

    def values(s: Any, depth: int) -> list[Any]:
        s = _resolve(s, named)
        if isinstance(s, list):
            out: list[Any] = []
            for branch in s:
                rb = _resolve(branch, named)
                tagged = isinstance(rb, dict) and rb["type"] in ("record", "error")
                for v in values(branch, depth + 1):
                    out.append((_full(rb, ""), v) if tagged else v)
            return out
        kind = s["type"]
        if depth > 20:  # a recursive schema: stop at its first optional exit
            return []
        if kind in ("record", "error"):
            per_field = [(f["name"], values(f["type"], depth + 1)) for f in s["fields"]]
            n = max((len(v) for _, v in per_field), default=1)
            return [{name: vs[i % len(vs)] for name, vs in per_field} for i in range(n)]
        if kind == "enum":
            return list(s["symbols"])
        if kind == "array":
            return [[], values(s["items"], depth + 1)]
        if kind == "map":
            return [{}, {f"k{i}": v for i, v in enumerate(values(s["values"], depth + 1))}]
        if kind == "fixed":
            return [b"\x00" * s["size"]]
        return [
            {
                "null": None,
                "boolean": True,
                "int": 7,
                "long": 7,
                "float": 0.5,
                "double": 0.5,
                "bytes": b"x",
                "string": "x",
            }[kind]
        ]

    return values(schema, 0)


def _roundtrip(value: Any, writer: Any, reader: Any) -> None:
    buf = io.BytesIO()
    schemaless_writer(buf, writer, value)
    buf.seek(0)
    schemaless_reader(buf, writer, reader)


def dynamic_problems(
    writer: dict[str, Any], reader: dict[str, Any], values: list[Any] | None = None
) -> list[str]:
    """Write `values` (default: `exemplars(writer)`) with `writer` and read them with
    `reader` through fastavro's schema resolution; one sentence per failure."""
    pw: Any = parse_schema(writer)
    pr: Any = parse_schema(reader)
    failures: dict[str, tuple[int, Any]] = {}  # error -> (how many values, the first one)
    for value in exemplars(writer) if values is None else values:
        try:
            _roundtrip(value, pw, pr)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc!s:.300}"
            count, first = failures.get(error, (0, value))
            failures[error] = (count + 1, first)
    return [
        f"{_short(writer['name'])}: {count} value(s) written with the writer schema could not "
        f"be read with the reader schema ({error}); the first: {first!r:.300}"
        for error, (count, first) in failures.items()
    ]


def evolution_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Everything that makes `new` not backward or not forward compatible with `old`."""
    return [
        *(f"backward (old writer, new reader): {p}" for p in static_problems(old, new)),
        *(f"forward (new writer, old reader): {p}" for p in static_problems(new, old)),
        *(f"backward (old writer, new reader): {p}" for p in dynamic_problems(old, new)),
        *(f"forward (new writer, old reader): {p}" for p in dynamic_problems(new, old)),
    ]
