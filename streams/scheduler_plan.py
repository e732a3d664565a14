"""Schedules as data: validation, slots, catch-up and overlap decisions.

Rule: nothing here does IO or reads a clock. Every function takes the time it reasons
about (`now`) and the state folded from `turnlog.schedules`; the scheduler worker
(streams.scheduler) owns the clock, Kafka and Postgres. Cron parsing and next-slot
computation are cronsim's (Debian cron's DST rules: a local time that a spring-forward
skips fires once, at the gap's end; one that a fall-back repeats fires once, the first
time; a pattern that names every hour, like `*/30 * * * *`, fires in both repeated
hours, since those are distinct instants). Slots are instants, kept in UTC.

Errors: `ScheduleError` (a ContractError) names the schedule and the field:
`schedule 'nightly': cron: Bad minute ('61 2 * * *')`.

A slot's request is deterministic: request id `schedule:<id>:<slot>` and, for a new
session per run, session id `sched-<id>-<slot>`, so the same slot can never start two
runs (the session worker rejects a duplicate request id too).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from agents.errors import ContractError, InvalidRecord
from agents.events import (
    ScheduleDefined,
    ScheduleFired,
    SchedulePaused,
    ScheduleRecord,
    ScheduleRemoved,
    ScheduleResumed,
)

__all__ = [
    "DEFAULT_GRACE",
    "FIRED_SUFFIX",
    "STATE_SUFFIX",
    "OverlapDecision",
    "ScheduleError",
    "ScheduleState",
    "SlotDecision",
    "due_slots",
    "file_schedules",
    "fold",
    "key_for",
    "next_slot",
    "parse_duration",
    "request_id_for",
    "resolve_overlap",
    "run_session_id",
    "schedule_from_mapping",
    "slot_text",
]

SCHEDULE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# A slot the scheduler sees within this long after its time is on time; later, it was
# missed (no scheduler ran) and the catch-up policy decides.
DEFAULT_GRACE = timedelta(seconds=60)
# Slots counted at most when a long downtime is enumerated (a per-second cron over a
# month); the count beyond is reported as this many.
MAX_ENUMERATED = 100_000
STATE_SUFFIX = "#state"
FIRED_SUFFIX = "#fired"
_DURATION = re.compile(r"^\s*(\d+)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


class ScheduleError(ContractError):
    """A schedule definition is invalid (the message names the schedule and field)."""


# --------------------------------------------------------------------------- ids


def slot_text(slot: datetime) -> str:
    """The slot as it appears in ids: UTC, compact, microseconds only when present."""
    slot = slot.astimezone(UTC)
    text = slot.strftime("%Y%m%dT%H%M%S")
    if slot.microsecond:
        text += f".{slot.microsecond:06d}"
    return text + "Z"


def request_id_for(schedule_id: str, slot: datetime) -> str:
    return f"schedule:{schedule_id}:{slot_text(slot)}"


def run_session_id(schedule_id: str, slot: datetime) -> str:
    return f"sched-{schedule_id}-{slot_text(slot)}"


def key_for(schedule_id: str, record: ScheduleRecord) -> str:
    """The compaction key of a record: definition, pause state and progress apart."""
    if isinstance(record.payload, (SchedulePaused, ScheduleResumed)):
        return schedule_id + STATE_SUFFIX
    if isinstance(record.payload, ScheduleFired):
        return schedule_id + FIRED_SUFFIX
    return schedule_id


# --------------------------------------------------------------------------- validation


def parse_duration(value: Any, *, where: str) -> int:
    """Seconds of `15m`, `2h`, `90s`, `1d`, `1w` or a plain integer of seconds."""
    if isinstance(value, bool):
        raise ScheduleError(f"{where}: expected a duration like 15m, 2h or 90 (seconds)")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ScheduleError(
                f"{where}: {value!r} is not a duration (like 30s, 15m, 2h, 1d or 90)"
            )
        seconds = int(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise ScheduleError(f"{where}: must be > 0 seconds, got {value!r}")
    return seconds


def _zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"{where}: unknown time zone {name!r} (an IANA name like Europe/Berlin or UTC)"
        ) from None


def check_cron(expr: str, timezone: str, where: str) -> None:
    """ScheduleError naming the cron field cronsim refused (`cron: Bad minute`)."""
    zone = _zone(timezone, f"{where}: timezone")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=zone))
    except CronSimError as exc:
        raise ScheduleError(
            f"{where}: cron: {exc} in {expr!r} (fields: minute hour day-of-month month day-of-week)"
        ) from None


def _parse_time(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise ScheduleError(
                f"{where}: {value!r} is not an ISO-8601 time (like 2026-12-24T09:00:00+01:00)"
            ) from None
    if parsed.tzinfo is None:
        raise ScheduleError(f"{where}: {value!r} needs a UTC offset (like +01:00 or Z)")
    return parsed.astimezone(UTC)


_FIELDS = frozenset(
    {
        "id",
        "agent",
        "message",
        "cron",
        "timezone",
        "every",
        "start_at",
        "at",
        "session",
        "overlap",
        "catch_up",
        "catch_up_limit",
        "paused",
    }
)


def schedule_from_mapping(
    data: Mapping[str, Any], *, source: str = "api", schedule_id: str | None = None
) -> tuple[str, ScheduleDefined]:
    """A schedule as written in an agent file's `[[schedules]]` or given to the CLI:
    (schedule id, ScheduleDefined). `session` is "new" (default) or a session id."""
    sid = schedule_id or data.get("id")
    if not isinstance(sid, str) or not SCHEDULE_ID_PATTERN.match(sid):
        raise ScheduleError(
            f"schedule {sid!r}: id: must match {SCHEDULE_ID_PATTERN.pattern} "
            "(letters, digits, _ . -)"
        )
    where = f"schedule {sid!r}"
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ScheduleError(
            f"{where}: {', '.join(unknown)}: not a schedule field "
            f"(known: {', '.join(sorted(_FIELDS))})"
        )
    for name in ("agent", "message"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ScheduleError(f"{where}: {name}: is required (a non-empty string)")
    kinds = [k for k in ("cron", "every", "at") if data.get(k) is not None]
    if len(kinds) != 1:
        raise ScheduleError(
            f"{where}: cron, every, at: exactly one is required, got {', '.join(kinds) or 'none'}"
        )
    timezone = str(data.get("timezone") or "UTC")
    _zone(timezone, f"{where}: timezone")
    cron = data.get("cron")
    if cron is not None:
        if not isinstance(cron, str):
            raise ScheduleError(f"{where}: cron: must be a string like '0 2 * * *'")
        check_cron(cron, timezone, where)
    every = data.get("every")
    every_s = parse_duration(every, where=f"{where}: every") if every is not None else None
    at = _parse_time(data["at"], f"{where}: at") if data.get("at") is not None else None
    start_at = (
        _parse_time(data["start_at"], f"{where}: start_at")
        if data.get("start_at") is not None
        else None
    )
    if start_at is not None and every_s is None:
        raise ScheduleError(f"{where}: start_at: only an interval (every) has a start")
    session = data.get("session", "new")
    if not isinstance(session, str) or not session:
        raise ScheduleError(f"{where}: session: 'new' or a session id")
    limit = data.get("catch_up_limit", 10)
    paused = data.get("paused", False)
    if not isinstance(paused, bool):
        raise ScheduleError(f"{where}: paused: must be true or false")
    try:
        defined = ScheduleDefined(
            agent=data["agent"],
            message=data["message"],
            cron=cron,
            timezone=timezone,
            every_s=every_s,
            start_at=start_at,
            at=at,
            session_id=None if session == "new" else session,
            overlap=str(data.get("overlap", "skip")),
            catch_up=str(data.get("catch_up", "once")),
            catch_up_limit=limit if isinstance(limit, int) and not isinstance(limit, bool) else -1,
            paused=paused,
            source=source,
        )
    except InvalidRecord as exc:
        # "ScheduleDefined: overlap must be one of ..." -> name the field as written.
        message = str(exc).removeprefix("ScheduleDefined: ")
        raise ScheduleError(f"{where}: {message.split(' ', 1)[0]}: {message}") from None
    return sid, defined


def file_schedules(data: Mapping[str, Any], source: str) -> dict[str, ScheduleDefined]:
    """The `[[schedules]]` of a parsed agent file, validated (each agent must be one the
    file defines), by schedule id."""
    raw = data.get("schedules") or []
    if not isinstance(raw, list):
        raise ScheduleError(f"{source}: schedules: must be an array of tables ([[schedules]])")
    agents = data.get("agents") or {}
    out: dict[str, ScheduleDefined] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ScheduleError(f"{source}: schedules.{i}: must be a table")
        try:
            sid, spec = schedule_from_mapping(item, source=f"file:{source}")
        except ScheduleError as exc:
            raise ScheduleError(f"{source}: {exc}") from None
        if sid in out:
            raise ScheduleError(f"{source}: schedule {sid!r}: id: defined twice")
        if isinstance(agents, Mapping) and spec.agent not in agents:
            raise ScheduleError(
                f"{source}: schedule {sid!r}: agent: {spec.agent!r} is not an agent of this "
                f"file (agents: {', '.join(sorted(agents)) or 'none'})"
            )
        out[sid] = spec
    return out


# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """One schedule as folded from its records (in log order)."""

    schedule_id: str
    spec: ScheduleDefined | None = None
    defined_at: datetime | None = None
    paused: bool = False
    # Slots at or before this are never fired (the definition, or the last resume).
    not_before: datetime | None = None
    removed: bool = False
    last_slot: datetime | None = None
    last_session_id: str | None = None

    @property
    def active(self) -> bool:
        return self.spec is not None and not self.paused and not self.removed


def fold(state: ScheduleState | None, record: ScheduleRecord) -> ScheduleState:
    """The state after `record` (records of one schedule, in partition order)."""
    s = state or ScheduleState(record.schedule_id)
    p = record.payload
    at = record.occurred_at
    if isinstance(p, ScheduleDefined):
        return replace(s, spec=p, defined_at=at, paused=p.paused, not_before=at, removed=False)
    if isinstance(p, SchedulePaused):
        return replace(s, paused=True)
    if isinstance(p, ScheduleResumed):
        return replace(s, paused=False, not_before=at) if s.paused else s
    if isinstance(p, ScheduleRemoved):
        return replace(s, spec=None, removed=True)
    assert isinstance(p, ScheduleFired)
    session = p.session_id if p.fired else p.previous_session_id
    return replace(
        s,
        last_slot=p.slot if s.last_slot is None else max(s.last_slot, p.slot),
        last_session_id=session or s.last_session_id,
    )


# --------------------------------------------------------------------------- slots


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _after(state: ScheduleState) -> datetime:
    """Slots strictly after this instant are candidates."""
    spec = state.spec
    assert spec is not None and state.defined_at is not None
    bounds = [t for t in (state.last_slot,) if t is not None]
    if spec.at is None or state.not_before != state.defined_at:
        # A one-shot time given in the past fires at once (as a late slot); every other
        # kind starts after its definition (or the last resume).
        bounds += [t for t in (state.not_before,) if t is not None]
    return max(bounds) if bounds else _EPOCH


def _slots(spec: ScheduleDefined, after: datetime, anchor: datetime) -> Iterator[datetime]:
    """Slots of `spec` strictly after `after`, in order (UTC)."""
    if spec.at is not None:
        if spec.at > after:
            yield spec.at
        return
    if spec.every_s is not None:
        step = timedelta(seconds=spec.every_s)
        base = spec.start_at or anchor + step
        if after < base:
            k = 0
        else:
            k = int((after - base) // step) + 1
        while True:
            yield base + k * step
            k += 1
    assert spec.cron is not None
    zone = ZoneInfo(spec.timezone)
    for slot in CronSim(spec.cron, after.astimezone(zone)):
        yield slot.astimezone(UTC)


def next_slot(state: ScheduleState, after: datetime | None = None) -> datetime | None:
    """The first slot strictly after max(`after`, the state's bound); None when the
    schedule is inactive or has no more slots."""
    if not state.active:
        return None
    assert state.spec is not None and state.defined_at is not None
    bound = _after(state)
    start = max(bound, after) if after is not None else bound
    return next(_slots(state.spec, start, state.defined_at), None)


@dataclass(frozen=True, slots=True)
class SlotDecision:
    """What to do with one due slot: fire it (or record it skipped, `fire` False)."""

    slot: datetime
    catch_up: str  # on_time | once | all | none
    missed: int
    fire: bool


def due_slots(
    state: ScheduleState, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> list[SlotDecision]:
    """The slots due at `now` and what the catch-up policy makes of them. One on-time
    slot fires as such; a backlog (slots older than `grace`: no scheduler ran) fires
    by `catch_up`: `once` the latest, `all` the latest `catch_up_limit` in order,
    `none` nothing (recorded as one skip, the latest slot, with `missed`)."""
    if not state.active:
        return []
    spec = state.spec
    assert spec is not None and state.defined_at is not None
    after = _after(state)
    limit = spec.catch_up_limit if spec.catch_up == "all" else 1
    kept: deque[datetime] = deque(maxlen=limit)
    count = 0
    for slot in _slots(spec, after, state.defined_at):
        if slot > now or count >= MAX_ENUMERATED:
            break
        kept.append(slot)
        count += 1
    if not kept:
        return []
    latest = kept[-1]
    if count == 1 and now - latest <= grace:
        return [SlotDecision(latest, "on_time", 0, True)]
    if spec.catch_up == "none":
        if now - latest <= grace:  # the backlog is dropped, the current slot fires
            return [SlotDecision(latest, "none", count - 1, True)]
        return [SlotDecision(latest, "none", count - 1, False)]
    if spec.catch_up == "once":
        return [SlotDecision(latest, "once", count - 1, True)]
    dropped = count - len(kept)
    return [
        SlotDecision(slot, "all", dropped if i == 0 else 0, True) for i, slot in enumerate(kept)
    ]


# --------------------------------------------------------------------------- overlap


@dataclass(frozen=True, slots=True)
class OverlapDecision:
    """`wait`: hold the slot (checked again shortly); else fire or record a skip."""

    fire: bool
    overlap: str  # none | skipped | queued | cancelled
    cancel_previous: bool = False
    wait: bool = False


def resolve_overlap(spec: ScheduleDefined, previous_running: bool) -> OverlapDecision:
    """What a due slot does while the previous run may still run.

    skip: not fired (recorded). cancel: the previous run's turn is cancelled and the
    slot fires, both in one transaction. queue: in a fixed session the message goes to
    the session's own queue behind the running turn; with a new session per run the
    slot waits until the previous run ends (if that takes longer than the grace, it
    has become late and the catch-up policy decides it; a newer slot supersedes it)."""
    if not previous_running:
        return OverlapDecision(True, "none")
    if spec.overlap == "skip":
        return OverlapDecision(False, "skipped")
    if spec.overlap == "cancel":
        return OverlapDecision(True, "cancelled", cancel_previous=True)
    if spec.session_id is not None:
        return OverlapDecision(True, "queued")
    return OverlapDecision(False, "queued", wait=True)
