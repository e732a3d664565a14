"""Generated Avro binary readers for the CURRENT schema set: bytes straight to dataclasses.

The rule: this is the hot path of every worker, and nothing else. fastavro's reader walks
its schema dicts for every field of every message and builds dicts we then convert again;
here each record gets one straight-line function, generated once at import from the same
standalone schema fastavro parses, that reads its fields in order and calls the dataclass
constructor (which validates). Only the current writer schema is read this way; a message
from an older writer goes through fastavro's schema resolution (`schemas.codec`).

These readers are checked against fastavro: the property tests decode every generated
value both ways and require equal results, and reject what fastavro rejects as corrupt.
Any malformed input raises `FastReadError` (or IndexError/UnicodeDecodeError/struct.error/
OverflowError/ValueError, which the codec turns into DecodeError like this one), or
returns a position other than `len(data)`: a reader must be called with
`end == len(data)`, and its caller must check the position it returns (a short string that
overruns the message is caught that way, not where it is read).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import agents.events as events_module
from agents.errors import ContractError
from schemas._names import check_mirror, index_named
from schemas._names import full_name as _full
from schemas._names import short_name as _short

__all__ = ["FastReadError", "build_readers"]

# reader(data, pos, end): reads one envelope from data[pos:end] -> (record, position after).
Reader = Callable[[bytes, int, int], tuple[Any, int]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class FastReadError(ValueError):
    """The bytes break the Avro binary encoding of the schema being read."""


# The one-byte string length b (< 128) -> the string's end offset from its length byte.
_SHORT_END = tuple(1 + (b >> 1) if b % 2 == 0 else 1 << 62 for b in range(128))


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Zig-zag varint longer than the inline fast paths read (nano-dollar amounts)."""
    n = int.from_bytes(data[pos : pos + 8], "little")
    stops = ~n & 0x8080808080808080  # the high bit of each byte that ends a varint
    if stops:
        # The first stop ends this varint: keep its bytes, then squeeze out the
        # continuation bits in three mask-and-shift steps (7 -> 14 -> 28 -> 56 bits).
        last = (stops & -stops).bit_length()  # 8 * (number of bytes)
        n &= 0x7F7F7F7F7F7F7F7F & ((1 << last) - 1)
        n = (n & 0x00FF00FF00FF00FF) | ((n & 0xFF00FF00FF00FF00) >> 1)
        n = (n & 0x0000FFFF0000FFFF) | ((n & 0xFFFF0000FFFF0000) >> 2)
        n = (n & 0xFFFFFFFF) | ((n & 0xFFFFFFFF00000000) >> 4)
        if pos + (last >> 3) > len(data):
            raise FastReadError(f"a varint at byte {pos} runs past the message")
        return (n >> 1) ^ -(n & 1), pos + (last >> 3)
    n = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise FastReadError(f"a varint at byte {pos} is longer than 10 bytes")
    value = (n >> 1) ^ -(n & 1)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise FastReadError(f"a long ending at byte {pos} does not fit in 64 bits")
    return value, pos


class _Gen:
    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "_varint": _varint,
            "_onew": object.__new__,
            "_ifb": int.from_bytes,
            "_SHORT_END": _SHORT_END,
            "_Bad": FastReadError,
            "_EPOCH": _EPOCH,
            "_td": timedelta,
            "_unpack_d": struct.Struct("<d").unpack_from,
            "_unpack_f": struct.Struct("<f").unpack_from,
        }
        self.named: dict[str, dict[str, Any]] = {}
        self.done: set[str] = set()
        self._ids = itertools.count()

    def index(self, schema: Any) -> None:
        index_named(schema, self.named)

    def var(self) -> str:
        return f"v{next(self._ids)}"

    def long(self, target: str, ind: str) -> list[str]:
        # One-byte varints (|value| < 64) are the common case: no call, no loop.
        # Two- and three-byte ones (|value| < 2**20: seqs, token counts, lengths) are
        # inline too.
        return [
            f"{ind}b = data[pos]",
            f"{ind}if b < 128:",
            f"{ind}    pos += 1",
            f"{ind}    {target} = (b >> 1) ^ -(b & 1)",
            f"{ind}elif data[pos + 1] < 128:",
            f"{ind}    b = (b & 127) | (data[pos + 1] << 7)",
            f"{ind}    pos += 2",
            f"{ind}    {target} = (b >> 1) ^ -(b & 1)",
            f"{ind}elif data[pos + 2] < 128:",
            f"{ind}    b = (b & 127) | ((data[pos + 1] & 127) << 7) | (data[pos + 2] << 14)",
            f"{ind}    pos += 3",
            f"{ind}    {target} = (b >> 1) ^ -(b & 1)",
            f"{ind}else:",
            f"{ind}    {target}, pos = _varint(data, pos)",
        ]

    def timestamp(self, target: str, ind: str) -> list[str]:
        # Microseconds since the epoch take exactly 8 varint bytes from 1971 to 3111.
        # Read them as one little-endian int and squeeze out the continuation bits in
        # three mask-and-shift steps (7-bit groups -> 14 -> 28 -> 56 bits) instead of
        # looping byte by byte; anything else takes the general path.
        return [
            f"{ind}n = _ifb(data[pos:pos + 8], 'little')",
            f"{ind}if n & 0x8080808080808080 == 0x0080808080808080:",
            f"{ind}    n &= 0x7F7F7F7F7F7F7F7F",
            f"{ind}    n = (n & 0x00FF00FF00FF00FF) | ((n & 0xFF00FF00FF00FF00) >> 1)",
            f"{ind}    n = (n & 0x0000FFFF0000FFFF) | ((n & 0xFFFF0000FFFF0000) >> 2)",
            f"{ind}    n = (n & 0xFFFFFFFF) | ((n & 0xFFFFFFFF00000000) >> 4)",
            f"{ind}    pos += 8",
            f"{ind}    {target} = (n >> 1) ^ -(n & 1)",
            f"{ind}else:",
            *self.long(target, ind + "    "),
        ]

    def read(self, schema: Any, target: str, ind: str, where: str) -> list[str]:
        """Source lines that read one value of `schema` into `target`, advancing `pos`."""
        if isinstance(schema, str):
            if schema in self.named:
                return self.read(self.named[schema], target, ind, where)
            schema = {"type": schema}
        if isinstance(schema, list):
            return self.union(schema, target, ind, where)
        kind = schema["type"]
        if kind == "null":
            return [f"{ind}{target} = None"]
        if kind == "boolean":
            return [
                f"{ind}b = data[pos]",
                f"{ind}pos += 1",
                f"{ind}if b > 1:",
                f"{ind}    raise _Bad('{where}: a boolean byte must be 0 or 1, got %d' % b)",
                f"{ind}{target} = b == 1",
            ]
        if kind in ("long", "int"):
            if schema.get("logicalType") == "timestamp-micros":
                # timedelta(0, s, us) is twice as fast as timedelta(microseconds=...).
                return [
                    *self.timestamp(target, ind),
                    f"{ind}{target} = _EPOCH + _td(0, {target} // 1000000, {target} % 1000000)",
                ]
            if schema.get("logicalType") is not None:
                raise ContractError(f"{where}: no fast reader for {schema['logicalType']}.")
            return self.long(target, ind)
        if kind in ("double", "float"):
            size = 8 if kind == "double" else 4
            return [
                f"{ind}{target} = _unpack_{kind[0]}(data, pos)[0]",
                f"{ind}pos += {size}",
            ]
        if kind in ("string", "bytes"):
            return self.string(kind, target, ind, where)
        if kind == "enum":
            return self.enum(schema, target, ind, where)
        if kind == "record":
            self.record(_full(schema))
            return [f"{ind}{target}, pos = _r_{_short(_full(schema))}(data, pos, end)"]
        if kind == "array":
            return self.array(schema, target, ind, where)
        raise ContractError(f"{where}: no fast reader for Avro type {kind!r}.")

    def string(self, kind: str, target: str, ind: str, where: str) -> list[str]:
        n = self.var()
        decode = ".decode()" if kind == "string" else ""
        return [
            # Most strings are shorter than 64 bytes: a one-byte length. _SHORT_END maps
            # that byte to the offset of the string's end, and an odd byte (a negative
            # length) to far past any message. An overrun is not checked here: the slice
            # stops at the end of the bytes, `pos` moves past it, and the next read or
            # the caller's final `pos == len(data)` check fails.
            f"{ind}b = data[pos]",
            f"{ind}if b < 128:",
            f"{ind}    {n} = pos + _SHORT_END[b]",
            f"{ind}    {target} = data[pos + 1:{n}]{decode}",
            f"{ind}    pos = {n}",
            f"{ind}else:",
            *self.long(n, ind + "    "),
            f"{ind}    if {n} < 0 or pos + {n} > end:",
            (
                f"{ind}        raise _Bad('{where}: a {kind} of %d bytes at byte %d overruns "
                f"the message' % ({n}, pos))"
            ),
            f"{ind}    {n} += pos",
            f"{ind}    {target} = data[pos:{n}]{decode}",
            f"{ind}    pos = {n}",
        ]

    def enum(self, schema: dict[str, Any], target: str, ind: str, where: str) -> list[str]:
        short = _short(_full(schema))
        cls = getattr(events_module, short, None)
        if not (isinstance(cls, type) and issubclass(cls, Enum)):
            raise ContractError(f"Avro enum {_full(schema)} has no Enum class in agents.events.")
        table = f"_S_{short}"
        self.ns[table] = tuple(cls(symbol) for symbol in schema["symbols"])
        i = self.var()
        return [
            *self.long(i, ind),
            f"{ind}if {i} < 0 or {i} >= {len(schema['symbols'])}:",
            f"{ind}    raise _Bad('{where}: enum index %d is out of range' % {i})",
            f"{ind}{target} = {table}[{i}]",
        ]

    def array(self, schema: dict[str, Any], target: str, ind: str, where: str) -> list[str]:
        items, count, item = self.var(), self.var(), self.var()
        body = self.read(schema["items"], item, ind + "        ", where)
        if body == [f"{ind}        {item} = None"]:
            # A zero-width item would let a corrupt count spin without consuming input.
            raise ContractError(f"{where}: arrays of null are not supported.")
        return [
            f"{ind}{items} = []",
            f"{ind}while True:",
            *self.long(count, ind + "    "),
            f"{ind}    if {count} == 0:",
            f"{ind}        break",
            f"{ind}    if {count} < 0:",
            f"{ind}        {count} = -{count}",
            *self.long("_", ind + "        "),  # the block's byte size: not needed
            # Every item takes at least one byte, so a count beyond the rest is corrupt.
            f"{ind}    if {count} > end - pos:",
            (
                f"{ind}        raise _Bad('{where}: an array block of %d items overruns the "
                f"message' % {count})"
            ),
            f"{ind}    for _ in range({count}):",
            *body,
            f"{ind}        {items}.append({item})",
            f"{ind}{target} = tuple({items})",
        ]

    def union(self, branches: list[Any], target: str, ind: str, where: str) -> list[str]:
        resolved: list[Any] = [self.named.get(b, b) if isinstance(b, str) else b for b in branches]
        if len(resolved) == 2 and resolved[0] in ("null", {"type": "null"}):
            # An optional field: its branch index is one byte, 0 (null) or 2 (zig-zag 1).
            # Anything else (including a long-form varint, which fastavro accepts) fails
            # here and falls back to the reference decoder.
            return [
                f"{ind}b = data[pos]",
                f"{ind}pos += 1",
                f"{ind}if b == 0:",
                f"{ind}    {target} = None",
                f"{ind}elif b == 2:",
                *self.read(branches[1], target, ind + "    ", where),
                f"{ind}else:",
                f"{ind}    raise _Bad('{where}: union branch byte %d is not 0 or 2' % b)",
            ]
        i = self.var()
        lines = self.long(i, ind)
        if all(isinstance(b, dict) and b["type"] == "record" for b in resolved):
            # A payload union has dozens of branches: index a table, don't walk an elif chain.
            table = f"_U{i}"
            for b in resolved:
                self.record(_full(b))
            self.ns[table] = tuple(self.ns[f"_r_{_short(_full(b))}"] for b in resolved)
            return [
                *lines,
                f"{ind}if {i} < 0 or {i} >= {len(branches)}:",
                f"{ind}    raise _Bad('{where}: union branch %d does not exist' % {i})",
                f"{ind}{target}, pos = {table}[{i}](data, pos, end)",
            ]
        for k, branch in enumerate(branches):
            lines.append(f"{ind}{'if' if k == 0 else 'elif'} {i} == {k}:")
            lines += self.read(branch, target, ind + "    ", where)
        lines += [
            f"{ind}else:",
            f"{ind}    raise _Bad('{where}: union branch %d does not exist' % {i})",
        ]
        return lines

    def record(self, full: str) -> None:
        if full in self.done:
            return
        self.done.add(full)
        schema = self.named[full]
        short = _short(full)
        cls = getattr(events_module, short, None)
        if cls is None:
            raise ContractError(f"Avro record {full} has no dataclass in agents.events.")
        names = [f["name"] for f in schema["fields"]]
        check_mirror(full, schema["fields"], cls)
        if getattr(cls, "__slots__", None) != tuple(names):
            raise ContractError(f"agents.events.{short} must be a slotted dataclass.")
        # A frozen dataclass's __init__ sets each field through object.__setattr__ by
        # name; the slot descriptors do the same store for a third of the cost. The
        # record's own __post_init__ still runs, so decoded records are validated exactly
        # as constructed ones are.
        post = getattr(cls, "__post_init__", None)
        self._reader(f"_r_{short}", short, cls, schema["fields"], post)

    def _reader(
        self, fn: str, short: str, cls: type, fields: list[Any], post: Callable[[Any], None] | None
    ) -> Reader:
        """Generate `fn(data, pos, end)`: `fields` read in order, each stored in its slot
        of a new `cls`, then `post` (the checks) run on it."""
        self.ns[short] = cls
        lines = [f"def {fn}(data, pos, end):"]
        for f in fields:
            lines += self.read(f["type"], f"f_{f['name']}", "    ", f"{short}.{f['name']}")
        lines.append(f"    o = _onew({short})")
        for f in fields:
            setter = f"_set_{short}_{f['name']}"
            self.ns[setter] = getattr(cls, f["name"]).__set__
            lines.append(f"    {setter}(o, f_{f['name']})")
        if post is not None:
            self.ns[f"_post_{fn}"] = post
            lines.append(f"    _post_{fn}(o)")
        lines.append("    return o, pos")
        # Generated above from the shipped schemas, never from message data.
        exec("\n".join(lines), self.ns)
        reader: Reader = self.ns[fn]
        return reader

    def compact_event(self, schema: dict[str, Any]) -> Reader:
        """The reader of a compact event (the Event schema without `event_id`): its
        fields read as `record` reads them, then the id derived once by
        `Event._derive_id` (which checks the rest as the constructor does) rather than
        spliced into the message and derived again by the constructor's check."""
        cls = events_module.Event
        names = [f["name"] for f in schema["fields"]]
        if "event_id" in names or getattr(cls, "__slots__", ())[1:] != tuple(names):
            raise ContractError("a compact Event is the Event envelope minus its event_id.")
        return self._reader("_r_Event_compact", "Event", cls, schema["fields"], cls._derive_id)


def build_readers(
    envelopes: dict[str, dict[str, Any]], compact_event: dict[str, Any]
) -> tuple[dict[str, Reader], Reader]:
    """One reader per envelope: `reader(data, pos, len(data)) -> (record, position after)`;
    and the reader of `compact_event` (the compact form of the Event schema), made by the
    same generator (the nested records' readers are shared)."""
    gen = _Gen()
    for schema in envelopes.values():
        gen.index(schema)
    readers: dict[str, Reader] = {}
    for name, schema in envelopes.items():
        gen.record(_full(schema))
        readers[name] = gen.ns[f"_r_{_short(_full(schema))}"]
    return readers, gen.compact_event(compact_event)
