"""Helpers for integration tests (the session fixtures live in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest

from streams.topics import TopicNames, ensure_topics
from tests.conftest import create_database, drop_database

# Partitions of a test's own topics: few, so a worker owns them all quickly.
TEST_PARTITIONS = 4


@pytest.fixture
def scratch_database_url(database_admin_url: str) -> Iterator[str]:
    """An empty database of its own (not migrated), dropped after the test."""
    name = f"turnlog_scratch_{secrets.token_hex(4)}"
    url = create_database(database_admin_url, name)
    yield url
    drop_database(database_admin_url, name)


@pytest.fixture
def unique_prefix(topic_prefix: str) -> str:
    """A prefix of its own under the run's prefix (so the run's cleanup deletes it too)."""
    return f"{topic_prefix}{secrets.token_hex(3)}."


@pytest.fixture
def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    """Every turnlog topic under this test's own prefix, created now (a private platform).
    Test modules that need other topics define their own `names`."""
    return asyncio.run(
        ensure_topics(kafka_bootstrap, unique_prefix, partitions=TEST_PARTITIONS)
    ).names
