"""Host allow-list of `http_get`: pattern parsing, the check of one target, and the check
of the addresses its name resolves to.

Rule: a request goes out only when its host is *literally* allowed. Matching happens on the
host as the HTTP client will connect to it (IDNA/ASCII, lower case, trailing dot removed),
and every spelling of an address that a resolver would accept but a reader would not
recognise is refused outright rather than normalised: `127.1`, `2130706433`,
`0x7f.0.0.1`, IPv4-mapped IPv6 (`::ffff:127.0.0.1`) and friends. So an allow-list entry
`127.0.0.1` admits `http://127.0.0.1:PORT/` and nothing that merely resolves there.

Second rule: an allowed *name* reaches only public addresses. Every address the name
resolves to must be globally routable (`check_addresses`); a loopback, private,
link-local (cloud metadata), shared, reserved, unspecified or multicast address is refused
unless an allow-list entry names that address itself or the operator set
`ToolSettings.allow_private_addresses`. `http_get` resolves once per hop and connects to
an address it checked here, so a second DNS answer (rebinding) is never used.

Nothing here does IO: resolving is `http_get`'s job.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from agents.tools.errors import ToolRefused

__all__ = [
    "HostPattern",
    "IPAddress",
    "Target",
    "address_problem",
    "check_addresses",
    "check_target",
    "parse_host_pattern",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
# A last label of digits or 0x-hex makes a resolver read the whole name as an IPv4 address
# (WHATWG URL "ends in a number"): such hosts are either canonical IPv4 or refused.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Translated by a NAT64 gateway to the IPv4 address in its last 32 bits (RFC 6052).
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Checked in this order, so an address gets its most telling reason (::1 is also reserved).
_PROBLEMS = (
    ("is_unspecified", "the unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address (where cloud metadata services answer)"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
)


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One allow-list entry. `host` is normalised; `ip` is set for address entries."""

    host: str
    wildcard: bool = False
    ip: IPAddress | None = None
    port: int | None = None

    def matches(self, host: str, ip: IPAddress | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.ip is not None or ip is not None:
            return self.ip is not None and ip is not None and self.ip == ip
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        text = f"*.{host}" if self.wildcard else host
        return text if self.port is None else f"{text}:{self.port}"


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in host pattern {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected text after ']' in host pattern {text!r}")
        return host, (_parse_port(rest[1:], text) if rest else None)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, _parse_port(port, text)
    return text, None


def _parse_port(text: str, pattern: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"port of host pattern {pattern!r} must be 1..65535, got {text!r}")
    return int(text)


def _normalise_name(host: str) -> str:
    host = host.lower()
    return host.removesuffix(".")


def _classify(host: str) -> tuple[str, IPAddress | None]:
    """(normalised host, its address if it is an address). Raises ValueError with the
    reason when the host is malformed or a disguised address."""
    if ":" in host:
        try:
            ip6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not a valid IPv6 address") from None
        if ip6.ipv4_mapped is not None or ip6.sixtofour is not None or ip6.teredo is not None:
            raise ValueError(
                f"{host!r} embeds an IPv4 address in IPv6; write the IPv4 address itself"
            )
        return str(ip6), ip6
    name = _normalise_name(host)
    if not name:
        raise ValueError("the host is empty")
    if not name.isascii():
        raise ValueError(f"{host!r} is not ASCII; write its IDNA form (xn--...)")
    labels = name.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        try:
            ip4 = ipaddress.IPv4Address(name)
        except ValueError:
            raise ValueError(
                f"{host!r} is a non-canonical IP address form; write IPv4 addresses as "
                "four decimal numbers, such as 127.0.0.1"
            ) from None
        if str(ip4) != name:
            raise ValueError(f"{host!r} is a non-canonical IPv4 address; write {ip4}")
        return name, ip4
    for label in labels:
        if not _LABEL.match(label):
            raise ValueError(f"{host!r} is not a valid host name (label {label!r})")
    return name, None


def parse_host_pattern(text: str) -> HostPattern:
    """Parse an allow-list entry; ValueError says what is wrong with it."""
    raw = text.strip()
    wildcard = raw.startswith("*.")
    host, port = _split_port(raw[2:] if wildcard else raw)
    if "*" in host:
        raise ValueError(f"host pattern {text!r}: '*' is only allowed as a leading '*.'")
    try:
        name, ip = _classify(host)
    except ValueError as exc:
        raise ValueError(f"host pattern {text!r}: {exc}") from None
    if wildcard and ip is not None:
        raise ValueError(f"host pattern {text!r}: an IP address cannot take a '*.' wildcard")
    if wildcard and "." not in name:
        # "*.com" would allow a whole top-level domain: almost certainly a mistake.
        raise ValueError(f"host pattern {text!r}: the wildcard suffix needs at least two labels")
    return HostPattern(host=name, wildcard=wildcard, ip=ip, port=port)


@dataclass(frozen=True, slots=True)
class Target:
    """A host that passed `check_target`: normalised `host`, its address when the URL
    names one (`ip`), and the port the connection goes to (defaults filled in)."""

    host: str
    ip: IPAddress | None
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host


def check_target(
    url: str,
    scheme: str,
    host: str,
    port: int | None,
    userinfo: str,
    patterns: tuple[HostPattern, ...],
) -> Target:
    """Raise ToolRefused unless `scheme://host:port` may be fetched. `host` is the ASCII
    host the client will connect to; `url` is only quoted in messages."""
    if scheme not in _DEFAULT_PORTS:
        raise ToolRefused(
            f"Fetching {url} is refused: only http and https URLs are allowed, not {scheme!r}."
        )
    if userinfo:
        raise ToolRefused(
            f"Fetching {url} is refused: URLs carrying credentials (user@host) are not allowed."
        )
    try:
        name, ip = _classify(host)
    except ValueError as exc:
        raise ToolRefused(f"Fetching {url} is refused: the host {exc}.") from None
    effective_port = port if port is not None else _DEFAULT_PORTS[scheme]
    target = Target(name, ip, effective_port)
    if any(p.matches(name, ip, effective_port) for p in patterns):
        return target
    allowed = ", ".join(str(p) for p in patterns) if patterns else "no host is allowed"
    raise ToolRefused(
        f"Fetching {url} is refused: host {target}:{effective_port} is not on the allow-list "
        f"({allowed})."
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries to, when a socket, a 6to4 tunnel or a
    NAT64 gateway would deliver packets there."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def address_problem(address: IPAddress) -> str | None:
    """Why `address` is not a public internet address ("a loopback address"), or None
    when it is one."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            problem = address_problem(inner)
            return None if problem is None else f"an IPv6 form of {inner}, {problem}"
    for attribute, problem in _PROBLEMS:
        if getattr(address, attribute):
            return problem
    if not address.is_global:
        return "an address that is not globally routable"
    return None


def check_addresses(
    url: str,
    target: Target,
    addresses: tuple[IPAddress, ...],
    patterns: tuple[HostPattern, ...],
    allow_private: bool,
) -> None:
    """Raise ToolRefused unless every address `target` resolved to may be connected to:
    a public address, one an allow-list entry names (port included), or any address
    when `allow_private`. `url` is only quoted in messages."""
    if allow_private:
        return
    for address in addresses:
        problem = address_problem(address)
        if problem is None or any(p.matches(str(address), address, target.port) for p in patterns):
            continue
        why = (
            f"{address}, {problem}"
            if len(addresses) == 1
            else f"{', '.join(str(a) for a in addresses)} ({address} is {problem})"
        )
        raise ToolRefused(
            f"Fetching {url} is refused: host {target} resolves to {why}. Only public "
            "addresses may be fetched unless the allow-list names the address itself."
        )
