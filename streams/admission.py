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
- Old rows go: every PRUNE_EVERY admissions of a process delete the key's rows older
  than RETENTION_FACTOR windows (at least MIN_RETENTION_S), long after a re-run could ask.
- Fail closed: when Postgres cannot be asked, the message is not admitted (its reason
  says so) rather than let through unlimited.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

from agents.effects import AdmissionEffect
from agents.events import AdmissionRequested, CompleteAdmission, CompleteLlmCall
from agents.ratelimit import admission_key
from agents.registry import AgentRegistry
from agents.state import SessionState
from streams.logs import get_logger

__all__ = [
    "MIN_RETENTION_S",
    "PRUNE_EVERY",
    "RETENTION_FACTOR",
    "AdmissionStore",
    "PostgresAdmissions",
    "count_tokens",
    "limit_reason",
    "run_admission",
]

PRUNE_EVERY = 64
RETENTION_FACTOR = 10
MIN_RETENTION_S = 600.0

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0)), clock_timestamp()"
_FOUND = (
    "SELECT admitted, limit_name, reason, retry_after_ms, waited_ms FROM rate_admissions "
    "WHERE limit_key = %s AND entry_id = %s"
)
_WINDOW = (
    "SELECT count(*) FILTER (WHERE kind = 'message'), coalesce(sum(tokens), 0) "
    "FROM rate_admissions WHERE limit_key = %s AND admitted AND at > %s"
)
# The message whose leaving frees a place: the (n - limit + 1)-th oldest in the window.
_FREES_MESSAGE = (
    "SELECT at FROM rate_admissions WHERE limit_key = %s AND admitted AND kind = 'message' "
    "AND at > %s ORDER BY at OFFSET %s LIMIT 1"
)
_TOKEN_ROWS = (
    "SELECT at, tokens FROM rate_admissions WHERE limit_key = %s AND admitted "
    "AND kind = 'tokens' AND at > %s ORDER BY at"
)
_INSERT = (
    "INSERT INTO rate_admissions (limit_key, entry_id, kind, at, admitted, tokens, "
    "limit_name, reason, retry_after_ms, waited_ms, session_id, client) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_PRUNE = "DELETE FROM rate_admissions WHERE limit_key = %s AND at < %s"


class AdmissionStore:
    """The seam the effect runner uses (a Postgres store, or a test's in-memory one)."""

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
        self._count = 0
        self.stats = {"admitted": 0, "limited": 0, "errors": 0, "waits": 0}

    async def _connection(self) -> Any:
        from psycopg_pool import AsyncConnectionPool

        async with self._opening:
            if self._pool is None:
                pool = AsyncConnectionPool(
                    self._url,
                    min_size=1,
                    max_size=self._max,
                    kwargs={"connect_timeout": self._connect_timeout},
                    open=False,
                )
                await pool.open(wait=True, timeout=self._connect_timeout + 1)
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
        """One transaction: the stored answer, or a new one (stored unless it is a
        limited answer that a queued admission will ask again)."""
        conn_cm = await self._connection()
        async with conn_cm as conn, conn.transaction():
            cur = await conn.execute(_LOCK, (req.key,))
            row = await cur.fetchone()
            now: datetime = row[1]
            cur = await conn.execute(_FOUND, (req.key, req.admission_id))
            found = await cur.fetchone()
            if found is not None:
                return CompleteAdmission(
                    req.admission_id, found[0], found[1], found[2], found[3], found[4]
                )
            window = timedelta(milliseconds=req.window_ms)
            since = now - window
            cur = await conn.execute(_WINDOW, (req.key, since))
            messages, tokens = await cur.fetchone()
            verdict = await self._verdict(conn, req, since, now, window, messages, tokens)
            if verdict is None:
                await conn.execute(
                    _INSERT,
                    (
                        req.key,
                        req.admission_id,
                        "message",
                        now,
                        True,
                        0,
                        None,
                        None,
                        0,
                        waited_ms,
                        session_id,
                        req.client,
                    ),
                )
                outcome = CompleteAdmission(req.admission_id, True, waited_ms=waited_ms)
            else:
                name, reason, retry_ms = verdict
                outcome = CompleteAdmission(
                    req.admission_id, False, name, reason, retry_ms, waited_ms
                )
                if final:
                    await conn.execute(
                        _INSERT,
                        (
                            req.key,
                            req.admission_id,
                            "message",
                            now,
                            False,
                            0,
                            name,
                            reason,
                            retry_ms,
                            waited_ms,
                            session_id,
                            req.client,
                        ),
                    )
            self._count += 1
            if self._count % PRUNE_EVERY == 0:
                keep = max(window * RETENTION_FACTOR, timedelta(seconds=MIN_RETENTION_S))
                await conn.execute(_PRUNE, (req.key, now - keep))
            return outcome

    async def _verdict(
        self,
        conn: Any,
        req: AdmissionRequested,
        since: datetime,
        now: datetime,
        window: timedelta,
        messages: int,
        tokens: int,
    ) -> tuple[str, str, int] | None:
        per = "per agent" if req.key.startswith("agent:") else "per client"
        rpm = req.requests_per_minute
        if rpm is not None and messages >= rpm:
            cur = await conn.execute(_FREES_MESSAGE, (req.key, since, messages - rpm))
            row = await cur.fetchone()
            frees = row[0] + window if row is not None else now
            retry = _ms(frees - now)
            name = "rate_limit.requests_per_minute"
            return (
                name,
                limit_reason(name, per, messages, rpm, "messages", req.window_ms, retry),
                retry,
            )
        tpm = req.tokens_per_minute
        if tpm is not None and tokens >= tpm:
            cur = await conn.execute(_TOKEN_ROWS, (req.key, since))
            left, frees = int(tokens), now
            for at, n in await cur.fetchall():
                left -= n
                if n and left < tpm:
                    frees = at + window
                    break
            retry = _ms(frees - now)
            name = "rate_limit.tokens_per_minute"
            return (
                name,
                limit_reason(name, per, int(tokens), tpm, "tokens", req.window_ms, retry),
                retry,
            )
        return None

    async def record_tokens(
        self, key: str, call_id: str, tokens: int, session_id: str, client: str | None
    ) -> None:
        import psycopg

        try:
            conn_cm = await self._connection()
            async with asyncio.timeout(self._timeout), conn_cm as conn:
                await conn.execute(
                    _INSERT.replace("%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s", _TOKENS),
                    (key, f"llm:{call_id}", tokens, session_id, client),
                )
        except (psycopg.Error, TimeoutError, OSError) as exc:
            self.stats["errors"] += 1
            self._log.warning("admission.tokens_failed", call_id=call_id, error=type(exc).__name__)


_TOKENS = "%s, %s, 'tokens', clock_timestamp(), true, %s, NULL, NULL, 0, 0, %s, %s"


def _ms(delta: timedelta) -> int:
    return max(1, int(delta / timedelta(milliseconds=1)) + 1)


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
