"""A transactional producer's transactions back to back on the real broker: the
broker answers the next transaction's AddPartitionsToTxn CONCURRENT_TRANSACTIONS while
the previous one's markers are written, and the worker's producers ask again after
streams._txn_retry.CONCURRENT_RETRY_S, not aiokafka's 20 ms (streams/_txn_retry.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.producer import sender

from streams import _txn_retry
from streams.topics import TopicNames


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float | None]]:
    """Every backoff aiokafka's AddPartitionsToTxn handler chose, in order."""
    seen: list[float | None] = []
    handle = sender.AddPartitionsToTxnHandler.handle_response

    def spy(self: Any, resp: Any) -> float | None:
        backoff: float | None = handle(self, resp)
        seen.append(backoff)
        return backoff

    monkeypatch.setattr(sender.AddPartitionsToTxnHandler, "handle_response", spy)
    monkeypatch.setattr(sender, "BACKOFF_OVERRIDE", sender.BACKOFF_OVERRIDE)  # restored after
    yield seen


async def test_back_to_back_transactions_retry_after_the_short_backoff(
    kafka_bootstrap: str, names: TopicNames, answers: list[float | None]
) -> None:
    _txn_retry.shorten()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        transactional_id=f"{names.events}-txn-retry",
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
    )
    await producer.start()
    try:
        for _ in range(30):
            await producer.begin_transaction()
            await (await producer.send(names.events, b"x", key=b"k", partition=0))
            await producer.commit_transaction()
    finally:
        await producer.stop()
    retried = [b for b in answers if b is not None]
    # Each was a CONCURRENT_TRANSACTIONS answer (nothing else fails against a healthy
    # broker), and each was asked again after the short backoff.
    assert retried, f"no transaction of 30 back to back met the previous one's markers: {answers}"
    assert set(retried) == {_txn_retry.CONCURRENT_RETRY_S}
    assert answers.count(None) == 30  # every transaction's partition was added in the end


def test_shorten_refuses_an_aiokafka_without_the_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sender, "BACKOFF_OVERRIDE")
    with pytest.raises(RuntimeError, match="BACKOFF_OVERRIDE is gone"):
        _txn_retry.shorten()
