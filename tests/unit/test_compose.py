"""compose.yaml's structure (no Docker engine here, so the file itself is checked)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from turnlog.settings import ConfigError, Settings, _secret_fields, load_settings

ROOT = Path(__file__).resolve().parents[2]
TURNLOG_SERVICES = ("init", "session-worker", "projector", "scheduler")
_SECRETS = set(_secret_fields())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def test_services(services: dict[str, Any]) -> None:
    assert set(services) == {
        "kafka",
        "postgres",
        "init",
        "session-worker",
        "projector",
        "scheduler",
        "console",
        "metrics-token",
        "prometheus",
        "grafana",
    }


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
    [
        ("session-worker", ["turnlog", "worker", "session"]),
        ("projector", ["turnlog", "worker", "projector"]),
        ("scheduler", ["turnlog", "worker", "scheduler"]),
    ],
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
    known |= {f"{v}_FILE" for k, v in Settings.env_names().items() if k in _SECRETS}
    unknown = set(env) - known
    assert not unknown, f"{name} sets variables turnlog.settings does not read: {unknown}"
    assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "ANTHROPIC_API_KEY"} <= set(env)


@pytest.mark.parametrize("name", TURNLOG_SERVICES)
def test_environment_loads_into_settings(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {
        k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
        for k, v in services[name]["environment"].items()
    }
    for key, path in list(env.items()):
        if key.endswith("_FILE"):  # a secret from a volume of the compose project
            assert any(
                path.startswith(m.split(":")[1] + "/") for m in services[name].get("volumes", ())
            ), (name, key, path)
            local = tmp_path / key
            local.write_text("secret-from-a-file\n")
            env[key] = str(local)
    for key in Settings.env_names().values():
        monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv(f"{key}_FILE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    host = re.search(r"@([^:/]+)", settings.database_url)
    assert host is not None and host.group(1) == "postgres"


def test_database_url_matches_postgres_service(services: dict[str, Any]) -> None:
    pg = services["postgres"]["environment"]
    url = services["init"]["environment"]["DATABASE_URL"]
    assert url == (
        f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{pg['POSTGRES_DB']}"
    )


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
    assert services["kafka"]["image"].split("@")[0] == f"apache/kafka:{version.group(1)}"


def test_volumes_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    for name in ("kafka", "postgres"):
        for mount in services[name]["volumes"]:
            assert mount.split(":")[0] in compose["volumes"]


# ------------------------------------------------------------------ observability (issue 21)

WORKER_PORTS = {
    "session-worker": Settings.model_fields["metrics_port"].default,
    "projector": Settings.model_fields["projector_metrics_port"].default,
}


@pytest.mark.parametrize(("name", "port"), sorted(WORKER_PORTS.items()))
def test_every_worker_has_a_healthcheck_on_its_healthz(
    services: dict[str, Any], name: str, port: int
) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] == "CMD" and check["retries"] >= 1
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(check["test"])


@pytest.mark.parametrize("name", sorted(WORKER_PORTS))
def test_workers_listen_on_the_network_only_with_a_token(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = services[name]["environment"]
    assert env["TURNLOG_METRICS_HOST"] == "0.0.0.0"
    assert env["TURNLOG_METRICS_TOKEN_FILE"].startswith("/run/turnlog-secrets/")
    assert "metrics-token:/run/turnlog-secrets:ro" in services[name]["volumes"]
    assert services[name]["depends_on"]["metrics-token"] == {
        "condition": "service_completed_successfully"
    }
    assert "ports" not in services[name]  # reached on the compose network, not published
    # Without the token file the same environment is refused at load.
    for key in Settings.env_names().values():
        monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv(f"{key}_FILE", raising=False)
    monkeypatch.setenv("TURNLOG_METRICS_HOST", env["TURNLOG_METRICS_HOST"])
    with pytest.raises(ConfigError, match="TURNLOG_METRICS_TOKEN"):
        load_settings()


def test_the_token_service_writes_one_token_to_the_shared_volume(
    services: dict[str, Any],
) -> None:
    token = services["metrics-token"]
    assert token["restart"] == "no" and token["build"]["context"] == "."
    assert "metrics-token:/run/turnlog-secrets" in token["volumes"]
    command = " ".join(token["command"])
    assert "/run/turnlog-secrets/metrics-token" in command and "secrets.token_urlsafe" in command


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_observability_profile_services(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert service["profiles"] == ["observability"]
    assert service["healthcheck"]["test"][0] == "CMD"
    for port in service["ports"]:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond the loopback"
    for mount in service["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), mount


def test_prometheus_scrapes_every_worker_with_the_token(services: dict[str, Any]) -> None:
    mounts = services["prometheus"]["volumes"]
    assert "metrics-token:/run/turnlog-secrets:ro" in mounts
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, port in WORKER_PORTS.items():
        job = jobs[f"turnlog-{name}"]
        assert job["authorization"]["credentials_file"] == "/run/turnlog-secrets/metrics-token"
        (sd,) = job["dns_sd_configs"]
        assert sd["names"] == [name] and sd["port"] == port


# --- where the data lives, images, healthchecks (issue 22) -------------------------------

# The apache/kafka image writes its log here when no log.dirs is configured.
KAFKA_IMAGE_DEFAULT_LOG_DIRS = "/tmp/kraft-combined-logs"


def _kafka_property(env: dict[str, str], name: str) -> str | None:
    """A broker property as the apache/kafka image derives it from KAFKA_* variables
    (KAFKA_LOG_DIRS -> log.dirs: '_' is '.', '__' is '_', '___' is '-')."""
    for key, value in env.items():
        if not key.startswith("KAFKA_"):
            continue
        prop = (
            key.removeprefix("KAFKA_")
            .lower()
            .replace("___", "\0")
            .replace("__", "\1")
            .replace("_", ".")
            .replace("\0", "-")
            .replace("\1", "_")
        )
        if prop == name:
            return str(value)
    return None


def _mounts(compose: dict[str, Any], service: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume, for the service's named-volume mounts."""
    mounts = {}
    for mount in service.get("volumes", []):
        if isinstance(mount, dict):
            source, target = mount.get("source", ""), mount["target"]
        else:
            source, target = mount.split(":")[0], mount.split(":")[1]
        if source in (compose.get("volumes") or {}):
            mounts[target.rstrip("/")] = source
    return mounts


def test_kafka_log_dirs_are_on_its_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    env = {k: str(v) for k, v in services["kafka"]["environment"].items()}
    log_dirs = _kafka_property(env, "log.dirs") or KAFKA_IMAGE_DEFAULT_LOG_DIRS
    mounts = _mounts(compose, services["kafka"])
    for directory in log_dirs.split(","):
        on = [
            path
            for path in mounts
            if directory.rstrip("/") == path or directory.startswith(path + "/")
        ]
        assert on, (
            f"Kafka's log dir {directory} is not on a named volume (mounts: "
            f"{mounts}): the events topic would be lost with the container."
        )


def test_postgres_data_is_on_its_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    pgdata = str(
        services["postgres"].get("environment", {}).get("PGDATA", "/var/lib/postgresql/data")
    )  # the postgres image's default
    mounts = _mounts(compose, services["postgres"])
    assert any(pgdata == path or pgdata.startswith(path + "/") for path in mounts), mounts


def test_images_are_pinned(services: dict[str, Any]) -> None:
    """A pulled image names a version tag (never latest), and a digest, when given,
    comes with its tag alongside (name:tag@sha256:...)."""
    pattern = re.compile(r"^[a-z0-9./_-]+:(?P<tag>[A-Za-z0-9._-]+)(@sha256:[0-9a-f]{64})?$")
    for name, service in services.items():
        if "build" in service:
            continue  # built from this repository
        match = pattern.match(service["image"])
        assert match is not None, f"{name}: {service['image']} is not name:tag[@sha256:...]"
        assert match.group("tag") != "latest", f"{name}: {service['image']}"


def test_every_service_has_a_healthcheck_or_is_a_one_shot(services: dict[str, Any]) -> None:
    """Services that keep running have a healthcheck; one-shot services (restart "no")
    are waited for with service_completed_successfully instead."""
    for name, service in services.items():
        if service.get("restart") == "no":
            dependents = [d for d in services.values() if name in (d.get("depends_on") or {})]
            assert all(
                d["depends_on"][name] == {"condition": "service_completed_successfully"}
                for d in dependents
            ), name
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
