"""`turnlog.Client`: the async Python client of a turnlog deployment.

Rule: a client only PRODUCES requests (to `turnlog.requests`) and READS facts (from
`turnlog.events`, `turnlog.deltas` and the Postgres projections). It never writes the
session log and never decides anything: what a request did is known only from the events
the session worker appended for it, found by their `causation_id` (= the request id).

    async with Client.from_settings() as client:
        sent = await client.send_message("what is 17*23?", agent="assistant")
        outcome = await client.outcome(sent)              # waits for the turn to end
        print(outcome.status, outcome.answer)
        async for event in client.events(sent.session_id):
            ...
        rows = await client.query("SELECT * FROM cost_by_session")

How an outcome is found without races: before a request is produced, the client notes
the end offset of its session's partition of the events topic; everything the request
causes is appended after that offset (turnlog._follow reads from there).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from agents.errors import ContractError, ExternalError
from agents.events import (
    Attachment,
    CancelTurn,
    CloseSession,
    DecideApproval,
    Event,
    ForkSession,
    Request,
    RequestPayload,
    SchedulePaused,
    ScheduleRecord,
    ScheduleRemoved,
    ScheduleResumed,
    SendMessage,
    SetModel,
    TokenDelta,
    UpgradeAgent,
)
from agents.limits import DEFAULT_MAX_TEXT_BYTES, client_problem, utf8_size
from schemas.codec import decode_event, encode_request
from streams.logread import topic_partitions
from streams.partitioning import partition_for
from streams.topics import COMPRESSION, REQUESTS_MAX_BYTES, TopicNames, topic_names
from streams.tracing import headers_with, new_traceparent
from turnlog._follow import (
    EXIT_CODES,
    TIMEOUT_EXIT_CODE,
    Outcome,
    OutcomeTimeout,
    Sent,
    TurnWatch,
    Until,
)

__all__ = [
    "EXIT_CODES",
    "TIMEOUT_EXIT_CODE",
    "Client",
    "Outcome",
    "OutcomeTimeout",
    "Sent",
    "TurnWatch",
    "new_request_id",
    "new_session_id",
]


def new_session_id() -> str:
    """A fresh session id (random: the shell may use uuid4, the core may not)."""
    return f"s-{uuid.uuid4().hex[:16]}"


def new_request_id() -> str:
    return str(uuid.uuid4())


class Client:
    """Produce requests, follow their outcomes, read session logs, query projections.

    Use as `async with Client(...)` (or `await start()` / `await close()`). The partition
    count is read from the topic's metadata, so requests land where the worker looks
    even when TURNLOG_PARTITIONS is not set in this process."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic_prefix: str = "",
        database_url: str | None = None,
        client_id: str = "turnlog-client",
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        identity: str | None = None,
    ) -> None:
        # The requester identity every request carries (Request.client): keys per-client
        # rate limits and budgets. Refused here when the worker would reject it.
        problem = client_problem(identity)
        if problem is not None:
            raise ContractError(f"Client(identity=...): {problem}.")
        self.identity = identity
        # The worker's text limit (TURNLOG_MAX_TEXT_BYTES): a longer text is refused
        # here, before it travels, rather than rejected by the worker.
        self.max_text_bytes = max_text_bytes
        self.bootstrap = bootstrap_servers
        self.topics: TopicNames = topic_names(topic_prefix)
        self.database_url = database_url
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._partitions: int | None = None
        self._schedule_partitions: int | None = None

    @classmethod
    def from_settings(cls, settings: Any = None, **overrides: Any) -> Client:
        """A client for the deployment the environment describes (turnlog.settings)."""
        if settings is None:
            from turnlog.settings import load_settings

            settings = load_settings()
        from turnlog import wire

        wire.install(settings)  # the framing the deployment writes and reads
        kwargs: dict[str, Any] = {
            "bootstrap_servers": settings.kafka_bootstrap_servers,
            "topic_prefix": settings.topic_prefix,
            "database_url": settings.database_url,
            "max_text_bytes": settings.max_text_bytes,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._producer is not None:
            return
        self._partitions = await topic_partitions(self.bootstrap, self.topics.requests)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            client_id=self.client_id,
            # Whatever the requests topic accepts (aiokafka's default is 1 MiB).
            max_request_size=REQUESTS_MAX_BYTES,
            compression_type=COMPRESSION,
        )
        offsets = self._reader("turnlog-client-offsets")
        try:
            await producer.start()
            await offsets.start()
        except KafkaError as exc:
            await producer.stop()
            raise ExternalError(f"Kafka at {self.bootstrap} did not answer: {exc}") from exc
        self._producer, self._offsets = producer, offsets

    async def close(self) -> None:
        producer, offsets = self._producer, self._offsets
        self._producer = self._offsets = None
        if producer is not None:
            await producer.stop()
        if offsets is not None:
            await offsets.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _reader(self, client_id: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id=client_id,
            fetch_max_wait_ms=100,
        )

    @property
    def partitions(self) -> int:
        if self._partitions is None:
            raise ContractError("The client is not started: use `async with Client(...)`.")
        return self._partitions

    def partition_of(self, session_id: str) -> int:
        return partition_for(session_id, self.partitions)

    # ------------------------------------------------------------------ producing

    async def send(self, request: Request) -> Sent:
        """Produce `request` (keyed and partitioned by its session id) and wait for the
        broker's acknowledgement."""
        if self._producer is None or self._offsets is None:
            await self.start()
        assert self._producer is not None and self._offsets is not None
        p = self.partition_of(request.session_id)
        events_tp = TopicPartition(self.topics.events, p)
        deltas_tp = TopicPartition(self.topics.deltas, p)
        try:
            ends = await self._offsets.end_offsets([events_tp, deltas_tp])
            await self._producer.send_and_wait(
                self.topics.requests,
                value=encode_request(request),
                key=request.session_id.encode(),
                partition=p,
                headers=headers_with(new_traceparent()),
            )
        except KafkaError as exc:
            raise ExternalError(
                f"Session {request.session_id}: request {request.request_id} could not be "
                f"produced to {self.topics.requests}: {exc}"
            ) from exc
        return Sent(request, p, int(ends[events_tp]), int(ends[deltas_tp]))

    async def _send(
        self,
        session_id: str,
        payload: RequestPayload,
        *,
        agent: str | None = None,
        request_id: str | None = None,
        client: str | None = None,
    ) -> Sent:
        if client is not None:
            problem = client_problem(client)
            if problem is not None:
                raise ContractError(f"client={client!r}: {problem}.")
        request = Request(
            request_id=request_id or new_request_id(),
            session_id=session_id,
            occurred_at=datetime.now(UTC),
            payload=payload,
            agent=agent,
            client=client if client is not None else self.identity,
        )
        return await self.send(request)

    async def send_message(
        self,
        text: str,
        *,
        agent: str | None = None,
        session_id: str | None = None,
        request_id: str | None = None,
        attachments: Sequence[Attachment] = (),
        client: str | None = None,
    ) -> Sent:
        """A user message. Without `session_id` a new session is started, which needs
        `agent`; the new id is `sent.session_id`. `attachments`: images and documents
        (`agents.providers.blobs.attachment(path)` inline, or with `store=` by reference).
        `client`: the requester identity it carries (default: the Client's `identity`)."""
        if session_id is None and agent is None:
            raise ContractError("A new session needs an agent: pass agent=... (or session_id).")
        size = utf8_size(text) + sum(len(a.data or "") for a in attachments)
        if size > self.max_text_bytes:
            raise ContractError(
                f"The message is {size} bytes of UTF-8, over the text limit of "
                f"{self.max_text_bytes} bytes (TURNLOG_MAX_TEXT_BYTES; inline attachments "
                f"count); the worker would reject it. Send less, send large files by "
                f"reference (the blob store, TURNLOG_BLOB_DIR), or raise the limit on the "
                f"workers."
            )
        return await self._send(
            session_id or new_session_id(),
            SendMessage(text=text, attachments=tuple(attachments)),
            agent=agent,
            request_id=request_id,
            client=client,
        )

    async def approve(
        self, session_id: str, call_id: str, *, by: str = "cli", reason: str | None = None
    ) -> Sent:
        return await self._send(session_id, DecideApproval(call_id, True, by, reason))

    async def deny(
        self, session_id: str, call_id: str, *, reason: str | None = None, by: str = "cli"
    ) -> Sent:
        return await self._send(session_id, DecideApproval(call_id, False, by, reason))

    async def cancel(
        self,
        session_id: str,
        *,
        reason: str | None = None,
        queued_request_id: str | None = None,
        drop_queue: bool = False,
    ) -> Sent:
        """Cancel the turn in progress (its LLM calls, tools and child sessions are
        stopped); the next queued message then starts. `queued_request_id`: drop only
        that queued message; `drop_queue`: cancel the turn and drop the queue too."""
        return await self._send(
            session_id,
            CancelTurn(reason, queued_request_id=queued_request_id, drop_queue=drop_queue),
        )

    async def upgrade(self, session_id: str, *, to_hash: str | None = None) -> Sent:
        """Move an idle session to another version of its agent (`to_hash`, or the
        version the workers serve now), recorded as AgentVersionChanged."""
        return await self._send(session_id, UpgradeAgent(to_hash))

    async def set_model(self, session_id: str, model: str) -> Sent:
        """Switch the session's later LLM calls to `model` (a catalog name), recorded as
        ModelChanged; an unknown model, or one lacking what the session needs, is
        rejected with the reason."""
        return await self._send(session_id, SetModel(model))

    async def close_session(self, session_id: str, *, reason: str | None = None) -> Sent:
        return await self._send(session_id, CloseSession(reason))

    async def fork(
        self, session_id: str, at_seq: int, *, agent: str | None = None, into: str | None = None
    ) -> Sent:
        """Start a new session (`into`, or a fresh id) whose history is `session_id`'s
        up to `at_seq`; the request goes to the NEW session (`sent.session_id`)."""
        return await self._send(into or new_session_id(), ForkSession(session_id, at_seq, agent))

    # ------------------------------------------------------------------ schedules

    async def _schedule_record(self, record: ScheduleRecord) -> ScheduleRecord:
        """Produce a record to turnlog.schedules (partition of its schedule id, key by
        aspect: see streams.scheduler_plan.key_for) and wait for the broker."""
        from schemas.codec import encode_schedule_record
        from streams.scheduler_plan import key_for

        if self._producer is None:
            await self.start()
        assert self._producer is not None
        if self._schedule_partitions is None:
            self._schedule_partitions = await topic_partitions(
                self.bootstrap, self.topics.schedules
            )
        try:
            await self._producer.send_and_wait(
                self.topics.schedules,
                value=encode_schedule_record(record),
                key=key_for(record.schedule_id, record).encode(),
                partition=partition_for(record.schedule_id, self._schedule_partitions),
            )
        except KafkaError as exc:
            raise ExternalError(
                f"Schedule {record.schedule_id}: could not be written to "
                f"{self.topics.schedules}: {exc}"
            ) from exc
        return record

    async def add_schedule(
        self,
        schedule_id: str,
        *,
        agent: str,
        message: str,
        cron: str | None = None,
        timezone: str = "UTC",
        every: str | int | None = None,
        start_at: datetime | str | None = None,
        at: datetime | str | None = None,
        session: str = "new",
        overlap: str = "skip",
        catch_up: str = "once",
        catch_up_limit: int = 10,
        paused: bool = False,
        source: str = "client",
        occurred_at: datetime | None = None,
    ) -> ScheduleRecord:
        """Create or replace a schedule: one of `cron` (in `timezone`), `every` (15m, 2h,
        seconds; from `start_at`) or `at` (one shot). `session`: "new" (a session per
        run) or a session id. ScheduleError (naming the field) when invalid."""
        from streams.scheduler_plan import schedule_from_mapping

        fields: dict[str, Any] = {
            "agent": agent,
            "message": message,
            "cron": cron,
            "timezone": timezone,
            "every": every,
            "start_at": start_at,
            "at": at,
            "session": session,
            "overlap": overlap,
            "catch_up": catch_up,
            "catch_up_limit": catch_up_limit,
            "paused": paused,
        }
        sid, spec = schedule_from_mapping(
            {k: v for k, v in fields.items() if v is not None},
            source=source,
            schedule_id=schedule_id,
        )
        return await self._schedule_record(
            ScheduleRecord(sid, occurred_at or datetime.now(UTC), spec)
        )

    async def pause_schedule(
        self, schedule_id: str, *, by: str | None = None, occurred_at: datetime | None = None
    ) -> ScheduleRecord:
        """Stop firing `schedule_id` until resumed (its slots meanwhile are not caught up)."""
        return await self._schedule_record(
            ScheduleRecord(schedule_id, occurred_at or datetime.now(UTC), SchedulePaused(by))
        )

    async def resume_schedule(
        self, schedule_id: str, *, by: str | None = None, occurred_at: datetime | None = None
    ) -> ScheduleRecord:
        """Fire `schedule_id` again, from its first slot after now."""
        return await self._schedule_record(
            ScheduleRecord(schedule_id, occurred_at or datetime.now(UTC), ScheduleResumed(by))
        )

    async def remove_schedule(
        self, schedule_id: str, *, by: str | None = None, occurred_at: datetime | None = None
    ) -> ScheduleRecord:
        """Remove `schedule_id` (its runs stay in the projections)."""
        return await self._schedule_record(
            ScheduleRecord(schedule_id, occurred_at or datetime.now(UTC), ScheduleRemoved(by))
        )

    async def schedules(self) -> list[dict[str, Any]]:
        """Every schedule with its status and next slot (the `schedules` projection)."""
        return await self.query("SELECT * FROM schedules ORDER BY schedule_id")

    async def schedule_runs(self, schedule_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The latest handled slots of `schedule_id`, with each run's outcome and cost."""
        return await self.query(
            "SELECT * FROM schedule_run_outcomes WHERE schedule_id = %s "
            "ORDER BY slot DESC LIMIT %s",
            (schedule_id, limit),
        )

    # ------------------------------------------------------------------ following

    def watch(
        self,
        sent: Sent,
        *,
        until: Until = "turn",
        deltas: bool = True,
        timeout: float | None = 300.0,
    ) -> TurnWatch:
        """Iterate what `sent` causes until its outcome (see TurnWatch)."""
        return TurnWatch(self, sent, until=until, deltas=deltas, timeout=timeout)

    async def outcome(
        self,
        sent: Sent,
        *,
        until: Until = "turn",
        timeout: float | None = 300.0,
        on_item: Callable[[Event | TokenDelta], Any] | None = None,
    ) -> Outcome:
        """Wait for how `sent` ended: with until="turn" the end of the turn it started
        or continued; with "accepted" only its first decision."""
        watch = self.watch(sent, until=until, deltas=on_item is not None, timeout=timeout)
        async for item in watch:
            if on_item is not None:
                result = on_item(item)
                if asyncio.iscoroutine(result):
                    await result
        assert watch.outcome is not None
        return watch.outcome

    async def events(
        self,
        session_id: str,
        *,
        from_seq: int = 1,
        follow: bool = False,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[Event]:
        """The session's own events (read_committed, in seq order) from `from_seq`. Without
        `follow` it stops at the end of the log as it is now; with it, it waits for more
        (until the caller stops iterating, or `idle_timeout` seconds bring nothing)."""
        if self._partitions is None:
            await self.start()
        tp = TopicPartition(self.topics.events, self.partition_of(session_id))
        consumer = self._reader("turnlog-events")
        await consumer.start()
        key = session_id.encode()
        try:
            consumer.assign([tp])
            consumer.seek(tp, 0)
            end = (await consumer.end_offsets([tp]))[tp]
            loop = asyncio.get_running_loop()
            idle_since = loop.time()
            while follow or await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=200, max_records=5000)
                records = batch.get(tp, ())
                if records:
                    idle_since = loop.time()
                elif idle_timeout is not None and loop.time() - idle_since > idle_timeout:
                    return
                for rec in records:
                    if not follow and rec.offset >= end:
                        return
                    if rec.key is not None and rec.key != key:
                        continue
                    ev = decode_event(rec.value)
                    if ev.session_id == session_id and ev.seq >= from_seq:
                        yield ev
        except KafkaError as exc:
            raise ExternalError(f"Reading session {session_id} failed: {exc}") from exc
        finally:
            await consumer.stop()

    async def session_log(self, session_id: str) -> Sequence[Event]:
        """The session's full log as replay folds it: fork ancestry first, then its own."""
        from turnlog.replay import load_session_log

        log = await load_session_log(self.bootstrap, self.topics, session_id)
        return log.events

    # ------------------------------------------------------------------ projections

    def _db(self) -> str:
        if not self.database_url:
            raise ContractError("This client has no database_url; projection queries need one.")
        return self.database_url

    async def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run one SQL statement against the projections; rows as dicts."""
        import psycopg
        from psycopg.rows import dict_row

        try:
            async with await psycopg.AsyncConnection.connect(
                self._db(), row_factory=dict_row
            ) as conn:
                cur = await conn.execute(sql, params)
                return list(await cur.fetchall()) if cur.description else []
        except psycopg.OperationalError as exc:
            raise ExternalError(f"Could not query Postgres: {str(exc).strip()}") from exc

    async def wait_projected(self, session_id: str, seq: int, *, timeout: float = 30.0) -> None:
        """Wait until the projector has applied `session_id` up to `seq`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # `events`, not `sessions`: a session whose inputs were all rejected has
            # projected events but no sessions row (the same transaction writes both).
            rows = await self.query(
                "SELECT max(seq) AS last_seq FROM events WHERE session_id = %s", (session_id,)
            )
            rows = [r for r in rows if r["last_seq"] is not None]
            if rows and rows[0]["last_seq"] >= seq:
                return
            if loop.time() > deadline:
                have = rows[0]["last_seq"] if rows else "nothing"
                raise OutcomeTimeout(
                    f"Session {session_id}: the projections hold {have} (last seq), not seq "
                    f"{seq}, after {timeout:g} s. Is a projector running?"
                )
            await asyncio.sleep(0.1)
