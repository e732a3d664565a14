"""The console's configuration and its guard, without servers: loopback by default, tokens
required elsewhere, broken settings named, and every event type shown by the console."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agents.events import EVENT_TYPES
from turnlog.console.config import (
    ConsoleConfig,
    ConsoleConfigError,
    is_loopback,
    load_console_config,
)
from turnlog.console.timeline import EVENT_VIEWS

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "0123456789abcdef-token"


def test_the_default_is_loopback_without_sign_in() -> None:
    config = load_console_config({})
    assert (config.host, config.port, config.auth_required) == ("127.0.0.1", 8700, False)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.2", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_binding_elsewhere_needs_tokens() -> None:
    with pytest.raises(ConsoleConfigError, match="TURNLOG_UI_HOST.*TURNLOG_UI_TOKENS"):
        load_console_config({"TURNLOG_UI_HOST": "0.0.0.0"})
    config = load_console_config(
        {"TURNLOG_UI_HOST": "0.0.0.0", "TURNLOG_UI_TOKENS": f"alice:{TOKEN}"}
    )
    assert config.auth_required and config.identity_of(TOKEN) == "alice"
    assert config.identity_of(TOKEN + "x") is None


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"TURNLOG_UI_PORT": "eighty"}, "TURNLOG_UI_PORT"),
        ({"TURNLOG_UI_PORT": "70000"}, "TURNLOG_UI_PORT"),
        ({"TURNLOG_UI_MAX_BODY_BYTES": "10"}, "TURNLOG_UI_MAX_BODY_BYTES"),
        ({"TURNLOG_UI_TOKENS": "alice"}, "TURNLOG_UI_TOKENS: entry 1"),
        ({"TURNLOG_UI_TOKENS": "alice:short"}, "TURNLOG_UI_TOKENS: the token of 'alice'"),
        ({"TURNLOG_UI_TOKENS_FILE": "/nonexistent/tokens"}, "TURNLOG_UI_TOKENS_FILE: cannot read"),
        (
            {"TURNLOG_UI_TOKENS_FILE": "/x", "TURNLOG_UI_TOKENS": f"a:{TOKEN}"},
            "TURNLOG_UI_TOKENS_FILE: TURNLOG_UI_TOKENS is set as well",
        ),
    ],
)
def test_a_broken_setting_is_named(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConsoleConfigError, match=names):
        load_console_config(env)


def test_tokens_from_a_file_one_per_line_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# operators\nalice:{TOKEN}\n\nbob:{TOKEN[::-1]}\n")
    config = load_console_config({"TURNLOG_UI_TOKENS_FILE": str(path)})
    assert config.identity_of(TOKEN) == "alice" and config.identity_of(TOKEN[::-1]) == "bob"
    assert load_console_config({}, tokens_file=str(path)).identity_of(TOKEN) == "alice"
    path.write_text("")
    with pytest.raises(ConsoleConfigError, match="is empty"):
        load_console_config({"TURNLOG_UI_TOKENS_FILE": str(path)})


def test_the_command_line_wins_over_the_environment() -> None:
    config = load_console_config({"TURNLOG_UI_PORT": "9000"}, port=0)
    assert config.port == 0


def test_a_config_rejects_what_load_would() -> None:
    with pytest.raises(ConsoleConfigError):
        ConsoleConfig(host="10.0.0.1")


def test_every_event_type_has_a_view() -> None:
    # (tests/unit/test_event_handlers.py checks the table against the event union too)
    assert set(EVENT_TYPES) - set(EVENT_VIEWS) == set(), "event types the console cannot show"


def test_the_wheel_ships_every_template_and_asset() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = data["tool"]["setuptools"]
    assert "turnlog*" in setuptools["packages"]["find"]["include"]
    patterns = setuptools["package-data"]["turnlog.console"]
    console = ROOT / "turnlog" / "console"
    for path in (*console.glob("templates/**/*"), *console.glob("static/**/*")):
        if path.is_file():
            rel = path.relative_to(console)
            assert any(rel.match(p) for p in patterns), f"{rel} is not in the wheel"


def test_the_api_is_described_by_openapi() -> None:
    from turnlog.console.api import api_routes, openapi

    spec = openapi()
    assert spec["openapi"].startswith("3.") and spec["components"]["securitySchemes"]
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for route in api_routes():
        if route.include_in_schema:
            for method in route.methods or ():
                if method != "HEAD":
                    assert (route.path, method.lower()) in documented, (route.path, method)
    stream = spec["paths"]["/api/sessions/{session_id}/stream"]["get"]
    assert "Last-Event-ID" in stream["description"]


def test_the_compose_console_is_opt_in_authenticated_and_on_host_loopback() -> None:
    import yaml

    console = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["console"]
    assert console["profiles"] == ["console"]
    command = console["command"]
    assert command[:2] == ["turnlog", "ui"]
    host = command[command.index("--host") + 1]
    tokens = command[command.index("--tokens-file") + 1]
    # Bound beyond loopback inside the container, so tokens are required (and given).
    assert host == "0.0.0.0" and any(v.endswith(f":{tokens}:ro") for v in console["volumes"])
    assert all(p.startswith("127.0.0.1:") for p in console["ports"])
    assert "/healthz" in " ".join(console["healthcheck"]["test"])
    with pytest.raises(ConsoleConfigError):
        load_console_config({}, host=host)
