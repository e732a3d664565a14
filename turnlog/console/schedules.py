"""Schedules through the HTTP API: create (or replace), pause, resume, remove.

Rule: each call writes ONE record to `turnlog.schedules` through `turnlog.Client` — the
record `turnlog schedule add|pause|resume|remove` and the Python client write — and
answers once the broker has it. The body of a create is a schedule as an agent file's
`[[schedules]]` writes it (`id`, `agent`, `message`, one of `cron`/`every`/`at`, ...),
checked by the same code (streams.scheduler_plan), so a bad field is a 400 naming it.
Who paused, resumed or removed a schedule is the authenticated caller, never a field of
the body; auth, CSRF and the body limit are the console's middleware (console.security),
as for every mutating route. Reads stay at GET /api/schedules (api.list_schedules).

Errors: 400 (the body or a field is wrong, named), 404 (no such schedule in the
projection), 503 (Kafka did not answer).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agents.errors import ContractError
from turnlog.console.api import dumps, error
from turnlog.console.backend import Backend
from turnlog.console.security import identity

__all__ = ["schedule_routes"]

log = structlog.get_logger("turnlog.console")


def _json(content: Any, status: int = 200) -> Response:
    return Response(dumps(content), status_code=status, media_type="application/json")


def _backend(request: Request) -> Backend:
    b: Backend = request.app.state.backend
    return b


def _logged(request: Request, action: str, schedule_id: str) -> str:
    who = identity(request.scope)
    # One line per schedule record written: who asked for what (never the message).
    log.info(
        "console.schedule",
        action=action,
        schedule_id=schedule_id,
        by=who,
        auth=request.scope.get("turnlog.auth"),
    )
    return who


async def create_schedule(request: Request) -> Response:
    """
    ---
    summary: Create or replace a schedule (one of cron, every, at); written as the CLI's `turnlog schedule add`
    requestBody:
      content: {application/json: {schema: {type: object, required: [id, agent, message], properties: {id: {type: string}, agent: {type: string}, message: {type: string}, cron: {type: string}, timezone: {type: string}, every: {type: string, description: "30s, 15m, 2h, 1d or seconds"}, start_at: {type: string, format: date-time}, at: {type: string, format: date-time}, session: {type: string, description: "new (a session per run) or a session id"}, overlap: {type: string, enum: [skip, queue, cancel]}, catch_up: {type: string, enum: [once, all, none]}, catch_up_limit: {type: integer}, paused: {type: boolean}}}}}
    responses:
      201: {description: "{schedule_id, definition, next_slot}"}
      400: {description: a field is wrong (named)}
    """
    from streams.scheduler_plan import ScheduleState, fold, next_slot, schedule_from_mapping

    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise ContractError(f"Invalid request body: not JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ContractError("Invalid request body: a JSON object (a schedule) is expected.")
    sid, _ = schedule_from_mapping(data, source="api")  # every field checked, named
    fields = {k: v for k, v in data.items() if k != "id" and v is not None}
    record = await _backend(request).client.add_schedule(sid, **fields, source="api")
    _logged(request, "add", sid)
    upcoming: datetime | None = next_slot(fold(ScheduleState(sid), record))
    return _json(
        {
            "schedule_id": sid,
            "definition": dataclasses.asdict(record.payload),
            "next_slot": upcoming,
        },
        201,
    )


async def _known(request: Request, schedule_id: str) -> bool:
    """Whether the projection knows the id (a schedule added a moment ago is there once
    a scheduler projected it)."""
    rows = await _backend(request).reads.rows(
        "SELECT status FROM schedules WHERE schedule_id = %s", (schedule_id,)
    )
    return bool(rows)


async def _change(request: Request, kind: str) -> Response:
    sid = request.path_params["schedule_id"]
    if not await _known(request, sid):
        return error(
            404,
            f"There is no schedule {sid!r} (GET /api/schedules lists them; one added a "
            "moment ago shows there once a scheduler has projected it).",
        )
    who = _logged(request, kind, sid)
    method = getattr(_backend(request).client, f"{kind}_schedule")
    await method(sid, by=who)
    done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[kind]
    return _json({"schedule_id": sid, "status": done, "by": who})


async def pause_schedule(request: Request) -> Response:
    """
    ---
    summary: Pause a schedule (its slots meanwhile are not caught up); by = the caller
    responses:
      200: {description: "{schedule_id, status: paused, by}"}
      404: {description: no such schedule}
    """
    return await _change(request, "pause")


async def resume_schedule(request: Request) -> Response:
    """
    ---
    summary: Resume a paused schedule, from its first slot after now; by = the caller
    responses:
      200: {description: "{schedule_id, status: resumed, by}"}
      404: {description: no such schedule}
    """
    return await _change(request, "resume")


async def remove_schedule(request: Request) -> Response:
    """
    ---
    summary: Remove a schedule (its runs stay in the projections); by = the caller
    responses:
      200: {description: "{schedule_id, status: removed, by}"}
      404: {description: no such schedule}
    """
    return await _change(request, "remove")


def schedule_routes() -> list[Route]:
    return [
        Route("/api/schedules", create_schedule, methods=["POST"]),
        Route("/api/schedules/{schedule_id}/pause", pause_schedule, methods=["POST"]),
        Route("/api/schedules/{schedule_id}/resume", resume_schedule, methods=["POST"]),
        Route("/api/schedules/{schedule_id}", remove_schedule, methods=["DELETE"]),
    ]
