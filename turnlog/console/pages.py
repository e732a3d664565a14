"""The console's HTML pages (Jinja2 templates in console/templates/).

Rule: a page is rendered on the server from the projections (so it is whole at the first
byte and works without JavaScript for reading); console.js then keeps it live from the
API's event streams and sends the actions through the API. Templates autoescape: text
from the log (user messages, tool output) can never become markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from agents.errors import ContractError
from turnlog.console.api import backend, dumps, wait_seen
from turnlog.console.metrics import metrics
from turnlog.console.reads import SessionFilter, as_seq
from turnlog.console.security import identity
from turnlog.console.timeline import VIEWS_BY_NAME

__all__ = ["page_routes"]

_TEMPLATES = Path(__file__).parent / "templates"
TIMELINE_ROWS = 5000  # a session page's timeline: its last events, followed live from there
_env = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _usd(value: Any) -> str:
    if value is None or isinstance(value, Undefined):  # e.g. a call not answered yet
        return "—"
    return f"${float(value):.6f}"


def _when(value: Any) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else str(value)


def _pretty_json(value: Any) -> str:
    try:
        data = json.loads(value) if isinstance(value, str) else value
        return json.dumps(data, indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


_env.filters["usd"] = _usd
_env.filters["when"] = _when
_env.filters["pretty"] = _pretty_json
_env.filters["tojson_attr"] = dumps


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    html = _env.get_template(template).render(
        request=request,
        who=identity(request.scope),
        auth=request.scope.get("turnlog.auth"),
        **context,
    )
    return HTMLResponse(html, status_code=status)


def stream(request: Request, template: str, **context: Any) -> Response:
    """Like `render`, but the page goes out as it is rendered (in a worker thread): a
    long session's first bytes leave before its thousandth timeline row is written."""
    pieces = _env.get_template(template).generate(
        request=request,
        who=identity(request.scope),
        auth=request.scope.get("turnlog.auth"),
        **context,
    )

    def chunks() -> Iterator[bytes]:
        buf: list[str] = []
        size, limit = 0, 4096  # a small first chunk: the head and the page's top
        for piece in pieces:
            buf.append(piece)
            size += len(piece)
            if size >= limit:
                yield "".join(buf).encode()
                buf, size, limit = [], 0, 64 * 1024
        if buf:
            yield "".join(buf).encode()

    return StreamingResponse(iterate_in_threadpool(chunks()), media_type="text/html; charset=utf-8")


async def sessions_page(request: Request) -> Response:
    b = backend(request)
    problem = None
    try:
        f = SessionFilter(request.query_params)
    except ValueError as exc:
        problem = str(exc)
        f = SessionFilter({})
    await wait_seen(request)
    rows = await b.reads.sessions(f)
    template = "_sessions_table.html" if request.query_params.get("part") else "sessions.html"
    return render(
        request,
        template,
        page="sessions",
        sessions=rows,
        f=f,
        facets=await b.reads.facets(),
        problem=problem,
        status=400 if problem else 200,
    )


async def session_page(request: Request) -> Response:
    from projections.queries import SessionNotFound

    b = backend(request)
    sid = request.path_params["session_id"]
    after = as_seq(request.query_params.get("after_seq", ""))
    if after is not None:  # a live refresh: wait until the projector caught up with the log
        await b.reads.wait_projected(sid, after)
    live_only = request.query_params.get("part") == "live"
    # One snapshot for all of the page: its parts (the conversation, the approvals, the
    # tool and LLM calls, the timeline) show the same state of the projections.
    try:
        async with b.reads.snapshot():
            shown = await b.reads.show_session(sid)
            approvals = await b.reads.approvals(pending_only=False, session_id=sid)
            tool_rows = await b.reads.tool_calls(sid)
            llm_calls = await b.reads.llm_calls(sid)
            events = [] if live_only else await b.reads.latest_events(sid, limit=TIMELINE_ROWS)
    except SessionNotFound as exc:
        return render(request, "error.html", status=404, page="error", message=str(exc))
    tools = {t["call_id"]: t for t in tool_rows}
    by_call = {a["call_id"]: a for a in approvals}
    context: dict[str, Any] = {
        "page": "session",
        "sid": sid,
        "s": shown["session"],
        "entries": shown["entries"],
        "branches": shown["branches"],
        "children": shown["children"],
        "costs": shown["costs"],
        "approvals": approvals,
        "by_call": by_call,
        "tools": tools,
        "llm_calls": llm_calls,
        "pending": [a for a in approvals if a["outcome"] == "pending"],
    }
    if live_only:
        return render(request, "_session_live.html", **context)
    at = as_seq(request.query_params.get("at", ""))
    travel = None
    if at is not None:
        from turnlog.replay import load_session_log, replay, state_summary

        try:
            log = await load_session_log(b.bootstrap, b.topics, sid, partitions=b.partitions)
            played = replay(log, to_seq=at, rows=False)
            travel = {"at": at, "state": state_summary(played.state)}
        except ContractError as exc:
            travel = {"at": at, "error": str(exc)}
    return stream(
        request,
        "session.html",
        events=events,
        # The page follows the log from the last event it shows (not the session row's
        # last_seq: were they ever read apart, following from it would skip or repeat
        # what was projected in between).
        shown_seq=events[-1]["seq"] if events else 0,
        earlier=events[0]["seq"] - 1 if len(events) == TIMELINE_ROWS else 0,
        views=VIEWS_BY_NAME,
        travel=travel,
        **context,
    )


async def approvals_page(request: Request) -> Response:
    await wait_seen(request)
    rows = await backend(request).reads.approvals(pending_only=True)
    template = "_approvals_table.html" if request.query_params.get("part") else "approvals.html"
    return render(request, template, page="approvals", approvals=rows)


async def costs_page(request: Request) -> Response:
    from projections.queries import costs

    b = backend(request)
    grouped = {
        by: await run_in_threadpool(costs, b.database_url, by, limit=200)
        for by in ("agent", "model", "day", "session")
    }
    charts = {
        "day": {
            "labels": [str(r["day"]) for r in grouped["day"]],
            "values": [r.get("usd") or 0 for r in grouped["day"]],
        },
        "agent": {
            "labels": [r["agent"] for r in grouped["agent"]],
            "values": [r.get("rolled_up_usd") or r.get("usd") or 0 for r in grouped["agent"]],
        },
        "model": {
            "labels": [str(r["model"]) for r in grouped["model"]],
            "values": [r.get("usd") or 0 for r in grouped["model"]],
        },
    }
    return render(
        request,
        "costs.html",
        page="costs",
        grouped=grouped,
        charts=charts,
        budgets=await b.reads.budgets(),
    )


async def operations_page(request: Request) -> Response:
    return render(request, "operations.html", page="operations")


async def agents_page(request: Request) -> Response:
    versions = await backend(request).reads.agent_versions()
    agents: dict[str, list[dict[str, Any]]] = {}
    for v in versions:
        agents.setdefault(v["agent"], []).append(v)
    return render(request, "agents.html", page="agents", agents=agents)


async def schedules_page(request: Request) -> Response:
    shown = await backend(request).reads.schedules()
    return render(
        request,
        "schedules.html",
        page="schedules",
        schedules=shown["schedules"],
        runs=shown["runs"],
    )


async def login_page(request: Request) -> Response:
    return render(request, "login.html", page="login", next=request.query_params.get("next", "/"))


async def healthz(request: Request) -> Response:
    b = backend(request)
    ok = b.hub.ready.is_set() and b.hub.error is None
    return Response("ok\n" if ok else "not ready\n", status_code=200 if ok else 503)


def page_routes() -> list[Route]:
    return [
        Route("/", sessions_page),
        Route("/sessions/{session_id}", session_page),
        Route("/approvals", approvals_page),
        Route("/costs", costs_page),
        Route("/operations", operations_page),
        Route("/agents", agents_page),
        Route("/schedules", schedules_page),
        Route("/login", login_page),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
    ]
