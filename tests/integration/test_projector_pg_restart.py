"""The projector rides through PostgreSQL going away: it reconnects with backoff, seeks
to the stored positions and projects every event exactly once — no exit, no outside
supervisor.

Two ways of losing Postgres, both real: the projector's backends terminated on the shared
test server (pg_terminate_backend, several times while it projects), and a real
`pg_ctl stop -m fast` / start of a PostgreSQL instance of the test's own (its own data
directory and port, so no other test run is disturbed).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from projections.audit import read_checkpoints, verify_audit_log
from projections.migrate import migrate
from projections.projector import Projector, ProjectorConfig
from projections.rebuild import rebuild, table_checksums
from projections.store import PROJECTION_TABLES
from streams.topics import ensure_topics
from tests.support.harness import free_port
from tests.support.projections import async_wait_until, produce_events, role_url
from tests.support.synthetic import generate, interleave

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def _count(url: str, sql: str = "SELECT count(*) FROM events") -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


async def _off_loop(fn: Callable[[], Any]) -> Any:
    return await asyncio.to_thread(fn)


def _terminate_app_backends(admin_url: str) -> int:
    """Terminate the application role's connections to this test's database only."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND usename = 'turnlog_app'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _assert_exactly_once(
    bootstrap: str, names: Any, admin_url: str, app_url: str, config: ProjectorConfig, total: int
) -> None:
    """Every event once: the fold's counters (turns, tokens, costs) equal a clean
    rebuild's (an event applied twice would count twice), the audit log has one row per
    event and verifies against the published heads."""
    incremental = table_checksums(app_url, PROJECTION_TABLES)
    assert incremental["events"][0] == total
    assert asyncio.run(rebuild(config)).checksums == incremental
    checkpoints = asyncio.run(read_checkpoints(bootstrap, names.checkpoints))
    report = verify_audit_log(admin_url, checkpoints)
    assert report.ok and report.rows == total, report.broken


def test_terminated_backends_while_projecting_lose_and_double_nothing(
    kafka_bootstrap: str, unique_prefix: str, scratch_database_url: str
) -> None:
    migrate(scratch_database_url)
    names = asyncio.run(ensure_topics(kafka_bootstrap, unique_prefix, partitions=4)).names
    app_url = role_url(scratch_database_url)
    events = list(interleave(generate(6000, seed=31, base=T0), seed=31))
    half = len(events) // 2
    config = ProjectorConfig(
        kafka_bootstrap,
        app_url,
        names.events,
        names.checkpoints,
        group_id=f"{unique_prefix}projector",
        max_records=150,
        checkpoint_interval=0.2,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.5,
    )

    async def scenario() -> Projector:
        await produce_events(kafka_bootstrap, names.events, events[:half])
        projector = Projector(config)
        task = asyncio.create_task(projector.run())
        try:
            # Cut its connection three times while it is projecting the first half.
            for mark in (half // 4, half // 2, 3 * half // 4):
                await async_wait_until(
                    lambda m=mark: _off_loop(lambda: task.done() or _count(app_url) >= m),
                    60,
                    f"the projection to pass {mark}",
                )
                assert not task.done(), task.exception()
                assert await _off_loop(lambda: _terminate_app_backends(scratch_database_url)) >= 1
            await produce_events(kafka_bootstrap, names.events, events[half:])
            await async_wait_until(
                lambda: _off_loop(lambda: task.done() or _count(app_url) >= len(events)),
                90,
                "every event to be projected",
            )
            assert not task.done(), task.exception()
        finally:
            projector.stop()
            await task
        return projector

    projector = asyncio.run(scenario())
    assert projector.reconnects >= 3
    assert projector.quarantined == 0
    rebuild_config = ProjectorConfig(
        kafka_bootstrap, app_url, names.events, names.checkpoints, group_id=None
    )
    _assert_exactly_once(
        kafka_bootstrap, names, scratch_database_url, app_url, rebuild_config, len(events)
    )


# ------------------------------------------------------------------ a real restart


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A PostgreSQL server of this test alone (the dev infrastructure's code, another
    data directory and port): (its settings, its superuser URL)."""
    from turnlog.dev import _postgres
    from turnlog.settings import load_settings

    settings = load_settings().model_copy(
        update={"state_dir": tmp_path / "state", "dev_postgres_port": free_port()}
    )
    root = _postgres.paths(settings).root
    try:
        _postgres.start(settings)
        _postgres.ensure_database(settings)
        yield settings, _postgres.url(settings)
    finally:
        try:
            _postgres.stop(settings)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def test_a_postgres_restart_is_ridden_through(
    kafka_bootstrap: str, unique_prefix: str, own_postgres: tuple[Any, str]
) -> None:
    from turnlog.dev import _postgres

    settings, admin_url = own_postgres
    migrate(admin_url)
    app_url = role_url(admin_url)
    names = asyncio.run(ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)).names
    events = list(interleave(generate(3000, seed=32, base=T0), seed=32))
    before, during, after = events[:1000], events[1000:2000], events[2000:]
    config = ProjectorConfig(
        kafka_bootstrap,
        app_url,
        names.events,
        names.checkpoints,
        group_id=f"{unique_prefix}projector",
        max_records=100,
        checkpoint_interval=0.2,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.5,
    )

    async def scenario() -> Projector:
        await produce_events(kafka_bootstrap, names.events, before)
        projector = Projector(config)
        task = asyncio.create_task(projector.run())
        try:
            await async_wait_until(
                lambda: _off_loop(lambda: task.done() or _count(app_url) >= len(before)),
                60,
                "the first events to be projected",
            )
            assert not task.done(), task.exception()
            # Down while events keep arriving; then up again.
            await produce_events(kafka_bootstrap, names.events, during[:500])
            await _off_loop(lambda: _postgres.stop(settings))
            await produce_events(kafka_bootstrap, names.events, during[500:])
            await _off_loop(lambda: _postgres.start(settings))
            await produce_events(kafka_bootstrap, names.events, after)
            await async_wait_until(
                lambda: _off_loop(lambda: task.done() or _count(app_url) >= len(events)),
                90,
                "every event to be projected after the restart",
            )
            assert not task.done(), task.exception()
        finally:
            projector.stop()
            await task
        return projector

    projector = asyncio.run(scenario())
    assert projector.reconnects >= 1
    rebuild_config = ProjectorConfig(
        kafka_bootstrap, app_url, names.events, names.checkpoints, group_id=None
    )
    _assert_exactly_once(kafka_bootstrap, names, admin_url, app_url, rebuild_config, len(events))


def test_a_projector_started_while_postgres_is_down_waits_for_it(
    kafka_bootstrap: str, unique_prefix: str, own_postgres: tuple[Any, str]
) -> None:
    from turnlog.dev import _postgres

    settings, admin_url = own_postgres
    migrate(admin_url)
    app_url = role_url(admin_url)
    names = asyncio.run(ensure_topics(kafka_bootstrap, unique_prefix, partitions=2)).names
    events = list(interleave(generate(300, seed=33, base=T0), seed=33))
    config = ProjectorConfig(
        kafka_bootstrap,
        app_url,
        names.events,
        names.checkpoints,
        group_id=f"{unique_prefix}projector",
        max_records=100,
        checkpoint_interval=0.2,
    )

    async def scenario() -> None:
        await produce_events(kafka_bootstrap, names.events, events)
        await _off_loop(lambda: _postgres.stop(settings))
        projector = Projector(config)
        task = asyncio.create_task(projector.run())
        try:
            await asyncio.sleep(2)  # down for a while: not a synchronisation
            assert not task.done(), "the projector exited while Postgres was down"
            await _off_loop(lambda: _postgres.start(settings))
            await async_wait_until(
                lambda: _off_loop(lambda: task.done() or _count(app_url) >= len(events)),
                90,
                "every event to be projected once Postgres is up",
            )
            assert not task.done(), task.exception()
        finally:
            projector.stop()
            await task

    asyncio.run(scenario())
    assert _count(app_url) == len(events)
