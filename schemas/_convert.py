"""Converters between the dataclasses of `agents.events` and two plain shapes.

The rule: converters are generated ONCE, at import, from the current Avro schema set, as
straight-line Python functions (one per record and direction), the way `dataclasses`
builds `__init__`. The worker decodes every message, so a conversion must cost a few
attribute reads and one constructor call, not a walk over type hints per call.

Shapes:
- *avro*: what fastavro writes and reads: records as dicts, unions of records as
  `(full name, dict)` tuples (fastavro's tuple notation, which also spares it from trying
  every branch), datetimes as aware datetimes, enums as their symbol strings.
- *json*: JSON-safe, for humans, exports and the audit hash: a union of records is a dict
  tagged with the record name (`{"type": "LlmCallCompleted", ...}`), datetimes are ISO-8601
  UTC strings with microseconds (`2024-05-01T12:00:00.000000Z`), arrays are lists.

Building also checks that every Avro record mirrors its dataclass field for field (names
and order) and that the Avro defaults equal the dataclass defaults, so the two halves of
the contract cannot drift apart silently.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import agents.events as events_module
from agents.errors import ContractError
from schemas._names import check_mirror, index_named
from schemas._names import full_name as _full
from schemas._names import short_name as _short

__all__ = ["Converters", "build_converters", "iso_utc", "parse_iso_utc"]

Fn = Callable[[Any], Any]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class _DictShapeError(ValueError):
    """A json-shaped dict does not have the shape of its record (reported as DecodeError)."""


def iso_utc(value: datetime) -> str:
    """ISO-8601 in UTC with microseconds and a `Z`: one spelling per instant."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_iso_utc(text: str) -> datetime:
    """Inverse of `iso_utc`; accepts any ISO-8601 text with an offset, returns UTC."""
    if not isinstance(text, str):
        raise _DictShapeError(f"a timestamp must be an ISO-8601 string, got {text!r}")
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise _DictShapeError(f"timestamp {text!r} has no UTC offset")
    return value.astimezone(UTC)


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _DictShapeError(f"expected a number, got {value!r:.60}")
    return float(value)


def _require_key(d: dict[str, Any], key: str, record: str) -> Any:
    try:
        return d[key]
    except KeyError:
        raise _DictShapeError(f"{record} has no field {key!r}") from None
    except TypeError:
        raise _DictShapeError(f"{record} must be a JSON object, got {d!r:.60}") from None


def _check_keys(d: Any, allowed: frozenset[str], record: str) -> None:
    if not isinstance(d, dict):
        raise _DictShapeError(f"{record} must be a JSON object, got {d!r:.60}")
    extra = d.keys() - allowed
    if extra:
        raise _DictShapeError(f"{record} has unknown field(s) {sorted(extra)}")


def _union_json_to_avro(table: dict[str, tuple[str, Fn]], value: Any, where: str) -> Any:
    if not isinstance(value, dict) or "type" not in value:
        raise _DictShapeError(f"{where} must be a JSON object with a 'type' tag")
    tag = value["type"]
    try:
        full, fn = table[tag]
    except (KeyError, TypeError):
        raise _DictShapeError(f"{where} has unknown type {tag!r}") from None
    body = {k: v for k, v in value.items() if k != "type"}
    return (full, fn(body))


@dataclasses.dataclass(frozen=True, slots=True)
class Converters:
    """Per-envelope entry points, plus the generated source (for debugging)."""

    to_avro: dict[str, Fn]
    from_avro: dict[str, Fn]
    to_json: dict[str, Fn]
    json_to_avro: dict[str, Fn]
    source: str


class _Builder:
    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "_iso": iso_utc,
            "_float": _as_float,
            "_parse_iso": parse_iso_utc,
            "_req": _require_key,
            "_check_keys": _check_keys,
            "_union_ja": _union_json_to_avro,
        }
        self.lines: list[str] = []
        self.named: dict[str, dict[str, Any]] = {}
        self.done: set[str] = set()
        self._ids = itertools.count()

    # -- schema walking -----------------------------------------------------------------

    def index(self, schema: Any) -> None:
        """Record every named type defined inside `schema` by full name."""
        index_named(schema, self.named)

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self.named[schema]
        return schema

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    # -- expressions ----------------------------------------------------------------------
    # Each returns Python source computing the converted value of the source `v`, or None
    # when the value passes through unchanged (so callers can skip a copy).

    def expr(self, mode: str, schema: Any, v: str, where: str) -> str | None:
        schema = self.resolve(schema)
        if isinstance(schema, str):
            schema = {"type": schema}
        if isinstance(schema, list):
            return self.union_expr(mode, schema, v, where)
        kind = schema["type"]
        if kind == "record":
            self.record(_full(schema))
            return f"_{mode}_{_short(_full(schema))}({v})"
        if kind == "enum":
            cls = self.enum_class(schema)
            if mode == "fa":
                return f"{cls}({v})"
            if mode == "tj":
                return f"{v}.value"
            return None
        if kind == "array":
            item = self.fresh("x")
            inner = self.expr(mode, schema["items"], item, where)
            if mode == "fa":
                return f"tuple({v})" if inner is None else f"tuple([{inner} for {item} in {v}])"
            if inner is None:
                return f"list({v})" if mode == "tj" else None
            return f"[{inner} for {item} in {v}]"
        if kind in ("long", "int") and schema.get("logicalType") == "timestamp-micros":
            if mode == "tj":
                return f"_iso({v})"
            if mode == "ja":
                return f"_parse_iso({v})"
            return None
        if kind in ("double", "float") and mode in ("tj", "ja"):
            # An int in a float field (temperature=1) must have the JSON text it has after
            # a trip over the wire (1.0), or the audit hash of one event would have two values.
            return f"_float({v})"
        if kind in _PRIMITIVES:
            return None
        raise ContractError(f"{where}: the codec has no conversion for Avro type {kind!r}.")

    def union_expr(self, mode: str, branches: list[Any], v: str, where: str) -> str | None:
        rest = [b for b in branches if b != "null"]
        if len(rest) == 1 and len(rest) < len(branches):
            inner = self.expr(mode, rest[0], v, where)
            return None if inner is None else f"(None if {v} is None else {inner})"
        resolved = [self.resolve(b) for b in rest]
        if len(rest) < len(branches) or not all(
            isinstance(b, dict) and b["type"] == "record" for b in resolved
        ):
            raise ContractError(
                f'{where}: only ["null", T] and unions of records are supported, got {branches}.'
            )
        fulls = [_full(b) for b in resolved]
        for b in resolved:
            if any(f["name"] == "type" for f in b["fields"]):
                # The JSON form tags a union member with "type"; a field may not take it.
                raise ContractError(f"{where}: union member {_full(b)} has a field named 'type'.")
        for full in fulls:
            self.record(full)
        table = self.fresh("_U")
        if mode == "fa":
            self.ns[table] = {f: self.ns[f"_fa_{_short(f)}"] for f in fulls}
            return f"{table}[{v}[0]]({v}[1])"
        if mode == "ta":
            self.ns[table] = {
                self.ns[_short(f)]: _tagger(f, self.ns[f"_ta_{_short(f)}"]) for f in fulls
            }
            return f"{table}[type({v})]({v})"
        if mode == "tj":
            self.ns[table] = {
                self.ns[_short(f)]: _json_tagger(_short(f), self.ns[f"_tj_{_short(f)}"])
                for f in fulls
            }
            return f"{table}[type({v})]({v})"
        self.ns[table] = {_short(f): (f, self.ns[f"_ja_{_short(f)}"]) for f in fulls}
        return f"_union_ja({table}, {v}, {where!r})"

    def enum_class(self, schema: dict[str, Any]) -> str:
        short = _short(_full(schema))
        cls = getattr(events_module, short, None)
        if not (isinstance(cls, type) and issubclass(cls, Enum)):
            raise ContractError(f"Avro enum {_full(schema)} has no Enum class in agents.events.")
        symbols = [m.value for m in cls]
        if symbols != list(schema["symbols"]):
            raise ContractError(
                f"Avro enum {_full(schema)} has symbols {schema['symbols']}, "
                f"but agents.events.{short} has {symbols}."
            )
        self.ns[short] = cls
        return short

    # -- records ----------------------------------------------------------------------------

    def record(self, full: str) -> None:
        if full in self.done:
            return
        self.done.add(full)
        schema = self.named[full]
        short = _short(full)
        cls: Any = getattr(events_module, short, None)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise ContractError(f"Avro record {full} has no dataclass in agents.events.")
        self.ns[short] = cls
        fields = schema["fields"]
        check_mirror(full, fields, cls)

        args, to_avro, to_json, from_json = [], [], [], []
        for f in fields:
            name, ftype = f["name"], f["type"]
            where = f"{short}.{name}"
            src = f'd["{name}"]'
            fa = self.expr("fa", ftype, src, where)
            args.append(fa or src)
            attr = f"o.{name}"
            ta = self.expr("ta", ftype, attr, where)
            to_avro.append(f'"{name}": {ta or attr}')
            tj = self.expr("tj", ftype, attr, where)
            to_json.append(f'"{name}": {tj or attr}')
            # A field with an Avro default may be absent (an export from an older release).
            got = src if "default" in f else f'_req(d, "{name}", "{short}")'
            ja = self.expr("ja", ftype, "_v", where)
            value = got if ja is None else f"(lambda _v: {ja})({got})"
            if "default" in f:
                default_name = f"_D_{short}_{name}"
                self.ns[default_name] = f["default"]
                value = f'({value} if "{name}" in d else {default_name})'
            from_json.append(f'"{name}": {value}')
        keys = f"_K_{short}"
        self.ns[keys] = frozenset(f["name"] for f in fields)
        self.lines += [
            f"def _fa_{short}(d):",
            f"    return {short}({', '.join(args)})",
            f"def _ta_{short}(o):",
            f"    return {{{', '.join(to_avro)}}}",
            f"def _tj_{short}(o):",
            f"    return {{{', '.join(to_json)}}}",
            f"def _ja_{short}(d):",
            f'    _check_keys(d, {keys}, "{short}")',
            f"    return {{{', '.join(from_json)}}}",
            "",
        ]
        # Define now: union tables built later capture these function objects. The source
        # is generated above from the shipped schemas, never from message data.
        exec("\n".join(self.lines[-10:]), self.ns)


def _tagger(full: str, fn: Fn) -> Fn:
    def tag(o: Any) -> tuple[str, Any]:
        return (full, fn(o))

    return tag


def _json_tagger(short: str, fn: Fn) -> Fn:
    def tag(o: Any) -> dict[str, Any]:
        return {"type": short, **fn(o)}

    return tag


def build_converters(envelopes: dict[str, dict[str, Any]]) -> Converters:
    """Generate the converters of every record reachable from `envelopes`."""
    b = _Builder()
    for schema in envelopes.values():
        b.index(schema)
    for schema in envelopes.values():
        b.record(_full(schema))
    names = {name: _short(_full(schema)) for name, schema in envelopes.items()}
    return Converters(
        to_avro={n: b.ns[f"_ta_{s}"] for n, s in names.items()},
        from_avro={n: b.ns[f"_fa_{s}"] for n, s in names.items()},
        to_json={n: b.ns[f"_tj_{s}"] for n, s in names.items()},
        json_to_avro={n: b.ns[f"_ja_{s}"] for n, s in names.items()},
        source="\n".join(b.lines),
    )
