"""The workers' HTTP endpoint (streams.endpoint) on the loopback: routes, token, config."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from streams.endpoint import Endpoint, EndpointConfig, is_loopback
from turnlog.settings import ConfigError, load_settings


async def get(
    port: int, path: str, *, auth: str | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", "Host: x"]
    if auth:
        lines.append(f"Authorization: {auth}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def registry_with_counter() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("turnlog_things", "Things.", registry=registry).inc(3)
    return registry


async def test_routes_on_a_free_loopback_port() -> None:
    ready = {"ok": False}
    refreshed = []

    async def refresh() -> None:
        refreshed.append(1)

    endpoint = Endpoint(
        EndpointConfig(port=0),
        registry_with_counter(),
        ready=lambda: (ready["ok"], "detail"),
        refresh=refresh,
    )
    port = await endpoint.start()
    assert port is not None and port > 0
    try:
        assert (await get(port, "/healthz"))[0] == 200
        assert (await get(port, "/readyz"))[:1] == (503,)
        ready["ok"] = True
        status, _, body = await get(port, "/readyz")
        assert (status, body) == (200, "detail\n")
        status, headers, body = await get(port, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        (family,) = [f for f in text_string_to_metric_families(body) if f.name == "turnlog_things"]
        assert family.samples[0].value == 3
        assert refreshed == [1]
        assert (await get(port, "/other"))[0] == 404
        assert (await get(port, "/metrics", method="POST"))[0] == 405
        status, headers, body = await get(port, "/readyz", method="HEAD")
        assert (status, body, headers["content-length"]) == (200, "", "7")
    finally:
        await endpoint.stop()


async def test_a_token_guards_everything_but_healthz() -> None:
    endpoint = Endpoint(
        EndpointConfig(port=0, token="s3cret"),
        registry_with_counter(),
        ready=lambda: (True, "ready"),
    )
    port = await endpoint.start()
    assert port is not None
    try:
        assert (await get(port, "/healthz"))[0] == 200
        for path in ("/metrics", "/readyz"):
            status, headers, _ = await get(port, path)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer")
            assert (await get(port, path, auth="Bearer wrong"))[0] == 401
            assert (await get(port, path, auth="s3cret"))[0] == 401
            assert (await get(port, path, auth="Bearer s3cret"))[0] == 200
    finally:
        await endpoint.stop()


async def test_a_port_in_use_leaves_the_worker_running_without_an_endpoint() -> None:
    first = Endpoint(EndpointConfig(port=0), CollectorRegistry(), ready=lambda: (True, ""))
    port = await first.start()
    assert port is not None
    second = Endpoint(EndpointConfig(port=port), CollectorRegistry(), ready=lambda: (True, ""))
    try:
        assert await second.start() is None
    finally:
        await first.stop()


async def test_garbage_gets_a_400_and_the_server_goes_on() -> None:
    endpoint = Endpoint(EndpointConfig(port=0), CollectorRegistry(), ready=lambda: (True, ""))
    port = await endpoint.start()
    assert port is not None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\x01 nonsense\r\n\r\n")
        await writer.drain()
        assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()
        assert (await get(port, "/healthz"))[0] == 200
    finally:
        await endpoint.stop()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_endpoint_needs_a_token() -> None:
    with pytest.raises(ValueError, match="TURNLOG_METRICS_TOKEN"):
        EndpointConfig(host="0.0.0.0")
    assert EndpointConfig(host="0.0.0.0", token="t").token == "t"
    assert EndpointConfig(host="0.0.0.0", enabled=False).enabled is False


def test_settings_refuse_an_exposed_endpoint_without_a_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("TURNLOG_METRICS_HOST", "0.0.0.0")
    monkeypatch.delenv("TURNLOG_METRICS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="^TURNLOG_METRICS_TOKEN: a token is required"):
        load_settings()
    monkeypatch.setenv("TURNLOG_METRICS_TOKEN", "tok")
    assert load_settings().metrics_token.get_secret_value() == "tok"  # type: ignore[union-attr]


def test_the_token_may_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "token"
    path.write_text("from-file\n")
    monkeypatch.setenv("TURNLOG_METRICS_HOST", "0.0.0.0")
    monkeypatch.delenv("TURNLOG_METRICS_TOKEN", raising=False)
    monkeypatch.setenv("TURNLOG_METRICS_TOKEN_FILE", str(path))
    assert load_settings().metrics_token.get_secret_value() == "from-file"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_off_unless_otel_variables_ask_for_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], on: bool
) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().tracing_enabled is on


def test_an_otlp_protocol_turnlog_does_not_ship_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ConfigError, match="http/protobuf"):
        load_settings()
