"""`http_get`: fetch a URL whose host is on the allow-list.

Rule: no byte leaves for a host that `ToolSettings.allowed_hosts` does not name. The check
(`_hosts.check_target`) runs on the URL as the HTTP client parsed it — the same parser that
decides where to connect — and runs again on every redirect hop, which this module follows
itself (the client never follows one). Proxies from the environment are ignored
(`trust_env=False`), so the host checked is the host connected to. The response body is
read as a stream and cut at `HttpLimits.max_bytes` (after decompression, so a gzip bomb
stops there too); the whole fetch, redirects included, is bounded by `HttpLimits.timeout_s`.

The client is the `httpx` API shipped with the anthropic SDK (distributed as `httpx2` by
recent SDKs, as `httpx` by older ones).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated, Any

from pydantic import Field

from agents.tools._hosts import check_target, parse_host_pattern
from agents.tools.context import HttpLimits, ToolContext
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


def _check(url: Any, shown: str, patterns: tuple[Any, ...]) -> None:
    check_target(
        shown,
        url.scheme,
        url.raw_host.decode("ascii"),
        url.port,
        url.userinfo.decode("ascii", errors="replace"),
        patterns,
    )


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


async def _fetch(url: str, patterns: tuple[Any, ...], limits: HttpLimits) -> ToolResult:
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ToolRefused(f"{url!r} is not a valid URL ({exc}).") from None
    _check(current, url, patterns)
    hops: list[str] = []
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(limits.timeout_s),
        follow_redirects=False,
        trust_env=False,
        verify=_tls(),
        headers={"User-Agent": limits.user_agent},
    ) as client:
        while True:
            async with client.stream("GET", current) as response:
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
                        _check(target, str(target), patterns)
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
    settings = ctx.settings
    patterns = tuple(parse_host_pattern(p) for p in settings.allowed_hosts)
    limits = settings.http
    try:
        async with asyncio.timeout(limits.timeout_s) as scope:
            return await _fetch(url, patterns, limits)
    except TimeoutError:
        if scope.expired():
            raise ToolFailed(f"Fetching {url} timed out after {limits.timeout_s:g}s.") from None
        raise
    except httpx.TimeoutException:
        raise ToolFailed(f"Fetching {url} timed out after {limits.timeout_s:g}s.") from None
    except httpx.ConnectError as exc:
        raise ToolFailed(f"Could not connect to fetch {url}: {exc or 'connection failed'}.") from None
    except httpx.HTTPError as exc:
        raise ToolFailed(f"Fetching {url} failed: {type(exc).__name__}: {exc}.") from None
