"""Session fixtures shared by every test.

Unit and property tests request none of these, so nothing starts for them. Integration
tests (everything under tests/integration/, auto-marked `integration`) ask for:

    kafka_bootstrap      str          "host:port" of a real Kafka broker
    topic_prefix         str          unique per run, e.g. "t1a2b3c4."
    topics               TopicNames   all turnlog topics under topic_prefix, 4 partitions
    database_url         str          a fresh, migrated database of this run (owner/superuser
                                      for now; may become a less privileged app role)
    database_admin_url   str          the same database as a superuser

Where Kafka and PostgreSQL come from, in this order, once per run:
  1. KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set (the database URL must be allowed to
     CREATE DATABASE: the run creates its own database beside it);
  2. testcontainers, when a Docker engine answers (apache/kafka and postgres images);
  3. the `turnlog dev` local infrastructure: started if not running, reused if running
     (and left running for the next run; `turnlog dev down` stops it).
If Kafka or PostgreSQL cannot be had, every integration test FAILS with the reason and the
tail of the failing log: integration tests are never skipped.

Each run's topics and database are deleted at the end (TURNLOG_KEEP_TEST_DATA=1 keeps
them for a post-mortem).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Hypothesis profiles: `dev` (the default) keeps its example database so a failure found
# once is tried first next time; `ci` (HYPOTHESIS_PROFILE=ci, set by .ci/run) is
# derandomized so a CI run is reproducible, keeps no database, and prints the blob that
# reproduces a failure. Per-test @settings(max_examples=...) still apply in both.
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


if TYPE_CHECKING:
    from streams.topics import TopicNames
    from turnlog.dev import DevStatus

_TESTS = Path(__file__).parent
TEST_PARTITIONS = 4
_KEEP = os.environ.get("TURNLOG_KEEP_TEST_DATA", "") not in ("", "0", "false")

# Fixture modules of other areas, enabled for every test once they exist in the tree.
_PLUGINS = {"tests.fakes.fixtures": _TESTS / "fakes" / "fixtures.py"}
pytest_plugins = [name for name, path in _PLUGINS.items() if path.exists()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    integration = _TESTS / "integration"
    for item in items:
        if integration in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


def _fail(what: str, exc: BaseException) -> None:
    pytest.fail(
        f"{what} could not be started or reached, so no integration test can run:\n"
        f"{type(exc).__name__}: {exc}",
        pytrace=False,
    )


# --- where the servers come from ------------------------------------------------------


def _docker_engine_answers() -> bool:
    if os.environ.get("TURNLOG_TEST_DOCKER", "auto") == "never":
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="session")
def infra_source() -> str:
    """ "env", "testcontainers" or "dev": where this run's Kafka/PostgreSQL come from."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("DATABASE_URL"):
        return "env"
    return "testcontainers" if _docker_engine_answers() else "dev"


@pytest.fixture(scope="session")
def dev_stack() -> DevStatus:
    """The `turnlog dev` infrastructure, up (started now or reused)."""
    from turnlog.dev import ensure_up
    from turnlog.settings import load_settings

    try:
        return ensure_up(load_settings())
    except Exception as exc:
        _fail("The local Kafka/PostgreSQL (turnlog dev up)", exc)
        raise


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str, logs: Any) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout}s:\n{logs()}")
        time.sleep(0.5)


def _container_logs(container: Any) -> str:
    try:
        out, err = container.get_logs()
        return (out + err).decode(errors="replace")[-4000:]
    except Exception as exc:
        return f"(no logs: {exc})"


@pytest.fixture(scope="session")
def _kafka_container() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer

    from turnlog.dev import _kafka

    port = _free_port()
    container = (
        DockerContainer(f"apache/kafka:{_kafka.pinned_version()}")
        .with_bind_ports(9092, port)
        .with_envs(
            **{
                **compose_kafka_environment(),
                "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
                "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            }
        )
    )
    bootstrap = f"127.0.0.1:{port}"
    try:
        container.start()
        _wait(
            lambda: _kafka.probe(bootstrap) is not None,
            120,
            "Kafka container",
            lambda: _container_logs(container),
        )
        yield bootstrap
    except Exception as exc:
        _fail("Kafka (testcontainers)", exc)
    finally:
        container.stop()


@pytest.fixture(scope="session")
def _postgres_container() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer

    from turnlog.dev import _postgres

    port = _free_port()
    container = (
        DockerContainer("postgres:16")
        .with_bind_ports(5432, port)
        .with_envs(POSTGRES_USER="turnlog", POSTGRES_PASSWORD="turnlog", POSTGRES_DB="turnlog")
    )
    url = f"postgresql://turnlog:turnlog@127.0.0.1:{port}/turnlog"
    try:
        container.start()
        _wait(
            lambda: _postgres.probe(url) is not None,
            120,
            "PostgreSQL container",
            lambda: _container_logs(container),
        )
        yield url
    except Exception as exc:
        _fail("PostgreSQL (testcontainers)", exc)
    finally:
        container.stop()


def compose_kafka_environment() -> dict[str, str]:
    """The broker environment of compose.yaml's kafka service (one source of truth)."""
    import yaml

    compose = yaml.safe_load((_TESTS.parent / "compose.yaml").read_text())
    env = compose["services"]["kafka"]["environment"]
    return {str(k): str(v) for k, v in env.items()}


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest, infra_source: str) -> str:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        return env
    if infra_source == "testcontainers":
        return str(request.getfixturevalue("_kafka_container"))
    return str(request.getfixturevalue("dev_stack").kafka_bootstrap)


@pytest.fixture(scope="session")
def _postgres_server_url(request: pytest.FixtureRequest, infra_source: str) -> str:
    """A superuser URL on the server (its default database)."""
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    if infra_source == "testcontainers":
        return str(request.getfixturevalue("_postgres_container"))
    return str(request.getfixturevalue("dev_stack").database_url)


# --- per-run database and topics ------------------------------------------------------


def database_url_for(url: str, database: str) -> str:
    """`url` pointing at another database (keeps credentials and query parameters)."""
    match = re.match(r"^(?P<base>[^?]*/)(?P<db>[^/?]*)(?P<query>\?.*)?$", url)
    if match is None or ("@" not in url and "//" not in url):
        raise ValueError("not a postgresql:// URL")
    return f"{match.group('base')}{database}{match.group('query') or ''}"


def create_database(server_url: str, name: str) -> str:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url_for(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def run_id() -> str:
    """Unique per test run: names this run's database and topics."""
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def database_admin_url(_postgres_server_url: str, run_id: str) -> Iterator[str]:
    from projections.migrate import migrate

    name = f"turnlog_test_{run_id}"
    try:
        url = create_database(_postgres_server_url, name)
    except Exception as exc:
        _fail(f"A test database on {_redact(_postgres_server_url)}", exc)
        raise
    migrate(url)
    yield url
    if not _KEEP:
        drop_database(_postgres_server_url, name)


@pytest.fixture(scope="session")
def database_url(database_admin_url: str) -> str:
    # For now the application connects as the owner; a later migration may add an app role.
    return database_admin_url


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:****@", url)


@pytest.fixture(scope="session")
def topic_prefix(kafka_bootstrap: str, run_id: str) -> Iterator[str]:
    """This run's topic-name prefix; every topic under it is deleted after the run."""
    from streams.topics import delete_topics

    prefix = f"t{run_id}."
    yield prefix
    if not _KEEP:
        # Everything the run created under its prefix.
        asyncio.run(delete_topics(kafka_bootstrap, prefix))


@pytest.fixture(scope="session")
def topics(kafka_bootstrap: str, topic_prefix: str) -> TopicNames:
    from streams.topics import ensure_topics

    try:
        report = asyncio.run(
            ensure_topics(kafka_bootstrap, topic_prefix, partitions=TEST_PARTITIONS)
        )
    except Exception as exc:
        _fail(f"Topics on Kafka {kafka_bootstrap}", exc)
        raise
    return report.names
