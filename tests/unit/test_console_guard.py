"""console.security.Guard as plain ASGI (no server, no Kafka): who calls, CSRF, Host,
body limits — the rules of its docstring, one case each."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from turnlog.console.config import ConsoleConfig
from turnlog.console.security import CSRF_COOKIE, SESSION_COOKIE, Guard, SignIns, identity

TOKEN = "0123456789abcdef-alice"


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    data = json.dumps({"who": identity(scope), "via": scope.get("turnlog.auth"), "n": len(body)})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": data.encode()})


def call(
    guard: Guard,
    method: str = "GET",
    path: str = "/api/sessions",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    chunks: int = 1,
) -> tuple[int, dict[str, str], Any]:
    raw = [
        (k.encode(), v.encode()) for k, v in {"host": "127.0.0.1:8700", **(headers or {})}.items()
    ]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": raw,
        "scheme": "http",
    }
    size = max(1, len(body) // chunks)
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    head = {k.decode(): v.decode() for k, v in start["headers"]}
    payload = b"".join(m.get("body", b"") for m in sent[1:])
    try:
        parsed: Any = json.loads(payload) if payload else None
    except ValueError:
        parsed = payload.decode()
    return start["status"], head, parsed


def loopback() -> Guard:
    return Guard(_app, ConsoleConfig(), SignIns())


def with_tokens() -> Guard:
    return Guard(_app, ConsoleConfig(host="0.0.0.0", tokens={TOKEN: "alice"}), SignIns())


def test_loopback_without_tokens_calls_the_caller_local_and_sets_a_csrf_cookie() -> None:
    status, head, body = call(loopback())
    assert status == 200 and body["who"] == "local"
    assert (
        head["set-cookie"].startswith(f"{CSRF_COOKIE}=") and "SameSite=Strict" in head["set-cookie"]
    )
    assert "default-src 'self'" in head["content-security-policy"]
    assert head["x-frame-options"] == "DENY"


def test_a_foreign_host_is_refused_on_loopback() -> None:
    status, _, body = call(loopback(), headers={"host": "rebind.example:8700"})
    assert status == 421 and "rebind.example" in body["error"]


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, "X-CSRF-Token"),
        ({"cookie": f"{CSRF_COOKIE}=abc"}, "X-CSRF-Token"),
        ({"cookie": f"{CSRF_COOKIE}=abc", "x-csrf-token": "abd"}, "X-CSRF-Token"),
        (
            {
                "cookie": f"{CSRF_COOKIE}=abc",
                "x-csrf-token": "abc",
                "origin": "http://evil.example",
            },
            "Origin",
        ),
    ],
)
def test_a_state_change_without_the_csrf_pair_is_refused(
    headers: dict[str, str], problem: str
) -> None:
    status, _, body = call(loopback(), "POST", headers=headers, body=b"{}")
    assert status == 403 and problem in body["error"]


def test_a_state_change_with_the_csrf_pair_passes() -> None:
    headers = {
        "cookie": f"{CSRF_COOKIE}=abc",
        "x-csrf-token": "abc",
        "origin": "http://127.0.0.1:8700",
    }
    status, _, body = call(loopback(), "POST", headers=headers, body=b"{}")
    assert status == 200 and body["n"] == 2


def test_bodies_over_the_limit_are_refused_declared_or_streamed() -> None:
    guard = Guard(_app, ConsoleConfig(max_body_bytes=1024), SignIns())
    csrf = {"cookie": f"{CSRF_COOKIE}=abc", "x-csrf-token": "abc"}
    declared = {**csrf, "content-length": "5000"}
    assert call(guard, "POST", headers=declared, body=b"x" * 5000)[0] == 413
    status, _, body = call(guard, "POST", headers=csrf, body=b"x" * 5000, chunks=5)
    assert status == 413 and "1024" in body["error"]
    assert call(guard, "POST", headers=csrf, body=b"x" * 1000)[0] == 200


def test_with_tokens_nobody_passes_unauthenticated() -> None:
    guard = with_tokens()
    status, head, _ = call(guard, headers={"host": "console.example"})
    assert status == 401 and head["www-authenticate"] == "Bearer"
    status, head, _ = call(guard, path="/approvals", headers={"host": "console.example"})
    assert status == 303 and head["location"] == "/login?next=/approvals"
    assert call(guard, path="/static/console.css")[0] == 200  # assets and sign-in are open
    assert call(guard, path="/healthz")[0] == 200
    wrong = {"authorization": "Bearer not-a-token-of-ours"}
    assert call(guard, headers=wrong)[0] == 401


def test_a_bearer_names_the_caller_and_needs_no_csrf() -> None:
    status, _, body = call(
        with_tokens(), "POST", headers={"authorization": f"Bearer {TOKEN}"}, body=b"{}"
    )
    assert status == 200 and (body["who"], body["via"]) == ("alice", "bearer")


def test_a_sign_in_cookie_names_the_caller_and_needs_csrf() -> None:
    sign_ins = SignIns()
    guard = Guard(_app, ConsoleConfig(host="0.0.0.0", tokens={TOKEN: "alice"}), sign_ins)
    sid = sign_ins.create("alice")
    cookie = {"cookie": f"{SESSION_COOKIE}={sid}"}
    status, _, body = call(guard, headers=cookie)
    assert status == 200 and (body["who"], body["via"]) == ("alice", "cookie")
    assert call(guard, "POST", headers=cookie, body=b"{}")[0] == 403
    both = {"cookie": f"{SESSION_COOKIE}={sid}; {CSRF_COOKIE}=k", "x-csrf-token": "k"}
    assert call(guard, "POST", headers=both, body=b"{}")[0] == 200
    sign_ins.drop(sid)
    assert call(guard, headers=cookie)[0] == 401
