"""`http_get`: fetch a URL whose host is on the allow-list.

Rule: no byte leaves for a host that `ToolSettings.allowed_hosts` does not name, nor for an
internal address that only a name on it leads to. Per hop (the first URL and every
redirect, which this module follows itself; the client never follows one):

1. `_hosts.check_target` checks the URL as the HTTP client parsed it — the same parser
   that decides where to connect;
2. the host is resolved once, through `ToolContext.resolve`, and `_hosts.check_addresses`
   checks every address it resolved to (no loopback, private, link-local, ... address
   unless the allow-list names it or `allow_private_addresses` is set);
3. the request goes to a checked address itself: the URL handed to the client names the
   address, so the client never resolves anything, while the Host header and the TLS
   server name (SNI and the certificate check, via httpcore's `sni_hostname` request
   extension) stay the URL's host. A second DNS answer (rebinding) is therefore never used.

Each hop gets its own client, so a connection made and verified for one host is never
reused for another that happens to share its address (cookies are not carried across
redirects either). Proxies from the environment are ignored (`trust_env=False`), so the
address checked is the address connected to. The response body is read as a stream and
cut at `HttpLimits.max_bytes` (after decompression, so a gzip bomb stops there too); the
whole fetch, name resolution and redirects included, is bounded by `HttpLimits.timeout_s`.

Every request (each hop) carries the call's `ToolContext.idempotency_key` as the
`Idempotency-Key` header: a GET is idempotent anyway, but a server that keys work or
billing on it sees one intention however often the call is re-issued.

The client is the `httpx` API shipped with the anthropic SDK (distributed as `httpx2` by
recent SDKs, as `httpx` by older ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
from collections.abc import AsyncIterator
from typing import Annotated, Any

from pydantic import Field

from agents.tools._hosts import (
    HostPattern,
    IPAddress,
    Target,
    check_addresses,
    check_target,
    parse_host_pattern,
)
from agents.tools.context import HttpLimits, Resolver, ToolContext, ToolSettings
from agents.tools.errors import ToolFailed, ToolRefused
from agents.tools.tool import ToolResult

try:  # the anthropic SDK >= 2 ships the client as httpx2
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older SDKs depend on httpx itself
    import httpx  # type: ignore[no-redef,import-not-found,unused-ignore]

__all__ = ["http_get"]

_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml")


@functools.cache
def _tls() -> Any:
    """One TLS context per process: building one loads the CA store (~50 ms)."""
    return httpx.create_ssl_context(trust_env=False)


class _Rules:
    """What every hop is checked against: the parsed allow-list, the private-address
    opt-in and the resolver of this call."""

    __slots__ = ("allow_private", "patterns", "resolve")

    def __init__(self, settings: ToolSettings, resolve: Resolver) -> None:
        self.patterns: tuple[HostPattern, ...] = tuple(
            parse_host_pattern(p) for p in settings.allowed_hosts
        )
        self.allow_private = settings.allow_private_addresses
        self.resolve = resolve

    async def vet(self, url: Any, shown: str) -> tuple[IPAddress, ...]:
        """The addresses `url` may be fetched at, in the order to try them. Raises
        ToolRefused when the host or one of its addresses is not allowed, ToolFailed when
        the host does not resolve."""
        target = check_target(
            shown,
            url.scheme,
            url.raw_host.decode("ascii"),
            url.port,
            url.userinfo.decode("ascii", errors="replace"),
            self.patterns,
        )
        addresses = await self._addresses(target, shown)
        check_addresses(shown, target, addresses, self.patterns, self.allow_private)
        return addresses

    async def _addresses(self, target: Target, shown: str) -> tuple[IPAddress, ...]:
        if target.ip is not None:
            return (target.ip,)
        try:
            answers = await self.resolve(target.host, target.port)
        except OSError as exc:
            raise ToolFailed(
                f"Could not resolve host {target.host} to fetch {shown}: {exc}."
            ) from None
        found: dict[IPAddress, None] = {}
        for answer in answers:
            try:
                address = ipaddress.ip_address(answer)
            except ValueError:
                raise ToolFailed(
                    f"Resolving host {target.host} to fetch {shown} gave {answer!r}, which is "
                    "not an IP address."
                ) from None
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped  # where a dual-stack socket would connect
            found[address] = None
        if not found:
            raise ToolFailed(f"Host {target.host} resolved to no address (fetching {shown}).")
        return tuple(found)


def _is_text(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "" or media.startswith(_TEXT_TYPES) or media.endswith(_TEXT_SUFFIXES)


async def _read_body(response: Any, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


@contextlib.asynccontextmanager
async def _get(
    url: Any, addresses: tuple[IPAddress, ...], limits: HttpLimits, key: str
) -> AsyncIterator[Any]:
    """GET `url` from the first of `addresses` that accepts a connection, as a streamed
    response. Only these addresses are ever connected to (see the module docstring)."""
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(limits.timeout_s),
        follow_redirects=False,
        trust_env=False,
        verify=_tls(),
        headers={"User-Agent": limits.user_agent, "Idempotency-Key": key},
    ) as client:
        response = await _send(client, url, addresses)
        try:
            yield response
        finally:
            await response.aclose()


async def _send(client: Any, url: Any, addresses: tuple[IPAddress, ...]) -> Any:
    def pinned(address: IPAddress) -> Any:
        return client.build_request(
            "GET",
            url.copy_with(host=str(address)),
            headers={"Host": url.netloc.decode("ascii")},
            extensions={"sni_hostname": url.raw_host.decode("ascii")},
        )

    for address in addresses[:-1]:
        try:
            return await client.send(pinned(address), stream=True)
        except httpx.ConnectError:
            continue  # e.g. an IPv6 answer on a host without IPv6 routes: try the next
    return await client.send(pinned(addresses[-1]), stream=True)


async def _fetch(url: str, rules: _Rules, limits: HttpLimits, key: str) -> ToolResult:
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ToolRefused(f"{url!r} is not a valid URL ({exc}).") from None
    addresses = await rules.vet(current, url)
    hops: list[str] = []
    while True:
        async with _get(current, addresses, limits, key) as response:
            if response.has_redirect_location:
                location = response.headers["location"]
                try:
                    target = current.join(location)
                except (httpx.InvalidURL, ValueError) as exc:
                    raise ToolFailed(
                        f"{current} redirected to an invalid URL {location!r} ({exc})."
                    ) from None
                if len(hops) >= limits.max_redirects:
                    raise ToolFailed(
                        f"Fetching {url} was stopped after {limits.max_redirects} "
                        f"redirects (last to {target})."
                    )
                try:
                    addresses = await rules.vet(target, str(target))
                except ToolRefused as exc:
                    raise ToolRefused(f"{current} redirected to {target}. {exc}") from None
                hops.append(str(target))
                current = target
                continue
            content_type = response.headers.get("content-type", "")
            body, truncated = await _read_body(response, limits.max_bytes)
            return _result(str(current), hops, response, content_type, body, truncated)


def _result(
    final_url: str,
    hops: list[str],
    response: Any,
    content_type: str,
    body: bytes,
    truncated: bool,
) -> ToolResult:
    head = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    lines = [head]
    if hops:
        lines.append(f"final URL: {final_url} (after {len(hops)} redirect(s))")
    if content_type:
        lines.append(f"content-type: {content_type}")
    if _is_text(content_type):
        text = body.decode(response.encoding or "utf-8", errors="replace")
        lines.append("")
        lines.append(text)
        if truncated:
            lines.append(f"[truncated after {len(body)} bytes]")
    else:
        more = " or more" if truncated else ""
        lines.append(f"[{len(body)}{more} bytes of non-text content not shown]")
    ok = response.status_code < 400
    return ToolResult(ok=ok, content="\n".join(lines), error_kind=None if ok else "failed")


async def http_get(
    ctx: ToolContext,
    url: Annotated[
        str,
        Field(
            description="The http:// or https:// URL to fetch; its host must be allowed.",
            min_length=1,
            max_length=2048,
        ),
    ],
) -> ToolResult:
    """Fetch a web page or API response with HTTP GET and return the status line, the
    content type and the text of the body. Only hosts on the operator's allow-list can
    be fetched; redirects are followed only to allowed hosts."""
    rules = _Rules(ctx.settings, ctx.resolve)
    limits = ctx.settings.http
    try:
        async with asyncio.timeout(limits.timeout_s) as scope:
            return await _fetch(url, rules, limits, ctx.idempotency_key)
    except TimeoutError:
        if scope.expired():
            raise ToolFailed(f"Fetching {url} timed out after {limits.timeout_s:g}s.") from None
        raise
    except httpx.TimeoutException:
        raise ToolFailed(f"Fetching {url} timed out after {limits.timeout_s:g}s.") from None
    except httpx.ConnectError as exc:
        raise ToolFailed(
            f"Could not connect to fetch {url}: {exc or 'connection failed'}."
        ) from None
    except httpx.HTTPError as exc:
        raise ToolFailed(f"Fetching {url} failed: {type(exc).__name__}: {exc}.") from None
