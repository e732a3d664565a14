"""Effect execution: the nondeterministic calls live here, outside the pure core.

Rule of this module: an effect is started only for a fact that is already committed, and
its outcome goes back as a request naming the effect id. Nothing here writes the session
log, so a crash anywhere in this module can at worst leave an effect pending — and pending
effects are re-issued from recovered state (or by the core, past their deadline), while a
duplicate outcome folds once in the core. That is what makes an LLM call's cost count once.

An effect runs once per intention, not once per ownership. A worker that loses a
partition starts none of its effects any more and cancels those in flight (`drop`) —
except calls of tools that are not idempotent: cancelling one mid-run is what would make
its outcome unknown, so it finishes (within its deadline) and reports, and the new owner
folds that outcome. A rebalance that leaves a partition in place leaves its effects
running. A clean stop drains the effects in flight before leaving (`drain`).

A worker that takes a partition over starts the effects it finds pending only after
deciding the inputs already queued (an outcome the previous owner reported folds
first). It does not start a restored LLM call again under the issue the previous owner
may still be running: the core re-issues it (ReissueEffect) and the new issue runs
here, so an answer to the old issue, should one come, is charged instead of being taken
for a duplicate (agents._reissue). It never starts a restored call of a tool that is
not idempotent: it may have run, so the core decides at its deadline (ask a human, or
fail), and the deadline is the previous owner's lease — `_tool` kills a call at its
deadline, so no run of it outlives that instant.

Many effects run at once per process (asyncio tasks, bounded by a semaphore); none of them
blocks the session stream. Within a process each issue of an effect — (session, effect
id, attempt) — runs once: while it runs, and after its outcome was sent until the outcome
folds, a new decision on the same session does not start it again.

An LLM call (or summarize) started right after the commit of the decision that
requested it is handed the LlmRequest that decision built (`sync(..., built)`), whose
digest is the one recorded; any other start (after a restore, a re-issue) rebuilds the
request from the state and verifies its digest before sending it.

The exceptions to the rule are run inside the decision, for the session worker
(streams._partition): calls of inline tools (`run_inline`), and a turn's LLM call whose
model answered here in under half of `inline_llm_ms` lately (`run_llm_inline`). Such an
LLM call is started before its decision commits; if its answer comes within the budget
the worker decides it in the same transaction (`taken`), else it goes on and sync()
reports it after the commit like any outcome (one call either way). A decision that
never commits loses nothing: the next owner decides the input again and calls the model
anew — the same as a crash during an ordinary call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from agents.context import build_llm_request, build_summary_request
from agents.effects import (
    DEFAULT_INLINE_LLM_MS,
    AdmissionEffect,
    ChildSessionEffect,
    CompactionEffect,
    Effect,
    LlmCallEffect,
    ToolCallEffect,
    failure_outcome,
    outcome_request_id,
    pending_effects,
)
from agents.events import (
    ABORTED,
    CompleteCompaction,
    CompleteLlmCall,
    CompleteToolCall,
    FailLlmCall,
    FailToolCall,
    ReissueEffect,
    Request,
    RequestPayload,
    TokenDelta,
)
from agents.llm import LlmRequest
from agents.providers.base import BILLED, STREAM_RESTART, BilledSoFar, Provider, ProviderError
from agents.registry import AgentRegistry
from agents.state import SessionState
from agents.tools import ToolContext, ToolSettings
from agents.tools.registry import ToolRegistry
from agents.toolspecs import REMOTE_AGENT_PREFIX
from schemas.codec import encode_delta, encode_request
from streams.admission import AdmissionStore, count_tokens, run_admission
from streams.logs import get_logger
from streams.partitioning import partition_for
from streams.response_cache import ResponseCache, answer_from_cache, remember_answer
from streams.telemetry import (
    current_traceparent,
    effect_cancelled,
    effect_ended,
    effect_started,
    set_current_traceparent,
)
from streams.topics import COMPRESSION, REQUESTS_MAX_BYTES, TopicNames
from streams.tracing import child_traceparent, headers_with

__all__ = ["EffectRunner", "tool_context"]


# (session id, effect id, attempt): one issue of one effect.
_Key = tuple[str, str, int]
# Set in the task of an LLM call started inline (EffectRunner._call_early).
_EARLY: contextvars.ContextVar[bool] = contextvars.ContextVar("turnlog_early_call", default=False)
# Weight of the newest call in a model's latency (EffectRunner._llm_latency).
_LATENCY_WEIGHT = 0.2


@dataclass(slots=True)
class _Early:
    """An LLM call started inside a decision (EffectRunner.run_llm_inline)."""

    partition: int
    digest: str
    task: asyncio.Task[tuple[RequestPayload, str | None]]  # (outcome, its span's traceparent)


def _now() -> datetime:
    return datetime.now(UTC)


_LlmBacked = LlmCallEffect | CompactionEffect
# How the request of an LLM-backed effect is rebuilt from the state.
_Build = Callable[[SessionState, Any, AgentRegistry], LlmRequest]


def tool_context(
    settings: ToolSettings | None, session_id: str, effect: ToolCallEffect
) -> ToolContext:
    return ToolContext(
        session_id=session_id,
        call_id=effect.effect_id,
        settings=settings if settings is not None else ToolSettings(),
        # The effect id names the intention: every attempt (a re-issue after a crash or a
        # partition move) carries the same key, so the other side can act once.
        idempotency_key=effect.effect_id,
    )


def _holds_unknown(effect: Effect, registry: AgentRegistry) -> bool:
    """A call of a tool that is not idempotent: never re-run blindly, never cancelled."""
    return isinstance(effect, ToolCallEffect) and not registry.is_idempotent(effect.tool_name)


class EffectRunner:
    """Starts the pending effects of sessions and reports their outcomes."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: TopicNames,
        partitions: int,
        registry: AgentRegistry,
        provider: Provider,
        tools: ToolRegistry,
        tool_context: ToolSettings | None = None,
        max_in_flight: int = 512,
        stream_deltas: bool = True,
        inline_llm_ms: float = DEFAULT_INLINE_LLM_MS,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions = partitions
        self.registry = registry
        self.provider = provider
        self.tools = tools
        self.tool_context = tool_context
        self.stream_deltas = stream_deltas
        # A turn's LLM call may run inside the decision that asked for it when its model
        # answered here in under half of this (streams._partition; 0: never).
        self.inline_llm_s = max(0.0, inline_llm_ms) / 1000
        # model -> its calls' latency here (s, exponentially weighted): which run inline.
        self._llm_latency: dict[str, float] = {}
        # LLM calls the session worker started inside a decision, by issue: taken back
        # when it decides their answer there (`taken`), else the runner reports them after
        # the decision's commit (`sync`), or cancels them when it never commits.
        self._early: dict[_Key, _Early] = {}
        # The response cache (streams.response_cache), for agents with [agents.X.cache].
        self.cache: ResponseCache | None = None
        # The counters of shared rate limits (streams.admission), for AdmissionEffects.
        self.admissions: AdmissionStore | None = None
        self._sem = asyncio.Semaphore(max_in_flight)
        self._producer: AIOKafkaProducer | None = None
        # Deltas go through a producer of their own: on the outcomes' producer a call's
        # deltas, sent just before its outcome, held the outcome behind their request
        # (aiokafka has one produce request in flight per broker and producer).
        self._delta_producer: AIOKafkaProducer | None = None
        # Keyed by session too: effect ids are unique within a session only (a scripted
        # model's tool-call ids repeat across sessions that send identical requests).
        self._running: dict[_Key, asyncio.Task[None]] = {}
        self._by_partition: dict[int, set[_Key]] = defaultdict(set)
        # session -> its running effects: what a sync compares with the pending ones
        # (scanning the partition's effects for every synced session was O(n^2)).
        self._by_session: dict[str, set[_Key]] = {}
        # partition -> session -> (effect id, attempt) whose outcome (or child start) was
        # sent but is not folded yet: the state still shows them pending, and running
        # them again (an LLM call, a tool) would be paid twice for nothing.
        self._reported: dict[int, dict[str, set[tuple[str, int]]]] = defaultdict(dict)
        # partition -> restored calls of non-idempotent tools, never started here:
        # (session, call id, attempt, deadline). A later decision (an approval granted
        # after the core asked) gives the call a new deadline, and so a new key.
        self._held: dict[int, set[tuple[str, str, int, datetime]]] = defaultdict(set)
        # partition -> restored effects that wait until the partition caught up.
        self._deferred: dict[int, set[_Key]] = defaultdict(set)
        # partition -> session -> restored LLM calls (effect id, attempt) that are not
        # started under that issue: `release` asks the core to re-issue them, in the
        # trace of the session's latest event (`_reissue_traces`).
        self._reissuing: dict[int, dict[str, set[tuple[str, int]]]] = defaultdict(dict)
        self._reissue_traces: dict[str, str | None] = {}
        self._draining = False
        # Running calls of non-idempotent tools: finished, not cancelled, on a loss.
        self._finish_on_loss: set[_Key] = set()
        self._log = get_logger(component="effects")
        # llm_prebuilt / llm_rebuilt: LLM requests sent as their decision built them, or
        # rebuilt from the state and verified (after a restore or a re-issue).
        self.stats = {
            "started": 0,
            "completed": 0,
            "failed": 0,
            "llm_prebuilt": 0,
            "llm_rebuilt": 0,
            "held_unknown": 0,
            "cancelled_on_loss": 0,
            "aborted": 0,
            "aborted_billed": 0,
            "reissued_on_takeover": 0,
            "inline": 0,
            "inline_llm": 0,
            "inline_llm_late": 0,
        }
        # Reports of aborted calls in flight (tasks of their own; kept so they finish).
        self._reports: set[asyncio.Task[None]] = set()
        # Latencies since the last take_latencies() (bounded: nobody may be taking them).
        self.latencies_ms: deque[float] = deque(maxlen=10_000)

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            # An outcome is the next input of a waiting session: send it at once (under
            # load, records queued while a request is in flight still share a batch).
            linger_ms=0,
            # An outcome may be as large as the requests topic accepts (aiokafka's
            # default is 1 MiB): a larger result is cut by the core, not refused here.
            max_request_size=REQUESTS_MAX_BYTES,
            compression_type=COMPRESSION,
            client_id="turnlog-effects",
        )
        await self._producer.start()
        if self.stream_deltas:
            self._delta_producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                # Best effort, for live display only: the leader's acknowledgement. Sent
                # at once, as before: a call's deltas still show before its outcome's
                # event (which waits for a transaction), and chunks that come while a
                # request is in flight share the next one.
                acks=1,
                linger_ms=0,
                max_request_size=REQUESTS_MAX_BYTES,
                compression_type=COMPRESSION,
                client_id="turnlog-deltas",
            )
            await self._delta_producer.start()

    async def drain(self, timeout_s: float) -> int:
        """A clean stop: start nothing more and give the effects in flight up to
        `timeout_s` to finish and report (an outcome reported now is folded by whoever
        owns the partition next), so a stopping worker does not leave calls whose
        outcome is unknown. Returns how many were still running at the end."""
        self._draining = True
        tasks = list(self._running.values())
        if tasks and timeout_s > 0:
            self._log.info("effects.draining", in_flight=len(tasks), timeout_s=timeout_s)
            await asyncio.wait(tasks, timeout=timeout_s)
        return len(self._running)

    async def stop(self) -> None:
        tasks = [*self._running.values(), *(e.task for e in self._early.values())]
        self._early.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._producer is not None:
            await self._producer.stop()
        if self._delta_producer is not None:
            await self._delta_producer.stop()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def take_latencies(self) -> list[float]:
        """Effect latencies (ms, outcome reported) since the last call, for metrics."""
        taken = list(self.latencies_ms)
        self.latencies_ms.clear()
        return taken

    # ------------------------------------------------------------------ scheduling

    def sync(
        self,
        partition: int,
        session_id: str,
        state: SessionState,
        traceparent: str | None = None,
        built: Mapping[str, LlmRequest] | None = None,
        *,
        restored: bool = False,
    ) -> None:
        """Start every pending effect of `state` that is not already running or already
        reported. Outcomes are reported in the trace of `traceparent` (the session's
        latest event). `built`: LLM requests the committed decisions built, by call id
        (an LLM-backed effect found there is sent as is; the others are dropped).
        `restored=True`: the state was just rebuilt by a takeover; start nothing of it:
        its pending calls of tools that are not idempotent are held for good — they may
        be running, or have run, elsewhere — its LLM calls are re-issued by `release`,
        and its other effects wait for `release`
        (once the partition's queued inputs are decided, an outcome the previous owner
        reported has folded). Effects that later decisions request start at once."""
        if self._draining:
            return
        pending = pending_effects(state)
        self._abort_abandoned(partition, session_id, pending)
        if self._early:
            self._drop_early(session_id, pending)
        held = self._held.get(partition)
        deferred = self._deferred.get(partition)
        reported = self._reported[partition].get(session_id)
        if reported:
            reported &= {(e.effect_id, e.attempt) for e in pending}
            if not reported:
                del self._reported[partition][session_id]
        reissuing = self._reissuing[partition].get(session_id) if self._reissuing else None
        if reissuing:
            reissuing &= {(e.effect_id, e.attempt) for e in pending}
            if not reissuing:
                del self._reissuing[partition][session_id]
        for effect in pending:
            key = (session_id, effect.effect_id, effect.attempt)
            if key in self._running or (
                reported and (effect.effect_id, effect.attempt) in reported
            ):
                continue
            if reissuing and (effect.effect_id, effect.attempt) in reissuing:
                continue
            if restored:
                if isinstance(effect, _LlmBacked):
                    # A previous owner may still be running this issue: the new issue
                    # the core makes of it (`release`) runs here instead.
                    self._reissuing[partition].setdefault(session_id, set()).add(
                        (effect.effect_id, effect.attempt)
                    )
                    self._reissue_traces[session_id] = traceparent
                elif not isinstance(effect, ToolCallEffect) or self.registry.is_idempotent(
                    effect.tool_name
                ):
                    self._deferred[partition].add(key)
                else:
                    self._held[partition].add(
                        (session_id, effect.effect_id, effect.attempt, effect.deadline_at)
                    )
                    self.stats["held_unknown"] += 1
                    self._log.warning(
                        "effect.outcome_unknown",
                        session_id=session_id,
                        effect_id=effect.effect_id,
                        tool=effect.tool_name,
                        attempt=effect.attempt,
                        deadline_at=str(effect.deadline_at),
                    )
                continue
            if (
                held
                and isinstance(effect, ToolCallEffect)
                and (session_id, effect.effect_id, effect.attempt, effect.deadline_at) in held
            ):
                continue
            if deferred and key in deferred:
                continue
            prebuilt = built.get(effect.effect_id) if built else None
            early = self._early.pop(key, None) if self._early else None
            task = asyncio.create_task(
                self._run(
                    partition,
                    session_id,
                    state,
                    effect,
                    traceparent,
                    prebuilt,
                    early.task if early is not None else None,
                )
            )
            self._running[key] = task
            self._by_partition[partition].add(key)
            self._by_session.setdefault(session_id, set()).add(key)
            task.add_done_callback(functools.partial(self._done, key, partition))
            if _holds_unknown(effect, self.registry):
                self._finish_on_loss.add(key)
            self.stats["started"] += 1

    def _abort_abandoned(self, partition: int, session_id: str, pending: list[Effect]) -> None:
        """Cancel this session's running effects that its state no longer wants: a
        cancelled or closed turn, an attempt a re-issue replaced. The LLM call's HTTP
        request is closed, the tool's processes are killed (their outcome, if one still
        comes, is charged or ignored by the core)."""
        running = self._by_session.get(session_id)
        if not running:
            return
        wanted = {(session_id, e.effect_id, e.attempt) for e in pending}
        for key in [k for k in running if k not in wanted]:
            task = self._running.get(key)
            if task is not None and not task.done():
                task.cancel()
                self.stats["aborted"] += 1
                self._log.info(
                    "effect.aborted", session_id=session_id, effect_id=key[1], attempt=key[2]
                )

    def _drop_early(self, session_id: str, pending: list[Effect]) -> None:
        """Forget this session's early LLM calls (run_llm_inline) that its committed
        state does not hold pending — decided inline, or ended by a later input of the
        same transaction (cancelled if still running)."""
        wanted = {(session_id, e.effect_id, e.attempt) for e in pending}
        for key in [k for k in self._early if k[0] == session_id and k not in wanted]:
            self._early.pop(key).task.cancel()

    def release(self, partition: int) -> None:
        """The partition's queued inputs are decided: the restored effects that still
        wait may start (the caller syncs its sessions next), and each restored LLM call
        still pending is re-issued through the core (ReissueEffect: its deterministic
        request id makes two owners' requests one)."""
        self._deferred.pop(partition, None)
        for session_id, keys in self._reissuing.get(partition, {}).items():
            traceparent = self._reissue_traces.pop(session_id, None)
            for effect_id, attempt in keys:
                request = Request(
                    request_id=f"{effect_id}:reissue:{attempt}",
                    session_id=session_id,
                    occurred_at=_now(),
                    payload=ReissueEffect(effect_id=effect_id, attempt=attempt),
                    causation_id=effect_id,
                )
                task = asyncio.get_running_loop().create_task(
                    self._send_quietly(request, child_traceparent(traceparent, request.request_id))
                )
                self._reports.add(task)
                task.add_done_callback(self._reports.discard)
                self.stats["reissued_on_takeover"] += 1

    async def _send_quietly(self, request: Request, traceparent: str | None) -> None:
        # Not sent (the broker is away): the call's deadline re-issues it instead.
        try:
            await self.send_request(request, traceparent=traceparent)
        except Exception as exc:
            self._log.warning(
                "effect.reissue_not_sent", session_id=request.session_id, error=str(exc)
            )

    def drop(self, partition: int) -> None:
        """The partition moved to another worker: abandon its effects (the new owner
        decides about whatever is still pending)."""
        self._reported.pop(partition, None)
        for key in [k for k, e in self._early.items() if e.partition == partition]:
            self._early.pop(key).task.cancel()
        self._held.pop(partition, None)
        self._deferred.pop(partition, None)
        for session_id in self._reissuing.pop(partition, {}):
            self._reissue_traces.pop(session_id, None)
        for key in list(self._by_partition.pop(partition, ())):
            task = self._running.get(key)
            if task is not None and key not in self._finish_on_loss:
                task.cancel()
                self.stats["cancelled_on_loss"] += 1

    def _done(self, key: _Key, partition: int, _task: object = None) -> None:
        self._running.pop(key, None)
        self._finish_on_loss.discard(key)
        self._by_partition.get(partition, set()).discard(key)
        mine = self._by_session.get(key[0])
        if mine is not None:
            mine.discard(key)
            if not mine:
                del self._by_session[key[0]]

    # ------------------------------------------------------------------ execution

    def _effect_log(self, session_id: str, effect: Effect) -> Any:
        """The logger an effect's lines go through, bound to the effect."""
        return self._log.bind(
            session_id=session_id,
            effect_id=effect.effect_id,
            kind=effect.kind,
            attempt=effect.attempt,
            turn_id=effect.turn_id,
        )

    async def _run(
        self,
        partition: int,
        session_id: str,
        state: SessionState,
        effect: Effect,
        traceparent: str | None = None,
        prebuilt: LlmRequest | None = None,
        early: asyncio.Task[tuple[RequestPayload, str | None]] | None = None,
    ) -> None:
        """Run `effect` and report its outcome; `early`: the effect is an LLM call the
        session worker already started (run_llm_inline), whose outcome is reported here."""
        log = self._effect_log(session_id, effect)
        started = time.monotonic()
        payload: RequestPayload | None
        if early is not None:
            try:
                payload, traceparent = await early  # its span is its own
            except asyncio.CancelledError:
                early.cancel()
                raise
        else:
            payload, traceparent = await self._traced(
                session_id, state, effect, log, traceparent, prebuilt
            )
        if payload is None:
            self._mark_reported(partition, session_id, effect)
            return
        elapsed = (time.monotonic() - started) * 1000
        self.latencies_ms.append(elapsed)
        request = Request(
            request_id=outcome_request_id(effect),
            session_id=effect.report_to or session_id,
            occurred_at=_now(),
            payload=payload,
            causation_id=effect.effect_id,
            correlation_id=effect.correlation_id,
            # An admission speaks for the message it admits (its turn records the client).
            client=effect.requested.client if isinstance(effect, AdmissionEffect) else None,
        )
        await self.send_request(
            request, traceparent=child_traceparent(traceparent, request.request_id)
        )
        self._mark_reported(partition, session_id, effect)
        self.stats["completed"] += 1
        log.info("effect.reported", outcome=type(payload).__name__, latency_ms=round(elapsed, 1))

    async def _traced(
        self,
        session_id: str,
        state: SessionState,
        effect: Effect,
        log: Any,
        traceparent: str | None,
        prebuilt: LlmRequest | None,
    ) -> tuple[RequestPayload | None, str | None]:
        """Execute `effect` in its span, within the bound of effects in flight: (its
        outcome, the traceparent of its span, which its outcome is reported under)."""
        started = time.monotonic()
        async with self._sem:
            traceparent = effect_started(effect, traceparent)  # a span when tracing is on
            billed = BilledSoFar()
            BILLED.set(billed)  # this task's context: the provider reports into it
            try:
                payload = await self._execute(session_id, state, effect, log, traceparent, prebuilt)
            except asyncio.CancelledError:
                effect_cancelled(traceparent)  # its span ends, marked cancelled
                if billed.usage.total_tokens and isinstance(effect, _LlmBacked):
                    self._report_aborted(session_id, effect, billed, started, traceparent)
                raise
            except Exception as exc:  # an effect's bug is an outcome, not a dead worker
                log.exception("effect.crashed")
                payload = failure_outcome(effect, f"{type(exc).__name__}: {exc}")
                self.stats["failed"] += 1
            effect_ended(traceparent, effect, payload)
        return payload, traceparent

    def _report_aborted(
        self,
        session_id: str,
        effect: _LlmBacked,
        billed: BilledSoFar,
        started: float,
        traceparent: str | None,
    ) -> None:
        """An LLM call aborted mid-stream was billed for what the vendor had read: say
        so (in a task of its own, the aborted one is being cancelled); the core charges
        it to the session (agents._reissue, and late answers of abandoned calls)."""
        request = Request(
            request_id=f"{outcome_request_id(effect)}:aborted",
            session_id=effect.report_to or session_id,
            occurred_at=_now(),
            payload=FailLlmCall(
                call_id=effect.effect_id,
                error_type=ABORTED,
                message=(
                    "The call was aborted by the worker (its turn was cancelled, a re-issue "
                    "replaced it, or the partition moved)."
                ),
                attempts=max(1, effect.attempt),
                latency_ms=int((time.monotonic() - started) * 1000),
                usage=billed.usage,
                effect_attempt=effect.attempt,
            ),
            causation_id=effect.effect_id,
            correlation_id=effect.correlation_id,
        )
        task = asyncio.get_running_loop().create_task(
            self.send_request(
                request, traceparent=child_traceparent(traceparent, request.request_id)
            )
        )
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
        self.stats["aborted_billed"] += 1

    def _mark_reported(self, partition: int, session_id: str, effect: Effect) -> None:
        self._reported[partition].setdefault(session_id, set()).add(
            (effect.effect_id, effect.attempt)
        )

    async def send_request(self, request: Request, *, traceparent: str | None = None) -> None:
        assert self._producer is not None, "start() first"
        await self._producer.send_and_wait(
            self.topics.requests,
            value=encode_request(request),
            key=request.session_id.encode(),
            partition=partition_for(request.session_id, self.partitions),
            headers=headers_with(traceparent),
        )

    async def _execute(
        self,
        session_id: str,
        state: SessionState,
        effect: Effect,
        log: Any,
        traceparent: str | None,
        prebuilt: LlmRequest | None = None,
    ) -> RequestPayload | None:
        match effect:
            case LlmCallEffect():
                return await self._llm(session_id, state, effect, prebuilt)
            case CompactionEffect():
                return await self._summarize(session_id, state, effect, log, prebuilt)
            case ToolCallEffect():
                return await self._tool(session_id, effect)
            case ChildSessionEffect() if effect.agent.startswith(REMOTE_AGENT_PREFIX):
                # A remote A2A agent: called from here, its result reported as the child's.
                from streams.a2a import call_remote_agent

                left = (effect.deadline_at - _now()).total_seconds()
                info = self.registry.pinned(state.agent, state.definition_hash)
                return await call_remote_agent(
                    effect,
                    timeout_s=max(0.0, left),
                    definition=info.definition if info is not None else None,
                )
            case ChildSessionEffect():
                await self._start_child(session_id, effect, traceparent)
                return None
            case AdmissionEffect():
                return await run_admission(self.admissions, session_id, effect)

    def _request(
        self,
        session_id: str,
        state: SessionState,
        effect: _LlmBacked,
        prebuilt: LlmRequest | None,
        build: _Build,
    ) -> tuple[LlmRequest | None, RequestPayload | None]:
        """(the request to send, None) or (None, the failure to report instead).

        A prebuilt request (its decision built it in this process) has the digest that
        decision recorded, memoized on the object; a rebuilt one is hashed here. Either
        way it is compared with the recorded digest: if the code that rebuilds context
        changed under an in-flight call, refuse to send a request other than the one
        recorded."""
        if prebuilt is not None:
            request = prebuilt
            self.stats["llm_prebuilt"] += 1
        else:
            request = build(state, effect, self.registry)
            self.stats["llm_rebuilt"] += 1
        digest = request.digest()
        if digest != effect.request_digest:
            return None, failure_outcome(
                effect,
                f"session {session_id}: rebuilt request digest {digest[:12]} differs from "
                f"recorded {effect.request_digest[:12]}",
                "ContextDigestMismatch",
            )
        return request, None

    async def _llm(
        self,
        session_id: str,
        state: SessionState,
        effect: LlmCallEffect,
        prebuilt: LlmRequest | None = None,
    ) -> RequestPayload:
        request, refused = self._request(session_id, state, effect, prebuilt, build_llm_request)
        if request is None:
            assert refused is not None
            return refused
        # An answer an output guardrail may redact or block is not streamed unchecked.
        info = self.registry.pinned(state.agent, state.definition_hash)
        guarded = info is not None and any(g.on == "output" for g in info.definition.guardrails)
        # A guard call's verdict is no answer for a live client: never streamed.
        # A call run inline is not streamed: its answer is decided as it comes, and is
        # in the log as soon as its deltas would be.
        stream = (
            self.stream_deltas
            and not guarded
            and effect.requested.purpose == "turn"
            and not _EARLY.get()
        )
        definition = info.definition if info is not None else None
        cached = await answer_from_cache(self.cache, definition, effect)
        if cached is not None:
            return cached
        on_delta = self._delta_sink(session_id, effect.effect_id) if stream else None
        started = time.monotonic()
        try:
            resp = await self.provider.complete(
                request,
                fallbacks=tuple(effect.fallbacks),
                on_delta=on_delta,
                timeout_s=effect.timeout_s,
            )
        except ProviderError as exc:
            self._observe(effect.model, time.monotonic() - started)
            return FailLlmCall(
                call_id=effect.effect_id,
                error_type=exc.error_type,
                message=str(exc),
                attempts=max(1, exc.attempts),
                retryable=exc.retryable,
                latency_ms=int((time.monotonic() - started) * 1000),
                circuits_opened=tuple(exc.circuits_opened),
                effect_attempt=effect.attempt,
            )
        self._observe(effect.model, time.monotonic() - started)
        if on_delta is not None:
            await self._send_delta(session_id, effect.effect_id, -1, "", done=True)
        outcome = CompleteLlmCall(
            call_id=effect.effect_id,
            model=resp.model,
            text=resp.text,
            tool_uses=tuple(resp.tool_uses),
            stop_reason=resp.stop_reason,
            usage=resp.usage,
            latency_ms=int((time.monotonic() - started) * 1000),
            attempts=max(1, resp.attempts),
            fallback_used=resp.fallback_used,
            circuits_opened=tuple(resp.circuits_opened),
            thinking=tuple(resp.thinking),
            effect_attempt=effect.attempt,
        )
        await remember_answer(self.cache, definition, effect, session_id, outcome)
        await count_tokens(self.admissions, self.registry, state, session_id, outcome)
        return outcome

    async def _summarize(
        self,
        session_id: str,
        state: SessionState,
        effect: CompactionEffect,
        log: Any,
        prebuilt: LlmRequest | None = None,
    ) -> RequestPayload:
        request, refused = self._request(session_id, state, effect, prebuilt, build_summary_request)
        if request is None:
            assert refused is not None
            return refused
        started = time.monotonic()
        try:
            resp = await self.provider.complete(request, timeout_s=effect.timeout_s)
        except ProviderError as exc:
            log.warning("summarize.failed", error=str(exc))
            return failure_outcome(effect, str(exc))
        return CompleteCompaction(
            compaction_id=effect.effect_id,
            summary=resp.text,
            model=resp.model,
            usage=resp.usage,
            latency_ms=int((time.monotonic() - started) * 1000),
            effect_attempt=effect.attempt,
        )

    def _observe(self, model: str, elapsed_s: float) -> None:
        before = self._llm_latency.get(model)
        self._llm_latency[model] = (
            elapsed_s if before is None else before + _LATENCY_WEIGHT * (elapsed_s - before)
        )

    def runs_inline(self, effect: Effect) -> bool:
        """Whether the session worker runs `effect` inside the decision that asked for it
        (streams._partition) instead of handing it to sync(): a call of an inline tool, or
        an LLM call whose model answered here in under half of `inline_llm_ms` lately
        (its first call never: nothing is known of the model yet)."""
        if isinstance(effect, ToolCallEffect):
            return self.tools.is_inline(effect.tool_name)
        if isinstance(effect, LlmCallEffect) and self.inline_llm_s > 0:
            latency = self._llm_latency.get(effect.model)
            return latency is not None and latency <= self.inline_llm_s / 2
        return False

    async def run_llm_inline(
        self,
        partition: int,
        state: SessionState,
        effect: LlmCallEffect,
        traceparent: str | None,
        prebuilt: LlmRequest | None,
    ) -> RequestPayload | None:
        """Start an LLM call inside the decision that asked for it (before that decision
        is committed) and wait up to `inline_llm_ms` for its outcome. None: it did not
        come in time; the call goes on and is reported like any effect once the decision
        is committed (sync() adopts it). A decision made again after its transaction
        failed finds the same issue (same request digest) here and gets its outcome
        without a second call. The worker says `taken` when it decided the outcome."""
        key = (state.session_id, effect.effect_id, effect.attempt)
        early = self._early.get(key)
        if early is None or early.digest != effect.request_digest:
            if early is not None:
                early.task.cancel()
            task = asyncio.create_task(self._call_early(state, effect, traceparent, prebuilt))
            early = self._early[key] = _Early(partition, effect.request_digest, task)
        done, _ = await asyncio.wait({early.task}, timeout=self.inline_llm_s)
        if not done:
            self.stats["inline_llm_late"] += 1
            return None
        return early.task.result()[0]

    def taken(self, session_id: str, effect: Effect, payload: RequestPayload) -> None:
        """The session worker decided `payload`, the outcome of an early call, inline.
        The call stays known until its decision commits (the next sync() of the session
        forgets it): a transaction that fails is decided again with the same answer."""
        early = self._early.get((session_id, effect.effect_id, effect.attempt))
        self.stats["inline_llm"] += 1
        saved = current_traceparent()
        if early is not None and early.task.done():
            set_current_traceparent(early.task.result()[1])  # the line names the call's span
        try:
            self._effect_log(session_id, effect).info(
                "effect.reported",
                outcome=type(payload).__name__,
                latency_ms=getattr(payload, "latency_ms", 0),
                inline=True,
            )
        finally:
            set_current_traceparent(saved)

    async def _call_early(
        self,
        state: SessionState,
        effect: LlmCallEffect,
        traceparent: str | None,
        prebuilt: LlmRequest | None,
    ) -> tuple[RequestPayload, str | None]:
        session_id = state.session_id
        log = self._effect_log(session_id, effect)
        _EARLY.set(True)  # this task's context only
        payload, traceparent = await self._traced(
            session_id, state, effect, log, traceparent, prebuilt
        )
        assert payload is not None  # an LLM call always has an outcome
        if isinstance(payload, CompleteLlmCall) and payload.effect_attempt == 0:
            # A cached answer names no issue (0: the pending one): name the one run here,
            # as its events will (agents.effects.llm_outcome_of).
            payload = replace(payload, effect_attempt=effect.attempt)
        return payload, traceparent

    async def run_inline(
        self, session_id: str, effect: ToolCallEffect, traceparent: str | None
    ) -> RequestPayload:
        """Run a call of an inline tool for the session worker, in its partition's loop,
        and return its outcome (the worker decides it in the same transaction). Its span
        and log line are those of any tool call; the loop's own trace context is kept."""
        saved, started = current_traceparent(), time.monotonic()
        log = self._effect_log(session_id, effect)
        traceparent = effect_started(effect, traceparent)
        try:
            try:
                payload = await self._tool(session_id, effect)
            except Exception as exc:  # a tool's bug is an outcome, not a stopped partition
                log.exception("effect.crashed")
                payload = failure_outcome(effect, f"{type(exc).__name__}: {exc}")
                self.stats["failed"] += 1
            effect_ended(traceparent, effect, payload)
            elapsed = (time.monotonic() - started) * 1000
            log.info(
                "effect.reported",
                outcome=type(payload).__name__,
                latency_ms=round(elapsed, 1),
                inline=True,
            )
        finally:
            set_current_traceparent(saved)
        self.stats["inline"] += 1
        return payload

    async def _tool(self, session_id: str, effect: ToolCallEffect) -> RequestPayload:
        ctx = tool_context(self.tool_context, session_id, effect)
        # The call's deadline is also its lease: a new owner of the partition acts on a
        # call it found pending only after it, so no run may outlive it.
        left = (effect.deadline_at - _now()).total_seconds()
        try:
            async with asyncio.timeout(max(0.0, left)):
                result = await self.tools.execute(effect.tool_name, effect.arguments_json, ctx)
        except TimeoutError:
            return FailToolCall(
                call_id=effect.effect_id,
                error=f"The tool call was stopped at its deadline ({effect.deadline_at}).",
            )
        if result.ok:
            return CompleteToolCall(
                call_id=effect.effect_id, result=result.content, latency_ms=int(result.latency_ms)
            )
        return FailToolCall(
            call_id=effect.effect_id, error=result.content, latency_ms=int(result.latency_ms)
        )

    async def _start_child(
        self, session_id: str, effect: ChildSessionEffect, traceparent: str | None
    ) -> None:
        # Its request id is fixed: a re-issued start is a duplicate the child rejects.
        request = effect.start_request(_now())
        await self.send_request(
            request, traceparent=child_traceparent(traceparent, request.request_id)
        )

    # ------------------------------------------------------------------ deltas

    def _delta_sink(self, session_id: str, call_id: str) -> Callable[[str], Awaitable[None]]:
        """Numbers a call's deltas from 1. A provider's retry after some text restarts
        the numbering: a live client that sees index 1 again drops what the call showed
        before (the failed attempt's text)."""
        counter = {"i": 0}

        async def sink(text: str) -> None:
            if text == STREAM_RESTART:
                counter["i"] = 0
                return
            counter["i"] += 1
            await self._send_delta(session_id, call_id, counter["i"], text)

        return sink

    async def _send_delta(
        self, session_id: str, call_id: str, index: int, text: str, *, done: bool = False
    ) -> None:
        if self._delta_producer is None:
            return  # not started, or deltas are off
        delta = TokenDelta(
            session_id=session_id,
            call_id=call_id,
            index=index,
            text=text,
            occurred_at=_now(),
            done=done,
        )
        # Deltas are best effort (live display only): never wait for the broker here.
        await self._delta_producer.send(
            self.topics.deltas,
            value=encode_delta(delta),
            key=session_id.encode(),
            partition=partition_for(session_id, self.partitions),
        )
