"""Prometheus metrics of a session-worker process (session worker + effect runner).

Rule: one bookkeeping. Counters the workers already keep for their `worker.metrics` log
line (`SessionWorker.stats`, `EffectRunner.stats`) are read at scrape time, never
counted twice. What those counters do not hold — turns, LLM calls, tokens, cost, tool
calls, budget trips, latencies — is counted from the events of each committed
transaction (streams.telemetry's hooks), so a fact counts once, when it is a fact: an
aborted transaction counts nothing.

Everything here runs on the worker's event loop (the endpoint serves there too), so it
reads the worker's state without locks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams import telemetry
from streams.endpoint import Endpoint, EndpointConfig
from streams.telemetry import Entry

__all__ = [
    "STATS_METRICS",
    "SessionMetrics",
    "effect_metric_name",
    "session_endpoint",
    "worker_metric_name",
]

_log = structlog.get_logger("turnlog.metrics")

NANOS_PER_USD = 1_000_000_000
# Seconds: LLM calls and turns take from milliseconds (scripted) to minutes.
_SLOW_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, float("inf"))
# Remembered call ids (the model or tool a later outcome event does not name).
_MAX_PENDING = 100_000

# The workers' counters by key: (metric name without _total, help). A key missing here
# still appears, as turnlog_session_worker_<key> / turnlog_effects_<key>.
STATS_METRICS: dict[str, tuple[str, str]] = {
    "inputs": ("turnlog_inputs", "Request records taken from the requests topic."),
    "events": ("turnlog_events", "Events decided (written in the partition's transaction)."),
    "dlq": ("turnlog_dlq_records", "Inputs set aside in the dead-letter topic."),
    "batches": ("turnlog_transactions", "Transactions committed with at least one input."),
    "rerouted": (
        "turnlog_inputs_rerouted",
        ("Requests produced to the wrong partition, forwarded to their session's."),
    ),
    "snapshots": ("turnlog_snapshots_written", "Session snapshots written."),
    "group_commits": (
        "turnlog_group_offset_commits",
        "Group offsets committed by an idle partition (plain commits, outside transactions).",
    ),
    "partitions_restored": (
        "turnlog_partitions_restored",
        ("Partitions restored from the log on assignment."),
    ),
    "partitions_kept": (
        "turnlog_partitions_kept",
        ("Partitions a rebalance gave back, resumed without a restore."),
    ),
    "restore_events_read": ("turnlog_restore_events_read", "Events read by restores."),
    "sessions_loaded": ("turnlog_sessions_loaded", "Evicted sessions loaded back."),
    "sessions_evicted": ("turnlog_sessions_evicted", "Idle sessions evicted from memory."),
    "txn_timed": ("turnlog_transactions_timed", "Transactions of inputs timed by stage."),
    "txn_decide_us": (
        "turnlog_transaction_decide_microseconds",
        "Transactions of inputs, summed: from the start to every record handed to the "
        "producer (deciding, encoding, snapshots).",
    ),
    "txn_write_us": (
        "turnlog_transaction_write_microseconds",
        "Transactions of inputs, summed: then until the broker acknowledged every record.",
    ),
    "txn_commit_us": (
        "turnlog_transaction_commit_microseconds",
        "Transactions of inputs, summed: then the commit (EndTxn).",
    ),
}
EFFECT_METRICS: dict[str, tuple[str, str]] = {
    "started": (
        "turnlog_effects_started",
        ("Effects started (LLM calls, tools, compactions, child sessions)."),
    ),
    "completed": ("turnlog_effects_reported", "Effect outcomes reported."),
    "inline": (
        "turnlog_effects_inline",
        "Calls of inline tools run inside the decision that asked for them.",
    ),
    "inline_llm": (
        "turnlog_llm_calls_inline",
        "LLM calls of a fast model run and decided inside the decision that asked for them "
        "(TURNLOG_INLINE_LLM_MS).",
    ),
    "inline_llm_late": (
        "turnlog_llm_calls_inline_late",
        "LLM calls started inline that overran TURNLOG_INLINE_LLM_MS and went on as "
        "ordinary effects.",
    ),
    "failed": ("turnlog_effects_crashed", "Effects whose code raised (reported as failures)."),
    "held_unknown": (
        "turnlog_effects_held_unknown",
        ("Restored calls of non-idempotent tools not re-run (outcome unknown)."),
    ),
    "cancelled_on_loss": (
        "turnlog_effects_cancelled_on_loss",
        ("Effects cancelled because their partition moved."),
    ),
}


def worker_metric_name(key: str) -> tuple[str, str]:
    return STATS_METRICS.get(
        key, (f"turnlog_session_worker_{key}", f"Session worker counter {key!r}.")
    )


def effect_metric_name(key: str) -> tuple[str, str]:
    return EFFECT_METRICS.get(key, (f"turnlog_effects_{key}", f"Effect runner counter {key!r}."))


class _Counters(Collector):
    """The workers' own counters and gauges, read when scraped."""

    def __init__(self, owner: SessionMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        worker, effects = self._owner.worker, self._owner.effects
        for stats, name_of in (
            (worker.stats, worker_metric_name),
            (effects.stats if effects is not None else {}, effect_metric_name),
        ):
            for key, value in list(stats.items()):
                name, doc = name_of(key)
                yield CounterMetricFamily(name, doc, value=value)
        parts = dict(worker._parts)
        yield GaugeMetricFamily(
            "turnlog_partitions_owned", "Partitions this worker owns.", value=len(parts)
        )
        yield GaugeMetricFamily(
            "turnlog_sessions_in_memory",
            "Sessions held in memory.",
            value=sum(len(p.sessions) for p in parts.values()),
        )
        if effects is not None:
            yield GaugeMetricFamily(
                "turnlog_effects_in_flight", "Effects running now.", value=effects.in_flight
            )
            # Shared rate limits (streams.admission): admitted, limited, waits, errors.
            admissions = effects.admissions.stats if effects.admissions is not None else {}
            for key, value in list(admissions.items()):
                yield CounterMetricFamily(
                    f"turnlog_admissions_{key}", f"Shared rate-limit admissions: {key}.", value
                )
        lag = GaugeMetricFamily(
            "turnlog_input_lag",
            "Requests in an owned partition not yet decided and "
            "committed (records; transaction markers not counted).",
            labels=["partition"],
        )
        for p, value in sorted(self._owner.lag.items()):
            if p in parts:
                lag.add_metric([str(p)], value)
        yield lag
        yield GaugeMetricFamily(
            "turnlog_ready",
            "1 when every assigned partition is restored (what /readyz says).",
            value=1 if self._owner.ready()[0] else 0,
        )


class SessionMetrics:
    """The metrics of one session-worker process, in a registry of their own."""

    def __init__(
        self, worker: Any, effects: Any = None, registry: CollectorRegistry | None = None
    ) -> None:
        self.worker = worker
        self.effects = effects
        # Labelled children by (metric, label values): prometheus_client's labels()
        # validates and locks on every call, and a batch touches the same few per event.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.registry = registry if registry is not None else CollectorRegistry()
        self.lag: dict[int, int] = {}
        r = self.registry
        self.turns = Counter(
            "turnlog_turns",
            "Turns ended, by agent and outcome (completed, failed, cancelled).",
            ["agent", "outcome"],
            registry=r,
        )
        self.turn_failures = Counter(
            "turnlog_turn_failures",
            "Failed turns by agent and error type: guard trips "
            "(iterations, deadlines), refusals, LLM errors.",
            ["agent", "error_type"],
            registry=r,
        )
        self.turn_seconds = Histogram(
            "turnlog_turn_duration_seconds",
            "Turn start to end (log time).",
            ["agent"],
            buckets=_SLOW_BUCKETS,
            registry=r,
        )
        self.llm_calls = Counter(
            "turnlog_llm_calls",
            "LLM calls ended, by model and outcome "
            "(completed, failed, or why a charged answer was discarded: "
            "late, truncated...); summaries included.",
            ["model", "outcome"],
            registry=r,
        )
        self.llm_seconds = Histogram(
            "turnlog_llm_call_duration_seconds",
            "LLM call latency (retries included).",
            ["model"],
            buckets=_SLOW_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "turnlog_llm_tokens",
            "Tokens by model and type (input, output, cache_read, cache_write).",
            ["model", "type"],
            registry=r,
        )
        self.cost = Counter(
            "turnlog_llm_cost_usd",
            "Cost of LLM calls in USD, by model (the core's pricing).",
            ["model"],
            registry=r,
        )
        self.tool_calls = Counter(
            "turnlog_tool_calls",
            "Tool calls ended, by tool and outcome.",
            ["tool", "outcome"],
            registry=r,
        )
        self.tool_seconds = Histogram(
            "turnlog_tool_call_duration_seconds",
            "Tool call latency.",
            ["tool"],
            buckets=_SLOW_BUCKETS,
            registry=r,
        )
        self.policy = Counter(
            "turnlog_tool_policy_decisions",
            "Policy decisions on requested tool calls (allow, ask, deny).",
            ["decision"],
            registry=r,
        )
        self.approvals = Counter(
            "turnlog_approvals",
            "Approval waits ended, by outcome (granted, denied, expired).",
            ["outcome"],
            registry=r,
        )
        self.compactions = Counter(
            "turnlog_compactions", "Context compactions, by strategy.", ["strategy"], registry=r
        )
        self.budget = Counter(
            "turnlog_budget_exceeded",
            "Budget trips, by scope and unit.",
            ["scope", "unit"],
            registry=r,
        )
        self.budget_alerts = Counter(
            "turnlog_budget_alerts",
            "Soft budget thresholds crossed (BudgetAlert), by scope and unit.",
            ["scope", "unit"],
            registry=r,
        )
        self.rejected = Counter(
            "turnlog_requests_rejected",
            "Requests rejected by the core, by request type.",
            ["request_type"],
            registry=r,
        )
        self.children = Counter(
            "turnlog_child_sessions", "Child sessions ended, by status.", ["status"], registry=r
        )
        self.queued = Counter(
            "turnlog_messages_queued",
            "Messages that arrived during a turn and wait for the next.",
            registry=r,
        )
        self.queue_dropped = Counter(
            "turnlog_queued_messages_dropped",
            "Queued messages dropped (a cancel, a full queue).",
            registry=r,
        )
        self.transaction_seconds = Histogram(
            "turnlog_transaction_duration_seconds",
            "A partition's transaction, first decision to commit.",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.restore_seconds = Histogram(
            "turnlog_restore_duration_seconds",
            "Restoring the partitions of one assignment.",
            buckets=_SLOW_BUCKETS,
            registry=r,
        )
        r.register(_Counters(self))
        self._models: dict[tuple[str, str], str] = {}
        self._tools: dict[tuple[str, str], str] = {}
        self._turns: dict[str, Any] = {}
        telemetry.register_sink(worker.stats, self)

    def close(self) -> None:
        telemetry.unregister_sink(self.worker.stats)

    # ------------------------------------------------------------------ readiness

    def ready(self) -> tuple[bool, str]:
        """Ready once the group has assigned partitions to this worker and every one of
        them is restored (decisions are taken); not while stopping."""
        w = self.worker
        if w._consumer is None or not w.assigned_event.is_set():
            return False, "waiting for a partition assignment"
        if w._stopping:
            return False, "stopping"
        assigned = {tp.partition for tp in w._consumer.assignment()}
        missing = assigned - set(w._parts)
        if missing:
            return False, f"restoring partitions {sorted(missing)}"
        return True, f"partitions {sorted(assigned)} restored"

    def live(self) -> tuple[bool, str]:
        return True, "ok"

    async def refresh(self) -> None:
        """Input lag per owned partition: the last stable offset the consumer knows less
        the offset consumed. Caught up (nothing queued or being decided, fetched to the
        end) is 0 even when the last offsets are transaction markers."""
        consumer = self.worker._consumer
        if consumer is None:
            return
        lag: dict[int, int] = {}
        for p, part in list(self.worker._parts.items()):
            end = consumer.last_stable_offset(part.tp)
            if end is None:
                end = consumer.highwater(part.tp)
            if end is None:
                continue
            done = part.done
            if not part.queue and not part._deciding:
                with contextlib.suppress(Exception):  # revoked meanwhile
                    done = max(done, int(await consumer.position(part.tp)))
            lag[p] = max(0, int(end) - done)
        self.lag = lag

    # ------------------------------------------------------------------ telemetry sink

    def restored(self, seconds: float, partitions: int) -> None:
        self.restore_seconds.observe(seconds)

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def committed(self, entries: Sequence[Entry], seconds: float) -> None:
        self.transaction_seconds.observe(seconds)
        for _rec, _req, events in entries:
            for ev in events:
                handler = _HANDLERS.get(type(ev.payload).__name__)
                if handler is not None:
                    handler(self, ev)

    # One method per event type (the table below).

    def _turn_started(self, ev: Any) -> None:
        _remember(self._turns, ev.session_id, ev.occurred_at)

    def _turn_ended(self, ev: Any) -> None:
        outcome = {"TurnCompleted": "completed", "TurnFailed": "failed"}.get(
            type(ev.payload).__name__, "cancelled"
        )
        self._child(self.turns, ev.agent, outcome).inc()
        if outcome == "failed":
            self._child(self.turn_failures, ev.agent, ev.payload.error_type).inc()
        started = self._turns.pop(ev.session_id, None)
        if started is not None:
            self._child(self.turn_seconds, ev.agent).observe(
                max(0.0, (ev.occurred_at - started).total_seconds())
            )

    def _llm_requested(self, ev: Any) -> None:
        _remember(self._models, (ev.session_id, ev.payload.call_id), ev.payload.model)

    def _llm_completed(self, ev: Any) -> None:
        p = ev.payload
        self._models.pop((ev.session_id, p.call_id), None)
        # An answer recorded only for its cost (a cancel abandoned it, a tool call was cut)
        # still costs: counted under why it was discarded.
        self._child(self.llm_calls, p.model, getattr(p, "discarded", None) or "completed").inc()
        self._child(self.llm_seconds, p.model).observe(p.latency_ms / 1000)
        self._usage(p.model, p.usage, p.cost_nanos)

    def _llm_failed(self, ev: Any) -> None:
        model = self._models.pop((ev.session_id, ev.payload.call_id), "unknown")
        self._child(self.llm_calls, model, "failed").inc()

    def _compacted(self, ev: Any) -> None:
        p = ev.payload
        self._child(self.compactions, p.strategy).inc()
        model = self._models.pop((ev.session_id, p.compaction_id), None)
        if p.model:  # a summary: one LLM call
            self._child(self.llm_calls, p.model, "completed").inc()
            self._usage(p.model, p.usage, p.cost_nanos)
        elif model is not None:  # the summary failed: the entries were dropped instead
            self._child(self.llm_calls, model, "failed").inc()

    def _usage(self, model: str, usage: Any, cost_nanos: int) -> None:
        for kind, n in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_tokens),
            ("cache_write", usage.cache_write_tokens),
        ):
            if n:
                self._child(self.tokens, model, kind).inc(n)
        self._child(self.cost, model).inc(cost_nanos / NANOS_PER_USD)

    def _tool_requested(self, ev: Any) -> None:
        p = ev.payload
        _remember(self._tools, (ev.session_id, p.call_id), p.name)
        self._child(self.policy, str(getattr(p.decision, "value", p.decision))).inc()

    def _tool_ended(self, ev: Any) -> None:
        p = ev.payload
        tool = self._tools.pop((ev.session_id, p.call_id), "unknown")
        outcome = "completed" if type(p).__name__ == "ToolCallCompleted" else "failed"
        self._child(self.tool_calls, tool, outcome).inc()
        if p.latency_ms:
            self._child(self.tool_seconds, tool).observe(p.latency_ms / 1000)

    def _approval_ended(self, ev: Any) -> None:
        p = ev.payload
        if type(p).__name__ == "ApprovalGranted":
            self._child(self.approvals, "granted").inc()
        else:
            self._child(self.approvals, "expired" if p.expired else "denied").inc()

    def _budget(self, ev: Any) -> None:
        p = ev.payload
        self._child(
            self.budget,
            str(getattr(p.scope, "value", p.scope)),
            str(getattr(p.unit, "value", p.unit)),
        ).inc()

    def _budget_alert(self, ev: Any) -> None:
        # Alert-worthy: one warning line per committed BudgetAlert, for log-based alerting.
        p = ev.payload
        self._child(self.budget_alerts, p.scope, p.unit).inc()
        _log.warning(
            "budget.alert",
            session_id=ev.session_id,
            seq=ev.seq,
            agent=ev.agent,
            scope=p.scope,
            key=p.key,
            unit=p.unit,
            threshold=p.threshold,
            spent=p.spent,
            limit=p.limit,
            fraction=p.fraction,
        )

    def _rejected(self, ev: Any) -> None:
        self._child(self.rejected, ev.payload.request_type).inc()

    def _queued(self, ev: Any) -> None:
        self.queued.inc()

    def _queue_dropped(self, ev: Any) -> None:
        self.queue_dropped.inc()

    def _child_ended(self, ev: Any) -> None:
        status = ev.payload.status
        self._child(self.children, str(getattr(status, "value", status))).inc()


def _remember(table: dict[Any, Any], key: Any, value: Any) -> None:
    if len(table) >= _MAX_PENDING:
        table.pop(next(iter(table)))
    table[key] = value


# Event type -> what it counts (one handler per event type).
_HANDLERS: dict[str, Any] = {
    "TurnStarted": SessionMetrics._turn_started,
    "TurnCompleted": SessionMetrics._turn_ended,
    "TurnFailed": SessionMetrics._turn_ended,
    "TurnCancelled": SessionMetrics._turn_ended,
    "LlmCallRequested": SessionMetrics._llm_requested,
    "LlmCallCompleted": SessionMetrics._llm_completed,
    "LlmCallFailed": SessionMetrics._llm_failed,
    "ContextCompacted": SessionMetrics._compacted,
    "ToolCallRequested": SessionMetrics._tool_requested,
    "ToolCallCompleted": SessionMetrics._tool_ended,
    "ToolCallFailed": SessionMetrics._tool_ended,
    "ApprovalGranted": SessionMetrics._approval_ended,
    "ApprovalDenied": SessionMetrics._approval_ended,
    "BudgetExceeded": SessionMetrics._budget,
    "BudgetAlert": SessionMetrics._budget_alert,
    "RequestRejected": SessionMetrics._rejected,
    "ChildSessionCompleted": SessionMetrics._child_ended,
    "MessageQueued": SessionMetrics._queued,
    "QueuedMessageDropped": SessionMetrics._queue_dropped,
}


def session_endpoint(process: Any, config: EndpointConfig) -> Endpoint:
    """The endpoint of a session-worker process (`streams.app.SessionProcess`)."""
    metrics = SessionMetrics(process.worker, process.effects)
    return Endpoint(
        config,
        metrics.registry,
        ready=metrics.ready,
        live=metrics.live,
        refresh=metrics.refresh,
        name="session",
    )
