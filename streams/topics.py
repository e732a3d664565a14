"""turnlog's topics: names, explicit configs, and an idempotent `ensure_topics`.

Rule: the broker never auto-creates a topic (auto.create.topics.enable=false); every
topic is created here with every config that matters spelled out, so a topic's retention
never depends on a broker default. `ensure_topics` creates what is missing and only
*reports* an existing topic whose partitions or configs differ (changing the partition
count of a keyed topic would move sessions between partitions; configs are changed only
when asked with fix_configs=True) — except the configs in ALWAYS_FIXED, which are set
every time (the requests topic's timestamp type: a topic created by an older turnlog
gets the broker's append time on the next `turnlog topics ensure`).

All session-keyed topics (requests, events, deltas, dlq) share one partition count so
they are co-partitioned: session S lives in partition P of each of them.

Sizes: the requests topic accepts REQUESTS_MAX_BYTES; the events topic as much (an event
holds at most one content field of at most TURNLOG_MAX_TEXT_BYTES, which the settings
keep below it by agents.limits.EVENT_OVERHEAD_BYTES); the DLQ that much plus error
headers. WORKER_MAX_REQUEST_SIZE sizes the session worker's producers for the largest
of the topics they write, so anything the topics accept can be written.

Time: the requests topic stamps each record with the broker's append time
(message.timestamp.type=LogAppendTime): the session worker takes it as the request's
ingest time, the time deadlines are measured from (on a topic created before, the next
`turnlog topics ensure` sets it; until then the worker uses its own clock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.errors import ExternalError

__all__ = [
    "ALWAYS_FIXED",
    "CHECKPOINT_PARTITIONS",
    "DEFAULT_FETCH_WAIT_MS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DLQ_MAX_BYTES",
    "EVENTS_MAX_BYTES",
    "REQUESTS_MAX_BYTES",
    "SNAPSHOTS_MAX_BYTES",
    "TOPIC_SPECS",
    "WORKER_MAX_REQUEST_SIZE",
    "EnsureReport",
    "TopicDrift",
    "TopicError",
    "TopicNames",
    "TopicSpec",
    "delete_topics",
    "ensure_topics",
    "expected_configs",
    "requests_retention_configs",
    "topic_names",
]

DAY_MS = 24 * 60 * 60 * 1000
FOREVER = "-1"
MiB = 1024 * 1024

# What the topics accept (max.message.bytes), and what the worker's producers may send.
REQUESTS_MAX_BYTES = 4 * MiB
EVENTS_MAX_BYTES = 4 * MiB
DLQ_MAX_BYTES = REQUESTS_MAX_BYTES + 64 * 1024  # a request plus error headers
# A session's state, compressed: its window of the conversation. A larger one is not
# written (the session is then restored from its events).
SNAPSHOTS_MAX_BYTES = 8 * MiB
WORKER_MAX_REQUEST_SIZE = max(
    REQUESTS_MAX_BYTES, EVENTS_MAX_BYTES, DLQ_MAX_BYTES, SNAPSHOTS_MAX_BYTES
)
# TURNLOG_MAX_REQUEST_BYTES when unset: everything the requests topic accepts.
DEFAULT_MAX_REQUEST_BYTES = REQUESTS_MAX_BYTES
# How long the broker may hold a worker's or projector's fetch that finds nothing new
# (fetch.max.wait.ms; TURNLOG_FETCH_WAIT_MS). A fetch returns as soon as any of its
# partitions has a record, so in steady state this adds no latency; it bounds only how
# late a partition is read after it was paused or moved (a restore's end, a rebalance):
# the client asks a broker again only once its fetch in flight there has returned. What
# it does cost is empty fetches while idle: at 20 ms an idle worker used 3 % of a core
# and the broker about 2 % more to answer it; at 200 ms, 1 % and next to nothing
# (bench/idle.py; BENCHMARKS.md, "Idle cost" and "Fetch wait").
DEFAULT_FETCH_WAIT_MS = 200
# Configs `ensure_topics` sets on an existing topic even without fix_configs: changing
# them moves no data and loses nothing, and turnlog's guarantees depend on them.
ALWAYS_FIXED = frozenset({"message.timestamp.type"})
# How turnlog's records are stored and sent: zstd batches (the producers compress, the
# topics keep them as sent and compress what another producer sends uncompressed). The
# events are Avro with many repeated ids and names: bench/peers.py measures the bytes on
# disk per turn with and without it (bench/peers, BENCHMARKS.md: Topic compression).
COMPRESSION = "zstd"

# Audit-chain heads are one totally ordered stream.
CHECKPOINT_PARTITIONS = 1

_TOPIC_ERRORS = {36: "already exists"}


class TopicError(ExternalError):
    """The broker refused or failed a topic operation."""


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The full topic names for one prefix ("" in production, "t1a2b3c4." in a test run)."""

    requests: str
    events: str
    deltas: str
    dlq: str
    checkpoints: str
    snapshots: str
    agents: str
    schedules: str
    schedule_history: str

    def all(self) -> tuple[str, ...]:
        return (
            self.requests,
            self.events,
            self.deltas,
            self.dlq,
            self.checkpoints,
            self.snapshots,
            self.agents,
            self.schedules,
            self.schedule_history,
        )


def topic_names(prefix: str = "") -> TopicNames:
    return TopicNames(
        requests=f"{prefix}turnlog.requests",
        events=f"{prefix}turnlog.events",
        deltas=f"{prefix}turnlog.deltas",
        dlq=f"{prefix}turnlog.requests.dlq",
        checkpoints=f"{prefix}turnlog.audit.checkpoints",
        snapshots=f"{prefix}turnlog.snapshots",
        agents=f"{prefix}turnlog.agents",
        schedules=f"{prefix}turnlog.schedules",
        schedule_history=f"{prefix}turnlog.schedules.history",
    )


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: the TopicNames attribute it fills, its partitions and its configs.

    `partitions=None` means "the session partition count" given to ensure_topics.
    min.insync.replicas is added by `expected_configs` from the replication factor.
    """

    key: str
    suffix: str
    configs: Mapping[str, str]
    partitions: int | None = None
    purpose: str = ""


TOPIC_SPECS: tuple[TopicSpec, ...] = (
    TopicSpec(
        key="requests",
        suffix="turnlog.requests",
        purpose="inputs: user messages, approvals, cancel, fork, effect outcomes",
        configs={
            "compression.type": COMPRESSION,
            "cleanup.policy": "delete",
            "retention.ms": str(7 * DAY_MS),
            "retention.bytes": "-1",
            # A tool result or a pasted document travels here once; allow more than 1 MiB.
            "max.message.bytes": str(REQUESTS_MAX_BYTES),
            # The broker's clock stamps each request: the worker's ingest time, which
            # deadlines are measured from (never the producer's claim).
            "message.timestamp.type": "LogAppendTime",
        },
    ),
    TopicSpec(
        key="events",
        suffix="turnlog.events",
        purpose="the session log, the source of truth: kept forever",
        configs={
            "compression.type": COMPRESSION,
            "cleanup.policy": "delete",
            "retention.ms": FOREVER,
            "retention.bytes": "-1",
            "max.message.bytes": str(EVENTS_MAX_BYTES),
            "unclean.leader.election.enable": "false",
        },
    ),
    TopicSpec(
        key="deltas",
        suffix="turnlog.deltas",
        purpose="streamed token deltas for live clients",
        configs={
            "cleanup.policy": "delete",
            "retention.ms": str(60 * 60 * 1000),
            "retention.bytes": "-1",
            # Small segments, or retention could not drop anything for a week.
            "segment.ms": str(10 * 60 * 1000),
            "max.message.bytes": str(1 * MiB),
        },
    ),
    TopicSpec(
        key="dlq",
        suffix="turnlog.requests.dlq",
        purpose="inputs that could not be decoded, with error headers",
        configs={
            "compression.type": COMPRESSION,
            "cleanup.policy": "delete",
            "retention.ms": str(30 * DAY_MS),
            "retention.bytes": "-1",
            # Must hold anything that fitted in requests, plus error headers.
            "max.message.bytes": str(DLQ_MAX_BYTES),
        },
    ),
    TopicSpec(
        key="snapshots",
        suffix="turnlog.snapshots",
        purpose="each session's latest state and each partition's restore point (compacted)",
        configs={
            "compression.type": COMPRESSION,
            "cleanup.policy": "compact",
            # Compaction never touches the active segment: roll it hourly (or at 64 MiB)
            # so a restore reads about one record per session, not every one written.
            "segment.ms": str(60 * 60 * 1000),
            "segment.bytes": str(64 * MiB),
            "min.cleanable.dirty.ratio": "0.5",
            "max.message.bytes": str(SNAPSHOTS_MAX_BYTES),
            "unclean.leader.election.enable": "false",
        },
    ),
    TopicSpec(
        key="agents",
        suffix="turnlog.agents",
        purpose="agent definition versions by hash, which sessions pin (compacted: forever)",
        partitions=1,
        configs={
            "compression.type": COMPRESSION,
            "cleanup.policy": "compact",
            "max.message.bytes": str(1 * MiB),
            "unclean.leader.election.enable": "false",
        },
    ),
    TopicSpec(
        key="schedules",
        suffix="turnlog.schedules",
        purpose="schedules, their pause state and each one's last firing (compacted: forever)",
        configs={
            "compression.type": COMPRESSION,
            # Keyed per schedule and aspect (definition, pause state, last firing): the
            # latest of each is kept, so a scheduler restores from about 3 records each.
            "cleanup.policy": "compact",
            "segment.ms": str(60 * 60 * 1000),
            "min.cleanable.dirty.ratio": "0.5",
            "max.message.bytes": str(1 * MiB),
            "unclean.leader.election.enable": "false",
        },
    ),
    TopicSpec(
        key="schedule_history",
        suffix="turnlog.schedules.history",
        purpose="every slot the scheduler handled, in its firing's transaction: kept forever",
        configs={
            "compression.type": COMPRESSION,
            # turnlog.schedules keeps only each schedule's last firing (compaction): the
            # history of runs, which schedule_runs is rebuilt from, lives here.
            "cleanup.policy": "delete",
            "retention.ms": FOREVER,
            "retention.bytes": "-1",
            "max.message.bytes": str(1 * MiB),
            "unclean.leader.election.enable": "false",
        },
    ),
    TopicSpec(
        key="checkpoints",
        suffix="turnlog.audit.checkpoints",
        purpose="audit-chain heads published by the projector: kept forever",
        partitions=CHECKPOINT_PARTITIONS,
        configs={
            "compression.type": COMPRESSION,
            "cleanup.policy": "delete",
            "retention.ms": FOREVER,
            "retention.bytes": "-1",
            "max.message.bytes": str(1 * MiB),
            "unclean.leader.election.enable": "false",
        },
    ),
)


# The shortest retention `requests_retention_ms` accepts: shorter, and a worker that is
# down for a restart or a rebalance could find its inputs deleted before it read them.
MIN_REQUESTS_RETENTION_MS = 60 * 60 * 1000


def requests_retention_configs(retention_ms: int) -> dict[str, str]:
    """The requests topic's configs for a retention of `retention_ms` (an operator's
    choice: the topic holds the raw text clients sent and models answered, before any
    guardrail redacted it). Segments roll at a quarter of it (at most a day), or the
    broker could delete nothing until the default week-long segment closes."""
    if retention_ms < MIN_REQUESTS_RETENTION_MS:
        raise TopicError(
            f"The requests topic's retention must be at least "
            f"{MIN_REQUESTS_RETENTION_MS // 60_000} minutes, not {retention_ms} ms: a worker "
            "down for a restart must still find the inputs it has not read."
        )
    segment = max(min(retention_ms // 4, DAY_MS), 10 * 60 * 1000)
    return {"retention.ms": str(retention_ms), "segment.ms": str(segment)}


def expected_configs(spec: TopicSpec, replication_factor: int = 1) -> dict[str, str]:
    # With RF=1 nothing else is possible; above that, one replica may be lost.
    min_isr = 1 if replication_factor < 3 else 2
    return {**spec.configs, "min.insync.replicas": str(min_isr)}


@dataclass(frozen=True, slots=True)
class TopicDrift:
    topic: str
    setting: str  # "partitions" or a config name
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual}, expected {self.expected}"


@dataclass(slots=True)
class EnsureReport:
    names: TopicNames
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    drift: list[TopicDrift] = field(default_factory=list)
    fixed: list[TopicDrift] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.drift

    def lines(self) -> list[str]:
        rows = [f"created   {name}" for name in self.created]
        rows += [f"ok        {name}" for name in self.unchanged]
        rows += [f"fixed     {item}" for item in self.fixed]
        rows += [f"DRIFT     {item}" for item in self.drift]
        return rows


def _admin(bootstrap: str, timeout_ms: int) -> Any:
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped,unused-ignore]

    return AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)


async def _partition_counts(admin: Any, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for topic in await admin.describe_topics(names):
        if topic["error_code"] == 0:
            counts[topic["topic"]] = len(topic["partitions"])
    return counts


async def _topic_configs(admin: Any, names: list[str]) -> dict[str, dict[str, str]]:
    from aiokafka.admin.config_resource import (  # type: ignore[import-untyped,unused-ignore]
        ConfigResource,
        ConfigResourceType,
    )

    if not names:
        return {}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    result: dict[str, dict[str, str]] = {}
    for response in responses:
        for error_code, error_message, _rtype, name, entries in response.resources:
            if error_code:
                raise TopicError(
                    f"Describing the configs of topic {name} failed: "
                    f"error {error_code} {error_message or ''}".strip()
                )
            result[name] = {entry[0]: entry[1] for entry in entries}
    return result


async def _dynamic_configs(admin: Any, name: str) -> dict[str, str]:
    """The configs set on topic `name` itself (not broker or default values)."""
    from aiokafka.admin.config_resource import (  # type: ignore[import-untyped,unused-ignore]
        ConfigResource,
        ConfigResourceType,
    )

    dynamic_topic_config = 1  # DescribeConfigs v1+ config_source
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    return {
        entry[0]: entry[1]
        for response in responses
        if response.API_VERSION >= 1  # v0 has is_default there, not the source
        for *_, entries in response.resources
        for entry in entries
        if entry[3] == dynamic_topic_config and entry[1] is not None
    }


async def _wait_for_leaders(admin: Any, names: list[str], timeout: float) -> None:
    """A created topic is usable only once every partition has a leader."""
    deadline = time.monotonic() + timeout
    while True:
        pending = []
        for topic in await admin.describe_topics(names):
            partitions = topic.get("partitions") or []
            if (
                topic["error_code"] != 0
                or not partitions
                or any(p["leader"] < 0 for p in partitions)
            ):
                pending.append(topic["topic"])
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TopicError(f"Topics {', '.join(pending)} have no leader after {timeout}s.")
        await asyncio.sleep(0.1)


async def ensure_topics(
    bootstrap: str,
    prefix: str = "",
    partitions: int = 8,
    *,
    replication_factor: int = 1,
    fix_configs: bool = False,
    timeout: float = 30.0,
    requests_retention_ms: int | None = None,
) -> EnsureReport:
    """Create the missing turnlog topics with their configs; report (or fix) drift.

    Idempotent and safe to run concurrently (a topic created by someone else meanwhile
    counts as existing and is checked like any other). `requests_retention_ms`: the
    requests topic's retention (requests_retention_configs), set on an existing topic
    too — an operator who asks for it means it.
    """
    from aiokafka.admin import NewTopic  # type: ignore[import-untyped,unused-ignore]

    names = topic_names(prefix)
    report = EnsureReport(names=names)
    wanted = {getattr(names, spec.key): spec for spec in TOPIC_SPECS}
    always_fixed = dict.fromkeys(wanted, ALWAYS_FIXED)
    if requests_retention_ms is not None:
        retention = requests_retention_configs(requests_retention_ms)
        spec = wanted[names.requests]
        wanted[names.requests] = dataclasses.replace(spec, configs={**spec.configs, **retention})
        always_fixed[names.requests] = ALWAYS_FIXED | set(retention)
    admin = _admin(bootstrap, int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name,
                        wanted[name].partitions or partitions,
                        replication_factor,
                        topic_configs=expected_configs(wanted[name], replication_factor),
                    )
                    for name in missing
                ],
                timeout_ms=int(timeout * 1000),
            )
            for name, code, message in response.topic_errors:
                if code == 0:
                    report.created.append(name)
                elif code != 36:  # TOPIC_ALREADY_EXISTS: created concurrently, check below
                    raise TopicError(
                        f"Creating topic {name} failed: error {code} {message or ''}".strip()
                    )
            if report.created:
                await _wait_for_leaders(admin, report.created, timeout)
        to_check = [name for name in wanted if name not in report.created]
        counts = await _partition_counts(admin, to_check)
        configs = await _topic_configs(admin, to_check)
        for name in to_check:
            spec = wanted[name]
            drift: list[TopicDrift] = []
            want_partitions = spec.partitions or partitions
            if counts.get(name) != want_partitions:
                drift.append(
                    TopicDrift(name, "partitions", str(want_partitions), str(counts.get(name)))
                )
            expected = expected_configs(spec, replication_factor)
            actual = configs.get(name, {})
            config_drift = [
                TopicDrift(name, key, value, str(actual.get(key)))
                for key, value in expected.items()
                if actual.get(key) != value
            ]
            if config_drift and fix_configs:
                await _alter_configs(admin, name, expected, timeout)
                report.fixed.extend(config_drift)
                config_drift = []
            elif any(d.setting in always_fixed[name] for d in config_drift):
                # Set only these. AlterConfigs replaces the whole dynamic config, so
                # every config set on the topic now is sent along as it is.
                keys = always_fixed[name]
                fixed = {k: expected[k] for k in keys if k in expected}
                dynamic = await _dynamic_configs(admin, name)
                await _alter_configs(admin, name, {**dynamic, **fixed}, timeout)
                report.fixed.extend(d for d in config_drift if d.setting in keys)
                config_drift = [d for d in config_drift if d.setting not in keys]
            drift.extend(config_drift)
            if drift:
                report.drift.extend(drift)
            else:
                report.unchanged.append(name)
    finally:
        await admin.close()
    return report


async def _alter_configs(admin: Any, name: str, configs: Mapping[str, str], timeout: float) -> None:
    from aiokafka.admin.config_resource import (  # type: ignore[import-untyped,unused-ignore]
        ConfigResource,
        ConfigResourceType,
    )

    # AlterConfigs replaces the topic's whole dynamic config: send every managed key.
    responses = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, dict(configs))]
    )
    for response in responses:
        for error_code, error_message, _rtype, topic in response.resources:
            if error_code:
                raise TopicError(
                    f"Altering the configs of topic {topic} failed: "
                    f"error {error_code} {error_message or ''}".strip()
                )
    # The controller applies the change; the broker's view follows a moment later.
    deadline = time.monotonic() + timeout
    while True:
        actual = (await _topic_configs(admin, [name])).get(name, {})
        if all(actual.get(key) == value for key, value in configs.items()):
            return
        if time.monotonic() >= deadline:
            raise TopicError(f"The new configs of topic {name} did not apply within {timeout}s.")
        await asyncio.sleep(0.1)


async def delete_topics(bootstrap: str, prefix: str, *, timeout: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with `prefix` (test cleanup). Refuses ""."""
    if not prefix:
        raise ValueError("delete_topics needs a non-empty prefix")
    admin = _admin(bootstrap, int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        doomed = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed, timeout_ms=int(timeout * 1000))
        return doomed
    finally:
        await admin.close()
