"""turnlog's schemas in a schema registry that serves the Confluent Schema Registry API.

The rule: with a registry, a record is framed the way Kafka Connect's AvroConverter,
ksqlDB, Flink's `avro-confluent` format and every Confluent serializer expect,

    0x00 | schema id (4 bytes, big-endian) | Avro binary body

where the id is the one the registry gave the writer schema. The codec
(`schemas.codec`) does the framing and accepts both framings by their first byte
(C3 = single-object, 00 = registry); this module is the IO side it calls through the
`RegistrySeam` protocol:

- `id_for(envelope)` registers the current schema of an envelope under the subject of
  every topic that carries it (topic-name strategy: `<topic>-value`), after aligning each
  subject's compatibility level with turnlog's own gate, and returns its id;
- `schema_of(schema_id)` is the writer schema the registry holds under an id.

Compatibility: `schemas.compat` requires the current set to be backward AND forward
compatible with the last release, which is the registry's `FULL` level (checked against
the latest registered version). A subject is set to FULL before turnlog registers in it,
so the registry refuses what turnlog's gate would refuse, whoever registers.

The HTTP client is confluent-kafka's `SchemaRegistryClient` (the `registry` extra); a
`mock://` URL gives that library's in-memory registry. Errors of the registry or of the
network become `RegistryError` (an ExternalError: the outside world failed), never a
DecodeError, so a session worker reads the batch again instead of dead-lettering a
message whose schema it merely could not look up.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from agents.errors import ExternalError

__all__ = [
    "COMPATIBILITY",
    "ConfluentRegistry",
    "RegistryError",
    "RegistrySeam",
    "subject_for",
]

# turnlog's gate (schemas.compat.evolution_problems): backward and forward with the last
# release = the registry's FULL.
COMPATIBILITY = "FULL"


class RegistryError(ExternalError):
    """The schema registry refused a request, or could not be reached."""


class RegistrySeam(Protocol):
    """What the codec needs from a registry; tests may hand it an in-process one."""

    def id_for(self, envelope: str) -> int:
        """The registry id of the current schema of `envelope` (registered if needed)."""

    def schema_of(self, schema_id: int) -> dict[str, Any]:
        """The writer schema the registry holds under `schema_id`, as parsed JSON."""


def subject_for(topic: str) -> str:
    """The subject of a topic's record values (the topic-name strategy)."""
    return f"{topic}-value"


class ConfluentRegistry:
    """`RegistrySeam` over the Confluent Schema Registry REST API.

    `topics` maps an envelope name to the topics whose values it is (the Request envelope
    is the value of the requests topic and of its dead-letter topic). Ids are cached: a
    process asks the registry once per envelope and once per foreign id.
    """

    def __init__(
        self,
        url: str,
        topics: Mapping[str, Sequence[str]],
        *,
        compatibility: str = COMPATIBILITY,
        timeout_s: float = 10.0,
        client: Any = None,
    ) -> None:
        self.url = url
        self.topics = {envelope: tuple(names) for envelope, names in topics.items()}
        self.compatibility = compatibility
        self._timeout_s = timeout_s
        self._given_client = client
        self._made_client: Any = None
        self._ids: dict[str, int] = {}
        self._schemas: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _client(self) -> Any:
        """The HTTP client, made on first use: configuring registry mode asks nothing of
        the registry (nor needs confluent-kafka) until a record needs it."""
        if self._given_client is not None:
            return self._given_client
        if self._made_client is None:
            self._made_client = _new_client(self.url, self._timeout_s)
        return self._made_client

    # ------------------------------------------------------------------ the seam

    def id_for(self, envelope: str) -> int:
        with self._lock:
            known = self._ids.get(envelope)
            if known is not None:
                return known
            from schemas.codec import current_schema

            subjects = [subject_for(topic) for topic in self.topics.get(envelope, ())]
            if not subjects:
                raise RegistryError(
                    f"No topic carries the {envelope} envelope in this registry "
                    f"configuration, so it has no subject to be registered under."
                )
            text = json.dumps(current_schema(envelope), separators=(",", ":"))
            ids = {}
            for subject in subjects:
                self.align_compatibility(subject)
                ids[subject] = self._call(
                    f"registering the {envelope} schema under subject {subject}",
                    lambda s=subject: self._client().register_schema(s, _schema(text)),
                )
            # Confluent's registry gives one schema one id in every subject; others may
            # not. Any of them reads back as this schema; records are written with the
            # id of the envelope's own topic (the first).
            for schema_id in ids.values():
                self._schemas[int(schema_id)] = current_schema(envelope)
            first = int(ids[subjects[0]])
            self._ids[envelope] = first
            return first

    def schema_of(self, schema_id: int) -> dict[str, Any]:
        with self._lock:
            known = self._schemas.get(schema_id)
            if known is not None:
                return known
            schema = self._call(
                f"reading schema id {schema_id}", lambda: self._client().get_schema(schema_id)
            )
            kind = getattr(schema, "schema_type", None) or "AVRO"
            if kind != "AVRO":
                raise RegistryError(
                    f"Schema id {schema_id} at {self.url} is a {kind} schema, not Avro."
                )
            try:
                parsed = json.loads(schema.schema_str)
            except ValueError as exc:
                raise RegistryError(
                    f"Schema id {schema_id} at {self.url} is not JSON: {exc}."
                ) from exc
            if not isinstance(parsed, dict):
                raise RegistryError(f"Schema id {schema_id} at {self.url} is not a record schema.")
            self._schemas[schema_id] = parsed
            return parsed

    # ------------------------------------------------------------------ subjects

    def align_compatibility(self, subject: str) -> None:
        """Set the subject's compatibility level to turnlog's, unless it is already
        (`PUT /config/<subject>`)."""
        current = self.compatibility_of(subject)
        if current != self.compatibility:
            self._call(
                f"setting subject {subject} to {self.compatibility} compatibility",
                lambda: self._client().set_config(subject, _server_config(self.compatibility)),
            )

    def compatibility_of(self, subject: str) -> str | None:
        """The subject's own compatibility level (`GET /config/<subject>`); None when it
        has none of its own (the registry's global level applies)."""
        try:
            config = self._client().get_config(subject)
        except Exception as exc:
            if _error_code(exc) in (40401, 40408) or _status(exc) == 404:
                return None
            raise RegistryError(
                f"The schema registry at {self.url} failed reading the compatibility of "
                f"subject {subject}: {type(exc).__name__}: {exc}."
            ) from exc
        return _level(config)

    def _call(self, what: str, action: Any) -> Any:
        try:
            return action()
        except RegistryError:
            raise
        except Exception as exc:
            raise RegistryError(
                f"The schema registry at {self.url} failed {what}: {type(exc).__name__}: {exc}."
            ) from exc


def _server_config(level: str) -> Any:
    from confluent_kafka.schema_registry import ConfigCompatibilityLevel, ServerConfig

    return ServerConfig(compatibility=ConfigCompatibilityLevel(level))


def _level(config: Any) -> str | None:
    """The level of a ServerConfig, whichever of its two fields the registry filled."""
    for name in ("compatibility_level", "compatibility"):
        value = getattr(config, name, None)
        if value is not None:
            return str(getattr(value, "value", value))
    return None


def _schema(text: str) -> Any:
    from confluent_kafka.schema_registry import Schema

    return Schema(text, "AVRO")


def _new_client(url: str, timeout_s: float) -> Any:
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:
        raise RegistryError(
            "The schema registry mode needs confluent-kafka's registry client: "
            "pip install 'turnlog[registry]'."
        ) from exc
    config = {"url": url, "timeout": max(1, int(timeout_s))}
    new_client = getattr(SchemaRegistryClient, "new_client", SchemaRegistryClient)
    return new_client(config)


def _error_code(exc: Exception) -> int | None:
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, int) else None


def _status(exc: Exception) -> int | None:
    code = getattr(exc, "http_status_code", None)
    return code if isinstance(code, int) else None
