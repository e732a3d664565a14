"""The session worker: requests in, facts out, exactly once.

Rule of this module: every fact a session emits, the session's new state and the input
offset that produced them are committed in ONE Kafka transaction, or not at all.

How (the classic consume-transform-produce loop, EOS with per-partition producers):

* A consumer in group `<prefix>turnlog-session` reads `turnlog.requests` (read_committed,
  no auto commit). Several worker processes share the partitions.
* For each assigned partition p the worker opens a transactional producer whose id is
  `<prefix>turnlog-session-p<p>`. Initialising it fences any previous owner of p (a
  SIGKILLed worker, a zombie) and aborts its open transaction before we read anything.
* The state of p's sessions is rebuilt by folding partition p of `turnlog.events` (read
  committed) through the pure FSM. The events topic IS the changelog: a second copy of
  the state in a changelog topic would be written on every input, and since a session's
  state includes its conversation, that copy would grow quadratically with the session —
  the very failure mode turnlog exists to avoid.
* Each partition has its own loop (streams._partition); everything queued for p since
  its last commit is p's next transaction: decode → decide → evolve → append events
  (partition p) → commit. Undecodable inputs go to the DLQ in the same transaction. A
  child session's end is reported to its parent in the same transaction too, so it can
  be neither lost nor doubled. A slow commit on one partition holds up no other.
* The input offset is committed in the transaction as a header (INPUT_NEXT_HEADER) on
  its last event, so it is read back with the state it belongs to; the consumer group's
  offset (send_offsets_to_transaction, two more broker round trips) is committed in an
  offsets-only transaction once the partition idled 0.1 s, at most once a second, and
  rides on a transaction of inputs only when it has no event or when a busy partition
  did not idle for five seconds (streams._partition). A new owner resumes at the larger
  of the two. The group offset is thus about a second behind (at most five under
  unbroken load): lag monitoring sees the truth, slightly late.
* Effects (LLM calls, tools, summaries, child sessions) are started only after the commit,
  by the EffectRunner, and report back as requests; after an assignment, pending effects
  found in the rebuilt state are re-issued. Outcomes fold once, by effect id.
* Trace context: each event is in the trace of the request that caused it (a request
  without one starts a trace derived from its id), its W3C traceparent carried on the
  input's first event and derived for the others (streams._headers); effects report
  in the trace of their session's latest event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import IllegalStateError

from agents.effects import next_deadline
from agents.events import Event
from agents.fsm import evolve, fork_base, fork_source, initial_state
from agents.registry import AgentRegistry
from agents.snapshots import state_of
from agents.state import SessionState
from streams import _txn_retry
from streams._deadlines import DeadlineIndex
from streams._headers import EventTraces
from streams._partition import EffectSync, InlineTools, OwnedPartition, Shared
from streams._snapshots import Keeper, SnapshotReader, read_snapshot_index
from streams.logread import (
    INPUT_NEXT_HEADER,
    read_partition_events,
    read_partition_keys,
    read_partition_log,
    read_partition_log_end,
    read_session_events,
)
from streams.logs import get_logger
from streams.partitioning import partition_for
from streams.telemetry import observe_restore
from streams.topics import (
    COMPRESSION,
    DEFAULT_FETCH_WAIT_MS,
    DEFAULT_MAX_REQUEST_BYTES,
    WORKER_MAX_REQUEST_SIZE,
    TopicNames,
)

# Events of whole partitions of the events topic, by partition, read once per restore.
_Logs = dict[int, list[Event]]

__all__ = [
    "INPUT_NEXT_HEADER",
    "EffectSync",
    "SessionWorker",
    "read_partition_events",
    "read_partition_log",
    "read_session_events",
]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: SessionWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._worker._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._worker._on_assigned(assigned)


class SessionWorker:
    """Runs the session FSM for the partitions this process is assigned."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topics: TopicNames,
        partitions: int,
        registry: AgentRegistry,
        effect_sync: EffectSync | None = None,
        effect_drop: Callable[[int], None] | None = None,
        effect_release: Callable[[int], None] | None = None,
        inline: InlineTools | None = None,
        group_id: str | None = None,
        transactional_prefix: str | None = None,
        max_poll_records: int = 500,
        max_queue: int = 2000,
        group_commit_s: float = 1.0,
        session_timeout_ms: int = 6000,
        max_sessions: int = 10_000,
        client_id: str = "turnlog-session",
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        fetch_wait_ms: int = DEFAULT_FETCH_WAIT_MS,
    ) -> None:
        self._max_request_bytes = max_request_bytes  # larger request records: DLQ
        self.fetch_wait_ms = fetch_wait_ms
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions = partitions
        self.registry = registry
        # Set by the process (SessionProcess): re-reads turnlog.agents (rate-limited).
        self.refresh_versions: Any = None
        self._effect_sync = effect_sync
        self._effect_drop = effect_drop
        self._effect_release = effect_release
        self._inline = inline
        prefix = topics.requests[: -len("turnlog.requests")]
        self.group_id = group_id or f"{prefix}turnlog-session"
        self._tx_prefix = transactional_prefix or f"{prefix}turnlog-session"
        self._max_poll_records = max_poll_records
        self._max_queue = max_queue
        self._group_commit_s = group_commit_s
        # Sessions held in memory by this worker (idle ones beyond it are evicted).
        self._max_sessions = max_sessions
        self._session_timeout_ms = session_timeout_ms
        self._client_id = client_id
        self._parts: dict[int, OwnedPartition] = {}
        # Partitions revoked by a rebalance that is not over yet: if it gives them back,
        # they resume as they were (sessions, effects in flight), without a restore.
        self._suspended: dict[int, OwnedPartition] = {}
        # Set by a clean stop: a rebalance meanwhile gives us nothing new to decide (we
        # would commit decisions whose effects the draining runner never starts).
        self._stopping = False
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        # Reads end offsets (no group): is an events partition still where we left it,
        # and how far a requests partition reaches when we take it over.
        self._probe: AIOKafkaConsumer | None = None
        self._shared: Shared | None = None
        self._log = get_logger(component="session-worker")
        # Session ids with events in each partition this worker does not own, and the
        # offset that index reaches: a fork naming an unknown source is rejected after
        # reading only the keys added since the last look, never a whole partition.
        self._directory: dict[int, tuple[set[str], int]] = {}
        self.stats = {
            "inputs": 0,
            "events": 0,
            "dlq": 0,
            "batches": 0,
            "rerouted": 0,
            "fork_source_reads": 0,
            "fork_unknown_sources": 0,
            "partitions_kept": 0,
            "partitions_restored": 0,
            "snapshots": 0,
            "sessions_loaded": 0,
            "sessions_rebuilt": 0,
            "sessions_evicted": 0,
            "snapshots_unreadable": 0,
            "restore_events_read": 0,
            "fork_source_in_hand": 0,
            "txn_timed": 0,
            "txn_decide_us": 0,
            "txn_write_us": 0,
            "txn_commit_us": 0,
            "group_commits": 0,
        }
        self.deadlines = DeadlineIndex()
        self._reader = SnapshotReader(
            self.bootstrap, topics.snapshots, client_id=f"{client_id}-snapshots"
        )
        self.assigned_event = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        _txn_retry.shorten()  # its partitions' transactions run back to back
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(300, self._session_timeout_ms // 6),
            max_poll_records=self._max_poll_records,
            fetch_max_wait_ms=self.fetch_wait_ms,
            # Round robin, aiokafka's own: partitions that a rebalance leaves in place are
            # resumed without a restore (see _on_assigned). Two sticky assignors were
            # tried and dropped: aiokafka's (class-level state, no generation: it left
            # partitions with a member that was gone) and one of turnlog's own (ranked
            # by rendezvous hashing), with which bench/soak.py saw the group never
            # settle after a broker restart (one member's join never completed while
            # the others rebalanced every second); with round robin the same soak passes.
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
        )
        self._probe = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=f"{self._client_id}-probe",
        )
        await self._probe.start()
        await self._reader.start()
        self._shared = Shared(
            topics=self.topics,
            partitions=self.partitions,
            registry=self.registry,
            group_id=self.group_id,
            consumer=self._consumer,
            fork_base=self._fork_base,
            forget=self._forget,
            stats=self.stats,
            log=self._log,
            effect_sync=self._effect_sync,
            effect_drop=self._effect_drop,
            inline=self._inline,
            refresh_versions=self.refresh_versions,
            max_batch=self._max_poll_records,
            max_queue=self._max_queue,
            group_commit_s=self._group_commit_s,
            session_budget=self._max_sessions,
            snapshot_reader=self._reader,
            rebuild=self._rebuild_session,
            deadlines=self.deadlines,
            max_request_bytes=self._max_request_bytes,
            new_producer=self._fencing_producer,
        )
        self._consumer.subscribe([self.topics.requests], listener=_Listener(self))
        await self._consumer.start()
        self._log.info("worker.started", group=self.group_id)

    async def stop(self) -> None:
        for part in [*self._parts.values(), *self._suspended.values()]:
            await part.close()
        self._parts.clear()
        self._suspended.clear()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._probe is not None:
            await self._probe.stop()
        await self._reader.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch until `stop` is set, handing each partition's records to its loop."""
        assert self._consumer is not None, "start() first"
        consumer = self._consumer
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=self._max_poll_records)
            for tp, records in batch.items():
                part = self._parts.get(tp.partition)
                if part is not None:
                    part.offer(records)
                elif records:
                    # Assigned, but its state is still being restored (the consumer
                    # fetches as soon as it is assigned): read these again once it is.
                    # (Or fenced: paused until the rebalance that must follow.)
                    consumer.seek(tp, records[0].offset)
                    consumer.pause(tp)
            for part in list(self._parts.values()):
                if part.catch_up is not None and not part.queue:
                    with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                        part.fetched_to(await consumer.position(part.tp))

    async def suspend_all(self) -> None:
        """Stop deciding (each partition's transaction in flight finishes; its effects
        start): a clean stop then drains the effects before it leaves the group."""
        async with self._lock:
            self._stopping = True
            for part in self._parts.values():
                await part.suspend()

    def due(self, now: datetime) -> list[tuple[str, datetime]]:
        """(session, deadline) of the sessions held whose deadline is at or before
        `now`: what the ticker sends Ticks for (it costs the due sessions, not all)."""
        return self.deadlines.due(now)

    def sessions(self) -> dict[str, SessionState]:
        """Current state of every session this worker holds in memory (inspection)."""
        out: dict[str, SessionState] = {}
        for part in self._parts.values():
            out.update(part.sessions)
        return out

    def owned_partitions(self) -> set[int]:
        return set(self._parts)

    def _forget(self, part: OwnedPartition) -> None:
        if self._parts.get(part.number) is part:
            del self._parts[part.number]

    # ------------------------------------------------------------------ rebalance

    async def _on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """The group rebalances (the eager protocol revokes everything first). Suspend
        the partitions — their last transaction finishes, nothing new starts — but keep
        their sessions and effects: some come straight back."""
        async with self._lock:
            for tp in revoked:
                part = self._parts.pop(tp.partition, None)
                if part is not None:
                    await part.suspend()
                    self._suspended[part.number] = part
            self._log.info("partitions.revoked", partitions=sorted(tp.partition for tp in revoked))

    async def _on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        async with self._lock:
            numbers = {tp.partition for tp in assigned}
            suspended, self._suspended = self._suspended, {}
            # Lost for good: stop their effects (the new owner decides about them).
            for p in sorted(set(suspended) - numbers):
                await suspended[p].close()
            new = sorted(p for p in numbers if p not in self._parts)
            if self._stopping:
                # Leaving the group shortly: whoever gets these next restores them.
                for p in new:
                    if p in suspended:
                        await suspended[p].close()
                self._log.info("partitions.ignored_while_stopping", partitions=new)
                return
            self._log.info("partitions.restoring", partitions=new)
            started = time.monotonic()
            parts = await asyncio.gather(*(self._take(p, suspended.get(p)) for p in new))
            for part in parts:
                # Started only once in _parts: the fetch loop pauses records of a
                # partition it does not know yet.
                self._parts[part.number] = part
                part.start()
            if self._shared is not None and self._parts:
                self._shared.session_budget = max(1, self._max_sessions // len(self._parts))
            observe_restore(self.stats, time.monotonic() - started, len(new))  # metrics
            self._log.info(
                "partitions.assigned",
                partitions=new,
                lost=sorted(set(suspended) - numbers),
                kept=sorted(p for p in new if suspended.get(p) is self._parts[p]),
                sessions=sum(len(p.sessions) for p in parts),
                restore_ms=round((time.monotonic() - started) * 1000, 1),
            )
        self.assigned_event.set()

    async def _take(self, p: int, held: OwnedPartition | None) -> OwnedPartition:
        """Partition p, assigned to us (not started yet): what we held if nobody wrote
        to its events partition meanwhile, else restored from the log."""
        producer = await self._fencing_producer(p)
        if held is not None:
            if held.events_end is not None and held.events_end == await self._events_end(p):
                await held.resume(producer)
                self.stats["partitions_kept"] += 1
                return held
            # Someone else owned it meanwhile: what we hold is stale, effects included.
            self._log.info("partition.changed_hands", partition=p)
            await held.close()
        part = await self._open_partition(p, producer)
        self.stats["partitions_restored"] += 1
        return part

    async def _events_end(self, p: int) -> int:
        assert self._probe is not None
        tp = TopicPartition(self.topics.events, p)
        return int((await self._probe.end_offsets([tp]))[tp])

    async def _fencing_producer(self, p: int) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            transactional_id=f"{self._tx_prefix}-p{p}",
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            client_id=f"{self._client_id}-p{p}",
            # Anything the topics it writes accept (events, DLQ, requests): a record
            # over aiokafka's default 1 MiB must not fail every retry of its batch.
            max_request_size=WORKER_MAX_REQUEST_SIZE,
            compression_type=COMPRESSION,
        )
        await producer.start()
        # Wait until the broker has given us the producer id: that fences the previous
        # owner and completes (aborts or finishes committing) its open transaction, so the
        # events and the input offsets we read next are consistent.
        await producer.begin_transaction()
        await producer.abort_transaction()
        return producer

    async def _open_partition(self, p: int, producer: AIOKafkaProducer) -> OwnedPartition:
        """Partition p restored from its events (`producer` has fenced the previous
        owner). Its effects start once the inputs already in the partition are decided:
        an outcome the previous owner reported then folds first, instead of the effect
        being run again."""
        assert self._consumer is not None and self._shared is not None
        sessions, traces, logged, events_end, keeper = await self._restore(p)
        # Read the committed group offset only now, after the fencing: the consumer may
        # have fetched it before the previous owner's last transaction completed.
        requests = TopicPartition(self.topics.requests, p)
        committed = await self._consumer.committed(requests) or 0
        assert self._probe is not None
        reach = int((await self._probe.end_offsets([requests]))[requests])
        part = OwnedPartition(
            self._shared,
            p,
            producer,
            sessions,
            traces,
            position=max(committed, logged),
            group_offset=committed,
            events_end=events_end,
            keeper=keeper,
        )
        for session_id, state in sessions.items():
            self.deadlines.set(session_id, next_deadline(state))
        part.catch_up = reach
        part.on_caught_up = lambda: self._start_restored_effects(part)
        if self._effect_sync is not None:
            # What was pending when we took over: the runner holds the calls it must not
            # start blindly (tools that are not idempotent), and starts nothing yet.
            for session_id, state in sessions.items():
                self._effect_sync(p, session_id, state, traces.get(session_id), None, restored=True)
        return part

    def _start_restored_effects(self, part: OwnedPartition) -> None:
        if self._effect_sync is None or part.closed:
            return
        self._log.info("partition.caught_up", partition=part.number, sessions=len(part.sessions))
        if self._effect_release is not None:
            self._effect_release(part.number)
        for session_id, state in part.sessions.items():
            self._effect_sync(part.number, session_id, state, part.traces.get(session_id), None)

    async def _restore(
        self, p: int
    ) -> tuple[dict[str, SessionState], dict[str, str | None], int, int, Keeper]:
        """Partition p from its snapshots and the events newer than them: the sessions
        held in memory (a turn in progress, or events after their snapshot), their latest
        traceparent, the input offset consumed (the restore point's, or the last
        INPUT_NEXT_HEADER after it), the events partition's end, and the snapshot index.

        No event older than the restore point is read, and an event a session's snapshot
        covers is skipped. A session whose snapshot this code cannot read is rebuilt
        from all its events (one read of the partition), logged and counted."""
        index = await read_snapshot_index(
            self.bootstrap, self.topics.snapshots, p, client_id=f"{self._client_id}-restore"
        )
        log, events_end = await read_partition_log_end(
            self.bootstrap,
            self.topics.events,
            p,
            start=index.restore_from,
            client_id=f"{self._client_id}-restore",
        )
        self.stats["restore_events_read"] += len(log)
        stored = index.stored
        states: dict[str, SessionState] = {}
        rebuild = set(index.unreadable)
        # Sessions with events after an idle snapshot need that snapshot too.
        behind = {
            ev.session_id
            for ev, _ in log
            if ev.session_id in stored
            and ev.seq > stored[ev.session_id].seq
            and stored[ev.session_id].snapshot is None
        }
        if behind:
            again = await read_snapshot_index(
                self.bootstrap,
                self.topics.snapshots,
                p,
                keep=behind,
                client_id=f"{self._client_id}-restore",
            )
            for sid in behind:
                entry = again.stored.get(sid)
                if entry is not None and entry.seq == stored[sid].seq:
                    stored[sid].snapshot = entry.snapshot
        for sid, entry in stored.items():
            if entry.snapshot is not None:
                state = state_of(entry.snapshot)
                entry.snapshot = None
                if state is None:
                    rebuild.add(sid)
                else:
                    states[sid] = state
        rebuild |= behind - set(states)
        traces: dict[str, str | None] = {}
        position = index.input_next
        logs: _Logs = {}
        if rebuild:
            self.stats["snapshots_unreadable"] += len(rebuild)
            self._log.warning("restore.snapshots_unreadable", partition=p, sessions=len(rebuild))
            full = await read_partition_log(
                self.bootstrap, self.topics.events, p, client_id=f"{self._client_id}-restore"
            )
            logs[p] = [ev for ev, _ in full]
            for sid in rebuild:
                stored.pop(sid, None)
                states.pop(sid, None)
            full_traces = EventTraces()  # carried on an input's first event only
            for ev, headers in full:
                trace = full_traces(ev, headers)
                if ev.session_id in rebuild:
                    state = states.get(ev.session_id)
                    if state is None:
                        state = await self._initial_for(ev, logs)
                    states[ev.session_id] = evolve(state, ev)
                    traces[ev.session_id] = trace
        uncovered: dict[str, int] = {}
        log_traces = EventTraces()
        for ev, headers in log:
            trace = log_traces(ev, headers)
            for key, value in headers:
                if key == INPUT_NEXT_HEADER:
                    position = max(position, int(value))
            sid = ev.session_id
            entry = stored.get(sid)
            if sid in rebuild or (entry is not None and ev.seq <= entry.seq):
                continue
            state = states.get(sid)
            if state is None:
                state = await self._initial_for(ev, logs)
            states[sid] = evolve(state, ev)
            traces[sid] = trace
            uncovered.setdefault(sid, index.restore_from)
        for sid in rebuild:
            uncovered.setdefault(sid, 0)
        return states, traces, position, events_end, Keeper(stored, uncovered, events_end)

    async def _rebuild_session(self, session_id: str) -> SessionState | None:
        """A session's current state folded from all its events (its snapshot could
        not be read)."""
        return await self._state_at(session_id, 2**62, {})

    async def _initial_for(self, first: Event, logs: _Logs) -> SessionState:
        """The state a session's first event folds into: empty, or a fork's ancestry.
        A fork whose source has no such history any more (retention) is restored on an
        empty ancestry, said in the log, rather than stopping the partition's restore."""
        fork = fork_source(first)
        if fork is None:
            return initial_state(first.session_id)
        source_id, at_seq = fork
        base = await self._fork_base(source_id, at_seq, first.session_id, logs)
        if base is None:
            self.stats["fork_unknown_sources"] += 1
            self._log.error(
                "restore.fork_source_missing",
                session_id=first.session_id,
                source_session_id=source_id,
                at_seq=at_seq,
            )
            return fork_base(initial_state(source_id), first.session_id)
        return base

    async def _fork_base(
        self, source_id: str, at_seq: int, new_session_id: str, logs: _Logs | None = None
    ) -> SessionState | None:
        """The source's state at `at_seq`, rebound to the new session; None when the
        source has no such history (the core then rejects the fork)."""
        if logs is None and not await self._has_events(source_id):
            # A request naming an unknown source (anyone who can produce requests can
            # send one) costs a look at an index, not a read of a whole partition.
            self.stats["fork_unknown_sources"] += 1
            return None
        if logs is None:
            head = await self._head_state(source_id, at_seq)
            if head is not None:
                return fork_base(head, new_session_id)
        state = await self._state_at(source_id, at_seq, {} if logs is None else logs)
        return None if state is None else fork_base(state, new_session_id)

    async def _head_state(self, session_id: str, at_seq: int) -> SessionState | None:
        """The committed state of an owned session whose head is `at_seq`, from memory or
        from its snapshot (a fork at a session's head reads no events); else None."""
        q = partition_for(session_id, self.partitions)
        part = self._parts.get(q)
        if part is None:
            return None
        state = part.sessions.get(session_id)
        if state is None:
            stored = part.keeper.stored.get(session_id)
            if stored is None or stored.seq != at_seq:
                return None
            state = await self._reader.state(q, stored.offset)
        if state is None or state.last_seq != at_seq:
            return None
        self.stats["fork_source_in_hand"] += 1
        return state

    async def _has_events(self, session_id: str) -> bool:
        """Whether the events topic holds any committed event of `session_id`."""
        q = partition_for(session_id, self.partitions)
        part = self._parts.get(q)
        if part is not None:  # owned: every session with a committed event is known
            return session_id in part.sessions or session_id in part.keeper.stored
        known, upto = self._directory.get(q, (set(), 0))
        if session_id not in known:
            added, upto = await read_partition_keys(
                self.bootstrap,
                self.topics.events,
                q,
                upto,
                client_id=f"{self._client_id}-directory",
            )
            known |= added
            self._directory[q] = (known, upto)
        return session_id in known

    async def _state_at(self, session_id: str, at_seq: int, logs: _Logs) -> SessionState | None:
        """The state of `session_id` right after seq `at_seq`, from the events topic
        (partitions read once into `logs`)."""
        q = partition_for(session_id, self.partitions)
        if q not in logs:
            self.stats["fork_source_reads"] += 1
            logs[q] = await read_partition_events(self.bootstrap, self.topics.events, q)
        own = [e for e in logs[q] if e.session_id == session_id]
        if not own:
            return None
        first = own[0]
        fork = fork_source(first)
        if fork is not None and at_seq < first.seq:
            # The point lies in the session's own fork ancestry: the ancestor that wrote
            # that seq holds it (forks of forks, at any depth), seen as `session_id`.
            base = await self._state_at(fork[0], at_seq, logs)
            return None if base is None else fork_base(base, session_id)
        state = await self._initial_for(first, logs)
        if state is None:
            return None
        for ev in own:
            if ev.seq > at_seq:
                break
            state = evolve(state, ev)
        return state
