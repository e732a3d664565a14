"""The seam between the turn machinery and an LLM vendor: the `Provider` protocol.

Rule: a provider turns one `LlmRequest` into one `LlmResponse`, owning everything that
happens in between (retries, fallback models, circuit breakers, streaming), and either
returns an answer or raises exactly one `ProviderError`. Callers never see a vendor SDK
exception, and nothing a provider raises, returns or logs carries a credential.

    ExternalError
    └── ProviderError          the call failed after retries and fallbacks
                               (.error_type, .attempts, .retryable, .circuits_opened)
    ContractError
    └── ProviderConfigError    a provider cannot be built from what it was given
                               (unknown kind, unreadable or invalid script, no API key)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from agents.errors import ContractError, ExternalError
from agents.events import Usage
from agents.llm import LlmRequest, LlmResponse

__all__ = [
    "BILLED",
    "HTTP_ERRORS",
    "STREAM_RESTART",
    "BilledSoFar",
    "DeltaCallback",
    "ErrorType",
    "Provider",
    "ProviderConfigError",
    "ProviderError",
    "Secret",
    "redact",
]


class BilledSoFar:
    """What the vendor reported for the attempt in flight, updated as the stream goes
    (input at its start, output as it grows). The effect runner reads it when it aborts
    a call (a cancelled turn): those tokens are billed although no answer came."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage = Usage()


BILLED: ContextVar[BilledSoFar | None] = ContextVar("turnlog_billed_so_far", default=None)
"""Set by the caller of `Provider.complete` for the call it runs; a provider that streams
updates it (agents.providers.anthropic does)."""


DeltaCallback = Callable[[str], Awaitable[None]]
"""Receives each text delta of a streamed answer, in order, as it arrives. When an attempt
that had delivered text fails and the provider tries again (a retry or a fallback), the
callback receives STREAM_RESTART before the next attempt's first delta: the text before it
belongs to the failed attempt and is not part of the answer."""

STREAM_RESTART = ""
"""The restart marker (see DeltaCallback): empty, so no text delta can be mistaken for it."""


class Secret(Protocol):
    """A credential that does not print itself (pydantic's SecretStr)."""

    def get_secret_value(self) -> str: ...


class ErrorType(StrEnum):
    """Provider-neutral failure kinds; the value lands in `LlmCallFailed.error_type`."""

    RATE_LIMITED = "rate_limited"  # 429
    OVERLOADED = "overloaded"  # 529, or an overloaded_error event mid-stream
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"  # an attempt, or the whole call, ran past its time
    CONNECTION = "connection"  # refused, reset, DNS: the request may not have arrived
    INVALID_REQUEST = "invalid_request"  # 400/422: our request is wrong; never retried
    REQUEST_TOO_LARGE = "request_too_large"  # 413
    AUTHENTICATION = "authentication"  # 401
    PERMISSION = "permission"  # 403
    NOT_FOUND = "not_found"  # 404: usually an unknown model name
    INVALID_RESPONSE = "invalid_response"  # the answer could not be understood
    CIRCUIT_OPEN = "circuit_open"  # every model's circuit was open; nothing was sent
    NO_SCRIPTED_RESPONSE = "no_scripted_response"  # scripted provider: no rule matched
    NOT_CONFIGURED = "not_configured"  # no endpoint (or no key) serves the model; nothing sent
    UNKNOWN = "unknown"


# HTTP statuses every vendor means the same way -> (error type, retryable); each adapter
# adds the ones its API uses its own way (529, 503, 504, 409, 422).
HTTP_ERRORS: dict[int, tuple[ErrorType, bool]] = {
    400: (ErrorType.INVALID_REQUEST, False),
    401: (ErrorType.AUTHENTICATION, False),
    403: (ErrorType.PERMISSION, False),
    404: (ErrorType.NOT_FOUND, False),
    408: (ErrorType.TIMEOUT, True),
    413: (ErrorType.REQUEST_TOO_LARGE, False),
    429: (ErrorType.RATE_LIMITED, True),
}


class ProviderError(ExternalError):
    """An LLM call failed for good: retries and fallbacks are exhausted or pointless.

    `attempts` counts every request sent, over all models. `retryable` says whether the
    same call may succeed later (a 529 may; a 400 will not). `circuits_opened` lists the
    "provider/model" circuits that opened while serving this call, so the core can record
    them. `model` is the last model tried, `status_code` the last HTTP status (if any).
    `attempts` is 0 only when nothing was sent because every model's circuit was open
    (error_type "circuit_open"); `FailLlmCall` needs >= 1, so executors report max(1, n).
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        attempts: int,
        retryable: bool,
        circuits_opened: Sequence[str] = (),
        model: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = str(error_type)
        self.attempts = attempts
        self.retryable = retryable
        self.circuits_opened = tuple(circuits_opened)
        self.model = model
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor: the default Exception pickling would lose the fields.
        return (
            _rebuild_provider_error,
            (
                self.message,
                self.error_type,
                self.attempts,
                self.retryable,
                self.circuits_opened,
                self.model,
                self.status_code,
            ),
        )

    def __repr__(self) -> str:
        return (
            f"ProviderError(error_type={self.error_type!r}, attempts={self.attempts}, "
            f"retryable={self.retryable}, model={self.model!r}, "
            f"circuits_opened={self.circuits_opened!r}, message={self.message!r})"
        )


def _rebuild_provider_error(
    message: str,
    error_type: str,
    attempts: int,
    retryable: bool,
    circuits_opened: tuple[str, ...],
    model: str | None,
    status_code: int | None,
) -> ProviderError:
    return ProviderError(
        message,
        error_type=error_type,
        attempts=attempts,
        retryable=retryable,
        circuits_opened=circuits_opened,
        model=model,
        status_code=status_code,
    )


class ProviderConfigError(ContractError):
    """A provider could not be built: wrong kind, bad script file, missing credential."""


@runtime_checkable
class Provider(Protocol):
    """One LLM vendor (or a script standing in for one).

    `request.model` is tried first, then each of `fallbacks` in order. `on_delta` gets the
    answer's text as it streams. `timeout_s` bounds the whole call, retries and fallbacks
    included (None: only the provider's own per-attempt timeout applies).
    """

    async def complete(
        self,
        request: LlmRequest,
        *,
        fallbacks: Sequence[str] = (),
        on_delta: DeltaCallback | None = None,
        timeout_s: float | None = None,
    ) -> LlmResponse: ...


def redact(text: str, secrets: Sequence[str | None]) -> str:
    """`text` with every occurrence of each secret replaced by a marker.

    Used on any text that came from outside (an SDK message, a response body) before it
    goes into an exception or a log line: a server that echoes a header back must not be
    able to leak the key through us.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text
