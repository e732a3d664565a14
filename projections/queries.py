"""Read-side queries behind `turnlog sessions`, `turnlog show` and `turnlog costs`.

Rule: thin. The SQL views and functions of the migrations are the interface (a user can
run the same SELECTs in psql); these functions only pick columns, order and limits, and
return plain dicts ready for JSON. Money stays integer nano-dollars; `usd` fields are
added for people.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row

from agents.errors import ContractError, ExternalError

__all__ = [
    "SESSION_SQL",
    "STRUCTURED_SQL",
    "CostGrouping",
    "SessionNotFound",
    "costs",
    "list_sessions",
    "shape_session",
    "show_session",
    "structured_results",
]

CostGrouping = Literal["session", "agent", "model", "day"]


class SessionNotFound(ContractError):
    """No projected session has that id."""


def _connect(database_url: str) -> psycopg.Connection[dict[str, Any]]:
    try:
        return psycopg.connect(database_url, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        raise ExternalError(f"Could not connect to Postgres: {str(exc).strip()}") from exc


def _usd(row: dict[str, Any], *cols: str) -> dict[str, Any]:
    for col in cols:
        if row.get(col) is not None:
            row[col.replace("cost_nanos", "usd")] = round(int(row[col]) / 1e9, 9)
    return row


def list_sessions(
    database_url: str, *, limit: int = 50, agent: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """The most recently updated sessions, newest first."""
    with _connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT s.session_id, s.agent, s.status, s.phase, s.turns, s.last_seq,
                   s.parent_session_id, s.forked_from_session_id, s.forked_at_seq,
                   s.created_at, s.updated_at,
                   s.input_tokens + s.output_tokens + s.cache_read_tokens
                       + s.cache_write_tokens AS tokens,
                   s.cost_nanos, c.total_cost_nanos
            FROM sessions s
            LEFT JOIN cost_by_session c ON c.session_id = s.session_id
            WHERE (%(agent)s::text IS NULL OR s.agent = %(agent)s)
              AND (%(status)s::text IS NULL OR s.status = %(status)s)
            ORDER BY s.updated_at DESC, s.session_id
            LIMIT %(limit)s
            """,
            {"agent": agent, "status": status, "limit": limit},
        ).fetchall()
    return [_usd(r, "cost_nanos", "total_cost_nanos") for r in rows]


# One session's page, as statements (each takes the session id) and a shape: shared by
# `show_session` here and the console's reads, which run them in one snapshot.
SESSION_SQL: dict[str, str] = {
    "session": "SELECT * FROM sessions WHERE session_id = %s",
    "entries": (
        "SELECT session_id, seq, kind, role, call_id, tool_name, content, is_error, "
        "parent_session_id, parent_seq, occurred_at FROM branch_entries(%s)"
    ),
    "branches": "SELECT * FROM session_branches(%s)",
    "children": (
        "SELECT l.child_session_id, l.parent_call_id, s.agent, s.status "
        "FROM session_links l LEFT JOIN sessions s ON s.session_id = l.child_session_id "
        "WHERE l.parent_session_id = %s ORDER BY l.child_session_id"
    ),
    "cost": "SELECT * FROM cost_by_session WHERE session_id = %s",
}


def shape_session(session_id: str, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """`show_session`'s answer from the rows of SESSION_SQL's statements."""
    if not rows["session"]:
        raise SessionNotFound(f"Session {session_id} has no projected events.")
    cost = rows["cost"][0] if rows["cost"] else None
    return {
        "session": _usd(dict(rows["session"][0]), "cost_nanos"),
        "entries": rows["entries"],
        "branches": rows["branches"],
        "children": rows["children"],
        "costs": _usd(dict(cost), "own_cost_nanos", "total_cost_nanos") if cost else None,
    }


def show_session(database_url: str, session_id: str) -> dict[str, Any]:
    """One session: its row, its branch (shared prefix + own entries, in order), the
    branches of its fork tree, its delegated children, and its costs."""
    with _connect(database_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one snapshot
        conn.read_only = True
        rows = {
            name: conn.execute(sql, (session_id,)).fetchall() for name, sql in SESSION_SQL.items()
        }
    return shape_session(session_id, rows)


STRUCTURED_SQL = (
    "SELECT turn_id, call_id, seq, result FROM structured_outputs "
    "WHERE session_id = %s AND valid ORDER BY seq"
)


def structured_results(database_url: str, session_id: str) -> list[dict[str, Any]]:
    """The session's structured results (agents with an output_schema), oldest first:
    each accepted answer's turn, call, seq and the value as JSON (structured_outputs)."""
    with _connect(database_url) as conn:
        return conn.execute(STRUCTURED_SQL, (session_id,)).fetchall()


_COST_QUERIES: dict[str, str] = {
    "session": "SELECT * FROM cost_by_session ORDER BY total_cost_nanos DESC, session_id",
    "agent": "SELECT * FROM cost_by_agent ORDER BY rolled_up_cost_nanos DESC, agent",
    "model": "SELECT * FROM cost_by_model ORDER BY cost_nanos DESC, model",
    "day": "SELECT * FROM cost_by_day ORDER BY day",
}


def costs(
    database_url: str, by: CostGrouping = "agent", *, limit: int = 1000
) -> list[dict[str, Any]]:
    """Rows of the cost view for `by` (session, agent, model or day)."""
    if by not in _COST_QUERIES:
        raise ContractError(f"Costs can be grouped by session, agent, model or day, not {by!r}.")
    with _connect(database_url) as conn:
        rows = conn.execute(_COST_QUERIES[by] + " LIMIT %s", (limit,)).fetchall()
    return [
        _usd(r, "cost_nanos", "own_cost_nanos", "total_cost_nanos", "rolled_up_cost_nanos")
        for r in rows
    ]
