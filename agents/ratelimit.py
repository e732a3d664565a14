"""Rate limits: how many messages and LLM tokens a session may take per minute.

Rule: a limit is a pure verdict on data the log already holds. The state keeps a window
of the session's recent activity — when each accepted message arrived and how many
tokens each completed LLM call used — stamped with the decision's time (the worker's
ingest time, recorded on every event as occurred_at), never a clock. A SendMessage over
a limit is answered with RequestRejected whose reason starts with the limit's name
(`rate_limit.requests_per_minute`, `rate_limit.tokens_per_minute`) and says the limit
and when to retry; replaying the same log decides the same. Nothing here does IO.

Agent file:

    [agents.assistant.rate_limit]
    requests_per_minute = 30     # messages accepted per session per sliding minute
    tokens_per_minute = 40000    # LLM tokens (input + output + cache) per session per minute
    per = "session"              # or "agent" / "client": shared, counted in Postgres
    window_s = 60                # the sliding window of a shared limit (seconds)
    on_limit = "reject"          # or "queue": wait for the window, up to max_wait_s
    max_wait_s = 30

Scope: a session lives on one partition, so one worker owns it and its window is exact
and deterministic (`per = "session"`, the default: decided here, no Postgres).

Shared limits (`per = "agent"`: every session of the agent; `per = "client"`: every
session's messages by one requester identity, Request.client, the messages without one
sharing the key `client:-`) need a counter no one session's log holds. The core cannot
see other sessions, so a SendMessage of such an agent does not start its turn at once:
the decision records AdmissionRequested (the message, guarded and redacted as a queued
one is, its limit key, the limits), the session's phase is `admitting` (live: a worker
that takes the partition over restarts the admission), and the shell runs an admission
effect
(streams.admission) that asks Postgres; its outcome comes back as CompleteAdmission and is
recorded as AdmissionDecided. Admitted: the turn starts. Limited: the message is
answered with AdmissionDecided(admitted = false) whose reason starts with the limit's
name (`rate_limit.requests_per_minute (per agent)`) and says when to retry; the client,
the CLI and the HTTP API report it as rejected with that reason (not a RequestRejected:
a rejection changes nothing by contract, this answer ends a pending admission).

Where the counters live: table rate_admissions (migration 0023), one row per (limit key,
request id) inserted with ON CONFLICT DO NOTHING under a per-key transaction advisory
lock (table rate_counters keeps each key's running totals, so an admission costs the
same however full the window), so admissions of one key are serialised across every
worker process, and a re-run effect (a crash, a partition takeover) finds its row and
gets the same answer: a message is never counted twice. A message whose admission was
counted and then cancelled stays counted (the window holds what was admitted). The
window slides over Postgres's clock (one clock for all processes): `window_s` seconds
(default 60; shorter for tests). Tokens per minute: the effect runner records each
completed LLM call's tokens under its session's key (the agent, or the client the
session started with; idempotent by call id) and admission counts them. Rows older than
ten windows (at least ten minutes) are pruned as admissions go.

At the limit: `on_limit = "reject"` (default) answers at once; `"queue"` holds the
admission (the effect asks again when the window frees a place, up to `max_wait_s`, then
admits or rejects). While it waits, the session shows it: its last event is the
AdmissionRequested (rendered "waits for admission ... (queue)", and the state's pending
admission), and AdmissionDecided.waited_ms says how long it waited. A CancelTurn or
CloseSession while an admission is pending ends it (AdmissionDecided, admitted = false,
no limit; the effect is stopped). The cost: one extra hop per message (the admission's
outcome goes through the requests topic) plus one Postgres statement, batched per key
(bench/rate_limits_shared.py, BENCHMARKS.md "Rate limits"). A message that arrives while
a turn runs or an admission is pending is rejected for such an agent (it does not queue:
a queued message would start its turn without an admission).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "LATER_RATE_DEFAULTS",
    "RATE_WINDOW",
    "RateEntry",
    "RateLimit",
    "RateVerdict",
    "admission_key",
    "check_rate",
    "record_rate",
]

RATE_WINDOW = timedelta(minutes=1)
_WINDOW_US = 60_000_000
_UTC_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# (time in µs since the epoch, messages, tokens): one accepted message is (t, 1, 0), one
# completed LLM call (t, 0, its tokens). Kept in the session state, oldest first.
RateEntry = tuple[int, int, int]


class RateLimit(BaseModel):
    """An agent's limits per session (see the module docstring); None: no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    per: Literal["session", "agent", "client"] = "session"
    window_s: float = Field(default=60.0, gt=0, le=86_400)
    on_limit: Literal["reject", "queue"] = "reject"
    max_wait_s: float = Field(default=30.0, ge=0, le=3_600)

    @property
    def shared(self) -> bool:
        """Counted across sessions, in Postgres (an admission effect), not in the core."""
        return self.per != "session"


# Fields added after per-session limits shipped: left out of the definition hash while
# they hold their default (agents.definitions.definition_hash).
LATER_RATE_DEFAULTS: dict[str, object] = {
    "window_s": 60.0,
    "on_limit": "reject",
    "max_wait_s": 30.0,
}


def admission_key(limit: RateLimit, agent: str, client: str | None) -> str:
    """The counter a shared limit's admissions go to: `agent:<name>` or `client:<id>`
    (`client:-`: messages that state no client)."""
    if limit.per == "agent":
        return f"agent:{agent}"
    return f"client:{client or '-'}"


class RateVerdict(BaseModel):
    """A message over a limit: which limit, its value, what the window holds, and when
    a retry is accepted."""

    model_config = ConfigDict(frozen=True)

    limit: Literal["rate_limit.requests_per_minute", "rate_limit.tokens_per_minute"]
    value: int
    used: int
    retry_at: datetime
    retry_after_s: float

    def reason(self) -> str:
        unit = "messages" if self.limit.endswith("requests_per_minute") else "tokens"
        return (
            f"{self.limit} exceeded: {self.used} {unit} in the last minute, the agent's "
            f"limit is {self.value} per minute per session; retry after "
            f"{self.retry_after_s:.3f} s (at {self.retry_at.isoformat()})."
        )


def _us(t: datetime) -> int:
    # Microseconds since the epoch, exact (the events carry microsecond times).
    delta = t - _UTC_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _live(window: tuple[RateEntry, ...], now_us: int) -> tuple[RateEntry, ...]:
    """The entries still inside the minute before `now_us`."""
    start = now_us - _WINDOW_US
    i = 0
    n = len(window)
    while i < n and window[i][0] <= start:
        i += 1
    return window[i:] if i else window


def record_rate(
    window: tuple[RateEntry, ...], at: datetime, messages: int, tokens: int
) -> tuple[RateEntry, ...]:
    """`window` with one more entry at `at`, entries a minute old dropped (evolve)."""
    now_us = _us(at)
    return (*_live(window, now_us), (now_us, messages, tokens))


def check_rate(
    limit: RateLimit | None, window: tuple[RateEntry, ...], now: datetime
) -> RateVerdict | None:
    """The verdict on one more message at `now`: None when it is within every limit (a
    shared limit is not the session's to judge: its admission effect decides)."""
    if limit is None or limit.per != "session":
        return None
    now_us = _us(now)
    live = _live(window, now_us)
    rpm = limit.requests_per_minute
    if rpm is not None:
        times = [t for t, m, _ in live if m]
        if len(times) >= rpm:
            # The message is accepted once enough of the oldest ones left the window.
            free_at = times[len(times) - rpm] + _WINDOW_US
            return _verdict("rate_limit.requests_per_minute", rpm, len(times), free_at, now_us)
    tpm = limit.tokens_per_minute
    if tpm is not None:
        used = sum(tok for _, _, tok in live)
        if used >= tpm:
            left = used
            free_at = now_us
            for t, _, tok in live:
                left -= tok
                if tok and left < tpm:
                    free_at = t + _WINDOW_US
                    break
            return _verdict("rate_limit.tokens_per_minute", tpm, used, free_at, now_us)
    return None


def _verdict(
    limit: Literal["rate_limit.requests_per_minute", "rate_limit.tokens_per_minute"],
    value: int,
    used: int,
    free_at_us: int,
    now_us: int,
) -> RateVerdict:
    wait_us = max(free_at_us - now_us, 1)
    return RateVerdict(
        limit=limit,
        value=value,
        used=used,
        retry_at=_UTC_EPOCH + timedelta(microseconds=now_us + wait_us),
        retry_after_s=wait_us / 1_000_000,
    )
