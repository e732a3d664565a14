"""turnlog's settings: one object, read from the environment.

Rule: every knob of every process comes from here, and a wrong value fails at load time
with a message that starts with the environment variable's name
("TURNLOG_PARTITIONS: Input should be greater than or equal to 1 (got '0')").

Three variables keep the names the wider ecosystem uses — KAFKA_BOOTSTRAP_SERVERS,
DATABASE_URL, ANTHROPIC_API_KEY — and everything else is TURNLOG_<FIELD>.

Secrets can come from files instead (Docker/Kubernetes secrets), so that they are never in
any process's environment: `<VARIABLE>_FILE` names a file holding the value of a secret
variable (ANTHROPIC_API_KEY_FILE, DATABASE_URL_FILE, and the _FILE of any SecretStr
setting), and DATABASE_PASSWORD_FILE holds only the password of a DATABASE_URL written
without one. Surrounding whitespace (the final newline) is dropped. A missing, unreadable
or empty file, or a secret given both ways, is a ConfigError naming the _FILE variable.
`Settings.env_names()` maps each field to its variable (compose.yaml is tested against it).

The defaults point at the local infrastructure of `turnlog dev up`: Kafka on
127.0.0.1:9092 and PostgreSQL on 127.0.0.1:55432 (not 5432, so that a distribution's own
PostgreSQL cluster never collides with it).
"""

from __future__ import annotations

import json  # models and providers: TURNLOG_ENDPOINTS
import os
import re
import typing
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict  # NoDecode: endpoints

from agents.effects import DEFAULT_INLINE_LLM_MS
from agents.errors import ContractError
from agents.limits import DEFAULT_MAX_TEXT_BYTES as _MAX_TEXT_DEFAULT
from agents.limits import EVENT_OVERHEAD_BYTES
from agents.providers.endpoints import PRESETS as ENDPOINT_PRESETS  # models and providers
from agents.providers.endpoints import EndpointSpec, ResolvedEndpoint  # models and providers
from streams.topics import DEFAULT_FETCH_WAIT_MS, EVENTS_MAX_BYTES
from streams.topics import DEFAULT_MAX_REQUEST_BYTES as _MAX_REQUEST_DEFAULT
from streams.topics import REQUESTS_MAX_BYTES as _REQUESTS_TOPIC_MAX

_BAD_JSON = "\x00bad-json"  # models and providers: see Settings._decode_endpoints

__all__ = ["DEV_KAFKA_PORT", "DEV_POSTGRES_PORT", "ConfigError", "Settings", "load_settings"]

DEV_KAFKA_PORT = 9092
DEV_KAFKA_CONTROLLER_PORT = 9093
DEV_POSTGRES_PORT = 55432
DEV_DATABASE = "turnlog"
DEV_DATABASE_USER = "turnlog"
DEV_DATABASE_PASSWORD = "turnlog"

_PREFIX = "TURNLOG_"
# The built-in agents and script ship in the package (turnlog/builtin, the files of
# examples/): the defaults below resolve to them where there is no examples/ directory,
# so `pip install turnlog && turnlog demo` works from an empty directory.
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
_DEFAULT_AGENTS = Path("examples/agents.toml")
_DEFAULT_SCRIPT = Path("examples/demo.script.yaml")
# An event holds one text plus its envelope: the events topic must take both.
_TEXT_CEILING = EVENTS_MAX_BYTES - EVENT_OVERHEAD_BYTES
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._-]*$")


class ConfigError(ContractError):
    """A setting has a wrong value. The message starts with the environment variable."""

    def __init__(self, message: str, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class Settings(BaseSettings):
    """All settings of turnlog. Build it with `load_settings()` to get `ConfigError`s."""

    model_config = SettingsConfigDict(
        env_prefix=_PREFIX,
        case_sensitive=False,
        populate_by_name=True,
        extra="ignore",
        validate_default=True,
    )

    # Unprefixed: these names are what every Kafka / Postgres / Anthropic tool reads.
    kafka_bootstrap_servers: str = Field(
        default=f"127.0.0.1:{DEV_KAFKA_PORT}",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="Comma-separated host:port list of Kafka brokers.",
    )
    database_url: str = Field(
        default=(
            f"postgresql://{DEV_DATABASE_USER}:{DEV_DATABASE_PASSWORD}"
            f"@127.0.0.1:{DEV_POSTGRES_PORT}/{DEV_DATABASE}"
        ),
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
        description="libpq URL (postgresql://user:password@host:port/dbname).",
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "anthropic_api_key"),
        description="Credential of the Anthropic provider; never printed.",
    )

    # TURNLOG_*
    topic_prefix: str = Field(default="", description="Prepended to every topic name.")
    partitions: int = Field(
        default=8, ge=1, le=10_000, description="Partitions of the session-keyed topics."
    )
    replication_factor: int = Field(
        default=1, ge=1, le=32, description="Replication factor of the topics turnlog creates."
    )
    requests_retention_hours: float | None = Field(
        default=None,
        ge=1,
        le=24 * 365,
        description=(
            "Retention of turnlog.requests (the raw text clients sent and models answered, "
            "before guardrails redacted it), set by `turnlog topics ensure`; unset: 7 days."
        ),
    )
    state_dir: Path = Field(
        default=Path(".turnlog"),
        description="Local state of `turnlog dev` (data, logs, jars); relative to the cwd.",
    )
    log_level: str = Field(default="INFO", description="Root log level of turnlog processes.")

    # What the session worker runs: agents, the LLM provider, the tools' permissions.
    agents: Path = Field(
        default=_DEFAULT_AGENTS,
        description=(
            "Agent definitions file (TOML or YAML) the session worker serves; by default "
            "examples/agents.toml, or the one built into the package when there is none."
        ),
    )
    provider: str = Field(
        default=f"scripted:{_DEFAULT_SCRIPT}",
        description=(
            "LLM provider for scripted-* models ('scripted:<script file>'); other models use "
            "Anthropic when ANTHROPIC_API_KEY is set, or always with 'anthropic'."
        ),
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "anthropic_base_url"),
        description="Messages API base URL (a proxy or a local fake); the SDK default when unset.",
    )
    # ---- models and providers (issue 15) ------------------------------------------------
    model_catalog: Path | None = Field(
        default=None,
        description=(
            'TOML file of models beyond the built-in catalog ([models."<name>"]: provider, '
            "api_model, context_window, max_output_tokens, prices in USD per million tokens, "
            "capabilities); an entry replaces a built-in model of the same name."
        ),
    )
    endpoints: Annotated[dict[str, EndpointSpec], NoDecode] = Field(
        default_factory=dict,
        description=(
            "JSON object of named endpoints added to the presets (anthropic, openai, azure, "
            "gemini, ollama, vllm, openrouter, deepseek, mistral, xai, groq) or changing "
            'them: {"lab": {"kind": "openai", "base_url": "http://gpu:8000/v1", '
            '"api_key_env": "LAB_KEY"}}. Keys come from the variable named (or its _FILE).'
        ),
    )
    cache_conversation: bool = Field(
        default=True,
        description=(
            "Anthropic: cache the conversation too (a breakpoint on the newest message), so "
            "the uncached input of a call stays flat in a long session."
        ),
    )
    model_concurrency: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        description=(
            "JSON object: the most requests in flight per model in each worker process, "
            'e.g. {"claude-sonnet-4-5": 4, "*": 16} ("*": every model not named). A '
            "request waits for a slot within its time budget. Unset: no limit."
        ),
    )

    @field_validator("model_concurrency", mode="before")
    @classmethod
    def _decode_concurrency(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON object ({exc.msg} at character {exc.pos})") from None
        if not isinstance(value, dict):
            raise ValueError(
                'must be a JSON object of model names to limits, e.g. {"claude-sonnet-4-5": 4}'
            )
        for model, limit in value.items():
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"the limit of {model!r} must be a whole number >= 1")
        return value

    @model_validator(mode="before")
    @classmethod
    def _decode_endpoints(cls, data: Any) -> Any:
        # Decoded here rather than in the field's validator so that no error about it
        # quotes the variable's text (a key written inline must never be echoed).
        if isinstance(data, dict) and isinstance(data.get("endpoints"), str):
            text = data["endpoints"]
            try:
                decoded = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError as exc:
                decoded = {_BAD_JSON: f"not a JSON object ({exc.msg} at character {exc.pos})"}
            data = {**data, "endpoints": decoded}
        return data

    @field_validator("endpoints", mode="before")
    @classmethod
    def _check_endpoints(cls, value: Any) -> dict[str, EndpointSpec]:
        if isinstance(value, dict) and _BAD_JSON in value:
            raise ValueError(str(value[_BAD_JSON]))
        if not isinstance(value, dict):
            raise TypeError("must be a JSON object of endpoints by name")
        specs: dict[str, EndpointSpec] = {}
        for name, raw in value.items():
            if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", str(name)):
                raise ValueError(
                    f"endpoint name {name!r}: lower-case letters, digits, '.', '_' or '-'"
                )
            try:
                spec = raw if isinstance(raw, EndpointSpec) else EndpointSpec.model_validate(raw)
            except ValidationError as exc:
                # Named by field, never quoting the input: a key written inline must not
                # be echoed into an error message or a log.
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'value'}: "
                    + (
                        "not a field of an endpoint (a key is never written here: name its "
                        "variable in api_key_env)"
                        if e["type"] == "extra_forbidden"
                        else e["msg"]
                    )
                    for e in exc.errors()
                )
                raise ValueError(f"endpoint {name!r}: {problems}") from None
            spec.apply(str(name), ENDPOINT_PRESETS.get(str(name)))
            specs[str(name)] = spec
        return specs

    def resolved_endpoints(self) -> dict[str, ResolvedEndpoint]:
        """Every endpoint (presets changed by TURNLOG_ENDPOINTS, plus its own), with its
        base URL and key read from the environment: `<api_key_env>` or the file that
        `<api_key_env>_FILE` names. ConfigError naming the variable when a file is
        missing or both are set."""
        env = {name.upper(): value for name, value in os.environ.items() if value}
        resolved: dict[str, ResolvedEndpoint] = {}
        names = sorted({*ENDPOINT_PRESETS, *self.endpoints})
        for name in names:
            spec = self.endpoints.get(name)
            preset = ENDPOINT_PRESETS.get(name)
            endpoint = spec.apply(name, preset) if spec is not None else preset
            assert endpoint is not None
            base_url = endpoint.base_url
            if endpoint.base_url_env and env.get(endpoint.base_url_env):
                base_url = env[endpoint.base_url_env]
            if endpoint.kind == "anthropic" and name == "anthropic" and self.anthropic_base_url:
                base_url = self.anthropic_base_url
            key: SecretStr | None = None
            variable = endpoint.api_key_env
            if variable == "ANTHROPIC_API_KEY":
                key = self.anthropic_api_key  # already read, _FILE included
            elif variable:
                file_variable = f"{variable}_FILE"
                if file_variable in env:
                    if variable in env:
                        raise ConfigError(
                            f"{file_variable}: {variable} is set as well; set only one of them",
                            file_variable,
                        )
                    key = SecretStr(_read_secret(file_variable, env[file_variable]))
                elif variable in env:
                    key = SecretStr(env[variable])
            if key is not None and not key.get_secret_value():
                key = None
            resolved[name] = ResolvedEndpoint(endpoint, base_url, key)
        return resolved

    blob_dir: Path = Field(
        default=Path(".turnlog/blobs"),
        description=(
            "The blob store of attachments sent by reference (files named by their sha256), "
            "shared by clients that put them and workers that send them to the model."
        ),
    )
    # ---- end models and providers -------------------------------------------------------
    sandbox_dir: Path = Field(
        default=Path(".turnlog/sandbox"),
        description="The only directory the file and shell tools may touch.",
    )
    allowed_hosts: str = Field(
        default="",
        description="Comma-separated hosts http_get may fetch (exact or *.suffix); empty: none.",
    )
    shell_network: bool = Field(
        default=False,
        description=(
            "Let shell commands use the network (off: bubblewrap gives each command a "
            "network namespace of its own, with nothing in it)."
        ),
    )
    shell_allowed_interpreters: str = Field(
        default="",
        description=(
            "Comma-separated interpreters or command runners (sh, python3, env, ...) that "
            "may be the program of a shell command; empty: none."
        ),
    )
    http_allow_private_addresses: bool = Field(
        default=False,
        description=(
            "Let http_get reach loopback, private and link-local addresses that an allowed "
            "name resolves to; off, only public ones and addresses TURNLOG_ALLOWED_HOSTS "
            "names itself."
        ),
    )
    session_timeout_ms: int = Field(
        default=6000,
        ge=1000,
        le=600_000,
        description=(
            "Consumer-group session timeout of the session worker: how long a killed "
            "worker's partitions wait before another worker takes them over."
        ),
    )
    max_sessions: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description=(
            "Sessions a session worker holds in memory; idle ones beyond it are evicted "
            "(least recently used first) and loaded again from their snapshots on demand."
        ),
    )
    metrics_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between the workers' `worker.metrics` lines."
    )
    # Observability (issue 21): each worker's /metrics, /healthz, /readyz endpoint, and
    # OpenTelemetry traces, which the SDK configures from the standard OTEL_* variables.
    metrics_enabled: bool = Field(
        default=True, description="Serve /metrics, /healthz and /readyz from every worker."
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description=(
            "Address the workers' endpoint binds; any non-loopback address needs "
            "TURNLOG_METRICS_TOKEN."
        ),
    )
    metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description=(
            "Port of the session worker's endpoint (and `worker all`'s); 0: any free port, "
            "logged as endpoint.listening."
        ),
    )
    projector_metrics_port: int = Field(
        default=9465,
        ge=0,
        le=65535,
        description="Port of the projector's endpoint; 0: any free port.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token the endpoint requires on /metrics and /readyz (every path but "
            "/healthz); required when TURNLOG_METRICS_HOST is not a loopback address."
        ),
    )
    otel_sdk_disabled: bool = Field(
        default=False,
        validation_alias=AliasChoices("OTEL_SDK_DISABLED", "otel_sdk_disabled"),
        description="OpenTelemetry's switch: true turns tracing off whatever else is set.",
    )
    otel_traces_exporter: str = Field(
        default="",
        validation_alias=AliasChoices("OTEL_TRACES_EXPORTER", "otel_traces_exporter"),
        description=(
            "otlp: export spans (OTLP/HTTP, protobuf); none: no tracing. Unset: tracing is "
            "on when an OTLP endpoint variable is set, else off."
        ),
    )
    otel_exporter_otlp_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_exporter_otlp_endpoint"),
        description="Base URL of the OTLP/HTTP receiver (the exporter appends /v1/traces).",
    )
    otel_exporter_otlp_traces_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel_exporter_otlp_traces_endpoint"
        ),
        description="Full URL spans are posted to (wins over OTEL_EXPORTER_OTLP_ENDPOINT).",
    )
    otel_exporter_otlp_protocol: str = Field(
        default="http/protobuf",
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "otel_exporter_otlp_protocol",
        ),
        description="Only http/protobuf is shipped (the exporter in the dependencies).",
    )
    inline_llm_ms: float = Field(
        default=DEFAULT_INLINE_LLM_MS,
        ge=0,
        le=1000,
        description=(
            "A turn's LLM call whose model has lately answered this worker in under half "
            "of this many ms runs inside the decision that asked for it: its answer is "
            "decided in the same transaction (a hop fewer per call); one slower than this "
            "goes on as an ordinary effect. 0 turns it off."
        ),
    )
    fetch_wait_ms: int = Field(
        default=DEFAULT_FETCH_WAIT_MS,
        ge=1,
        le=5000,
        description=(
            "How long the broker may hold a session worker's or projector's fetch that "
            "finds nothing new (Kafka's fetch.max.wait.ms). A fetch returns as soon as a "
            "record comes, so this is what an idle process pays in empty fetches, and how "
            "late at most a partition is read after a restore or a rebalance."
        ),
    )
    # Input limits (bytes: what Kafka's limits count). The topics' max.message.bytes
    # (streams.topics) bound both, so whatever passes can also be written.
    max_request_bytes: int = Field(
        default=_MAX_REQUEST_DEFAULT,
        ge=1024,
        le=_REQUESTS_TOPIC_MAX,
        description=(
            "Largest request record (key + value + headers, bytes) the session worker "
            "decodes; a larger one goes to the DLQ with headers naming this limit. At most "
            "what the requests topic accepts (4 MiB)."
        ),
    )
    max_text_bytes: int = Field(
        default=_MAX_TEXT_DEFAULT,
        ge=1,
        le=_TEXT_CEILING,
        description=(
            "Largest free text (UTF-8 bytes) of one field of a request: a message, a reason. "
            "A client's over it is rejected (RequestRejected naming the limit and the size); "
            "an effect's result over it is cut with a note. At most TURNLOG_MAX_REQUEST_BYTES."
        ),
    )

    # Wire format (schemas.codec): how records are framed on the topics. Readers accept
    # both framings; a registry-framed one needs the registry URL to be read.
    wire_format: typing.Literal["single-object", "registry"] = Field(
        default="single-object",
        description=(
            "'single-object' (C3 01 + schema fingerprint, no registry) or 'registry' (00 + "
            "4-byte schema id, schemas registered under <topic>-value at "
            "TURNLOG_SCHEMA_REGISTRY_URL with FULL compatibility)."
        ),
    )
    schema_registry_url: str | None = Field(
        default=None,
        description=(
            "Confluent-API schema registry (http://host:port, or mock:// in tests); needed "
            "to read registry-framed records and to write them."
        ),
    )

    # TURNLOG_DEV_*: only the local infrastructure of `turnlog dev` reads these.
    dev_kafka_port: int = Field(default=DEV_KAFKA_PORT, ge=1, le=65535)
    dev_kafka_controller_port: int = Field(default=DEV_KAFKA_CONTROLLER_PORT, ge=1, le=65535)
    dev_kafka_heap: str = Field(default="1g", description="JVM -Xmx of the dev broker.")
    dev_postgres_port: int = Field(default=DEV_POSTGRES_PORT, ge=1, le=65535)
    dev_postgres_bin: Path | None = Field(
        default=None, description="Directory holding pg_ctl/initdb; found when unset."
    )
    dev_maven_repo: Path | None = Field(
        default=None, description="Maven local repository; Maven's own default when unset."
    )
    dev_start_timeout: float = Field(
        default=120.0, gt=0, description="Seconds `turnlog dev up` waits for each service."
    )

    _LOG_LEVELS: ClassVar[frozenset[str]] = frozenset(
        {"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"}
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("expected host:port[,host:port...], got an empty value")
        for server in servers:
            match = _HOST_PORT.match(server)
            if match is None or not 0 < int(match.group(2)) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return ",".join(servers)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            # Never echo the value: it usually carries a password.
            raise ValueError("expected a postgresql://user:password@host:port/dbname URL")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_topic_prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value) or len(value) > 150:
            raise ValueError(
                f"a topic prefix may only hold letters, digits, '.', '_' and '-', got {value!r}"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in cls._LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(sorted(cls._LOG_LEVELS))}, got {value!r}")
        return level

    @field_validator("provider")
    @classmethod
    def _check_provider(cls, value: str) -> str:
        kind, _, rest = value.strip().partition(":")
        if kind not in ("scripted", "anthropic") or (kind == "scripted" and not rest):
            raise ValueError("expected 'scripted:<script file>' or 'anthropic'")
        if kind == "anthropic" and rest:
            raise ValueError("'anthropic' takes no ':<argument>'")
        return value.strip()

    @field_validator("agents")
    @classmethod
    def _builtin_agents(cls, value: Path) -> Path:
        if value == _DEFAULT_AGENTS and not value.exists():
            return BUILTIN_DIR / value.name
        return value

    @field_validator("provider")
    @classmethod
    def _builtin_script(cls, value: str) -> str:
        if value == f"scripted:{_DEFAULT_SCRIPT}" and not _DEFAULT_SCRIPT.exists():
            return f"scripted:{BUILTIN_DIR / _DEFAULT_SCRIPT.name}"
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: str) -> str:
        for host in (h.strip() for h in value.split(",")):
            if host and not re.fullmatch(r"(\*\.)?[A-Za-z0-9.\-\[\]:]+", host):
                raise ValueError(f"{host!r} is not a host name or *.suffix pattern")
        return value

    @property
    def allowed_host_list(self) -> tuple[str, ...]:
        return tuple(h.strip() for h in self.allowed_hosts.split(",") if h.strip())

    @property
    def shell_interpreter_list(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.shell_allowed_interpreters.split(",") if n.strip())

    @field_validator("max_text_bytes")
    @classmethod
    def _check_text_limit(cls, value: int, info: ValidationInfo) -> int:
        request_limit = info.data.get("max_request_bytes")
        if isinstance(request_limit, int) and value > request_limit:
            raise ValueError(
                f"must be at most TURNLOG_MAX_REQUEST_BYTES ({request_limit}): a text cannot "
                f"be larger than the request that carries it, got {value}"
            )
        return value

    @field_validator("otel_traces_exporter")
    @classmethod
    def _check_traces_exporter(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("", "otlp", "none"):
            raise ValueError(f"expected otlp or none (the exporters turnlog ships), got {value!r}")
        return value

    @field_validator("otel_exporter_otlp_protocol")
    @classmethod
    def _check_otlp_protocol(cls, value: str) -> str:
        if value.strip() != "http/protobuf":
            raise ValueError(
                f"expected http/protobuf (the OTLP exporter turnlog ships), got {value!r}"
            )
        return value.strip()

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        from streams.endpoint import is_loopback

        host = str(info.data.get("metrics_host", "127.0.0.1"))
        token = value.get_secret_value().strip() if value is not None else ""
        if not token and not is_loopback(host) and info.data.get("metrics_enabled", True):
            raise ValueError(
                f"a token is required when the endpoint listens on {host!r}, which is not a "
                "loopback address (set TURNLOG_METRICS_TOKEN or TURNLOG_METRICS_TOKEN_FILE)"
            )
        return SecretStr(token) if token else None

    @property
    def tracing_enabled(self) -> bool:
        """OpenTelemetry tracing: on with OTEL_TRACES_EXPORTER=otlp, or with it unset and
        an OTLP endpoint given; off by default and with OTEL_SDK_DISABLED=true."""
        if self.otel_sdk_disabled or self.otel_traces_exporter == "none":
            return False
        if self.otel_traces_exporter == "otlp":
            return True
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    @field_validator("schema_registry_url")
    @classmethod
    def _check_registry_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = (value or "").strip() or None
        if value is not None and not value.startswith(("http://", "https://", "mock://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        if value is None and info.data.get("wire_format") == "registry":
            raise ValueError("TURNLOG_WIRE_FORMAT=registry needs the registry's URL")
        return value

    @field_validator("dev_kafka_heap")
    @classmethod
    def _check_heap(cls, value: str) -> str:
        if not re.fullmatch(r"\d+[kKmMgG]?", value.strip()):
            raise ValueError(f"expected a JVM size such as 512m or 1g, got {value!r}")
        return value.strip()

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Field name → the environment variable that sets it."""
        names: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names[name] = str(alias.choices[0])
            else:
                names[name] = f"{_PREFIX}{name}".upper()
        return names

    def redacted(self) -> dict[str, Any]:
        """Every setting by environment variable, secrets masked; for `turnlog settings`."""
        shown: dict[str, Any] = {}
        for name, env in self.env_names().items():
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "**********"
            elif name == "database_url":
                value = _mask_password(value)
            shown[env] = value
        return shown


def _mask_password(url: str) -> str:
    return re.sub(r"^(\w+://[^:/@]+):[^@]*@", r"\1:****@", url)


def _describe(error: Any) -> str:
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return message


_DATABASE_PASSWORD_FILE = "DATABASE_PASSWORD_FILE"


def _secret_fields() -> tuple[str, ...]:
    """Settings whose value is a secret: the database URL and every SecretStr field."""
    fields = ["database_url"]
    for name, info in Settings.model_fields.items():
        if info.annotation is SecretStr or SecretStr in typing.get_args(info.annotation):
            fields.append(name)
    return tuple(fields)


def _read_secret(variable: str, path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{variable}: the file {path!r} does not exist", variable) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"{variable}: the file {path!r} cannot be read ({reason})", variable
        ) from None
    value = text.strip()
    if not value:
        raise ConfigError(f"{variable}: the file {path!r} is empty", variable)
    return value


def _with_password(url: str, password: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None:
        raise ConfigError(
            f"{_DATABASE_PASSWORD_FILE}: DATABASE_URL already holds a password; write it "
            "without one (postgresql://user@host:port/dbname) to take the password from the file",
            _DATABASE_PASSWORD_FILE,
        )
    if not parts.username:
        raise ConfigError(
            f"{_DATABASE_PASSWORD_FILE}: DATABASE_URL names no user for the password",
            _DATABASE_PASSWORD_FILE,
        )
    host = parts.netloc.rpartition("@")[2]
    secret = urllib.parse.quote(password, safe="")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:{secret}@{host}"))


def _secrets_from_files(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Secret values read from the files `*_FILE` variables name (keyword overrides win),
    and which _FILE variable each field came from (for error messages)."""
    env = {name.upper(): value for name, value in os.environ.items() if value}
    names = Settings.env_names()
    found: dict[str, Any] = {}
    source: dict[str, str] = {}
    for field in _secret_fields():
        variable = names[field]
        file_variable = f"{variable}_FILE"
        path = env.get(file_variable)
        if path is None or field in overrides or variable.lower() in overrides:
            continue
        if variable in env:
            raise ConfigError(
                f"{file_variable}: {variable} is set as well; set only one of them",
                file_variable,
            )
        found[field] = _read_secret(file_variable, path)
        source[field] = file_variable
    path = env.get(_DATABASE_PASSWORD_FILE)
    if path is not None:
        if "database_url" in source:
            raise ConfigError(
                f"{_DATABASE_PASSWORD_FILE}: DATABASE_URL_FILE is set as well; put the "
                "password in that file's URL or set DATABASE_URL without one",
                _DATABASE_PASSWORD_FILE,
            )
        password = _read_secret(_DATABASE_PASSWORD_FILE, path)
        url = (
            overrides.get("database_url")
            or env.get("DATABASE_URL")
            or Settings.model_fields["database_url"].get_default()
        )
        found["database_url"] = _with_password(str(url), password)
        source["database_url"] = _DATABASE_PASSWORD_FILE
    return found, source


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment (and secrets from the files `*_FILE`
    variables name); keyword overrides win over both.

    Raises ConfigError naming the first offending environment variable (and listing the
    others) instead of pydantic's ValidationError.
    """
    from_files, file_source = _secrets_from_files(overrides)
    try:
        return Settings(**{**overrides, **from_files})
    except ValidationError as exc:
        env_names = Settings.env_names()
        by_alias = {alias.lower(): name for name, alias in env_names.items()}
        lines: list[str] = []
        first: str | None = None
        for error in exc.errors():
            loc = str(error["loc"][0]) if error.get("loc") else ""
            field = by_alias.get(loc.lower(), loc)
            variable = file_source.get(field) or env_names.get(field, loc.upper() or "settings")
            detail = _describe(error)
            if field != "anthropic_api_key" and field != "database_url" and "input" in error:
                raw = error["input"]
                if isinstance(raw, (str, int, float)) and repr(str(raw)) not in detail:
                    detail = f"{detail} (got {str(raw)!r})"
            lines.append(f"{variable}: {detail}")
            first = first or variable
        raise ConfigError("; ".join(lines), variable=first) from None
