"""Admissions of shared rate limits (agents.ratelimit: `per = "agent"` / `"client"`):
the counters in Postgres (table rate_admissions, migration 0023), asked by the effect
runner for each AdmissionEffect, and the tokens of completed LLM calls recorded there.

Rules:
- One transaction per admission, serialised per limit key by a transaction advisory
  lock (`pg_advisory_xact_lock` on a 64-bit hash of the key): every worker process sees
  the same window, and two admissions of one key never both take the last place.
- The window slides over Postgres's clock (`clock_timestamp()` after the lock): one
  clock for every process, so no worker's skew moves the limit.
- Idempotent: each admission is a row keyed by (limit key, request id), inserted with
  ON CONFLICT DO NOTHING, and a re-run (a crash, a takeover) reads the row it finds and
  answers the same — admitted or limited, counted once. Limited answers are stored too
  (not counted), so that a re-run does not turn a rejection into an admission.
- Tokens: a completed LLM call of a session whose agent has a shared tokens_per_minute
  limit is a row (key, `llm:<call id>`, its tokens); admission sums them in the window.
- One statement per admission (the migration's function turnlog_admit), or per batch of
  a key's admissions that waited while the previous batch was asked (turnlog_admit_many),
  and the same cost however full the window: the key's running totals (rate_counters)
  are kept under its lock — an admission adds itself, a call its tokens, and the rows
  that left the window are taken off as the next admission finds them, each once.
- Old rows go: now and then (1 admission in 64) the key's rows older than
  RETENTION_FACTOR windows (at least MIN_RETENTION_S) are deleted, long after a re-run
  could ask.
- Fail closed: when Postgres cannot be asked, the message is not admitted (its reason
  says so) rather than let through unlimited.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agents.effects import AdmissionEffect
from agents.events import AdmissionRequested, CompleteAdmission, CompleteLlmCall
from agents.ratelimit import admission_key
from agents.registry import AgentRegistry
from agents.state import SessionState
from streams.logs import get_logger

__all__ = [
    "APPLICATION_NAME",
    "MAX_BATCH",
    "MIN_RETENTION_S",
    "RETENTION_FACTOR",
    "AdmissionStore",
    "PostgresAdmissions",
    "count_tokens",
    "limit_reason",
    "run_admission",
]

APPLICATION_NAME = "turnlog-admissions"
RETENTION_FACTOR = 10
MIN_RETENTION_S = 600.0

# One round trip per admission: the migration's function does the lock, the stored
# answer, the window, the verdict, the row and the pruning in one statement.
_ADMIT_MANY = "SELECT * FROM turnlog_admit_many(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
# The most admissions of one key asked in one statement.
MAX_BATCH = 256
# (session id, request, waited ms, final, the caller's future): one waiting admission.
_Waiting = tuple[str, AdmissionRequested, int, bool, "asyncio.Future[CompleteAdmission]"]
_TOKENS = "SELECT turnlog_count_tokens(%s, %s, %s, %s, %s)"


class AdmissionStore:
    """The seam the effect runner uses (a Postgres store, or a test's in-memory one).
    `stats`: counters the worker's metrics export (turnlog_admissions_<key>_total)."""

    stats: dict[str, int]

    async def admit(self, session_id: str, req: AdmissionRequested) -> CompleteAdmission:
        raise NotImplementedError

    async def record_tokens(
        self, key: str, call_id: str, tokens: int, session_id: str, client: str | None
    ) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


def limit_reason(
    name: str, per: str, used: int, value: int, unit: str, window_ms: int, retry_ms: int
) -> str:
    """The reason a limited message carries: the limit's name first (as per-session
    limits' reasons), then what the window holds and when to retry."""
    return (
        f"{name} ({per}) exceeded: {used} {unit} in the last {window_ms / 1000:g} s, the "
        f"agent's limit is {value} per window for every session of the {per.split()[-1]}; "
        f"retry after {retry_ms / 1000:.3f} s."
    )


class PostgresAdmissions(AdmissionStore):
    """The counters in table rate_admissions, through a small connection pool opened on
    first use (a worker none of whose agents has a shared limit never connects)."""

    def __init__(
        self,
        database_url: str,
        *,
        max_connections: int = 4,
        connect_timeout_s: int = 5,
        timeout_s: float = 5.0,
    ) -> None:
        self._url = database_url
        self._max = max_connections
        self._connect_timeout = connect_timeout_s
        self._timeout = timeout_s
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._log = get_logger(component="admissions")
        self.stats = {"admitted": 0, "limited": 0, "errors": 0, "waits": 0}
        # Per (key, window, limits): the admissions waiting for the next batch, and the
        # task asking the current one.
        self._pending: dict[tuple[str, int, int | None, int | None], list[_Waiting]] = {}
        self._leaders: dict[tuple[str, int, int | None, int | None], asyncio.Task[None]] = {}

    async def _connection(self) -> Any:
        from psycopg_pool import AsyncConnectionPool

        async with self._opening:
            if self._pool is None:
                pool = AsyncConnectionPool(
                    self._url,
                    min_size=1,
                    max_size=self._max,
                    kwargs={
                        "autocommit": True,  # one statement per admission: its transaction
                        "connect_timeout": self._connect_timeout,
                        # Named in pg_stat_activity (ops; bench/rate_limits_shared.py).
                        "application_name": APPLICATION_NAME,
                    },
                    open=False,
                )
                try:
                    await pool.open(wait=True, timeout=self._connect_timeout)
                except BaseException:
                    await pool.close()  # its workers would go on trying to connect
                    raise
                self._pool = pool
        return self._pool.connection(timeout=self._timeout)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def admit(self, session_id: str, req: AdmissionRequested) -> CompleteAdmission:
        import psycopg

        started = time.monotonic()
        deadline = started + req.max_wait_ms / 1000 if req.on_limit == "queue" else started
        try:
            while True:
                waited_ms = int((time.monotonic() - started) * 1000)
                final = time.monotonic() >= deadline
                async with asyncio.timeout(self._timeout):
                    outcome = await self._once(session_id, req, waited_ms, final)
                if outcome.admitted or final or outcome.limit is None:
                    break
                # Queued: wait until the window frees a place (or the wait runs out).
                self.stats["waits"] += 1
                pause = min(outcome.retry_after_ms / 1000, deadline - time.monotonic())
                await asyncio.sleep(max(pause, 0.001))
        except (psycopg.Error, TimeoutError, OSError) as exc:
            self.stats["errors"] += 1
            # The error's type only: its message could carry the URL (a secret).
            self._log.warning("admission.failed", session_id=session_id, error=type(exc).__name__)
            return CompleteAdmission(
                req.admission_id,
                False,
                "rate_limit.admission",
                f"rate_limit.admission: the shared rate-limit counters could not be asked "
                f"({type(exc).__name__}); the message was not admitted, retry later.",
            )
        self.stats["admitted" if outcome.admitted else "limited"] += 1
        return outcome

    async def _once(
        self, session_id: str, req: AdmissionRequested, waited_ms: int, final: bool
    ) -> CompleteAdmission:
        """The stored answer, or a new one (stored unless it is a limited answer that a
        queued admission will ask again). Admissions of one key go one batch at a time
        from this process: the ones that arrive while a batch is asked wait for the
        next, which asks them all in one statement (turnlog_admit_many) — rather than
        each holding a connection to wait on the key's advisory lock."""
        group = (req.key, req.window_ms, req.requests_per_minute, req.tokens_per_minute)
        fut: asyncio.Future[CompleteAdmission] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(group, []).append((session_id, req, waited_ms, final, fut))
        if group not in self._leaders:
            self._leaders[group] = asyncio.create_task(self._lead(group))
        return await fut

    async def _lead(self, group: tuple[str, int, int | None, int | None]) -> None:
        try:
            while pending := self._pending.pop(group, None):
                batch, rest = pending[:MAX_BATCH], pending[MAX_BATCH:]
                if rest:
                    self._pending[group] = rest
                try:
                    outcomes = await self._ask(group, batch)
                except BaseException as exc:
                    for *_, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (*_, fut), outcome in zip(batch, outcomes, strict=True):
                    if not fut.done():
                        fut.set_result(outcome)
        finally:
            del self._leaders[group]
            # Stopped with admissions still waiting (the loop shutting down): they fail
            # rather than wait for a batch no one will ask.
            for *_, fut in self._pending.pop(group, ()):
                if not fut.done():
                    fut.set_exception(OSError("the admission batch stopped"))

    async def _ask(
        self, group: tuple[str, int, int | None, int | None], batch: list[_Waiting]
    ) -> list[CompleteAdmission]:
        key, window_ms, rpm, tpm = group
        keep_ms = max(window_ms * RETENTION_FACTOR, int(MIN_RETENTION_S * 1000))
        conn_cm = await self._connection()
        async with conn_cm as conn:
            cur = await conn.execute(
                _ADMIT_MANY,
                (
                    key,
                    [w[1].admission_id for w in batch],
                    window_ms,
                    rpm,
                    tpm,
                    [w[3] for w in batch],
                    [w[2] for w in batch],
                    [w[0] for w in batch],
                    [w[1].client for w in batch],
                    keep_ms,
                ),
            )
            rows = await cur.fetchall()
        per = "per agent" if key.startswith("agent:") else "per client"
        out: list[CompleteAdmission] = []
        for (_, req, *_), row in zip(batch, rows, strict=True):
            _entry, admitted, name, used, value, retry_ms, waited, _stored = row
            if admitted:
                out.append(CompleteAdmission(req.admission_id, True, waited_ms=waited))
                continue
            unit = "messages" if name == "rate_limit.requests_per_minute" else "tokens"
            reason = limit_reason(name, per, used, value, unit, window_ms, retry_ms)
            out.append(CompleteAdmission(req.admission_id, False, name, reason, retry_ms, waited))
        return out

    async def record_tokens(
        self, key: str, call_id: str, tokens: int, session_id: str, client: str | None
    ) -> None:
        import psycopg

        try:
            conn_cm = await self._connection()
            async with asyncio.timeout(self._timeout), conn_cm as conn:
                await conn.execute(_TOKENS, (key, f"llm:{call_id}", tokens, session_id, client))
        except (psycopg.Error, TimeoutError, OSError) as exc:
            self.stats["errors"] += 1
            self._log.warning("admission.tokens_failed", call_id=call_id, error=type(exc).__name__)


async def run_admission(
    store: AdmissionStore | None, session_id: str, effect: AdmissionEffect
) -> CompleteAdmission:
    """The outcome of one admission effect. No store configured (no DATABASE_URL): not
    admitted, saying so — a shared limit never silently becomes no limit."""
    if store is None:
        return CompleteAdmission(
            effect.effect_id,
            False,
            "rate_limit.admission",
            "rate_limit.admission: this worker has no database for shared rate limits "
            "(DATABASE_URL); the message was not admitted.",
        )
    return await store.admit(session_id, effect.requested)


async def count_tokens(
    store: AdmissionStore | None,
    registry: AgentRegistry,
    state: SessionState,
    session_id: str,
    outcome: CompleteLlmCall,
) -> None:
    """Record a completed call's tokens under its session's shared tokens_per_minute
    limit (keyed by the session's agent, or the client it started with)."""
    if store is None or not outcome.usage.total_tokens:
        return
    info = registry.pinned(state.agent, state.definition_hash)
    limit = info.definition.rate_limit if info is not None else None
    if limit is None or not limit.shared or limit.tokens_per_minute is None:
        return
    client = state.client or None
    key = admission_key(limit, state.agent, client)
    await store.record_tokens(key, outcome.call_id, outcome.usage.total_tokens, session_id, client)
