"""Settings: defaults, environment names, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.errors import TurnlogError
from turnlog.settings import ConfigError, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.env_names().values():
        monkeypatch.delenv(name, raising=False)


def test_defaults_point_at_the_dev_infrastructure() -> None:
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.database_url.startswith("postgresql://")
    assert "127.0.0.1:55432" in settings.database_url
    assert settings.anthropic_api_key is None
    assert settings.topic_prefix == ""
    assert settings.partitions == 8
    assert settings.state_dir == Path(".turnlog")


def test_environment_names() -> None:
    names = Settings.env_names()
    assert names["kafka_bootstrap_servers"] == "KAFKA_BOOTSTRAP_SERVERS"
    assert names["database_url"] == "DATABASE_URL"
    assert names["anthropic_api_key"] == "ANTHROPIC_API_KEY"
    assert names["topic_prefix"] == "TURNLOG_TOPIC_PREFIX"
    assert names["partitions"] == "TURNLOG_PARTITIONS"
    assert names["state_dir"] == "TURNLOG_STATE_DIR"


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "a:1, b:2")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/x")
    monkeypatch.setenv("TURNLOG_PARTITIONS", "12")
    monkeypatch.setenv("TURNLOG_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("TURNLOG_STATE_DIR", "/tmp/tl")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "a:1,b:2"
    assert settings.database_url == "postgresql://u:p@db:5432/x"
    assert settings.partitions == 12
    assert settings.topic_prefix == "staging."
    assert settings.state_dir == Path("/tmp/tl")


def test_http_get_reaches_private_addresses_only_when_opted_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().http_allow_private_addresses is False
    assert Settings.env_names()["http_allow_private_addresses"] == (
        "TURNLOG_HTTP_ALLOW_PRIVATE_ADDRESSES"
    )
    monkeypatch.setenv("TURNLOG_HTTP_ALLOW_PRIVATE_ADDRESSES", "true")
    assert load_settings().http_allow_private_addresses is True


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_PARTITIONS", "12")
    assert load_settings(partitions=3).partitions == 3


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TURNLOG_PARTITIONS", "abc", "valid integer"),
        ("TURNLOG_PARTITIONS", "0", "greater than or equal to 1"),
        ("TURNLOG_REPLICATION_FACTOR", "-1", "greater than or equal to 1"),
        ("KAFKA_BOOTSTRAP_SERVERS", "no-port-here", "host:port"),
        ("KAFKA_BOOTSTRAP_SERVERS", "", "host:port"),
        ("DATABASE_URL", "mysql://root@db/x", "postgresql://"),
        ("TURNLOG_TOPIC_PREFIX", "bad prefix!", "topic prefix"),
        ("TURNLOG_LOG_LEVEL", "LOUD", "expected one of"),
        ("TURNLOG_DEV_POSTGRES_PORT", "70000", "less than or equal to 65535"),
        ("TURNLOG_DEV_KAFKA_HEAP", "lots", "JVM size"),
        ("TURNLOG_HTTP_ALLOW_PRIVATE_ADDRESSES", "perhaps", "valid boolean"),
        ("TURNLOG_FETCH_WAIT_MS", "0", "greater than or equal to 1"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert expected in message
    assert caught.value.variable == variable
    assert isinstance(caught.value, TurnlogError)


def test_every_bad_variable_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNLOG_PARTITIONS", "x")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "nope")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "TURNLOG_PARTITIONS:" in str(caught.value)
    assert "KAFKA_BOOTSTRAP_SERVERS:" in str(caught.value)


def test_database_password_never_in_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@db/x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_api_key_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-very-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:dbsecret@db:5432/x")
    settings = load_settings()
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-very-secret"
    shown = f"{settings!r} {settings} {settings.redacted()}"
    assert "sk-ant-very-secret" not in shown
    assert "dbsecret" not in str(settings.redacted())


@pytest.mark.parametrize("allow", [False, True])
def test_the_worker_hands_the_http_settings_to_its_tools(tmp_path: Path, allow: bool) -> None:
    from turnlog.wiring import build_tools

    settings = load_settings(
        sandbox_dir=str(tmp_path / "sandbox"),
        allowed_hosts="example.com,10.0.0.7",
        http_allow_private_addresses=allow,
    )
    _, tool_settings = build_tools(settings)
    assert tool_settings.allow_private_addresses is allow
    assert [str(p) for p in tool_settings.allowed_hosts] == ["example.com", "10.0.0.7"]
    assert tool_settings.sandbox_dir == tmp_path / "sandbox"


def test_the_fetch_wait_reaches_the_worker_and_the_projector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from projections import projector
    from streams.topics import DEFAULT_FETCH_WAIT_MS
    from turnlog.cli.projections import _config
    from turnlog.demo import WorkerAll
    from turnlog.wiring import build_session_process

    assert load_settings().fetch_wait_ms == DEFAULT_FETCH_WAIT_MS
    assert projector.DEFAULT_FETCH_WAIT_MS == DEFAULT_FETCH_WAIT_MS
    monkeypatch.setenv("TURNLOG_FETCH_WAIT_MS", "350")
    settings = load_settings()
    assert build_session_process(settings).worker.fetch_wait_ms == 350
    projector = _config(
        group=True,
        consumer="projector",
        max_records=100,
        checkpoint_interval=1.0,
        stop_on_gap=True,
        session_timeout_ms=6000,
        database_url=None,
    )
    assert projector.fetch_wait_ms == 350
    together = WorkerAll(settings)  # `turnlog worker all` and the demo
    assert together.session.worker.fetch_wait_ms == 350
    assert together.projector.config.fetch_wait_ms == 350


# --------------------------------------------------------------------------- *_FILE secrets

_FILE_VARIABLES = ("ANTHROPIC_API_KEY_FILE", "DATABASE_URL_FILE", "DATABASE_PASSWORD_FILE")


@pytest.fixture
def no_secret_files(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _FILE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _secret_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


@pytest.mark.usefixtures("no_secret_files")
def test_secrets_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator keeps the credentials out of the worker's environment entirely."""
    key = _secret_file(tmp_path, "key", "sk-ant-from-file\n")
    url = _secret_file(tmp_path, "url", "postgresql://u:filepw@db:5432/x\n")
    monkeypatch.setenv("ANTHROPIC_API_KEY_FILE", key)
    monkeypatch.setenv("DATABASE_URL_FILE", url)
    settings = load_settings()
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-from-file"
    assert settings.database_url == "postgresql://u:filepw@db:5432/x"
    assert "sk-ant-from-file" not in f"{settings!r} {settings.redacted()}"
    assert "filepw" not in str(settings.redacted())
    # Keyword overrides still win over both.
    assert load_settings(database_url="postgresql://o@h:1/d").database_url == "postgresql://o@h:1/d"


@pytest.mark.usefixtures("no_secret_files")
def test_the_database_password_alone_comes_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://turnlog@db:5432/turnlog")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", _secret_file(tmp_path, "pw", "p@ss/w:rd\n"))
    assert load_settings().database_url == "postgresql://turnlog:p%40ss%2Fw%3Ard@db:5432/turnlog"
    monkeypatch.setenv("DATABASE_URL", "postgresql://turnlog:inline@db:5432/turnlog")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "DATABASE_PASSWORD_FILE"
    assert "already holds a password" in str(caught.value) and "inline" not in str(caught.value)


@pytest.mark.usefixtures("no_secret_files")
@pytest.mark.parametrize(
    ("setup", "variable", "says"),
    [
        ({"ANTHROPIC_API_KEY_FILE": "{missing}"}, "ANTHROPIC_API_KEY_FILE", "does not exist"),
        ({"DATABASE_URL_FILE": "{dir}"}, "DATABASE_URL_FILE", "cannot be read"),
        ({"ANTHROPIC_API_KEY_FILE": "{empty}"}, "ANTHROPIC_API_KEY_FILE", "is empty"),
        (
            {"ANTHROPIC_API_KEY_FILE": "{key}", "ANTHROPIC_API_KEY": "sk-env"},
            "ANTHROPIC_API_KEY_FILE",
            "ANTHROPIC_API_KEY is set as well",
        ),
        (
            {"DATABASE_URL_FILE": "{url}", "DATABASE_URL": "postgresql://u:envpw@h:1/d"},
            "DATABASE_URL_FILE",
            "DATABASE_URL is set as well",
        ),
        (
            {"DATABASE_URL_FILE": "{bad_url}"},
            "DATABASE_URL_FILE",
            "expected a postgresql://",
        ),
    ],
)
def test_a_broken_secret_file_names_its_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: dict[str, str],
    variable: str,
    says: str,
) -> None:
    files = {
        "missing": str(tmp_path / "nope"),
        "dir": str(tmp_path),
        "empty": _secret_file(tmp_path, "empty", "\n"),
        "key": _secret_file(tmp_path, "key", "sk-file-secret"),
        "url": _secret_file(tmp_path, "url", "postgresql://u:filepw@h:1/d"),
        "bad_url": _secret_file(tmp_path, "bad", "mysql://u:filepw@h/d"),
    }
    for name, value in setup.items():
        monkeypatch.setenv(name, value.format(**files))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ") and says in str(caught.value)
    for secret in ("sk-file-secret", "filepw", "envpw", "sk-env"):
        assert secret not in str(caught.value)


def test_the_worker_hands_the_shell_settings_to_its_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from turnlog.wiring import build_tools

    _, default = build_tools(load_settings(sandbox_dir=str(tmp_path / "a")))
    assert default.shell.network is False and default.shell.allowed_interpreters == ()
    monkeypatch.setenv("TURNLOG_SHELL_NETWORK", "true")
    monkeypatch.setenv("TURNLOG_SHELL_ALLOWED_INTERPRETERS", "python3, jq")
    _, chosen = build_tools(load_settings(sandbox_dir=str(tmp_path / "b")))
    assert chosen.shell.network is True
    assert chosen.shell.allowed_interpreters == ("python3", "jq")
