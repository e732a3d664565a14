"""The console's configuration: where it listens and who may use it.

Rule: read once, at start-up, from the environment (secrets from the environment or a
file, never from a topic, a table or a log); a broken value stops start-up with a
`ConsoleConfigError` naming the variable. Nothing else in console/ reads the environment.

    TURNLOG_UI_HOST          127.0.0.1      address to bind; anything but loopback needs tokens
    TURNLOG_UI_PORT          8700           port (0: any free port)
    TURNLOG_UI_TOKENS        —              "name:token,name2:token2" (or TURNLOG_UI_TOKENS_FILE,
                                            one "name:token" per line): who may sign in
    TURNLOG_UI_MAX_BODY_BYTES 1114112       largest request body (the 1 MiB text limit + JSON)
    TURNLOG_UI_ALLOWED_HOSTS —              extra Host header values accepted (proxies)
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agents.errors import ContractError

__all__ = ["ConsoleConfig", "ConsoleConfigError", "is_loopback", "load_console_config"]

DEFAULT_PORT = 8700
DEFAULT_MAX_BODY = 1024 * 1024 + 64 * 1024
_MIN_TOKEN_CHARS = 16


class ConsoleConfigError(ContractError):
    """A console setting is invalid; the message names the variable."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """Typed configuration of one console process. `tokens` maps a token to the identity
    it authenticates (the name recorded as the approver)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tokens: Mapping[str, str] = field(default_factory=dict)
    max_body_bytes: int = DEFAULT_MAX_BODY
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.tokens:
            raise ConsoleConfigError(
                f"TURNLOG_UI_HOST (--host) is {self.host!r}, not a loopback address: the "
                "console would be reachable by others, so it needs TURNLOG_UI_TOKENS (or "
                "TURNLOG_UI_TOKENS_FILE, --tokens-file) naming who may sign in."
            )
        if not 0 <= self.port <= 65535:
            raise ConsoleConfigError(f"TURNLOG_UI_PORT must be 0..65535, not {self.port}.")
        if self.max_body_bytes < 1024:
            raise ConsoleConfigError(
                f"TURNLOG_UI_MAX_BODY_BYTES must be at least 1024, not {self.max_body_bytes}."
            )

    @property
    def auth_required(self) -> bool:
        """Tokens configured: every page and API call needs one (also on loopback)."""
        return bool(self.tokens)

    def identity_of(self, token: str) -> str | None:
        """The identity a token authenticates, compared in constant time."""
        found = None
        for known, name in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = name
        return found


def parse_tokens(text: str, variable: str) -> dict[str, str]:
    """ "name:token" entries separated by commas or newlines -> {token: name}."""
    tokens: dict[str, str] = {}
    for n, raw in enumerate(text.replace(",", "\n").splitlines(), 1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, token = entry.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not name or not token:
            raise ConsoleConfigError(
                f"{variable}: entry {n} is not 'name:token' (the name is who is recorded "
                "as the approver)."
            )
        if len(token) < _MIN_TOKEN_CHARS:
            raise ConsoleConfigError(
                f"{variable}: the token of {name!r} is shorter than {_MIN_TOKEN_CHARS} "
                "characters; use a random one (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(24))'`)."
            )
        tokens[token] = name
    return tokens


def _int(env: Mapping[str, str], variable: str, default: int) -> int:
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConsoleConfigError(f"{variable} must be an integer, not {raw!r}.") from None


def load_console_config(
    env: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    tokens_file: str | None = None,
) -> ConsoleConfig:
    """The console's configuration from `env` (default: os.environ); `host`, `port` and
    `tokens_file` given on the command line win."""
    env = dict(os.environ if env is None else env)
    if tokens_file is not None:
        env["TURNLOG_UI_TOKENS_FILE"] = tokens_file
    tokens_text = env.get("TURNLOG_UI_TOKENS", "")
    path = env.get("TURNLOG_UI_TOKENS_FILE", "")
    variable = "TURNLOG_UI_TOKENS"
    if path:
        if tokens_text:
            raise ConsoleConfigError(
                "TURNLOG_UI_TOKENS_FILE: TURNLOG_UI_TOKENS is set as well; use one of them."
            )
        variable = "TURNLOG_UI_TOKENS_FILE"
        try:
            tokens_text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConsoleConfigError(
                f"TURNLOG_UI_TOKENS_FILE: cannot read {path}: {exc.strerror}."
            ) from None
        if not tokens_text.strip():
            raise ConsoleConfigError(f"TURNLOG_UI_TOKENS_FILE: {path} is empty.")
    extra = tuple(
        h.strip() for h in env.get("TURNLOG_UI_ALLOWED_HOSTS", "").split(",") if h.strip()
    )
    return ConsoleConfig(
        host=host if host is not None else env.get("TURNLOG_UI_HOST", "127.0.0.1") or "127.0.0.1",
        port=port if port is not None else _int(env, "TURNLOG_UI_PORT", DEFAULT_PORT),
        tokens=parse_tokens(tokens_text, variable),
        max_body_bytes=_int(env, "TURNLOG_UI_MAX_BODY_BYTES", DEFAULT_MAX_BODY),
        allowed_hosts=extra,
    )
