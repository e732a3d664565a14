"""Staging tables and binary COPY: how the store writes thousands of rows per batch.

Rule: rows reach their tables through binary COPY (one round trip for a whole batch,
formatted in C by psycopg) into per-connection temporary staging tables, then one
INSERT … SELECT … ON CONFLICT per table: upsert semantics at COPY speed. The merge SQL
is generated from the rules of projections.rows, so the database merges patches exactly
as the pure model says. Staging tables have exactly the written columns, with the
target's types (CREATE … AS … WITH NO DATA), and empty themselves at commit.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from projections._clean import clean_row
from projections.audit import AUDIT_COLUMNS
from projections.fold import is_started
from projections.rows import (
    ENTRY_COLUMNS,
    EVENT_COLUMNS,
    PATCH_TABLES,
    SESSION_COLUMNS,
    Changes,
    PatchTable,
    SessionRow,
)

__all__ = ["copy_rows", "ensure_stage", "merge_links", "write_partition_rows"]


def _stage(table: str) -> str:
    return f"stage_{table}"


def _staged_columns() -> dict[str, tuple[str, ...]]:
    cols = {
        "events": EVENT_COLUMNS,
        "sessions": SESSION_COLUMNS,
        "session_links": ("child_session_id", "parent_session_id", "parent_call_id"),
    }
    for table, spec in PATCH_TABLES.items():
        cols[table] = spec.key + spec.columns + spec.increments + spec.appends
    return cols


_STAGED = _staged_columns()


def _merge_sql(table: str) -> str:
    cols = _STAGED[table]
    head = f"INSERT INTO {table} AS t ({', '.join(cols)}) SELECT {', '.join(cols)} FROM {_stage(table)} "
    if table == "events":
        return head + "ON CONFLICT (session_id, seq) DO NOTHING"
    if table == "session_links":
        return head + "ON CONFLICT (child_session_id) DO NOTHING"
    if table == "sessions":
        sets = [f"{c} = excluded.{c}" for c in SESSION_COLUMNS[1:]]
        return head + f"ON CONFLICT (session_id) DO UPDATE SET {', '.join(sets)}"
    spec = PATCH_TABLES[table]
    sets = [f"{c} = {_coalesce(spec, c)}" for c in spec.columns]
    sets += [f"{c} = t.{c} + excluded.{c}" for c in spec.increments]
    sets += [f"{c} = t.{c} || excluded.{c}" for c in spec.appends]
    return head + f"ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {', '.join(sets)}"


def _coalesce(spec: PatchTable, column: str) -> str:
    """The new value of a patched column: the patch's, unless it is None (unchanged) or
    a sticky rule keeps the stored one."""
    merged = f"COALESCE(excluded.{column}, t.{column})"
    for col, kept, over in spec.sticky:
        if col == column:
            merged = (
                f"CASE WHEN t.{column} = '{kept}' AND excluded.{column} = '{over}' "
                f"THEN t.{column} ELSE {merged} END"
            )
    return merged


_MERGES = {table: _merge_sql(table) for table in _STAGED}
_STAGE_DDL = [
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_stage(table)} ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(cols)} FROM {table} WITH NO DATA"
    for table, cols in _STAGED.items()
]
_staged_connections: weakref.WeakSet[AsyncConnection[Any]] = weakref.WeakSet()


# Column type OIDs of every COPY target, per connection: binary COPY needs them.
_copy_types: weakref.WeakKeyDictionary[AsyncConnection[Any], dict[str, list[int]]] = (
    weakref.WeakKeyDictionary()
)


async def ensure_stage(conn: AsyncConnection[Any]) -> None:
    if conn in _staged_connections:
        return
    types: dict[str, list[int]] = {}
    async with conn.transaction():
        for ddl in _STAGE_DDL:
            await conn.execute(ddl)
        targets = {_stage(t): cols for t, cols in _STAGED.items()}
        targets["entries"] = ENTRY_COLUMNS
        targets["audit_log"] = AUDIT_COLUMNS
        for table, cols in targets.items():
            # From the catalog: the application role may not SELECT from audit_log.
            cur = await conn.execute(
                "SELECT attname, atttypid::int FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
            oids = {str(name): int(oid) for name, oid in await cur.fetchall()}
            types[table] = [oids[c] for c in cols]
    _copy_types[conn] = types
    _staged_connections.add(conn)


_UUID_OID = 2950
_JSON_OIDS = frozenset({114, 3802})  # json, jsonb


class _UuidText:
    """An event id (canonical UUID text) as psycopg's binary uuid dumper reads it: it
    only asks for `.int`. Four times cheaper than parsing a uuid.UUID per row."""

    __slots__ = ("int",)

    def __init__(self, text: str) -> None:
        self.int = int(text.replace("-", ""), 16)


async def copy_rows(
    cur: Any,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    clean: bool = False,
) -> None:
    """COPY `rows` into `table`; with `clean`, text PostgreSQL cannot store is replaced
    first (projections._clean: only batches that need it pay for the pass)."""
    # Binary COPY: no text escaping of the (large) content columns. The column types are
    # set explicitly, so each value is dumped by its column's type.
    types = _copy_types[cur.connection][table]
    uuids = [i for i, oid in enumerate(types) if oid == _UUID_OID]
    jsons = frozenset(i for i, oid in enumerate(types) if oid in _JSON_OIDS)
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    async with cur.copy(sql) as copy:
        copy.set_types(types)
        for row in rows:
            if clean:
                row = clean_row(row, jsons)
            if uuids:
                row = list(row)
                for i in uuids:
                    if isinstance(row[i], str):
                        row[i] = _UuidText(row[i])
            await copy.write_row(row)


async def write_partition_rows(
    cur: Any, changes: Changes, sessions: list[SessionRow], *, clean: bool = False
) -> None:
    """The rows only this partition's owner writes (everything but links and audit).
    A session that has not started gets no `sessions` row (projections.fold.NOT_STARTED)."""
    staged: dict[str, Sequence[Sequence[Any]]] = {
        "events": changes.events,
        "sessions": [s.as_tuple() for s in sessions if is_started(s)],
    }
    for table in PATCH_TABLES:
        staged[table] = changes.patch_rows(table)
    for table, rows in staged.items():
        if rows:
            await copy_rows(cur, _stage(table), _STAGED[table], rows, clean=clean)
            await cur.execute(_MERGES[table])
    if changes.entries:
        await copy_rows(cur, "entries", ENTRY_COLUMNS, changes.entries, clean=clean)


async def merge_links(cur: Any, changes: Changes, *, clean: bool = False) -> None:
    """The delegation links of a batch: shared between partitions (call under the
    audit-head lock, see projections.store)."""
    if changes.links:
        await copy_rows(
            cur,
            _stage("session_links"),
            _STAGED["session_links"],
            list(changes.links.values()),
            clean=clean,
        )
        await cur.execute(_MERGES["session_links"])
