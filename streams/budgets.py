"""The budget watcher: budgets across sessions — per agent, per project and per client,
per UTC day.

Rule: the core decides one session at a time, and the sessions of an agent live on many
partitions, so no decision sees their total. Postgres does: the projector's cost_ledger
holds every priced call once, with the log's time. The watcher polls it every
`interval_s`, and for each agent whose budget sets `day_usd` and each
`[projects.<name>]` (the sessions of the agents whose definition says
`project = "<name>"`) and each `[clients.<name>]` (the sessions a requester identity
started: sessions.client, Request.client of their first message; `[clients."*"]` gives
every other client with spend that day a budget of its own) it sums the cost of the
day's calls of the scope's sessions:

- every `alert_at` threshold the spend has reached is a row of budget_alerts (scope
  agent | project | client, the day as its period): the row's key makes it once per threshold per
  scope and period, however often the watcher polls or restarts. A new row is logged as
  `budget.alert` (a warning) and counted (turnlog_budget_alerts_total);
- at or over the limit, every session of the scope that is not closed and has not yet
  recorded the block (budget_limits) is sent EnforceBudget, keyed by its session id like
  any client request, with a request id derived from the scope, the day and the session
  (a repeat is a duplicate the session rejects). From then on the session refuses new
  messages naming the limit, and a running turn fails before its next LLM call, until
  the day ends (fail closed once known).

Overshoot: between the spend crossing the limit and a session's enforcement, its calls
go on — for the projector's lag, up to one poll interval, and the time the session worker
takes to decide the request; a call already in flight is charged when it answers. A
session that starts after the enforcement is blocked from the next poll on. README
("Budgets across sessions") and tests/integration/test_controls_budget_live.py measure it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter
from psycopg import AsyncConnection

from agents.budget import ProjectBudget, parse_projects, thresholds
from agents.events import EnforceBudget, Request
from agents.registry import AgentRegistry
from schemas.codec import encode_request
from streams.partitioning import partition_for

__all__ = [
    "ANY_CLIENT",
    "CLIENT",
    "BudgetWatcher",
    "Scope",
    "WatchConfig",
    "load_scopes",
    "scopes_of",
]

_log = structlog.get_logger("turnlog.budgets")


@dataclass(frozen=True, slots=True)
class Scope:
    """One budget across sessions: `kind` agent | project | client, its `key`, the
    `agents` whose sessions count (a client's: the sessions it started, whatever their
    agent; `key` "*" is the template every unnamed client's budget is made from), the
    day's `limit` in nano-dollars and the alert fractions."""

    kind: str
    key: str
    agents: tuple[str, ...]
    limit: int
    alert_at: tuple[float, ...]


def scopes_of(
    registry: AgentRegistry,
    projects: Mapping[str, ProjectBudget],
    clients: Mapping[str, ProjectBudget] | None = None,
) -> list[Scope]:
    """The budgets across sessions that `registry` (served definitions), `projects` and
    `clients` declare: one per agent with budget.day_usd, one per project, one per
    client (and the "*" template)."""
    found: list[Scope] = []
    members: dict[str, list[str]] = {name: [] for name in projects}
    for name in registry.names():
        defn = registry.get(name)
        if defn.budget.day_nanos is not None:
            found.append(Scope("agent", name, (name,), defn.budget.day_nanos, defn.budget.alert_at))
        if defn.project is not None and defn.project in members:
            members[defn.project].append(name)
    for key, budget in projects.items():
        found.append(
            Scope("project", key, tuple(sorted(members[key])), budget.day_nanos, budget.alert_at)
        )
    for key, budget in (clients or {}).items():
        found.append(Scope(CLIENT, key, (), budget.day_nanos, budget.alert_at))
    return found


CLIENT = "client"
ANY_CLIENT = "*"


@dataclass(frozen=True, slots=True)
class WatchConfig:
    bootstrap: str
    database_url: str
    requests_topic: str
    interval_s: float = 5.0


_SPENT = """
SELECT COALESCE(sum(c.cost_nanos), 0)::bigint
FROM cost_ledger c JOIN sessions s ON s.session_id = c.session_id
WHERE s.agent = ANY(%(agents)s) AND c.occurred_at >= %(start)s AND c.occurred_at < %(end)s
"""
# A client's spend: the calls of the sessions it started (sessions.client), any agent.
_SPENT_BY_CLIENT = """
SELECT s.client, COALESCE(sum(c.cost_nanos), 0)::bigint
FROM cost_ledger c JOIN sessions s ON s.session_id = c.session_id
WHERE s.client IS NOT NULL AND c.occurred_at >= %(start)s AND c.occurred_at < %(end)s
GROUP BY s.client
"""
_ALERT = """
INSERT INTO budget_alerts
    (scope, scope_key, period, unit, threshold, fraction, spent, budget_limit, agent,
     alerted_at)
VALUES (%(scope)s, %(key)s, %(period)s, 'usd', %(threshold)s, %(fraction)s, %(spent)s,
        %(limit)s, %(agent)s, %(now)s)
ON CONFLICT DO NOTHING
RETURNING threshold
"""
_UNBLOCKED = """
SELECT s.session_id FROM sessions s
WHERE s.agent = ANY(%(agents)s) AND s.status <> 'closed'
  AND NOT EXISTS (
    SELECT 1 FROM budget_limits b
    WHERE b.session_id = s.session_id AND b.scope = %(scope)s AND b.scope_key = %(key)s
      AND b.period = %(period)s)
ORDER BY s.session_id
"""
_UNBLOCKED_CLIENT = """
SELECT s.session_id FROM sessions s
WHERE s.client = %(key)s AND s.status <> 'closed'
  AND NOT EXISTS (
    SELECT 1 FROM budget_limits b
    WHERE b.session_id = s.session_id AND b.scope = %(scope)s AND b.scope_key = %(key)s
      AND b.period = %(period)s)
ORDER BY s.session_id
"""


@dataclass(slots=True)
class BudgetWatcher:
    """Polls the totals, records alerts, enforces spent budgets (see the module rule).
    `clock`: the watcher's time (the day it judges); tests pass their own."""

    config: WatchConfig
    scopes: list[Scope]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    stats: dict[str, int] = field(default_factory=lambda: {"polls": 0, "alerts": 0, "enforced": 0})
    _sent: set[str] = field(default_factory=set)
    _producer: AIOKafkaProducer | None = None
    _partitions: int = 0
    _alerts: Counter | None = None

    async def start(self) -> None:
        self._alerts = Counter(
            "turnlog_budget_alerts",
            "Soft budget thresholds crossed, by scope and unit.",
            ["scope", "unit"],
            registry=self.registry,
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap, enable_idempotence=True, acks="all"
        )
        await self._producer.start()
        parts = await self._producer.partitions_for(self.config.requests_topic)
        self._partitions = len(parts)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until `stop` is set (or forever); a failed poll is logged and retried."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.poll()
            except Exception as exc:  # the outside world failed: next round
                _log.warning("budgets.poll_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.interval_s)

    async def poll(self) -> list[str]:
        """One round over every scope; returns the sessions sent EnforceBudget."""
        now = self.clock()
        start = datetime.combine(now.date(), time(), tzinfo=UTC)
        end = start + timedelta(days=1)
        period = start.date().isoformat()
        sent: list[str] = []
        async with await AsyncConnection.connect(self.config.database_url) as conn:
            by_client = await self._client_spend(conn, start, end)
            for scope, spent in await self._totals(conn, by_client, start, end):
                await self._alert(conn, scope, period, spent, now)
                if spent >= scope.limit:
                    sent += await self._enforce(conn, scope, period, spent, end, now)
            await conn.commit()
        self.stats["polls"] += 1
        return sent

    async def _client_spend(
        self, conn: AsyncConnection[Any], start: datetime, end: datetime
    ) -> dict[str, int]:
        """The day's spend of every client (only asked when a client budget is set)."""
        if not any(s.kind == CLIENT for s in self.scopes):
            return {}
        cur = await conn.execute(_SPENT_BY_CLIENT, {"start": start, "end": end})
        return {str(r[0]): int(r[1]) for r in await cur.fetchall()}

    async def _totals(
        self,
        conn: AsyncConnection[Any],
        by_client: dict[str, int],
        start: datetime,
        end: datetime,
    ) -> list[tuple[Scope, int]]:
        """Each scope with the day's spend; the "*" client template becomes one scope per
        client with spend that no `[clients.<name>]` names."""
        named = {s.key for s in self.scopes if s.kind == CLIENT and s.key != ANY_CLIENT}
        out: list[tuple[Scope, int]] = []
        for scope in self.scopes:
            if scope.kind == CLIENT:
                if scope.key != ANY_CLIENT:
                    out.append((scope, by_client.get(scope.key, 0)))
                    continue
                for client in sorted(set(by_client) - named):
                    each = Scope(CLIENT, client, (), scope.limit, scope.alert_at)
                    out.append((each, by_client[client]))
                continue
            if not scope.agents:
                continue
            row = await (
                await conn.execute(
                    _SPENT, {"agents": list(scope.agents), "start": start, "end": end}
                )
            ).fetchone()
            out.append((scope, int(row[0]) if row else 0))
        return out

    async def _alert(
        self, conn: AsyncConnection[Any], scope: Scope, period: str, spent: int, now: datetime
    ) -> None:
        for t in thresholds(scope.limit, scope.alert_at):
            if t.amount > spent:
                break
            cur = await conn.execute(
                _ALERT,
                {
                    "scope": scope.kind,
                    "key": scope.key,
                    "period": period,
                    "threshold": t.amount,
                    "fraction": t.fraction,
                    "spent": spent,
                    "limit": scope.limit,
                    "agent": scope.key if scope.kind == "agent" else None,
                    "now": now,
                },
            )
            if await cur.fetchone() is None:
                continue  # alerted before (this poll's predecessor, or another watcher)
            self.stats["alerts"] += 1
            assert self._alerts is not None
            self._alerts.labels(scope.kind, "usd").inc()
            _log.warning(
                "budget.alert",
                scope=scope.kind,
                key=scope.key,
                period=period,
                unit="usd",
                threshold=t.amount,
                fraction=t.fraction,
                spent=spent,
                limit=scope.limit,
            )

    async def _enforce(
        self,
        conn: AsyncConnection[Any],
        scope: Scope,
        period: str,
        spent: int,
        until: datetime,
        now: datetime,
    ) -> list[str]:
        cur = await conn.execute(
            _UNBLOCKED_CLIENT if scope.kind == CLIENT else _UNBLOCKED,
            {"agents": list(scope.agents), "scope": scope.kind, "key": scope.key, "period": period},
        )
        sessions = [r[0] for r in await cur.fetchall()]
        payload = EnforceBudget(scope.kind, scope.key, period, "usd", scope.limit, spent, until)
        sent: list[str] = []
        assert self._producer is not None
        for session_id in sessions:
            request_id = f"budget/{scope.kind}/{scope.key}/{period}/{session_id}"
            if request_id in self._sent:
                continue  # sent; the projector has not recorded it yet
            request = Request(
                request_id=request_id,
                session_id=session_id,
                occurred_at=now,
                payload=payload,
            )
            await self._producer.send_and_wait(
                self.config.requests_topic,
                value=encode_request(request),
                key=session_id.encode(),
                partition=partition_for(session_id, self._partitions),
            )
            self._sent.add(request_id)
            sent.append(session_id)
        if sent:
            self.stats["enforced"] += len(sent)
            _log.warning(
                "budget.enforced",
                scope=scope.kind,
                key=scope.key,
                period=period,
                spent=spent,
                limit=scope.limit,
                sessions=len(sent),
            )
        return sent


def load_scopes(path: str | Path, registry: AgentRegistry) -> list[Scope]:
    """The budgets across sessions of the agent file at `path` (its `[projects.<name>]`
    and `[clients.<name>]` tables and its agents' day_usd), for the agents `registry`
    serves."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".toml":
        data: Any = tomllib.loads(text)
    else:
        import yaml  # only YAML agent files need the parser

        data = yaml.safe_load(text)
    raw = data.get("projects") if isinstance(data, dict) else None
    clients = data.get("clients") if isinstance(data, dict) else None
    return scopes_of(
        registry, parse_projects(raw, str(p)), parse_projects(clients, str(p), "clients")
    )
