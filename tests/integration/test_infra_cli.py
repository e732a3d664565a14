"""The `turnlog` command's infrastructure sub-commands, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import TEST_PARTITIONS


def turnlog(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "turnlog", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


def test_root_app_has_the_infrastructure_sub_apps() -> None:
    result = turnlog("--help")
    assert result.returncode == 0, result.stderr
    for sub_app in ("dev", "topics", "db", "settings"):
        assert sub_app in result.stdout


def test_bad_setting_fails_naming_the_variable() -> None:
    result = turnlog("topics", "names", TURNLOG_PARTITIONS="many")
    assert result.returncode == 1
    assert result.stderr.startswith("turnlog: TURNLOG_PARTITIONS: ")
    assert "Traceback" not in result.stderr


def test_topics_ensure_twice(kafka_bootstrap: str, unique_prefix: str) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TURNLOG_TOPIC_PREFIX": unique_prefix,
        "TURNLOG_PARTITIONS": str(TEST_PARTITIONS),
    }
    first = turnlog("topics", "ensure", **env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("created") == 9
    second = turnlog("topics", "ensure", "--strict", **env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("ok ") == 9 and "created" not in second.stdout
    drifted = turnlog("topics", "ensure", "--strict", "--partitions", "1", **env)
    assert drifted.returncode == 2
    assert "DRIFT" in drifted.stdout and "partitions is 4, expected 1" in drifted.stdout


def test_db_migrate_twice(scratch_database_url: str) -> None:
    first = turnlog("db", "migrate", DATABASE_URL=scratch_database_url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_init.sql" in first.stdout
    second = turnlog("db", "migrate", DATABASE_URL=scratch_database_url)
    assert second.returncode == 0 and second.stdout.strip() == "nothing to apply"
    listing = turnlog("db", "status", DATABASE_URL=scratch_database_url)
    assert "applied  0001_init.sql" in listing.stdout
    # The state is the first word of a line (a migration's name may contain "pending").
    assert not [ln for ln in listing.stdout.splitlines() if not ln.startswith("applied ")]


def test_dev_status_reports_the_running_stack(infra_source: str) -> None:
    if infra_source != "dev":
        import pytest

        pytest.skip("this run does not use the turnlog dev infrastructure")
    result = turnlog("dev", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka" in result.stdout and "postgres" in result.stdout
    assert "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:" in result.stdout


# ------------------------------------------------------------------ --json everywhere


def _json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def test_settings_json_masks_the_secrets() -> None:
    result = turnlog(
        "settings",
        "--json",
        DATABASE_URL="postgresql://u:hunter2@db:5432/t",
        ANTHROPIC_API_KEY="sk-ant-secret",
    )
    assert result.returncode == 0, result.stderr
    shown = _json(result)
    assert isinstance(shown, dict)
    assert shown["DATABASE_URL"] == "postgresql://u:****@db:5432/t"
    assert shown["ANTHROPIC_API_KEY"] == "**********"
    assert "hunter2" not in result.stdout and "sk-ant-secret" not in result.stdout
    assert isinstance(shown["TURNLOG_PARTITIONS"], int)


def test_topics_ensure_and_names_json(kafka_bootstrap: str, unique_prefix: str) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TURNLOG_TOPIC_PREFIX": unique_prefix,
        "TURNLOG_PARTITIONS": str(TEST_PARTITIONS),
    }
    names = _json(turnlog("topics", "names", "--json", **env))
    assert isinstance(names, dict) and len(names) == 9
    assert names["events"] == f"{unique_prefix}turnlog.events"
    first = _json(turnlog("topics", "ensure", "--json", **env))
    assert isinstance(first, dict)
    assert sorted(first["created"]) == sorted(names.values())
    assert (first["unchanged"], first["drift"], first["ok"]) == ([], [], True)
    drifted = turnlog("topics", "ensure", "--json", "--strict", "--partitions", "1", **env)
    assert drifted.returncode == 2
    report = _json(drifted)
    assert isinstance(report, dict) and report["ok"] is False and report["created"] == []
    assert {
        "topic": names["events"],
        "setting": "partitions",
        "expected": "1",
        "actual": str(TEST_PARTITIONS),
    } in report["drift"]


def test_db_migrate_and_status_json(scratch_database_url: str) -> None:
    first = turnlog("db", "migrate", "--json", DATABASE_URL=scratch_database_url)
    assert first.returncode == 0, first.stderr
    applied = _json(first)
    assert isinstance(applied, dict) and applied["applied"][0] == "0001_init.sql"
    again = _json(turnlog("db", "migrate", "--json", DATABASE_URL=scratch_database_url))
    assert again == {"applied": []}
    status = _json(turnlog("db", "status", "--json", DATABASE_URL=scratch_database_url))
    assert status == [{"name": name, "state": "applied"} for name in applied["applied"]]
