"""Helpers for the projector's integration tests and benchmark (real Kafka, real Postgres).

Rule: nothing here fakes Kafka or Postgres. Events are encoded with the real codec and
produced with a real (optionally transactional) producer; database roles are real roles
with real passwords.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

import psycopg

from agents.events import Event
from tests.support.poll import wait_until as poll_until
from tests.support.poll import wait_until_blocking

__all__ = [
    "APP_ROLE",
    "AUDITOR_ROLE",
    "async_wait_until",
    "produce_aborted",
    "produce_events",
    "role_url",
    "wait_until",
]

APP_ROLE = "turnlog_app"
AUDITOR_ROLE = "turnlog_auditor"
# Test-only password; roles are cluster-global, so every test run sets the same one.
_TEST_PASSWORD = "turnlog-test-only"


def role_url(admin_url: str, role: str = APP_ROLE, password: str = _TEST_PASSWORD) -> str:
    """A URL for `role` on the same database as `admin_url` (a superuser URL), after
    giving the role that password."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
            )
        )
    return re.sub(r"^(\w+://)[^@/]*@", rf"\g<1>{role}:{quote(password, safe='')}@", admin_url)


async def produce_events(
    bootstrap: str,
    topic: str,
    events: Iterable[Event],
    *,
    transactional_id: str | None = None,
    per_transaction: int = 500,
) -> int:
    """Encode and produce `events` keyed by session id (in order). With a
    transactional_id, every `per_transaction` events are one committed transaction, as
    the session worker writes them. Returns the number produced."""
    from aiokafka import AIOKafkaProducer

    from schemas.codec import encode_event

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        transactional_id=transactional_id,
    )
    await producer.start()
    n = 0
    try:
        chunk: list[Event] = []

        async def flush() -> None:
            if transactional_id is not None:
                async with producer.transaction():
                    for e in chunk:
                        await producer.send(topic, encode_event(e), key=e.session_id.encode())
            else:
                for e in chunk:
                    await producer.send(topic, encode_event(e), key=e.session_id.encode())
                await producer.flush()
            chunk.clear()

        for event in events:
            chunk.append(event)
            n += 1
            if len(chunk) >= per_transaction:
                await flush()
        if chunk:
            await flush()
    finally:
        await producer.stop()
    return n


async def produce_aborted(
    bootstrap: str, topic: str, events: Iterable[Event], transactional_id: str
) -> None:
    """Produce `events` in a transaction that is then ABORTED: a read_committed consumer
    must never see them."""
    from aiokafka import AIOKafkaProducer

    from schemas.codec import encode_event

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        for e in events:
            await producer.send(topic, encode_event(e), key=e.session_id.encode())
        await producer.flush()
        await producer.abort_transaction()
    finally:
        await producer.stop()


# The waits of projector tests: the support package's one implementation of each.
wait_until = wait_until_blocking
async_wait_until = poll_until
