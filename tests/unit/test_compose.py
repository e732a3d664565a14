"""compose.yaml's structure (no Docker engine here, so the file itself is checked)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from turnlog.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
TURNLOG_SERVICES = ("init", "session-worker", "projector")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def test_services(services: dict[str, Any]) -> None:
    assert set(services) == {"kafka", "postgres", "init", "session-worker", "projector"}


@pytest.mark.parametrize("name", ["kafka", "postgres"])
def test_infrastructure_has_healthchecks(services: dict[str, Any], name: str) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert check["retries"] >= 1


def test_init_waits_for_healthy_infrastructure(services: dict[str, Any]) -> None:
    init = services["init"]
    assert init["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    command = " ".join(init["command"])
    assert "turnlog topics ensure" in command and "turnlog db migrate" in command
    assert init.get("restart") == "no"


@pytest.mark.parametrize(
    ("name", "command"),
    [("session-worker", ["turnlog", "worker", "session"]),
     ("projector", ["turnlog", "worker", "projector"])],
)
def test_workers_start_after_init(services: dict[str, Any], name: str, command: list[str]) -> None:
    service = services[name]
    assert service["command"] == command
    assert service["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    assert service["depends_on"]["kafka"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", TURNLOG_SERVICES)
def test_turnlog_services_build_from_repo_dockerfile(services: dict[str, Any], name: str) -> None:
    build = services[name]["build"]
    assert build["context"] == "."
    assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file()


@pytest.mark.parametrize("name", TURNLOG_SERVICES)
def test_environment_is_what_settings_read(services: dict[str, Any], name: str) -> None:
    env = services[name]["environment"]
    known = set(Settings.env_names().values())
    unknown = set(env) - known
    assert not unknown, f"{name} sets variables turnlog.settings does not read: {unknown}"
    assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "ANTHROPIC_API_KEY"} <= set(env)


@pytest.mark.parametrize("name", TURNLOG_SERVICES)
def test_environment_loads_into_settings(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
           for k, v in services[name]["environment"].items()}
    for key in Settings.env_names().values():
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    host = re.search(r"@([^:/]+)", settings.database_url)
    assert host is not None and host.group(1) == "postgres"


def test_database_url_matches_postgres_service(services: dict[str, Any]) -> None:
    pg = services["postgres"]["environment"]
    url = services["init"]["environment"]["DATABASE_URL"]
    assert url == (f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
                   f"@postgres:5432/{pg['POSTGRES_DB']}")


def test_kafka_is_a_single_kraft_node_with_working_transactions(services: dict[str, Any]) -> None:
    env = {k: str(v) for k, v in services["kafka"]["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_kafka_image_matches_the_dev_pom(services: dict[str, Any]) -> None:
    pom = (ROOT / "turnlog" / "dev" / "kafka-pom.xml").read_text()
    version = re.search(r"<kafka\.version>([^<]+)<", pom)
    assert version is not None
    assert services["kafka"]["image"] == f"apache/kafka:{version.group(1)}"


def test_volumes_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    for name in ("kafka", "postgres"):
        for mount in services[name]["volumes"]:
            assert mount.split(":")[0] in compose["volumes"]
