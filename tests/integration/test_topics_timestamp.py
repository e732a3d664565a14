"""The requests topic is stamped with the broker's append time (the session worker's
ingest time): a new topic is created so, and a topic created before gets it on the next
`ensure_topics` — without fix_configs, and without touching any other config."""

from __future__ import annotations

import asyncio

from streams.topics import (
    TOPIC_SPECS,
    _admin,
    _alter_configs,
    _topic_configs,
    ensure_topics,
    expected_configs,
)
from tests.integration.conftest import TEST_PARTITIONS


async def _run(bootstrap: str, prefix: str) -> None:
    report = await ensure_topics(bootstrap, prefix, TEST_PARTITIONS)
    requests = report.names.requests
    spec = next(s for s in TOPIC_SPECS if s.key == "requests")
    admin = _admin(bootstrap, 30_000)
    await admin.start()
    try:
        configs = (await _topic_configs(admin, [requests]))[requests]
        assert configs["message.timestamp.type"] == "LogAppendTime"
        # As an older turnlog left it, plus an operator's own changes.
        await _alter_configs(
            admin,
            requests,
            {
                **expected_configs(spec),
                "message.timestamp.type": "CreateTime",
                "retention.ms": "12345",
                "compression.type": "gzip",
                "file.delete.delay.ms": "30000",
            },
            30.0,
        )
        again = await ensure_topics(bootstrap, prefix, TEST_PARTITIONS)
        configs = (await _topic_configs(admin, [requests]))[requests]
    finally:
        await admin.close()
    assert [(d.topic, d.setting) for d in again.fixed] == [(requests, "message.timestamp.type")]
    assert sorted((d.topic, d.setting, d.actual) for d in again.drift) == [
        (requests, "compression.type", "gzip"),
        (requests, "retention.ms", "12345"),
    ]
    assert configs["message.timestamp.type"] == "LogAppendTime"
    assert configs["retention.ms"] == "12345"  # reported, not changed
    assert configs["compression.type"] == "gzip"  # reported, not changed
    assert configs["file.delete.delay.ms"] == "30000"  # not turnlog's: kept


def test_the_requests_topic_gets_log_append_time_on_ensure(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    asyncio.run(_run(kafka_bootstrap, unique_prefix))
