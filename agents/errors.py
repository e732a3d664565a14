"""The exception tree of turnlog. Nothing here does IO.

    TurnlogError                     root: catch this to catch everything of ours
    ├── ContractError                our contract was broken by the caller / the data
    │   ├── InvalidRecord            a record failed its constructor validation
    │   ├── DecodeError              bytes are not a turnlog record (schemas.codec)
    │   └── AgentDefinitionError     an agent file is invalid (names agent and field)
    └── ExternalError                the outside world failed (broker, database, provider)

The pure core never raises for an illegal *input*: that yields a RequestRejected event.
It raises ContractError only when its own invariants are broken by the caller (an event
that does not belong to the session it is folded into, a seq that is not +1).
"""

from __future__ import annotations

__all__ = [
    "AgentDefinitionError",
    "ContractError",
    "DecodeError",
    "ExternalError",
    "InvalidRecord",
    "TurnlogError",
]


class TurnlogError(Exception):
    """Root of every error raised by turnlog."""


class ContractError(TurnlogError):
    """The caller or the data broke turnlog's contract."""


class InvalidRecord(ContractError):
    """A record's fields violate its invariants."""


class DecodeError(ContractError):
    """Bytes could not be decoded into a turnlog record.

    `fingerprint` is the 8-byte schema fingerprint found in the header (hex), or None when
    the header itself was unreadable.
    """

    def __init__(self, message: str, fingerprint: str | None = None) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class AgentDefinitionError(ContractError):
    """An agent definition file is invalid."""


class ExternalError(TurnlogError):
    """Something outside turnlog failed: Kafka, Postgres, an LLM provider, a tool."""
