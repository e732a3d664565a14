"""What the console reads from the Postgres projections (async, one connection pool).

Rule: read-only SQL over the projection tables and views of projections/migrations;
money stays integer nano-dollars with `usd` added for people, as in
projections/queries.py (whose `costs` the console uses as it is, and whose session
statements it runs in one snapshot). A page made of several reads takes them in one
snapshot (`Reads.snapshot`): a projector commit never falls between its parts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agents.errors import ContractError
from agents.limits import clean_text
from projections.queries import SESSION_SQL, shape_session

__all__ = ["MAX_SEEN", "Reads", "SessionFilter", "as_seq", "parse_seen"]

MAX_SEEN = 100  # sessions a refresh may ask to wait for

# An event's row as the console shows it (the timeline, GET /api/sessions/ID/events).
_EVENT_COLUMNS = (
    "seq, event_type AS type, turn_id, occurred_at, causation_id, kafka_partition, kafka_offset"
)

# The connection of the snapshot the current task reads in (Reads.snapshot).
_SNAPSHOT: ContextVar[AsyncConnection[Any] | None] = ContextVar("console_snapshot", default=None)


def as_seq(raw: str) -> int | None:
    """`raw` as a seq or count: 1 to 18 ASCII digits (a bigint), else None. `str.isdigit`
    alone lets through "²" and 5,000-digit numbers, which `int` then refuses."""
    return int(raw) if 0 < len(raw) <= 18 and raw.isascii() and raw.isdigit() else None


def parse_seen(values: Iterable[str]) -> dict[str, int]:
    """`seen=SESSION:SEQ` query parameters (repeated): the events a live page has been
    told of, which its refresh waits for the projections to include."""
    seen: dict[str, int] = {}
    for value in values:
        sid, _, raw = value.rpartition(":")
        seq = as_seq(raw)
        if not sid or seq is None or clean_text(sid) != sid:
            raise ContractError(f"seen must be SESSION:SEQ, not {value!r}.")
        seen[sid] = max(seen.get(sid, 0), seq)
    if len(seen) > MAX_SEEN:
        raise ContractError(f"seen names {len(seen)} sessions; at most {MAX_SEEN}.")
    return seen


def _usd(row: dict[str, Any], *cols: str) -> dict[str, Any]:
    for col in cols:
        if row.get(col) is not None:
            row[col.replace("cost_nanos", "usd")] = round(int(row[col]) / 1e9, 9)
    return row


class SessionFilter:
    """The sessions page's filters (every one optional), parsed from query parameters;
    a bad value raises ValueError naming the parameter."""

    def __init__(self, params: Any) -> None:
        def text(name: str) -> str | None:
            value = (params.get(name) or "").strip()
            return value or None

        def number(name: str) -> float | None:
            raw = text(name)
            if raw is None:
                return None
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number (USD), not {raw!r}.") from None

        def when(name: str) -> datetime | None:
            raw = text(name)
            if raw is None:
                return None
            try:
                return datetime.fromisoformat(raw)
            except ValueError:
                raise ValueError(f"{name} must be an ISO date or time, not {raw!r}.") from None

        self.agent = text("agent")
        self.status = text("status")
        self.phase = text("phase")
        self.q = text("q")
        self.min_usd = number("min_usd")
        self.max_usd = number("max_usd")
        self.since = when("since")
        self.until = when("until")
        raw_limit = text("limit") or "100"
        limit = as_seq(raw_limit)
        if limit is None or not 1 <= limit <= 1000:
            raise ValueError(f"limit must be 1..1000, not {raw_limit!r}.")
        self.limit = limit

    def as_params(self) -> dict[str, Any]:
        def nanos(usd: float | None) -> int | None:
            return None if usd is None else int(usd * 1e9)

        return {
            "agent": self.agent,
            "status": self.status,
            "phase": self.phase,
            "q": None if self.q is None else f"%{self.q}%",
            "min": nanos(self.min_usd),
            "max": nanos(self.max_usd),
            "since": self.since,
            "until": self.until,
            "limit": self.limit,
        }


class Reads:
    """The console's queries over one async connection pool."""

    def __init__(self, database_url: str, *, max_size: int = 8) -> None:
        self.database_url = database_url
        self.pool = AsyncConnectionPool(
            database_url,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """The snapshot's connection inside snapshot(), else one from the pool."""
        pinned = _SNAPSHOT.get()
        if pinned is not None:
            yield pinned
            return
        async with self.pool.connection() as conn:
            yield conn

    async def rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        async with self._connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall())

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """The reads awaited inside (by this task) see one state of the projections: a
        page made of several reads shows no part a projector commit ahead of another.
        They run one after the other, on one connection."""
        if _SNAPSHOT.get() is not None:
            yield
            return
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            token = _SNAPSHOT.set(conn)
            try:
                yield
            finally:
                _SNAPSHOT.reset(token)

    async def show_session(self, session_id: str) -> dict[str, Any]:
        """projections.queries.show_session, in one snapshot."""
        async with self.snapshot():
            rows = {name: await self.rows(sql, (session_id,)) for name, sql in SESSION_SQL.items()}
        return shape_session(session_id, rows)

    async def one(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        rows = await self.rows(sql, params)
        return rows[0] if rows else None

    # ------------------------------------------------------------------ sessions

    async def sessions(self, f: SessionFilter) -> list[dict[str, Any]]:
        rows = await self.rows(
            """
            SELECT s.session_id, s.agent, s.status, s.phase, s.turns, s.last_seq,
                   s.parent_session_id, s.forked_from_session_id, s.forked_at_seq,
                   s.created_at, s.updated_at, s.queued,
                   s.input_tokens + s.output_tokens + s.cache_read_tokens
                       + s.cache_write_tokens AS tokens,
                   s.cost_nanos, c.total_cost_nanos,
                   (SELECT count(*) FROM approvals a WHERE a.session_id = s.session_id
                      AND a.outcome = 'pending') AS pending_approvals
            FROM sessions s
            LEFT JOIN cost_by_session c ON c.session_id = s.session_id
            WHERE (%(agent)s::text IS NULL OR s.agent = %(agent)s)
              AND (%(status)s::text IS NULL OR s.status = %(status)s)
              AND (%(phase)s::text IS NULL OR s.phase = %(phase)s)
              AND (%(q)s::text IS NULL OR s.session_id ILIKE %(q)s)
              AND (%(min)s::bigint IS NULL OR coalesce(c.total_cost_nanos, s.cost_nanos) >= %(min)s)
              AND (%(max)s::bigint IS NULL OR coalesce(c.total_cost_nanos, s.cost_nanos) <= %(max)s)
              AND (%(since)s::timestamptz IS NULL OR s.updated_at >= %(since)s)
              AND (%(until)s::timestamptz IS NULL OR s.created_at <= %(until)s)
            ORDER BY s.updated_at DESC, s.session_id
            LIMIT %(limit)s
            """,
            f.as_params(),
        )
        return [_usd(r, "cost_nanos", "total_cost_nanos") for r in rows]

    async def facets(self) -> dict[str, list[str]]:
        """The agents, statuses and phases present (the filter menus)."""
        out: dict[str, list[str]] = {}
        for col in ("agent", "status", "phase"):
            rows = await self.rows(f"SELECT DISTINCT {col} AS v FROM sessions ORDER BY 1")
            out[col] = [r["v"] for r in rows]
        # A new session can start with any agent a worker serves (published versions).
        served = await self.rows("SELECT DISTINCT agent AS v FROM agent_versions ORDER BY 1")
        out["served"] = [r["v"] for r in served]
        return out

    async def session_row(self, session_id: str) -> dict[str, Any] | None:
        row = await self.one("SELECT * FROM sessions WHERE session_id = %s", (session_id,))
        return None if row is None else _usd(row, "cost_nanos")

    async def events(
        self, session_id: str, *, from_seq: int = 1, limit: int = 1000
    ) -> list[dict[str, Any]]:
        return await self.rows(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = %s AND seq >= %s "
            "ORDER BY seq LIMIT %s",
            (session_id, from_seq, limit),
        )

    async def latest_events(self, session_id: str, *, limit: int) -> list[dict[str, Any]]:
        """The session's last `limit` events, in seq order."""
        rows = await self.rows(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE session_id = %s ORDER BY seq DESC LIMIT %s",
            (session_id, limit),
        )
        return rows[::-1]

    async def offset_before(self, session_id: str, seq: int) -> int:
        """A partition offset at or before the event `seq` of the session (0 if unknown)."""
        row = await self.one(
            "SELECT max(kafka_offset) AS o FROM events WHERE session_id = %s AND seq < %s",
            (session_id, seq),
        )
        return int(row["o"]) + 1 if row and row["o"] is not None else 0

    async def wait_projected(self, session_id: str, seq: int, timeout: float = 5.0) -> bool:
        return await self.wait_all_projected({session_id: seq}, timeout)

    async def wait_all_projected(self, seen: Mapping[str, int], timeout: float = 5.0) -> bool:
        """Wait until the projections hold event `seq` of each session in `seen` (the
        projector may still be writing an event a live page was told of)."""
        if not seen:
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            rows = await self.rows(
                "SELECT session_id, max(seq) AS s FROM events WHERE session_id = ANY(%s) "
                "GROUP BY session_id",
                (list(seen),),
            )
            have = {r["session_id"]: r["s"] for r in rows}
            if all(have.get(sid, -1) >= seq for sid, seq in seen.items()):
                return True
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.05)

    async def tool_calls(self, session_id: str) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT call_id, name, arguments_json, decision, rule, status, child_session_id, "
            "requested_seq, result_seq, latency_ms FROM tool_calls WHERE session_id = %s "
            "ORDER BY requested_seq",
            (session_id,),
        )

    async def llm_calls(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self.rows(
            "SELECT call_id, status, purpose, model, input_tokens, output_tokens, cost_nanos, "
            "latency_ms, requested_seq, completed_seq FROM llm_calls WHERE session_id = %s "
            "ORDER BY requested_seq",
            (session_id,),
        )
        return [_usd(r, "cost_nanos") for r in rows]

    # ------------------------------------------------------------------ approvals

    async def approvals(
        self, *, pending_only: bool = True, session_id: str | None = None
    ) -> list[dict[str, Any]]:
        return await self.rows(
            """
            SELECT a.session_id, a.call_id, a.tool_name, a.outcome, a.requested_seq,
                   a.requested_at, a.expires_at, a.decided_by, a.reason, a.decided_at,
                   s.agent, t.arguments_json, t.rule
            FROM approvals a
            LEFT JOIN sessions s ON s.session_id = a.session_id
            LEFT JOIN tool_calls t ON t.session_id = a.session_id AND t.call_id = a.call_id
            WHERE (NOT %(pending)s OR a.outcome = 'pending')
              AND (%(sid)s::text IS NULL OR a.session_id = %(sid)s)
            ORDER BY a.requested_at, a.session_id, a.call_id
            LIMIT 500
            """,
            {"pending": pending_only, "sid": session_id},
        )

    # ------------------------------------------------------------------ agents, budgets

    async def agent_versions(self) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT v.agent, v.definition_hash, v.definition, v.published_at, "
            "(SELECT count(*) FROM sessions s WHERE s.definition_hash = v.definition_hash) "
            "AS sessions FROM agent_versions v ORDER BY v.agent, v.published_at DESC"
        )

    async def budgets(self) -> list[dict[str, Any]]:
        """Per agent, its newest version's budget and what its sessions spent against it."""
        rows = await self.rows(
            """
            SELECT DISTINCT ON (v.agent) v.agent, v.definition -> 'budget' AS budget
            FROM agent_versions v ORDER BY v.agent, v.published_at DESC
            """
        )
        out = []
        for row in rows:
            budget = row["budget"] or {}
            session_limit = budget.get("session_usd") if isinstance(budget, dict) else None
            top = await self.one(
                "SELECT count(*) AS sessions, coalesce(max(cost_nanos), 0) AS max_nanos, "
                "coalesce(sum(cost_nanos), 0) AS spent_nanos FROM sessions WHERE agent = %s",
                (row["agent"],),
            )
            assert top is not None
            max_usd = int(top["max_nanos"]) / 1e9
            over: list[dict[str, Any]] = []
            if session_limit:
                over = await self.rows(
                    "SELECT session_id, cost_nanos FROM sessions WHERE agent = %s AND "
                    "cost_nanos >= %s ORDER BY cost_nanos DESC LIMIT 20",
                    (row["agent"], int(float(session_limit) * 0.8 * 1e9)),
                )
            out.append(
                {
                    "agent": row["agent"],
                    "budget": budget,
                    "sessions": top["sessions"],
                    "spent_usd": int(top["spent_nanos"]) / 1e9,
                    "max_session_usd": max_usd,
                    "session_limit_usd": session_limit,
                    "alerts": [_usd(r, "cost_nanos") for r in over],
                }
            )
        return out

    # ------------------------------------------------------------------ schedules

    async def schedules(self) -> dict[str, list[dict[str, Any]]]:
        """Scheduled agents (projected by the scheduler, migration 0011) and their
        newest runs."""
        return {
            "schedules": await self.rows(
                "SELECT schedule_id, agent, message, kind, cron, timezone, every_s, at, "
                "session_id, overlap, status, next_slot, last_slot, last_session_id, runs, "
                "skipped, updated_at FROM schedules ORDER BY status, next_slot NULLS LAST, "
                "schedule_id LIMIT 500"
            ),
            "runs": await self.rows(
                "SELECT schedule_id, slot, fired, session_id, overlap, missed, fired_at, "
                "late_ms FROM schedule_runs ORDER BY fired_at DESC LIMIT 100"
            ),
        }

    # ------------------------------------------------------------------ operations

    async def projector_positions(self) -> list[dict[str, Any]]:
        return await self.rows(
            "SELECT consumer, topic, partition, next_offset, stopped_offset, stopped_reason, "
            "(SELECT count(*) FROM projection_quarantine q WHERE q.consumer = o.consumer "
            " AND q.topic = o.topic AND q.kafka_partition = o.partition) AS quarantined "
            "FROM projector_offsets o ORDER BY consumer, topic, partition"
        )
