"""Schedules as data (streams.scheduler_plan): validation errors naming the field, slots
across DST transitions, catch-up after downtime, overlap decisions, the fold."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agents.events import (
    ScheduleDefined,
    ScheduleFired,
    SchedulePaused,
    ScheduleRecord,
    ScheduleRemoved,
    ScheduleResumed,
)
from schemas.codec import decode_schedule_record, encode_schedule_record
from streams.scheduler_plan import (
    ScheduleError,
    ScheduleState,
    due_slots,
    file_schedules,
    fold,
    key_for,
    next_slot,
    parse_duration,
    request_id_for,
    resolve_overlap,
    run_session_id,
    schedule_from_mapping,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def state(spec: ScheduleDefined, defined_at: datetime = T0) -> ScheduleState:
    return fold(None, ScheduleRecord("s1", defined_at, spec))


def slots(st: ScheduleState, count: int) -> list[datetime]:
    """The next `count` slots, each fired on time."""
    out = []
    for _ in range(count):
        slot = next_slot(st)
        assert slot is not None
        out.append(slot)
        st = fold(st, ScheduleRecord("s1", slot, ScheduleFired(slot=slot, fired=True)))
    return out


def cron(expr: str, tz: str = "UTC", **kw: object) -> ScheduleDefined:
    return ScheduleDefined(agent="a", message="m", cron=expr, timezone=tz, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("expr", "field"),
    [
        ("61 2 * * *", "Bad minute"),
        ("0 25 * * *", "Bad hour"),
        ("0 0 32 * *", "Bad day-of-month"),
        ("0 0 * 13 *", "Bad month"),
        ("0 0 * * 8", "Bad day-of-week"),
        ("0 0 * *", "Wrong number of fields"),
    ],
)
def test_an_invalid_cron_expression_is_refused_naming_the_field(expr: str, field: str) -> None:
    with pytest.raises(ScheduleError) as err:
        schedule_from_mapping({"id": "nightly", "agent": "a", "message": "m", "cron": expr})
    message = str(err.value)
    assert message.startswith("schedule 'nightly': cron: ")
    assert field in message and repr(expr) in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "timezone: unknown time zone"),
        ({"cron": "0 2 * * *", "every": "1h"}, "cron, every, at: exactly one"),
        ({}, "cron, every, at: exactly one is required, got none"),
        ({"every": "soon"}, "every: 'soon' is not a duration"),
        ({"every": 0}, "every: must be > 0"),
        ({"at": "2026-12-24T09:00:00"}, "at: '2026-12-24T09:00:00' needs a UTC offset"),
        ({"every": "1h", "overlap": "sometimes"}, "overlap: overlap must be one of"),
        ({"every": "1h", "catch_up": "maybe"}, "catch_up: catch_up must be one of"),
        ({"every": "1h", "colour": "red"}, "colour: not a schedule field"),
        ({"cron": "0 2 * * *", "start_at": "2026-01-01T00:00:00Z"}, "start_at: only an interval"),
    ],
)
def test_invalid_schedules_name_the_field(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ScheduleError, match="^schedule 'x': ") as err:
        schedule_from_mapping({"id": "x", "agent": "a", "message": "m", **data})
    assert expected in str(err.value)


def test_ids_agent_and_message_are_required() -> None:
    with pytest.raises(ScheduleError, match="id: must match"):
        schedule_from_mapping({"id": "has space", "agent": "a", "message": "m", "every": 5})
    with pytest.raises(ScheduleError, match="'x': agent: is required"):
        schedule_from_mapping({"id": "x", "message": "m", "every": 5})


def test_durations() -> None:
    assert parse_duration("90", where="w") == 90
    assert parse_duration("15m", where="w") == 900
    assert parse_duration("2h", where="w") == 7200
    assert parse_duration("1d", where="w") == 86400
    assert parse_duration(30, where="w") == 30


def test_agent_file_schedules_must_name_an_agent_of_the_file() -> None:
    data = {
        "agents": {"assistant": {}},
        "schedules": [{"id": "n", "agent": "assistant", "message": "m", "cron": "0 2 * * *"}],
    }
    specs = file_schedules(data, "agents.toml")
    assert specs["n"].source == "file:agents.toml" and specs["n"].cron == "0 2 * * *"
    data["schedules"][0]["agent"] = "ghost"  # type: ignore[index]
    with pytest.raises(ScheduleError, match="agents.toml: schedule 'n': agent: 'ghost'"):
        file_schedules(data, "agents.toml")


# ------------------------------------------------------------------ DST


def test_a_daily_cron_in_a_skipped_local_hour_fires_once_at_the_gap() -> None:
    # Europe/Berlin springs forward on 2026-03-29 at 02:00 -> 03:00: 02:30 does not exist.
    st = state(cron("30 2 * * *", "Europe/Berlin"), datetime(2026, 3, 27, 12, tzinfo=UTC))
    got = [s.astimezone(BERLIN) for s in slots(st, 3)]
    assert [g.isoformat() for g in got] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # once, at the end of the gap
        "2026-03-30T02:30:00+02:00",
    ]


def test_a_daily_cron_in_a_repeated_local_hour_fires_once() -> None:
    # Berlin falls back on 2026-10-25 at 03:00 -> 02:00: 02:30 happens twice.
    st = state(cron("30 2 * * *", "Europe/Berlin"), datetime(2026, 10, 23, 12, tzinfo=UTC))
    got = slots(st, 3)
    assert [g.isoformat() for g in got] == [
        "2026-10-24T00:30:00+00:00",
        "2026-10-25T00:30:00+00:00",  # the first 02:30 (CEST), not the second
        "2026-10-26T01:30:00+00:00",  # 02:30 CET
    ]
    assert got[2] - got[1] == timedelta(hours=25)


def test_an_every_30_minutes_cron_fires_in_both_repeated_hours() -> None:
    st = state(cron("*/30 * * * *", "America/New_York"), datetime(2026, 11, 1, 4, 40, tzinfo=UTC))
    got = slots(st, 5)
    # 01:00 and 01:30 EDT, then 01:00 and 01:30 EST: distinct instants, 30 minutes apart.
    assert [g.astimezone(NEW_YORK).strftime("%H:%M%z") for g in got] == [
        "01:00-0400",
        "01:30-0400",
        "01:00-0500",
        "01:30-0500",
        "02:00-0500",
    ]
    assert all(b - a == timedelta(minutes=30) for a, b in itertools.pairwise(got))


def test_an_interval_ignores_dst() -> None:
    spec = ScheduleDefined(agent="a", message="m", every_s=3600, timezone="Europe/Berlin")
    st = state(spec, datetime(2026, 3, 29, 0, 15, tzinfo=UTC))
    got = slots(st, 3)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(got))
    assert got[0] == datetime(2026, 3, 29, 1, 15, tzinfo=UTC)


# ------------------------------------------------------------------ catch-up


def minutely(catch_up: str, limit: int = 10) -> ScheduleState:
    return state(cron("* * * * *", catch_up=catch_up, catch_up_limit=limit))


def test_an_on_time_slot_fires_once_and_nothing_before_it() -> None:
    st = minutely("once")
    assert due_slots(st, T0 + timedelta(seconds=59)) == []
    (d,) = due_slots(st, T0 + timedelta(minutes=1, seconds=2))
    assert (d.slot, d.catch_up, d.missed, d.fire) == (T0 + timedelta(minutes=1), "on_time", 0, True)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # 10 slots missed (minutes 1..10), now = minute 10 + 30 s: the latest is on time.
        ("once", [(10, "once", 9, True)]),
        ("all", [(m, "all", 7 if m == 8 else 0, True) for m in (8, 9, 10)]),
        ("none", [(10, "none", 9, True)]),
    ],
)
def test_catch_up_after_downtime(policy: str, expected: list[tuple[int, str, int, bool]]) -> None:
    st = minutely(policy, limit=3)
    got = due_slots(st, T0 + timedelta(minutes=10, seconds=30))
    assert [((d.slot - T0) // timedelta(minutes=1), d.catch_up, d.missed, d.fire) for d in got] == (
        expected
    )


def test_catch_up_none_skips_a_backlog_whose_latest_slot_is_late_too() -> None:
    st = minutely("none")
    (d,) = due_slots(st, T0 + timedelta(minutes=10, seconds=30), grace=timedelta(seconds=20))
    assert (d.fire, d.catch_up, d.missed) == (False, "none", 9)


def test_a_fired_slot_is_never_due_again() -> None:
    st = minutely("all")
    now = T0 + timedelta(minutes=3, seconds=1)
    for d in due_slots(st, now):
        st = fold(st, ScheduleRecord("s1", now, ScheduleFired(slot=d.slot, fired=True)))
    assert due_slots(st, now) == []
    assert next_slot(st) == T0 + timedelta(minutes=4)


def test_a_one_shot_fires_once_even_when_given_in_the_past() -> None:
    spec = ScheduleDefined(agent="a", message="m", at=T0 - timedelta(minutes=5))
    st = state(spec)
    (d,) = due_slots(st, T0)
    assert d.fire and d.slot == T0 - timedelta(minutes=5)
    st = fold(st, ScheduleRecord("s1", T0, ScheduleFired(slot=d.slot, fired=True)))
    assert due_slots(st, T0 + timedelta(days=1)) == [] and next_slot(st) is None


# ------------------------------------------------------------------ pause, remove


def test_paused_slots_are_not_fired_nor_caught_up_after_resume() -> None:
    st = minutely("all")
    st = fold(st, ScheduleRecord("s1", T0 + timedelta(seconds=30), SchedulePaused("me")))
    assert due_slots(st, T0 + timedelta(minutes=5)) == [] and next_slot(st) is None
    resumed = T0 + timedelta(minutes=5, seconds=10)
    st = fold(st, ScheduleRecord("s1", resumed, ScheduleResumed("me")))
    assert due_slots(st, resumed) == []
    assert next_slot(st) == T0 + timedelta(minutes=6)


def test_a_removed_schedule_has_no_slots() -> None:
    st = fold(minutely("once"), ScheduleRecord("s1", T0, ScheduleRemoved()))
    assert st.removed and next_slot(st) is None and due_slots(st, T0 + timedelta(hours=1)) == []


# ------------------------------------------------------------------ overlap


@pytest.mark.parametrize(
    ("policy", "fixed", "running", "expected"),
    [
        ("skip", None, False, (True, "none", False, False)),
        ("skip", None, True, (False, "skipped", False, False)),
        ("cancel", None, True, (True, "cancelled", True, False)),
        ("queue", "s-fixed", True, (True, "queued", False, False)),
        ("queue", None, True, (False, "queued", False, True)),
    ],
)
def test_overlap_decisions(
    policy: str, fixed: str | None, running: bool, expected: tuple[bool, str, bool, bool]
) -> None:
    spec = cron("* * * * *", overlap=policy, session_id=fixed)
    d = resolve_overlap(spec, running)
    assert (d.fire, d.overlap, d.cancel_previous, d.wait) == expected


# ------------------------------------------------------------------ ids and records


def test_ids_are_deterministic_per_slot() -> None:
    slot = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)
    assert request_id_for("nightly", slot) == "schedule:nightly:20261224T090000Z"
    assert run_session_id("nightly", slot) == "sched-nightly-20261224T090000Z"


def test_records_round_trip_and_keys_keep_each_aspect() -> None:
    spec = cron("0 2 * * *", "Europe/Berlin", overlap="cancel", catch_up="all")
    fired = ScheduleFired(slot=T0, fired=True, request_id="r", session_id="s", missed=2)
    for payload, key in [
        (spec, "n"),
        (SchedulePaused("me"), "n#state"),
        (ScheduleResumed(), "n#state"),
        (ScheduleRemoved(), "n"),
        (fired, "n#fired"),
    ]:
        record = ScheduleRecord("n", T0, payload)
        assert decode_schedule_record(encode_schedule_record(record)) == record
        assert key_for("n", record) == key


# ------------------------------------------------------------------ the agent file


def test_an_agent_file_with_schedules_loads_for_the_agents_and_for_the_scheduler(
    tmp_path: Path,
) -> None:
    from agents.agentfile import load_definitions
    from streams.scheduler_app import load_file_schedules

    path = tmp_path / "agents.toml"
    path.write_text(
        """
[agents.assistant]
model = "claude-haiku-4-5"
system_prompt = "You help."

[[schedules]]
id = "nightly-report"
agent = "assistant"
cron = "0 2 * * *"
timezone = "Europe/Berlin"
message = "Write the nightly report."
overlap = "cancel"

[[schedules]]
id = "heartbeat"
agent = "assistant"
every = "15m"
message = "Anything new?"
session = "s-heartbeat"
""",
        encoding="utf-8",
    )
    definitions, _ = load_definitions(path)
    assert [d.name for d in definitions] == ["assistant"]
    specs = load_file_schedules(path)
    assert specs["nightly-report"].overlap == "cancel"
    assert specs["nightly-report"].source == f"file:{path}"
    assert specs["heartbeat"].every_s == 900 and specs["heartbeat"].session_id == "s-heartbeat"

    path.write_text(
        path.read_text(encoding="utf-8").replace('cron = "0 2 * * *"', 'cron = "0 26 * * *"'),
        encoding="utf-8",
    )
    with pytest.raises(
        ScheduleError, match=r"agents.toml: schedule 'nightly-report': cron: Bad hour"
    ):
        load_file_schedules(path)
