"""The response cache's contract: what an agent declares, and what a cached answer is
keyed by. Nothing here does IO (the store is streams.response_cache).

Agent file:

    [agents.assistant.cache]
    ttl_s = 300      # an identical LLM request within 5 minutes is answered from the cache

Rule: the key is the exact request the log records — the requested model and the
request digest (system prompt, tools, messages, max_tokens, temperature, thinking: the
canonical body `LlmRequest.digest` hashes; the digest leaves the model out so that a
fallback serves the same request, so the key adds it back). Two calls share an answer
only when a vendor would have been sent the same bytes. A hit is an input like any
answer: the effect runner reports it as a CompleteLlmCall naming the call that paid for
it (`cached_from`) with zero usage, and the core records it as an LlmCallCompleted with
that `cached_from` and cost 0 — so replay and `--verify` see a recorded answer and need
no cache.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agents.llm import sha256_hex

__all__ = ["MAX_TTL_S", "CacheConfig", "cache_key"]

# A week: a cache entry older than that is a stale answer, not a saving.
MAX_TTL_S = 7 * 24 * 3600


class CacheConfig(BaseModel):
    """An agent's response cache: answers younger than `ttl_s` seconds are reused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ttl_s: float = Field(gt=0, le=MAX_TTL_S)


def cache_key(model: str, request_digest: str) -> str:
    """The cache key of a request to `model` whose recorded digest is `request_digest`."""
    return sha256_hex(f"{model}\n{request_digest}")
