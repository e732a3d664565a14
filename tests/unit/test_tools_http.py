"""`http_get`: only allow-listed hosts, only public addresses behind allowed names (the
checked address is the one connected to), redirects re-checked, bounded size and time.

Two real HTTP servers on loopback: 127.0.0.1 (allowed) and 127.0.0.2 (not allowed, and it
counts requests, so a refused fetch is proven never to have been sent). Names are resolved
by a `FakeResolver` given through `ToolContext.resolve`, or by the system resolver for
`localhost`; the HTTPS tests make their certificate with the `openssl` command.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agents.tools import HttpLimits, ToolContext, ToolResult, ToolSettings, builtin_registry
from agents.tools._hosts import address_problem, parse_host_pattern
from agents.tools.context import Resolver, system_resolve

REGISTRY = builtin_registry()


@dataclass
class Server:
    host: str
    port: int
    hits: list[str] = field(default_factory=list)
    host_headers: list[str] = field(default_factory=list)
    idempotency_keys: list[str | None] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)  # TLS SNI, per handshake
    release: threading.Event = field(default_factory=threading.Event)
    redirect_to: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


def _serve(host: str, port: int = 0, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    state = Server(host, port)

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
            state.host_headers.append(self.headers.get("Host", ""))
            state.idempotency_keys.append(self.headers.get("Idempotency-Key"))
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

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if tls is not None:

        def note_server_name(sock: object, name: str | None, context: object) -> None:
            state.server_names.append(name)

        tls.sni_callback = note_server_name
        server.socket = tls.wrap_socket(server.socket, server_side=True)
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


@pytest.fixture(scope="module")
def rebound(allowed: Server) -> Iterator[Server]:
    """127.0.0.2 on the port of `allowed`: where a second DNS answer would lead."""
    try:
        yield from _serve("127.0.0.2", allowed.port)
    except OSError as exc:  # pragma: no cover - the port is taken on 127.0.0.2
        pytest.skip(f"cannot listen on 127.0.0.2:{allowed.port}: {exc}")


@dataclass
class FakeResolver:
    """Answers per name, one list per call (the last one repeats); records every call."""

    answers: dict[str, list[list[str]]]
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        queue = self.answers.get(host)
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return queue.pop(0) if len(queue) > 1 else queue[0]


def ctx(
    hosts: tuple[str, ...] = ("127.0.0.1",),
    *,
    private: bool = False,
    resolve: Resolver = system_resolve,
    **limits: object,
) -> ToolContext:
    settings = ToolSettings(
        allowed_hosts=hosts,
        allow_private_addresses=private,
        http=HttpLimits(**limits),  # type: ignore[arg-type]
    )
    return ToolContext("s", "c", settings, resolve=resolve)


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


# ------------------------------------------------------ addresses behind allowed names

LINK_LOCAL = "a link-local address (where cloud metadata services answer)"
REFUSAL = "Only public addresses may be fetched unless the allow-list names the address itself."


async def test_a_name_resolving_to_loopback_is_refused_by_default(allowed: Server) -> None:
    before = len(allowed.hits)
    resolver = FakeResolver({"localhost": [["127.0.0.1"]]})
    url = f"http://localhost:{allowed.port}/hello"
    result = await get(url, ctx(("localhost",), resolve=resolver))
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.content == (
        f"Fetching {url} is refused: host localhost resolves to 127.0.0.1, a loopback "
        f"address. {REFUSAL}"
    )
    assert resolver.calls == [("localhost", allowed.port)]
    assert len(allowed.hits) == before


async def test_the_system_resolver_is_checked_too(allowed: Server) -> None:
    before = len(allowed.hits)
    result = await get(f"http://localhost:{allowed.port}/hello", ctx(("localhost",)))
    assert (result.ok, result.error_kind) == (False, "refused")
    assert "host localhost resolves to " in result.content
    assert "a loopback address" in result.content
    assert len(allowed.hits) == before


async def test_the_opt_in_allows_private_addresses(allowed: Server) -> None:
    # the system resolver: localhost may also answer ::1, where nothing listens, and the
    # next checked address is tried
    result = await get(f"http://localhost:{allowed.port}/hello", ctx(("localhost",), private=True))
    assert result.ok, result.content
    assert result.content.endswith("héllo from loopback")
    assert allowed.host_headers[-1] == f"localhost:{allowed.port}"


@pytest.mark.parametrize("entry", ["127.0.0.1", "127.0.0.1:{port}"])
async def test_an_allow_list_entry_naming_the_address_allows_it(
    allowed: Server, entry: str
) -> None:
    resolver = FakeResolver({"intranet.test": [["127.0.0.1"]]})
    hosts = ("intranet.test", entry.format(port=allowed.port))
    result = await get(f"http://intranet.test:{allowed.port}/hello", ctx(hosts, resolve=resolver))
    assert result.ok, result.content
    assert allowed.host_headers[-1] == f"intranet.test:{allowed.port}"


async def test_an_address_entry_for_another_port_does_not_allow_it(allowed: Server) -> None:
    resolver = FakeResolver({"intranet.test": [["127.0.0.1"]]})
    hosts = ("intranet.test", "127.0.0.1:1")
    result = await get(f"http://intranet.test:{allowed.port}/hello", ctx(hosts, resolve=resolver))
    assert (result.ok, result.error_kind) == (False, "refused")
    assert "resolves to 127.0.0.1, a loopback address." in result.content


async def test_one_internal_address_among_public_ones_refuses_the_fetch() -> None:
    resolver = FakeResolver({"mixed.test": [["93.184.215.14", "::ffff:10.0.0.1"]]})
    result = await get("http://mixed.test/", ctx(("mixed.test",), resolve=resolver))
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.content == (
        "Fetching http://mixed.test/ is refused: host mixed.test resolves to 93.184.215.14, "
        f"10.0.0.1 (10.0.0.1 is a private address). {REFUSAL}"
    )


async def test_a_redirect_to_a_name_resolving_to_a_private_address_is_refused(
    allowed: Server, forbidden: Server
) -> None:
    target = f"http://internal.test:{forbidden.port}/hello"
    allowed.redirect_to["/inside"] = target
    resolver = FakeResolver({"internal.test": [["127.0.0.2"]]})
    before = len(forbidden.hits)
    result = await get(
        f"{allowed.base}/inside", ctx(("127.0.0.1", "internal.test"), resolve=resolver)
    )
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.content == (
        f"{allowed.base}/inside redirected to {target}. Fetching {target} is refused: host "
        f"internal.test resolves to 127.0.0.2, a loopback address. {REFUSAL}"
    )
    assert len(forbidden.hits) == before


async def test_the_request_goes_to_the_checked_address(allowed: Server, rebound: Server) -> None:
    # The first answer is allowed (the allow-list names it), every later one is not: only
    # one resolution per hop happens, and the connection uses its answer.
    resolver = FakeResolver({"api.test": [["127.0.0.1"], ["127.0.0.2"]]})
    hosts = ("api.test", "127.0.0.1")
    rebound_before = len(rebound.hits)
    result = await get(f"http://api.test:{allowed.port}/hello", ctx(hosts, resolve=resolver))
    assert result.ok, result.content
    assert allowed.hits[-1] == "/hello"
    assert allowed.host_headers[-1] == f"api.test:{allowed.port}"
    assert resolver.calls == [("api.test", allowed.port)]
    assert len(rebound.hits) == rebound_before


async def test_every_redirect_hop_is_resolved_and_checked_again(
    allowed: Server, rebound: Server
) -> None:
    allowed.redirect_to["/rebind"] = "/hello"
    resolver = FakeResolver({"api.test": [["127.0.0.1"], ["127.0.0.2"]]})
    rebound_before = len(rebound.hits)
    url = f"http://api.test:{allowed.port}/rebind"
    result = await get(url, ctx(("api.test", "127.0.0.1"), resolve=resolver))
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.content == (
        f"{url} redirected to http://api.test:{allowed.port}/hello. Fetching "
        f"http://api.test:{allowed.port}/hello is refused: host api.test resolves to "
        f"127.0.0.2, a loopback address. {REFUSAL}"
    )
    assert allowed.hits[-1] == "/rebind"
    assert len(resolver.calls) == 2
    assert len(rebound.hits) == rebound_before


async def test_with_the_opt_in_each_hop_goes_to_its_own_answer(
    allowed: Server, rebound: Server
) -> None:
    allowed.redirect_to["/hop"] = "/json"
    resolver = FakeResolver({"api.test": [["127.0.0.1"], ["127.0.0.2"]]})
    result = await get(
        f"http://api.test:{allowed.port}/hop", ctx(("api.test",), private=True, resolve=resolver)
    )
    assert result.ok, result.content
    # the second hop went where its own answer said, still under the name
    assert (allowed.hits[-1], rebound.hits[-1]) == ("/hop", "/json")
    assert rebound.host_headers[-1] == f"api.test:{allowed.port}"


async def test_a_name_that_does_not_resolve_is_a_clear_failure() -> None:
    result = await get("http://nowhere.test/", ctx(("nowhere.test",), resolve=FakeResolver({})))
    assert (result.ok, result.error_kind) == (False, "failed")
    assert result.content.startswith(
        "Could not resolve host nowhere.test to fetch http://nowhere.test/: "
    )


async def test_a_resolver_answer_that_is_not_an_address_is_a_failure() -> None:
    resolver = FakeResolver({"odd.test": [["not-an-address"]]})
    result = await get("http://odd.test/", ctx(("odd.test",), resolve=resolver))
    assert (result.ok, result.error_kind) == (False, "failed")
    assert result.content == (
        "Resolving host odd.test to fetch http://odd.test/ gave 'not-an-address', which is "
        "not an IP address."
    )


def test_private_addresses_are_refused_unless_opted_in() -> None:
    assert ToolSettings().allow_private_addresses is False
    assert ToolContext("s", "c").resolve is system_resolve


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", LINK_LOCAL),
        ("0.0.0.0", "the unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("100.64.0.1", "an address that is not globally routable"),
        ("::1", "a loopback address"),
        ("::", "the unspecified address"),
        ("fd12:3456::1", "a private address"),
        ("fe80::1", LINK_LOCAL),
        ("ff02::1", "a multicast address"),
        ("::ffff:127.0.0.1", "an IPv6 form of 127.0.0.1, a loopback address"),
        (
            "64:ff9b::a9fe:a9fe",
            f"an IPv6 form of 169.254.169.254, {LINK_LOCAL}",
        ),
        ("2002:a00:1::1", "an IPv6 form of 10.0.0.1, a private address"),
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
        ("::ffff:93.184.215.14", None),
        ("64:ff9b::5db8:d70e", None),
    ],
)
def test_address_problems(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


# ------------------------------------------------------------------------ https


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (and nothing else: no IP address)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.skip("the openssl command is needed to make a certificate")
    cert, key = _certificate(tmp_path_factory.mktemp("tls"), "api.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for server in _serve("127.0.0.1", tls=context):
        yield server, cert


@pytest.fixture
def trust(tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients trust the test certificate (in place of the system CA store)."""
    context = ssl.create_default_context(cafile=str(tls_server[1]))
    monkeypatch.setattr(importlib.import_module("agents.tools.http_get"), "_tls", lambda: context)


async def test_https_keeps_the_host_name_for_sni_and_the_certificate(
    tls_server: tuple[Server, Path], trust: None
) -> None:
    server = tls_server[0]
    resolver = FakeResolver({"api.test": [["127.0.0.1"]]})
    url = f"https://api.test:{server.port}/hello"
    result = await get(url, ctx(("api.test",), private=True, resolve=resolver))
    assert result.ok, result.content
    assert result.content.endswith("héllo from loopback")
    # the certificate names api.test only: it verified against the name, not 127.0.0.1
    assert server.server_names[-1] == "api.test"
    assert server.host_headers[-1] == f"api.test:{server.port}"


async def test_https_refuses_a_certificate_for_another_name(
    tls_server: tuple[Server, Path], trust: None
) -> None:
    server = tls_server[0]
    before = len(server.hits)
    resolver = FakeResolver({"other.test": [["127.0.0.1"]]})
    url = f"https://other.test:{server.port}/hello"
    result = await get(url, ctx(("other.test",), private=True, resolve=resolver))
    assert (result.ok, result.error_kind) == (False, "failed")
    assert result.content.startswith(f"Could not connect to fetch {url}: ")
    assert "certificate" in result.content.lower()
    assert server.server_names[-1] == "other.test"
    assert len(server.hits) == before


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


async def test_every_request_carries_the_calls_idempotency_key(allowed: Server) -> None:
    """The effect id (ToolContext.idempotency_key) goes out as Idempotency-Key on the
    first request and on every redirect hop; without one, the call id does."""
    allowed.redirect_to["/keyed"] = "/hello"
    before = len(allowed.idempotency_keys)
    keyed = ToolContext("s", "call-1", ctx().settings, idempotency_key="sess-1:e42")
    assert (await get(f"{allowed.base}/keyed", keyed)).ok
    assert allowed.idempotency_keys[before:] == ["sess-1:e42", "sess-1:e42"]
    assert (await get(f"{allowed.base}/hello", ToolContext("s", "call-2", ctx().settings))).ok
    assert allowed.idempotency_keys[-1] == "call-2"
