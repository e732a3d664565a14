"""Models and providers from settings: named endpoints (presets, TURNLOG_ENDPOINTS, keys
from the variable each names or its _FILE) and the model catalog file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.agentfile import registry_from_file
from agents.errors import AgentDefinitionError
from agents.pricing import (
    BUILTIN,
    CatalogError,
    ModelNotFound,
    active_catalog,
    find_model,
    model_info,
    use_catalog,
)
from agents.providers import ProviderConfigError
from turnlog.settings import ConfigError, load_settings
from turnlog.wiring import build_provider, install_catalog, load_catalog

KEYS = (
    "OPENAI_API_KEY",
    "OPENAI_API_KEY_FILE",
    "OPENAI_BASE_URL",
    "LAB_KEY",
    "GROQ_API_KEY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_API_KEY_FILE",
    "TURNLOG_ENDPOINTS",
    "TURNLOG_MODEL_CATALOG",
    "TURNLOG_PROVIDER",
    "AZURE_OPENAI_ENDPOINT",
)
AGENT = """
[agents.local]
system_prompt = "Be brief."
model = "{model}"
fallbacks = ["claude-haiku-4-5"]
max_tokens = 512
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    previous = active_catalog()
    yield
    use_catalog(previous)


def test_every_preset_names_the_variable_of_its_key() -> None:
    endpoints = load_settings().resolved_endpoints()
    assert {
        "anthropic",
        "openai",
        "azure",
        "gemini",
        "ollama",
        "vllm",
        "openrouter",
        "deepseek",
        "mistral",
        "xai",
        "groq",
    } <= set(endpoints)
    assert endpoints["groq"].endpoint.api_key_env == "GROQ_API_KEY"
    assert endpoints["groq"].base_url == "https://api.groq.com/openai/v1"
    assert endpoints["ollama"].endpoint.api_key_env is None
    assert not endpoints["ollama"].endpoint.key_required
    assert all(e.api_key is None for e in endpoints.values())


def test_keys_come_from_the_variable_or_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-from-env")
    key_file = tmp_path / "openai.key"
    key_file.write_text("sk-from-file\n")
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(key_file))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy.local/v1")
    endpoints = load_settings().resolved_endpoints()
    assert endpoints["groq"].api_key.get_secret_value() == "gsk-from-env"  # type: ignore[union-attr]
    assert endpoints["openai"].api_key.get_secret_value() == "sk-from-file"  # type: ignore[union-attr]
    assert endpoints["openai"].base_url == "http://proxy.local/v1"
    assert "sk-from-file" not in repr(endpoints["openai"])

    monkeypatch.setenv("OPENAI_API_KEY", "sk-both")
    with pytest.raises(ConfigError, match="^OPENAI_API_KEY_FILE: OPENAI_API_KEY is set as well"):
        load_settings().resolved_endpoints()
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="^OPENAI_API_KEY_FILE: the file .* does not exist"):
        load_settings().resolved_endpoints()


def test_turnlog_endpoints_adds_endpoints_and_changes_presets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "TURNLOG_ENDPOINTS",
        '{"lab": {"kind": "openai", "base_url": '
        '"http://gpu:8000/v1", "api_key_env": "LAB_KEY"}, '
        '"ollama": {"base_url": "http://box:11434/v1"}}',
    )
    monkeypatch.setenv("LAB_KEY", "lab-secret")
    settings = load_settings()
    endpoints = settings.resolved_endpoints()
    lab = endpoints["lab"]
    assert (lab.endpoint.kind, lab.base_url, lab.endpoint.key_required) == (
        "openai",
        "http://gpu:8000/v1",
        True,
    )
    assert lab.api_key.get_secret_value() == "lab-secret"  # type: ignore[union-attr]
    assert endpoints["ollama"].base_url == "http://box:11434/v1"
    assert endpoints["ollama"].endpoint.kind == "openai"
    assert "lab-secret" not in str(settings.redacted())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"lab": {"base_url": "http://x"}}', "a new endpoint needs a kind"),
        ('{"lab": {"kind": "bedrock"}}', "kind"),
        ('{"lab": {"kind": "azure", "base_url": "https://r.openai.azure.com"}}', "api_version"),
        ('{"Lab!": {"kind": "openai"}}', "endpoint name"),
        ('{"lab": {"kind": "openai", "api_key": "sk-inline"}}', "api_key: not a field"),
        ("not json", "not a JSON object"),
    ],
)
def test_a_bad_endpoint_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("TURNLOG_ENDPOINTS", value)
    with pytest.raises(ConfigError, match="^TURNLOG_ENDPOINTS") as caught:
        load_settings()
    assert message.lower() in str(caught.value).lower()
    assert "sk-inline" not in str(caught.value)


def test_the_catalog_file_adds_models_that_agent_files_and_pricing_see(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[models."local-qwen"]\nprovider = "ollama"\napi_model = "qwen2.5:7b"\n'
        "context_window = 32768\nmax_output_tokens = 4096\ninput = 0\noutput = 0\n"
        'aliases = ["qwen"]\n'
    )
    agents = tmp_path / "agents.toml"
    agents.write_text(AGENT.format(model="local-qwen"))
    with pytest.raises(AgentDefinitionError, match="unknown model 'local-qwen'"):
        registry_from_file(agents)
    install_catalog(load_settings(model_catalog=path))
    registry = registry_from_file(agents)
    assert registry.get("local").model == "local-qwen"
    assert model_info("qwen").name == "local-qwen" and find_model("gpt-4o") is not None
    with pytest.raises(ModelNotFound) as caught:
        model_info("gpt-7")
    assert str(path) in str(caught.value) and "local-qwen" in str(caught.value)


def test_without_a_catalog_file_the_error_says_where_models_go() -> None:
    use_catalog(BUILTIN)
    with pytest.raises(ModelNotFound, match="TURNLOG_MODEL_CATALOG.*known: claude-3-5-haiku"):
        model_info("gpt-7")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            (
                '[models.x]\nprovider = "ollama"\ncontext_window = 10\nmax_output_tokens = 5\n'
                "input = -1\noutput = 0\n"
            ),
            "model 'x': input: a price cannot be negative",
        ),
        (
            '[models.x]\nprovider = "ollama"\ncontext_window = 10\ninput = 0\noutput = 0\n',
            "model 'x': missing field(s) max_output_tokens",
        ),
        (
            (
                '[models.x]\nprovider = "ollama"\ncontext_window = 10\nmax_output_tokens = 5\n'
                'input = 0\noutput = 0\napi_key = "sk"\n'
            ),
            "model 'x': unknown field(s) api_key",
        ),
        (
            (
                '[models.x]\nprovider = "ollama"\ncontext_window = 10\nmax_output_tokens = 50\n'
                "input = 0\noutput = 0\n"
            ),
            "max_output_tokens must be <= context_window",
        ),
        (
            (
                '[models.x]\nprovider = "ollama"\ncontext_window = 10\nmax_output_tokens = 5\n'
                'input = "0.0000001"\noutput = 0\n'
            ),
            "finer than 1 nano-dollar",
        ),
        ('[endpoints.x]\nkind = "openai"\n', "unknown table(s) endpoints"),
        ("models = [", "cannot be read"),
    ],
)
def test_a_bad_catalog_file_is_an_error_naming_the_file_the_model_and_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value)


def test_a_missing_catalog_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist.*TURNLOG_MODEL_CATALOG"):
        load_catalog(tmp_path / "nope.toml")


def test_a_required_key_that_is_missing_names_its_variable() -> None:
    with pytest.raises(
        ProviderConfigError, match="ANTHROPIC_API_KEY \\(or ANTHROPIC_API_KEY_FILE\\)"
    ):
        build_provider(load_settings(provider="anthropic"))
    router = build_provider(load_settings())  # scripted demo: no key needed until used
    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY"):
        router.adapter("openai")
    assert router.adapter("ollama") is router.adapter("ollama")


def test_the_example_catalog_file_loads() -> None:
    catalog = load_catalog(Path(__file__).parents[2] / "examples" / "models.toml")
    assert catalog.info("local-qwen").wire_name == "qwen2.5:7b"
    assert catalog.info("prod-gpt-4o").provider == "azure"
