"""Who is calling, and whether the request may do what it asks: one ASGI middleware.

Rule: every request passes here before any route runs, in this order —

1. size: a body over `max_body_bytes` (declared or streamed) is refused with 413;
2. host: on a loopback console without tokens, a Host header naming another machine is
   refused (a DNS-rebinding page cannot reach the console through the victim's browser);
3. identity: `Authorization: Bearer <token>` or the sign-in cookie names who calls;
   without tokens configured (loopback only) the caller is `local`. No identity when
   one is needed: 401 for /api, a redirect to /login for pages;
4. CSRF: a state-changing request authenticated by a cookie (or by nothing, on loopback)
   must carry the `X-CSRF-Token` header equal to the `turnlog_csrf` cookie (double
   submit; a cross-site page can neither read the cookie nor set the header), and an
   Origin header, when sent, must be this console's. Bearer calls carry no ambient
   credential and need neither.

The identity lands in `scope["turnlog.identity"]`; routes record it (the approver is who
signed in, never a form field). Sign-in sessions are random ids held in this process.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

from turnlog.console.config import ConsoleConfig, is_loopback

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Guard",
    "SignIns",
    "identity",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "turnlog_session"
CSRF_COOKIE = "turnlog_csrf"
CSRF_HEADER = "x-csrf-token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Paths anyone may reach: the sign-in page and its API, static assets, the health check.
_OPEN = ("/login", "/api/login", "/static/", "/healthz")


def identity(scope: Scope) -> str:
    """The authenticated caller of a request that passed the Guard."""
    return str(scope.get("turnlog.identity", "anonymous"))


class SignIns:
    """Sign-in sessions of this process: random id -> identity (a restart signs out)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._ids: dict[str, str] = {}
        self._limit = limit

    def create(self, who: str) -> str:
        if len(self._ids) >= self._limit:
            self._ids.pop(next(iter(self._ids)))
        sid = secrets.token_urlsafe(32)
        self._ids[sid] = who
        return sid

    def get(self, sid: str) -> str | None:
        return self._ids.get(sid)

    def drop(self, sid: str) -> None:
        self._ids.pop(sid, None)


class _TooLarge(Exception):
    pass


async def _reply(send: Send, status: int, body: dict[str, Any] | str, **headers: str) -> None:
    if isinstance(body, dict):
        data = json.dumps(body).encode()
        ctype = "application/json"
    else:
        data = body.encode()
        ctype = "text/plain; charset=utf-8"
    raw = [(b"content-type", ctype.encode()), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:
        return {}
    return {k: m.value for k, m in jar.items()}


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, config: ConsoleConfig, sign_ins: SignIns) -> None:
        self.app = app
        self.config = config
        self.sign_ins = sign_ins
        self.check_host = is_loopback(config.host) and not config.auth_required
        self.hosts = {"127.0.0.1", "localhost", "::1", "[::1]", *config.allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path: str = scope["path"]
        method: str = scope["method"]
        limit = self.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and (
            not (declared.isascii() and declared.isdigit())
            or len(declared) > 18
            or int(declared) > limit
        ):
            await _reply(send, 413, {"error": f"The request body is over {limit} bytes."})
            return
        host = headers.get("host", "")
        if self.check_host and urlsplit(f"//{host}").hostname not in self.hosts:
            await _reply(send, 421, {"error": f"Host {host!r} is not this console."})
            return

        cookies = _cookies(headers)
        who, via = self._identify(headers, cookies)
        is_api = path.startswith("/api/") or path == "/metrics"  # machines get a 401
        if who is None and not path.startswith(_OPEN):
            if is_api or method != "GET":
                await _reply(
                    send,
                    401,
                    {"error": "Sign in: send 'Authorization: Bearer <token>' or use /login."},
                    **{"www-authenticate": "Bearer"},
                )
            else:
                target = quote(
                    path + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
                )
                await _reply(send, 303, "", location=f"/login?next={target}")
            return
        if method in _UNSAFE and via != "bearer":
            problem = self._csrf_problem(headers, cookies)
            if problem:
                await _reply(send, 403, {"error": problem})
                return
        scope["turnlog.identity"] = who or "anonymous"
        scope["turnlog.auth"] = via

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        csrf = cookies.get(CSRF_COOKIE)
        new_csrf = None if csrf else secrets.token_urlsafe(24)
        secure = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (
                        b"content-security-policy",
                        b"default-src 'self'; img-src 'self' data:; object-src 'none'; "
                        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
                    ),
                ]
                if new_csrf is not None:
                    attrs = "; Path=/; SameSite=Strict" + ("; Secure" if secure else "")
                    extra.append((b"set-cookie", f"{CSRF_COOKIE}={new_csrf}{attrs}".encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _TooLarge:
            await _reply(send, 413, {"error": f"The request body is over {limit} bytes."})

    def _identify(self, headers: dict[str, str], cookies: dict[str, str]) -> tuple[str | None, str]:
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            who = self.config.identity_of(auth[7:].strip())
            return (who, "bearer") if who else (None, "none")
        sid = cookies.get(SESSION_COOKIE)
        if sid:
            who = self.sign_ins.get(sid)
            if who:
                return who, "cookie"
        if not self.config.auth_required:
            return "local", "local"
        return None, "none"

    def _csrf_problem(self, headers: dict[str, str], cookies: dict[str, str]) -> str | None:
        origin = headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != headers.get("host", ""):
            return f"Origin {origin} is not this console; the request was refused (CSRF)."
        expected = cookies.get(CSRF_COOKIE)
        given = headers.get(CSRF_HEADER)
        if not expected or not given or not secrets.compare_digest(expected, given):
            return (
                "A state-changing request needs the X-CSRF-Token header equal to the "
                f"{CSRF_COOKIE} cookie (or a bearer token); the request was refused."
            )
        return None
