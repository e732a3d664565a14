"""The HTTP API (JSON + Server-Sent Events) that the console's pages use, and any client
that does not speak Kafka. Its OpenAPI document is served at /api/openapi.json, built
from the YAML after `---` in each endpoint's docstring.

Rule: a state-changing call produces ONE request through `turnlog.Client` and answers
202 with the ids (or, with `?wait=true`, how the worker decided it: 409 when it was
rejected, naming why; with `?wait=turn`, how the turn ended, with its answer and its
structured result). Who approved or denied is the authenticated caller, never a field
of the body. Reads come from the projections; /stream follows the log from Kafka.

Errors: 400 (a body or parameter that is wrong, message naming it), 401/403 (console.
security), 404 (no such session), 409 (the worker rejected the request), 413 (body too
large), 503 (Kafka or Postgres did not answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from agents.errors import ContractError, ExternalError
from agents.events import Event
from turnlog._follow import Sent
from turnlog._render import Describer
from turnlog.console.backend import Backend
from turnlog.console.live import ALL
from turnlog.console.reads import SessionFilter, as_seq, parse_seen
from turnlog.console.security import CSRF_COOKIE, SESSION_COOKIE, SignIns, identity
from turnlog.console.timeline import delta_json, event_json

__all__ = ["api_routes", "dumps", "openapi"]

log = structlog.get_logger("turnlog.console")

HEARTBEAT_S = 15.0


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False)


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


def error(status: int, message: str) -> Response:
    return _JSON({"error": message}, status_code=status)


def backend(request: Request) -> Backend:
    b: Backend = request.app.state.backend
    return b


CLIENT_HEADER = "X-Turnlog-Client"


def requester(request: Request) -> str | None:
    """The requester identity a message carries (Request.client): the token's name when
    the console has named tokens (the caller cannot claim another), else the
    `X-Turnlog-Client` header (self-declared, like a raw Kafka producer's), else none."""
    if request.app.state.config.auth_required:
        return identity(request.scope)
    return request.headers.get(CLIENT_HEADER) or None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewSession(_Body):
    agent: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1)


class Message(_Body):
    text: str = Field(min_length=1)


class Decision(_Body):
    decision: str = Field(pattern="^(approve|deny)$")
    reason: str | None = Field(default=None, max_length=4000)


class Cancel(_Body):
    reason: str | None = Field(default=None, max_length=4000)
    drop_queue: bool = False


class Fork(_Body):
    at_seq: int = Field(ge=1)
    agent: str | None = Field(default=None, max_length=200)


class Login(_Body):
    token: str = Field(min_length=1, max_length=1000)


async def _body(request: Request, model: type[_Body]) -> Any:
    try:
        raw = await request.body()
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ContractError(f"Invalid request body: {where}: {first['msg']}.") from None


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


async def _answer(request: Request, sent: Sent, **extra: Any) -> Response:
    """202 with the ids, or with ?wait=true the worker's first decision about it."""
    body: dict[str, Any] = {
        "session_id": sent.session_id,
        "request_id": sent.request_id,
        "partition": sent.partition,
        **extra,
    }
    kind = type(sent.request.payload).__name__
    produced = backend(request).produced
    produced[kind] = produced.get(kind, 0) + 1
    # One line per request produced: who asked the console for what (never the body).
    log.info(
        "console.request",
        request_type=kind,
        session_id=sent.session_id,
        request_id=sent.request_id,
        by=identity(request.scope),
        auth=request.scope.get("turnlog.auth"),
    )
    if request.query_params.get("wait") == "turn":
        # The end of the turn the request started or continued, with its answer and, for
        # an agent with an output_schema, the structured result (JSON, not a string).
        outcome = await backend(request).client.outcome(sent, until="turn", timeout=300.0)
        body |= {
            "status": outcome.status,
            "reason": outcome.reason,
            "answer": outcome.answer,
            "structured": outcome.structured,
            "cost_nanos": outcome.cost_nanos,
        }
    elif not _flag(request, "wait"):
        return _JSON({**body, "status": "sent"}, status_code=202)
    else:
        outcome = await backend(request).client.outcome(sent, until="accepted", timeout=30.0)
        body |= {"status": outcome.status, "reason": outcome.reason}
    if outcome.events:
        body["seq"] = outcome.events[-1].seq
    return _JSON(body, status_code=409 if outcome.status == "rejected" else 200)


async def wait_seen(request: Request) -> None:
    """Wait (at most 5 s) until the projections hold the events named by the request's
    `seen=SESSION:SEQ` parameters: the ones a live page was told of before refreshing."""
    await backend(request).reads.wait_all_projected(
        parse_seen(request.query_params.getlist("seen"))
    )


def _seq(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    seq = as_seq(raw)
    if seq is None:
        raise ContractError(f"{name} must be a positive integer, not {raw!r}.")
    return seq


# ---------------------------------------------------------------------- sessions


async def list_sessions(request: Request) -> Response:
    """
    ---
    summary: Sessions, most recently updated first
    parameters:
      - {name: agent, in: query, schema: {type: string}}
      - {name: status, in: query, schema: {type: string, enum: [active, closed]}}
      - {name: phase, in: query, schema: {type: string}}
      - {name: q, in: query, description: part of the session id, schema: {type: string}}
      - {name: min_usd, in: query, schema: {type: number}}
      - {name: max_usd, in: query, schema: {type: number}}
      - {name: since, in: query, description: updated at or after (ISO), schema: {type: string}}
      - {name: until, in: query, description: created at or before (ISO), schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000}}
    responses:
      200: {description: "{sessions: [...]}"}
    """
    try:
        f = SessionFilter(request.query_params)
    except ValueError as exc:
        return error(400, str(exc))
    return _JSON({"sessions": await backend(request).reads.sessions(f)})


async def create_session(request: Request) -> Response:
    """
    ---
    summary: Start a session with a first message
    requestBody:
      content: {application/json: {schema: {type: object, required: [agent, text], properties: {agent: {type: string}, text: {type: string}}}}}
    parameters:
      - {name: wait, in: query, description: "true: wait for the worker's decision; turn: wait for the end of the turn (its answer and structured result)", schema: {type: string, enum: ["true", "turn"]}}
      - {name: X-Turnlog-Client, in: header, description: "the requester identity the message carries (per-client rate limits and budgets), when the console has no named tokens (with them: the token's name)", schema: {type: string, maxLength: 128}}
    responses:
      200: {description: "wait=true: {session_id, request_id, partition, status, reason, seq}; wait=turn: also answer, structured (the answer as a JSON value for an agent with an output_schema, else null) and cost_nanos"}
      202: {description: "{session_id, request_id, partition, status: sent}"}
      409: {description: the worker rejected it (reason)}
    """
    body = await _body(request, NewSession)
    sent = await backend(request).client.send_message(
        body.text, agent=body.agent, client=requester(request)
    )
    return await _answer(request, sent)


async def get_session(request: Request) -> Response:
    """
    ---
    summary: One session - its row, conversation branch, fork tree, children, costs, approvals, structured results
    responses:
      200: {description: "the session; `structured`: the structured results of its turns (agents with an output_schema), oldest first, each {turn_id, call_id, seq, result} with `result` the JSON value; `result`: the last one's value (null when none)"}
      404: {description: no such session}
    """
    from projections.queries import STRUCTURED_SQL

    sid = request.path_params["session_id"]
    b = backend(request)
    async with b.reads.snapshot():  # every part of the answer from one state
        shown = await b.reads.show_session(sid)
        shown["approvals"] = await b.reads.approvals(pending_only=False, session_id=sid)
        shown["tool_calls"] = await b.reads.tool_calls(sid)
        structured = await b.reads.rows(STRUCTURED_SQL, (sid,))
    shown["structured"] = structured
    shown["result"] = structured[-1]["result"] if structured else None
    return _JSON(shown)


async def session_events(request: Request) -> Response:
    """
    ---
    summary: The session's projected events (seq, type, turn, time, Kafka position)
    parameters:
      - {name: from_seq, in: query, schema: {type: integer}}
      - {name: limit, in: query, schema: {type: integer, maximum: 5000}}
    responses:
      200: {description: "{events: [...]}"}
    """
    sid = request.path_params["session_id"]
    from_seq = _seq(request, "from_seq", 1) or 1
    limit = min(_seq(request, "limit", 1000) or 1000, 5000)
    rows = await backend(request).reads.events(sid, from_seq=from_seq, limit=limit)
    return _JSON({"session_id": sid, "events": rows})


async def session_state(request: Request) -> Response:
    """
    ---
    summary: Time travel - the session's state after event `at` (folded from the log)
    parameters:
      - {name: at, in: query, description: a seq (default the last), schema: {type: integer}}
    responses:
      200: {description: "{state, totals, timeline}"}
      404: {description: no such session}
    """
    from turnlog.replay import load_session_log, replay, state_summary

    sid = request.path_params["session_id"]
    at = _seq(request, "at")
    b = backend(request)
    log = await load_session_log(b.bootstrap, b.topics, sid, partitions=b.partitions)
    played = replay(log, to_seq=at)
    return _JSON(
        {
            "session_id": sid,
            "at": at,
            "state": state_summary(played.state),
            "totals": played.totals.as_dict(),
            "timeline": [r.as_dict() for r in played.rows],
        }
    )


async def send_message(request: Request) -> Response:
    """
    ---
    summary: Send a user message to a session (queued if a turn is running)
    requestBody:
      content: {application/json: {schema: {type: object, required: [text], properties: {text: {type: string}}}}}
    parameters:
      - {name: wait, in: query, description: "true: wait for the worker's decision; turn: wait for the end of the turn (its answer and structured result)", schema: {type: string, enum: ["true", "turn"]}}
      - {name: X-Turnlog-Client, in: header, description: "the requester identity the message carries (per-client rate limits and budgets), when the console has no named tokens (with them: the token's name)", schema: {type: string, maxLength: 128}}
    responses:
      200: {description: "as POST /api/sessions with wait: status, reason; with wait=turn also answer, structured, cost_nanos"}
      202: {description: sent}
      409: {description: rejected}
    """
    body = await _body(request, Message)
    sid = request.path_params["session_id"]
    sent = await backend(request).client.send_message(
        body.text, session_id=sid, client=requester(request)
    )
    return await _answer(request, sent)


async def decide_approval(request: Request) -> Response:
    """
    ---
    summary: Approve or deny a tool call; the approver recorded is the signed-in identity
    requestBody:
      content: {application/json: {schema: {type: object, required: [decision], properties: {decision: {type: string, enum: [approve, deny]}, reason: {type: string}}}}}
    responses:
      202: {description: sent}
      409: {description: rejected (nothing waits for that call)}
    """
    body = await _body(request, Decision)
    sid = request.path_params["session_id"]
    call_id = request.path_params["call_id"]
    who = identity(request.scope)
    client = backend(request).client
    if body.decision == "approve":
        sent = await client.approve(sid, call_id, by=who, reason=body.reason)
    else:
        sent = await client.deny(sid, call_id, by=who, reason=body.reason)
    return await _answer(request, sent, decided_by=who)


async def cancel_turn(request: Request) -> Response:
    """
    ---
    summary: Cancel the running turn (its LLM calls, tools and children stop)
    requestBody:
      content: {application/json: {schema: {type: object, properties: {reason: {type: string}, drop_queue: {type: boolean}}}}}
    responses:
      202: {description: sent}
      409: {description: rejected (no turn running)}
    """
    body = await _body(request, Cancel)
    sid = request.path_params["session_id"]
    reason = body.reason or f"cancelled by {identity(request.scope)} in the console"
    sent = await backend(request).client.cancel(sid, reason=reason, drop_queue=body.drop_queue)
    return await _answer(request, sent)


async def fork_session(request: Request) -> Response:
    """
    ---
    summary: Fork the session at a seq into a new session (its id is in the answer)
    requestBody:
      content: {application/json: {schema: {type: object, required: [at_seq], properties: {at_seq: {type: integer}, agent: {type: string}}}}}
    responses:
      202: {description: "{session_id: the new session, ...}"}
      409: {description: rejected}
    """
    body = await _body(request, Fork)
    sid = request.path_params["session_id"]
    sent = await backend(request).client.fork(sid, body.at_seq, agent=body.agent)
    return await _answer(request, sent, forked_from=sid, at_seq=body.at_seq)


# ---------------------------------------------------------------------- following


# Frames already rendered for one follower, sent as they are to the others: a live event
# is serialized once per process, not once per follower (bounded; oldest dropped first).
_FRAMES: OrderedDict[tuple[str, str | int, int], bytes] = OrderedDict()
_FRAMES_MAX = 20_000


def _remember(key: tuple[str, str | int, int], frame: bytes) -> bytes:
    _FRAMES[key] = frame
    if len(_FRAMES) > _FRAMES_MAX:
        _FRAMES.popitem(last=False)
    return frame


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {dumps(data)}\n\n".encode()


async def follow_session(request: Request) -> Response:
    """
    ---
    summary: Follow a session as Server-Sent Events
    description: >-
      `event: event` (id = seq) for each event of the session's log, `event: delta` for
      each streamed token delta of its LLM calls. Resumable: the `Last-Event-ID` header
      (or `from_seq`) makes the stream start with every event after that seq, read from
      the log, then continue live. Without either it starts live. `event: reset` asks
      the client to reconnect (it fell behind).
    parameters:
      - {name: from_seq, in: query, schema: {type: integer}}
      - {name: Last-Event-ID, in: header, schema: {type: integer}}
    responses:
      200: {description: text/event-stream}
    """
    sid = request.path_params["session_id"]
    from_seq = _seq(request, "from_seq")
    last_id = as_seq(request.headers.get("last-event-id", "").strip())
    if last_id is not None:
        from_seq = last_id + 1
    # Where the catch-up starts, read before the 200: a session id the database refuses
    # (a NUL byte) is a 400 here, not a stream cut off after its headers.
    offset = 0 if from_seq is None else await backend(request).reads.offset_before(sid, from_seq)
    return StreamingResponse(
        _follow(request, sid, from_seq, offset),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _follow(
    request: Request, sid: str, from_seq: int | None, offset: int
) -> AsyncIterator[bytes]:
    b = backend(request)
    describer = Describer()
    last = (from_seq or 1) - 1
    with b.hub.follow(sid) as follower:
        yield b": following\n\n"
        if from_seq is not None:
            from turnlog.console.live import read_session

            async for ev in read_session(
                b.bootstrap, b.topics, b.partitions, sid, from_seq=from_seq, from_offset=offset
            ):
                if ev.seq > last:
                    last = ev.seq
                    yield _sse("event", event_json(ev, describer), ev.seq)
        while True:
            # Everything queued goes out as one write: a burst of deltas costs a follower
            # one send, not one per token.
            frames: list[bytes] = []
            while not follower.queue.empty():
                item = follower.queue.get_nowait()
                if isinstance(item, Event):
                    if item.seq <= last:
                        continue
                    last = item.seq
                    key: tuple[str, str | int, int] = (item.session_id, "e", item.seq)
                    frames.append(
                        _FRAMES.get(key)
                        or _remember(key, _sse("event", event_json(item, describer), last))
                    )
                else:
                    key = (item.call_id, "d", item.index)
                    frames.append(
                        _FRAMES.get(key) or _remember(key, _sse("delta", delta_json(item)))
                    )
            if frames:
                yield b"".join(frames)
            if follower.overflowed:
                yield _sse("reset", {"reason": "the follower fell behind; reconnect"})
                return
            follower.wake.clear()
            if follower.queue.empty():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEARTBEAT_S):
                        await follower.wake.wait()
                if follower.queue.empty() and not follower.overflowed:
                    yield b": heartbeat\n\n"


async def follow_all(request: Request) -> Response:
    """
    ---
    summary: "Every session's events as Server-Sent Events (`event: session`, no payloads)"
    responses:
      200: {description: text/event-stream}
    """
    return StreamingResponse(
        _follow_all(request),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


async def _follow_all(request: Request) -> AsyncIterator[bytes]:
    b = backend(request)
    with b.hub.follow(ALL) as follower:
        yield b": following\n\n"
        while not follower.overflowed:
            while not follower.queue.empty():
                ev = follower.queue.get_nowait()
                if isinstance(ev, Event):
                    kind = type(ev.payload).__name__
                    data = {"session_id": ev.session_id, "seq": ev.seq, "type": kind}
                    yield _sse("session", data)
            follower.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(follower.wake.wait(), HEARTBEAT_S)
            if follower.queue.empty():
                yield b": heartbeat\n\n"
        yield _sse("reset", {"reason": "the follower fell behind; reconnect"})


# ---------------------------------------------------------------------- the rest


async def list_approvals(request: Request) -> Response:
    """
    ---
    summary: Approvals waiting for a human, oldest first, with their deadline
    parameters:
      - {name: all, in: query, description: decided ones too, schema: {type: boolean}}
      - name: seen
        in: query
        description: >-
          SESSION:SEQ, repeatable: answer once the projections hold these events
          (waits at most 5 s), e.g. the events a live page was just told of
        schema: {type: array, items: {type: string}}
    responses:
      200: {description: "{approvals: [...]}"}
    """
    await wait_seen(request)
    rows = await backend(request).reads.approvals(pending_only=not _flag(request, "all"))
    return _JSON({"approvals": rows})


async def list_costs(request: Request) -> Response:
    """
    ---
    summary: Costs grouped by session, agent, model or day, and the agents' budgets
    parameters:
      - {name: by, in: query, schema: {type: string, enum: [session, agent, model, day]}}
    responses:
      200: {description: "{by, rows, budgets}"}
    """
    from projections.queries import costs

    by = request.query_params.get("by", "agent")
    b = backend(request)
    rows = await run_in_threadpool(costs, b.database_url, by)  # type: ignore[arg-type]
    return _JSON({"by": by, "rows": rows, "budgets": await b.reads.budgets()})


async def list_agents(request: Request) -> Response:
    """
    ---
    summary: Agent definitions and their versions (newest first per agent)
    responses:
      200: {description: "{versions: [...]}"}
    """
    return _JSON({"versions": await backend(request).reads.agent_versions()})


async def list_schedules(request: Request) -> Response:
    """
    ---
    summary: Scheduled agents and their newest runs
    responses:
      200: {description: "{schedules: [...], runs: [...]}"}
    """
    return _JSON(await backend(request).reads.schedules())


async def operations(request: Request) -> Response:
    """
    ---
    summary: Worker and projector lag, DLQ tail, quarantine, live-hub status
    responses:
      200: {description: operations facts}
    """
    from projections.quarantine import list_quarantined
    from turnlog.console.ops import dlq_tail, group_lag

    b = backend(request)
    worker = await group_lag(b.offsets, b.worker_group, b.topics.requests)
    ends = await b.offsets.end_offsets(b.topics.events)
    positions = await b.reads.projector_positions()
    projector = []
    for row in positions:
        if row["topic"] != b.topics.events:
            continue
        end = ends.get(row["partition"])
        projector.append(
            {**row, "end": end, "lag": None if end is None else end - row["next_offset"]}
        )
    quarantined = await run_in_threadpool(list_quarantined, b.database_url)
    return _JSON(
        {
            "worker_lag": worker,
            "projector_lag": projector,
            "dlq": await dlq_tail(b.bootstrap, b.topics),
            "quarantine": quarantined,
            "live": {
                "followers": b.hub.followers,
                "records_seen": b.hub.records,
                "error": b.hub.error,
            },
        }
    )


async def audit_verify(request: Request) -> Response:
    """
    ---
    summary: Verify the audit hash chain now, against the published checkpoints
    responses:
      200: {description: the verification report (ok, rows, first broken row)}
    """
    from projections.audit import read_checkpoints, verify_audit_log

    b = backend(request)
    published = await read_checkpoints(b.bootstrap, b.topics.checkpoints)
    report = await run_in_threadpool(verify_audit_log, b.database_url, published)
    return _JSON(report.as_dict())


async def login(request: Request) -> Response:
    """
    ---
    summary: Sign in with a token (sets the session cookie used by the pages)
    responses:
      200: {description: "{identity}"}
      401: {description: unknown token}
    """
    body = await _body(request, Login)
    config = request.app.state.config
    who = config.identity_of(body.token) if config.auth_required else "local"
    if who is None:
        return error(401, "That token is not one of this console's.")
    sign_ins: SignIns = request.app.state.sign_ins
    response = _JSON({"identity": who})
    secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE, sign_ins.create(who), httponly=True, samesite="strict", secure=secure
    )
    return response


async def logout(request: Request) -> Response:
    """
    ---
    summary: Sign out
    responses:
      200: {description: signed out}
    """
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        request.app.state.sign_ins.drop(sid)
    response = _JSON({"ok": True})
    response.delete_cookie(SESSION_COOKIE)
    return response


async def me(request: Request) -> Response:
    """
    ---
    summary: Who the console takes the caller for
    responses:
      200: {description: "{identity, auth}"}
    """
    return _JSON(
        {
            "identity": identity(request.scope),
            "auth": request.scope.get("turnlog.auth"),
            "csrf_cookie": CSRF_COOKIE,
        }
    )


async def openapi_json(request: Request) -> Response:
    return _JSON(openapi())


_SCHEMAS = SchemaGenerator(
    {
        "openapi": "3.0.3",
        "info": {
            "title": "turnlog console API",
            "version": "1",
            "description": "Send messages, approve or deny tool calls, cancel, fork, read "
            "sessions, events and costs, and follow sessions as Server-Sent Events. "
            "Authenticate with `Authorization: Bearer <token>` when the console has tokens.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
)


def api_routes() -> list[Route]:
    from turnlog.console.schedules import schedule_routes

    return [
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions", create_session, methods=["POST"]),
        Route("/api/sessions/{session_id}", get_session, methods=["GET"]),
        Route("/api/sessions/{session_id}/events", session_events, methods=["GET"]),
        Route("/api/sessions/{session_id}/state", session_state, methods=["GET"]),
        Route("/api/sessions/{session_id}/stream", follow_session, methods=["GET"]),
        Route("/api/sessions/{session_id}/messages", send_message, methods=["POST"]),
        Route("/api/sessions/{session_id}/approvals/{call_id}", decide_approval, methods=["POST"]),
        Route("/api/sessions/{session_id}/cancel", cancel_turn, methods=["POST"]),
        Route("/api/sessions/{session_id}/fork", fork_session, methods=["POST"]),
        Route("/api/stream", follow_all, methods=["GET"]),
        Route("/api/approvals", list_approvals, methods=["GET"]),
        Route("/api/costs", list_costs, methods=["GET"]),
        Route("/api/agents", list_agents, methods=["GET"]),
        Route("/api/schedules", list_schedules, methods=["GET"]),
        *schedule_routes(),
        Route("/api/operations", operations, methods=["GET"]),
        Route("/api/audit/verify", audit_verify, methods=["POST"]),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/logout", logout, methods=["POST"]),
        Route("/api/me", me, methods=["GET"]),
        Route("/api/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
    ]


def openapi() -> dict[str, Any]:
    from starlette.applications import Starlette

    schema: dict[str, Any] = _SCHEMAS.get_schema(Starlette(routes=api_routes()).routes)
    return schema


async def handle_contract_error(request: Request, exc: Exception) -> Response:
    from projections.queries import SessionNotFound as NotProjected
    from turnlog.replay import SessionNotFound as NotLogged

    if isinstance(exc, NotProjected | NotLogged):
        return error(404, str(exc))
    return error(400, str(exc))


async def handle_external_error(request: Request, exc: Exception) -> Response:
    return error(503, str(exc))


async def handle_data_error(request: Request, exc: Exception) -> Response:
    """A value the database cannot take (a NUL byte in a session id of the path, a
    number out of range): the request's fault, said as such, not a 500."""
    return error(400, f"A value in the request cannot be looked up: {exc}")


EXCEPTION_HANDLERS = {
    ContractError: handle_contract_error,
    ExternalError: handle_external_error,
    psycopg.DataError: handle_data_error,
}
