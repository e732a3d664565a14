"""`http_get`: only allow-listed hosts, redirects re-checked, bounded size and time.

Two real HTTP servers on loopback: 127.0.0.1 (allowed) and 127.0.0.2 (not allowed, and it
counts requests, so a refused fetch is proven never to have been sent).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.tools import HttpLimits, ToolContext, ToolResult, ToolSettings, builtin_registry
from agents.tools._hosts import parse_host_pattern

REGISTRY = builtin_registry()


@dataclass
class Server:
    host: str
    port: int
    hits: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    redirect_to: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


def _serve(host: str) -> Iterator[Server]:
    state = Server(host, 0)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            state.hits.append(self.path)
            if self.path in state.redirect_to:
                self._send(302, b"", "text/plain", Location=state.redirect_to[self.path])
            elif self.path == "/hello":
                self._send(200, "héllo from loopback".encode(), "text/plain; charset=utf-8")
            elif self.path == "/json":
                self._send(200, b'{"answer": 42}', "application/json")
            elif self.path == "/big":
                self._send(200, b"a" * 100_000, "text/plain")
            elif self.path == "/bin":
                self._send(200, bytes(range(256)), "application/octet-stream")
            elif self.path == "/slow":
                state.release.wait(10)
                self._send(200, b"late", "text/plain")
            else:
                self._send(404, b"no such page", "text/plain")

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def allowed() -> Iterator[Server]:
    yield from _serve("127.0.0.1")


@pytest.fixture(scope="module")
def forbidden() -> Iterator[Server]:
    yield from _serve("127.0.0.2")


def ctx(hosts: tuple[str, ...] = ("127.0.0.1",), **limits: object) -> ToolContext:
    settings = ToolSettings(allowed_hosts=hosts, http=HttpLimits(**limits))  # type: ignore[arg-type]
    return ToolContext("s", "c", settings)


async def get(url: str, context: ToolContext | None = None) -> ToolResult:
    return await REGISTRY.execute("http_get", json.dumps({"url": url}), context or ctx())


async def test_allowed_host_is_fetched(allowed: Server) -> None:
    result = await get(f"{allowed.base}/hello")
    assert result == ToolResult(
        True,
        "HTTP 200 OK\ncontent-type: text/plain; charset=utf-8\n\nhéllo from loopback",
        result.latency_ms,
    )
    assert (await get(f"{allowed.base}/json")).content.endswith('\n\n{"answer": 42}')


async def test_error_status_is_a_failed_result_with_the_body(allowed: Server) -> None:
    result = await get(f"{allowed.base}/missing")
    assert (result.ok, result.error_kind) == (False, "failed")
    assert result.content == "HTTP 404 Not Found\ncontent-type: text/plain\n\nno such page"


async def test_disallowed_host_is_refused_before_any_request(forbidden: Server) -> None:
    before = len(forbidden.hits)
    result = await get(f"{forbidden.base}/hello")
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.content == (
        f"Fetching {forbidden.base}/hello is refused: host 127.0.0.2:{forbidden.port} is not "
        "on the allow-list (127.0.0.1)."
    )
    assert len(forbidden.hits) == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:{port}/hello", "host localhost:{port} is not on the allow-list"),
        ("http://127.1:{port}/hello", "'127.1' is a non-canonical IP address form"),
        ("http://2130706433:{port}/hello", "'2130706433' is a non-canonical IP address form"),
        ("http://0x7f.0.0.1:{port}/hello", "'0x7f.0.0.1' is a non-canonical IP address form"),
        ("http://0x7f000001:{port}/hello", "non-canonical IP address form"),
        ("http://[::ffff:127.0.0.1]:{port}/hello", "embeds an IPv4 address in IPv6"),
        ("http://[::1]:{port}/hello", "host [::1]:{port} is not on the allow-list"),
        ("http://127.0.0.1.nip.io:{port}/", "is not on the allow-list"),
        ("http://127.0.0.1:{port}@127.0.0.2/hello", "credentials (user@host) are not allowed"),
        ("http://a.com%2eevil.com:{port}/", "is not a valid host name"),
        ("http://[not-an-ip:{port}/", "is not a valid host name"),
        ("ftp://127.0.0.1:{port}/hello", "only http and https URLs are allowed, not 'ftp'"),
        ("file:///etc/passwd", "only http and https URLs are allowed, not 'file'"),
        ("//127.0.0.1/hello", "only http and https URLs are allowed, not ''"),
    ],
)
async def test_address_tricks_and_other_schemes_are_refused(
    allowed: Server, url: str, message: str
) -> None:
    before = len(allowed.hits)
    result = await get(url.format(port=allowed.port))
    assert (result.ok, result.error_kind) == (False, "refused"), result.content
    assert message.format(port=allowed.port) in result.content
    assert len(allowed.hits) == before


async def test_redirect_to_a_disallowed_host_is_refused(allowed: Server, forbidden: Server) -> None:
    allowed.redirect_to["/out"] = f"{forbidden.base}/hello"
    before = len(forbidden.hits)
    result = await get(f"{allowed.base}/out")
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.content == (
        f"{allowed.base}/out redirected to {forbidden.base}/hello. Fetching "
        f"{forbidden.base}/hello is refused: host 127.0.0.2:{forbidden.port} is not on the "
        "allow-list (127.0.0.1)."
    )
    assert len(forbidden.hits) == before


async def test_redirect_to_a_disguised_address_is_refused(allowed: Server) -> None:
    allowed.redirect_to["/sneaky"] = f"http://127.1:{allowed.port}/hello"
    result = await get(f"{allowed.base}/sneaky")
    assert not result.ok and "non-canonical IP address form" in result.content


async def test_redirects_within_the_allow_list_are_followed(allowed: Server) -> None:
    allowed.redirect_to["/a"] = "/b"
    allowed.redirect_to["/b"] = f"{allowed.base}/hello"
    result = await get(f"{allowed.base}/a")
    assert result.ok
    assert result.content.splitlines()[:2] == [
        "HTTP 200 OK",
        f"final URL: {allowed.base}/hello (after 2 redirect(s))",
    ]


async def test_redirect_loops_stop_at_the_limit(allowed: Server) -> None:
    allowed.redirect_to["/loop"] = "/loop"
    result = await get(f"{allowed.base}/loop", ctx(max_redirects=3))
    assert (result.ok, result.error_kind) == (False, "failed")
    assert result.content == (
        f"Fetching {allowed.base}/loop was stopped after 3 redirects (last to {allowed.base}/loop)."
    )


async def test_body_is_cut_at_the_size_limit(allowed: Server) -> None:
    result = await get(f"{allowed.base}/big", ctx(max_bytes=1000))
    body = result.content.split("\n\n", 1)[1]
    assert body == "a" * 1000 + "\n[truncated after 1000 bytes]"


async def test_binary_content_is_not_shown(allowed: Server) -> None:
    result = await get(f"{allowed.base}/bin")
    assert result.content == (
        "HTTP 200 OK\ncontent-type: application/octet-stream\n"
        "[256 bytes of non-text content not shown]"
    )


async def test_a_slow_server_times_out(allowed: Server) -> None:
    result = await get(f"{allowed.base}/slow", ctx(timeout_s=0.3))
    assert (result.ok, result.error_kind) == (False, "failed")
    assert result.content == f"Fetching {allowed.base}/slow timed out after 0.3s."


async def test_connection_refused_is_a_clear_failure() -> None:
    # Port 1 on loopback: nothing listens there on a test machine.
    result = await get("http://127.0.0.1:1/", ctx())
    assert (result.ok, result.error_kind) == (False, "failed")
    assert result.content.startswith("Could not connect to fetch http://127.0.0.1:1/")


async def test_invalid_url_is_refused() -> None:
    result = await get("http://0177.0.0.1/")
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.content.startswith("'http://0177.0.0.1/' is not a valid URL")


async def test_empty_allow_list_allows_nothing(allowed: Server) -> None:
    result = await get(f"{allowed.base}/hello", ctx(hosts=()))
    assert result.content.endswith("is not on the allow-list (no host is allowed).")


# ----------------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    ("pattern", "host", "port", "allowed"),
    [
        ("api.example.com", "api.example.com", 443, True),
        ("api.example.com", "API.Example.COM.", 443, True),
        ("api.example.com", "example.com", 443, False),
        ("api.example.com", "evil-api.example.com", 443, False),
        ("*.example.com", "a.example.com", 80, True),
        ("*.example.com", "a.b.example.com", 80, True),
        ("*.example.com", "example.com", 80, False),
        ("*.example.com", "badexample.com", 80, False),
        ("*.example.com", "example.com.evil.net", 80, False),
        ("example.com:8080", "example.com", 8080, True),
        ("example.com:8080", "example.com", 80, False),
        ("127.0.0.1", "127.0.0.1", 9999, True),
        ("127.0.0.1", "127.0.0.2", 9999, False),
        ("[::1]", "::1", 80, True),
        ("[::1]:8443", "::1", 80, False),
    ],
)
def test_host_patterns(pattern: str, host: str, port: int, allowed: bool) -> None:
    from agents.tools._hosts import _classify

    name, ip = _classify(host)
    assert parse_host_pattern(pattern).matches(name, ip, port) is allowed


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("*", "'*' is only allowed as a leading '*.'"),
        ("a.*.com", "'*' is only allowed as a leading '*.'"),
        ("*.com", "needs at least two labels"),
        ("*.127.0.0.1", "cannot take a '*.' wildcard"),
        ("127.1", "non-canonical IP address form"),
        ("example.com:0", "must be 1..65535"),
        ("exa mple.com", "not a valid host name"),
        ("bücher.de", "write its IDNA form"),
        ("[::1", "unclosed '['"),
    ],
)
def test_malformed_allow_list_entries_fail_when_settings_are_built(
    pattern: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ToolSettings(allowed_hosts=(pattern,))
