"""How soon a transactional producer asks again to add a partition the broker still
holds for its previous transaction.

After `commit_transaction` returns, the coordinator is still writing the commit markers;
until they are written, AddPartitionsToTxn for the producer's next transaction is
answered CONCURRENT_TRANSACTIONS. aiokafka then waits a fixed 20 ms
(`aiokafka.producer.sender.BACKOFF_OVERRIDE`, the Java client's figure from KAFKA-5477)
before it asks again. A session worker's partition runs its transactions back to back —
the next hop of a turn arrives a few milliseconds after the previous one committed — so
most hops paid those 20 ms: measured against the local broker, a one-record transaction
begun right after the previous commit waited 28 ms at the median for its record's
acknowledgement, 5.6 ms when asked again every 2 ms (BENCHMARKS.md, "Light load").

The markers take a few milliseconds on a local broker; asking every CONCURRENT_RETRY_S
costs a broker round trip per retry and no waiting beyond them. aiokafka has no setting
for it, so `shorten()` sets the module constant (once per process); it fails loudly if
an aiokafka upgrade moved it, rather than quietly bringing the 20 ms back.
"""

from __future__ import annotations

from aiokafka.producer import sender as _sender

__all__ = ["CONCURRENT_RETRY_S", "shorten"]

CONCURRENT_RETRY_S = 0.002


def shorten() -> None:
    """Retry a CONCURRENT_TRANSACTIONS answer to AddPartitionsToTxn after
    CONCURRENT_RETRY_S instead of aiokafka's 20 ms."""
    if not isinstance(getattr(_sender, "BACKOFF_OVERRIDE", None), float):
        raise RuntimeError(
            "aiokafka.producer.sender.BACKOFF_OVERRIDE is gone: this aiokafka retries "
            "CONCURRENT_TRANSACTIONS differently; see streams/_txn_retry.py"
        )
    _sender.BACKOFF_OVERRIDE = CONCURRENT_RETRY_S
