"""The response cache's store: answers of LLM calls of agents with [agents.X.cache], in
Postgres (table response_cache, migration 0018), read and written by the effect runner.

Why Postgres and not a compacted Kafka topic: a lookup is a point read by key with an age
condition, answered by the primary key at once; a topic would have to be read whole
into every worker process's memory before its first lookup (and kept there), while one
table is shared by every worker, survives their restarts, expires by age in the query,
and is visible in SQL beside the llm_calls it saves. The cache is not part of the log:
a hit goes back to the core as an ordinary outcome (CompleteLlmCall with `cached_from`
and zero usage), so the log records which answer was reused and replay never reads
this table.

Rules:
- The cache only saves money; it never costs an answer. A lookup or a write that fails
  (database down, wrong credentials) is logged and the call goes to the model.
- What is stored is what the core would record: an answer an output guardrail blocks is
  not stored, one it redacts is stored redacted — the table holds nothing the log may
  not. Only complete answers are stored (end_turn, tool_use, stop_sequence): a cut-off,
  refused or paused answer is the model's of the moment, not one to serve again.
- A miss costs one indexed read (bench/response_cache.py measures it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, Protocol

from agents.definitions import AgentDefinition
from agents.effects import LlmCallEffect
from agents.events import CompleteLlmCall, ThinkingBlock, ToolUse, Usage
from agents.guardrails import check
from agents.llm import StopReason
from agents.response_cache import cache_key
from streams.logs import get_logger

__all__ = [
    "STORED_STOPS",
    "CachedAnswer",
    "PostgresResponseCache",
    "ResponseCache",
    "answer_from_cache",
    "remember_answer",
]

STORED_STOPS = frozenset({StopReason.END_TURN, StopReason.TOOL_USE, StopReason.STOP_SEQUENCE})


class CachedAnswer:
    """One stored answer and the call that paid for it."""

    __slots__ = ("answer", "call_id")

    def __init__(self, call_id: str, answer: dict[str, Any]) -> None:
        self.call_id = call_id
        self.answer = answer

    def outcome(self, call_id: str, latency_ms: int) -> CompleteLlmCall:
        """The outcome reported for call `call_id`: the answer, zero usage, cached_from."""
        a = self.answer
        return CompleteLlmCall(
            call_id=call_id,
            model=a["model"],
            text=a["text"],
            tool_uses=tuple(ToolUse(u[0], u[1], u[2]) for u in a.get("tool_uses", ())),
            stop_reason=a["stop_reason"],
            usage=Usage(),
            latency_ms=latency_ms,
            thinking=tuple(ThinkingBlock(b[0], b[1], b[2], b[3]) for b in a.get("thinking", ())),
            cached_from=self.call_id,
        )


class ResponseCache(Protocol):
    """The seam the effect runner uses (a fake in tests would implement the same)."""

    async def lookup(self, key: str, ttl_s: float) -> CachedAnswer | None: ...

    async def store(
        self,
        key: str,
        *,
        model: str,
        request_digest: str,
        answer: dict[str, Any],
        session_id: str,
        call_id: str,
        usage: Usage,
    ) -> None: ...


_LOOKUP = (
    "SELECT call_id, answer FROM response_cache WHERE cache_key = %s "
    "AND created_at > now() - make_interval(secs => %s)"
)
_STORE = (
    "INSERT INTO response_cache (cache_key, model, request_digest, answer, session_id, "
    "call_id, input_tokens, output_tokens) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (cache_key) DO UPDATE SET model = EXCLUDED.model, "
    "request_digest = EXCLUDED.request_digest, answer = EXCLUDED.answer, "
    "session_id = EXCLUDED.session_id, call_id = EXCLUDED.call_id, "
    "input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens, "
    "created_at = now()"
)


class PostgresResponseCache:
    """The store in table response_cache. One connection, opened on first use (a worker
    none of whose agents caches never connects), reopened after a failure. A lookup or a
    write that takes longer than `timeout_s` (a database that hangs) counts as failed:
    the call goes to the model rather than wait."""

    def __init__(
        self, database_url: str, *, connect_timeout_s: int = 5, timeout_s: float = 2.0
    ) -> None:
        self._url = database_url
        self._timeout = connect_timeout_s
        self._query_timeout = timeout_s
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._log = get_logger(component="response-cache")
        self.stats = {"hits": 0, "misses": 0, "errors": 0}

    async def _execute(self, query: str, params: tuple[Any, ...]) -> Any:
        import psycopg

        async with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._url, connect_timeout=self._timeout, autocommit=True
                    )
                async with asyncio.timeout(self._query_timeout):
                    cur = await self._conn.execute(query, params)
                    return await cur.fetchone() if cur.description else None
            except (psycopg.Error, TimeoutError) as exc:
                self.stats["errors"] += 1
                # The error's type only: its message could carry the URL (a secret).
                self._log.warning("response_cache.unavailable", error=type(exc).__name__)
                if self._conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        await self._conn.close()
                self._conn = None
                return None

    async def lookup(self, key: str, ttl_s: float) -> CachedAnswer | None:
        row = await self._execute(_LOOKUP, (key, ttl_s))
        if row is None:
            self.stats["misses"] += 1
            return None
        self.stats["hits"] += 1
        return CachedAnswer(row[0], row[1])

    async def store(
        self,
        key: str,
        *,
        model: str,
        request_digest: str,
        answer: dict[str, Any],
        session_id: str,
        call_id: str,
        usage: Usage,
    ) -> None:
        from psycopg.types.json import Jsonb

        params = (
            key,
            model,
            request_digest,
            Jsonb(answer),
            session_id,
            call_id,
            usage.input_tokens,
            usage.output_tokens,
        )
        await self._execute(_STORE, params)

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
            self._conn = None


async def answer_from_cache(
    cache: ResponseCache | None, definition: AgentDefinition | None, effect: LlmCallEffect
) -> CompleteLlmCall | None:
    """The cached answer for `effect`, when its agent caches and one is fresh; else None."""
    if cache is None or definition is None or definition.cache is None:
        return None
    started = time.monotonic()
    hit = await cache.lookup(cache_key(effect.model, effect.request_digest), definition.cache.ttl_s)
    if hit is None:
        return None
    return hit.outcome(effect.effect_id, int((time.monotonic() - started) * 1000))


async def remember_answer(
    cache: ResponseCache | None,
    definition: AgentDefinition | None,
    effect: LlmCallEffect,
    session_id: str,
    outcome: CompleteLlmCall,
) -> None:
    """Store `outcome` (the model's answer to `effect`) when its agent caches."""
    if cache is None or definition is None or definition.cache is None:
        return
    if outcome.stop_reason not in STORED_STOPS or outcome.cached_from is not None:
        return
    verdict = check(definition.guardrails, "output", outcome.text)
    if verdict.blocked is not None:
        return
    answer = {
        "model": outcome.model,
        "text": verdict.text,
        "stop_reason": outcome.stop_reason,
        "tool_uses": [[u.call_id, u.name, u.arguments_json] for u in outcome.tool_uses],
        "thinking": [
            [b.thinking, b.signature, b.redacted_data, b.provider] for b in outcome.thinking
        ],
    }
    await cache.store(
        cache_key(effect.model, effect.request_digest),
        model=effect.model,
        request_digest=effect.request_digest,
        answer=json.loads(json.dumps(answer)),
        session_id=session_id,
        call_id=outcome.call_id,
        usage=outcome.usage,
    )
