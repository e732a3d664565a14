"""Batch input at the front door: items from a file (lines or JSON lines), bad lines and
bad settings refused naming what is wrong; item ids fixed by the batch id and place.
Stage limits: declared by a pipeline team, checked naming the field, kept by the
submitter (in flight per stage, starts per minute on an injected clock)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from pydantic import ValidationError

from agents.definitions import AgentDefinition, definition_hash
from streams.batch import Batch, Stage, item_session_id, stages_of
from streams.topics import topic_names
from turnlog.cli.batch import read_items


def test_items_are_lines_or_json_lines(tmp_path: Path) -> None:
    plain = tmp_path / "q.txt"
    plain.write_text("first\n\n  second \n", encoding="utf-8")
    assert read_items(plain) == ["first", "  second "]
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"text": "a"}\n{"text": "b", "id": 2}\n', encoding="utf-8")
    assert read_items(jsonl) == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"text": "a"}\nnot json\n', "bad.jsonl:2: not JSON"),
        ("bad.jsonl", '{"text": 3}\n', 'bad.jsonl:1: expected an object with "text"'),
        ("empty.txt", "\n\n", "has no items"),
    ],
)
def test_bad_batch_files_are_refused_naming_the_line(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(typer.BadParameter, match=message):
        read_items(path)


@pytest.mark.parametrize(
    ("batch_id", "concurrency", "message"),
    [("a/b", 4, "without '/'"), ("", 4, "non-empty"), ("ok", 0, "at least 1")],
)
def test_bad_batch_settings_are_refused(batch_id: str, concurrency: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Batch(
            bootstrap="127.0.0.1:9092",
            topics=topic_names(""),
            partitions=4,
            batch_id=batch_id,
            agent="a",
            items=["x"],
            concurrency=concurrency,
        )


def test_item_ids_are_fixed_by_batch_and_place() -> None:
    assert item_session_id("moons", 7) == "batch/moons/7"


# --------------------------------------------------------------------------- stage limits

TEAM: dict[str, object] = {"members": ["research", "edit"], "mode": "sequential"}


def _pipeline(**team: object) -> AgentDefinition:
    return AgentDefinition.model_validate(
        {"name": "pipe", "model": "scripted-small", "system_prompt": "p", "team": TEAM | team}
    )


def test_stage_limits_come_from_the_team_and_keep_old_definition_hashes() -> None:
    plain = _pipeline()
    # The hash this definition had before teams could declare limits.
    assert definition_hash(plain) == (
        "d985dfdc3925fbbbae6832a81dc5f741890ca2d32eb0d6c6e9eadf3de1583cb1"
    )
    assert stages_of(plain) == ()
    limited = _pipeline(limits={"edit": {"max_concurrency": 2, "max_per_minute": 30}})
    assert definition_hash(limited) != definition_hash(plain)
    assert stages_of(limited) == (Stage("research"), Stage("edit", 2, 30))


@pytest.mark.parametrize(
    ("team", "message"),
    [
        ({"limits": {"review": {"max_concurrency": 1}}}, "limits: review is not a member"),
        ({"mode": "all", "limits": {"edit": {"max_concurrency": 1}}}, "mode sequential"),
        ({"limits": {"edit": {"max_concurrency": 0}}}, "max_concurrency"),
        ({"limits": {"edit": {"per_hour": 3}}}, "per_hour"),
    ],
)
def test_bad_stage_limits_are_refused_naming_the_field(
    team: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _pipeline(**team)


def test_a_stage_starts_no_more_than_its_limits_allow() -> None:
    now = [1000.0]
    batch = Batch(
        bootstrap="127.0.0.1:9092",
        topics=topic_names(""),
        partitions=4,
        batch_id="b",
        agent="pipe",
        items=["x"] * 10,
        concurrency=8,
        stages=[Stage("research", max_concurrency=3), Stage("edit", max_per_minute=2)],
        clock=lambda: now[0],
    )
    item = batch.items[item_session_id("b", 1)]
    assert [r.session_id for r in item.runs] == ["batch/b/1/1of2", "batch/b/1/2of2"]
    # Stage 1: three in flight at most; one ending makes room for one more.
    for n in range(1, 4):
        assert batch._room(1)
        batch._set(
            batch.items[item_session_id("b", n)],
            batch.items[item_session_id("b", n)].runs[0],
            "sent",
        )
    assert not batch._room(1)
    batch._set(item, item.runs[0], "completed")
    assert batch._room(1) and list(batch._ready[2]) == [item]
    # Stage 2: two starts in any 60 s, however many are in flight.
    batch._note_sent(2, now[0] - 59)
    batch._note_sent(2, now[0] - 10)
    assert not batch._room(2)
    now[0] += 1.5  # the first start leaves the window
    assert batch._room(2)


def test_the_cli_takes_stage_limits_from_the_agent_file(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from turnlog.cli.batch import _stages

    agents = tmp_path / "agents.toml"
    agents.write_text(
        "[agents.a]\nmodel = 'scripted-small'\nsystem_prompt = 'a'\n"
        "[agents.b]\nmodel = 'scripted-small'\nsystem_prompt = 'b'\n"
        "[agents.pipe]\nmodel = 'scripted-small'\nsystem_prompt = 'p'\n"
        "[agents.pipe.team]\nmembers = ['a', 'b']\nmode = 'sequential'\n"
        "[agents.pipe.team.limits.b]\nmax_concurrency = 3\n",
        encoding="utf-8",
    )
    settings = SimpleNamespace(agents=agents)
    assert _stages(settings, "pipe") == (Stage("a"), Stage("b", 3))
    assert _stages(settings, "a") == ()  # not a pipeline: run as it is
    assert _stages(settings, "elsewhere") == ()  # an agent the workers know from elsewhere
    assert _stages(SimpleNamespace(agents=tmp_path / "none.toml"), "pipe") == ()
    agents.write_text("[agents.pipe]\nmodel = 3\n", encoding="utf-8")
    with pytest.raises(typer.BadParameter, match="TURNLOG_AGENTS"):
        _stages(settings, "pipe")


def test_a_restart_counts_what_was_sent_and_when_from_the_requests_topic() -> None:
    """What a restarted submitter reads from the requests topic (streams.batch recount):
    a stage request on the topic is in flight, and counts in the per-minute window at
    its record's time; another id for the session (not the batch's) does not count."""
    import dataclasses

    from aiokafka import ConsumerRecord

    from schemas.codec import encode_request

    now = 5000.0

    def batch() -> Batch:
        return Batch(
            bootstrap="127.0.0.1:9092",
            topics=topic_names(""),
            partitions=4,
            batch_id="b",
            agent="pipe",
            items=["x", "y"],
            stages=[Stage("research"), Stage("edit", max_concurrency=1, max_per_minute=1)],
            clock=lambda: now,
        )

    def record(b: Batch, n: int, k: int, at: float, suffix: str = ":item") -> ConsumerRecord:
        item = b.items[item_session_id("b", n)]
        request = b._request(item, item.runs[k - 1])
        request = dataclasses.replace(request, request_id=item.runs[k - 1].session_id + suffix)
        value = encode_request(request)
        key = item.runs[k - 1].session_id.encode()
        return ConsumerRecord("r", 0, 0, int(at * 1000), 0, key, value, None, 0, 0, [])

    b = batch()
    b._recount(record(b, 1, 2, now - 30))
    run = b.items[item_session_id("b", 1)].runs[1]
    assert run.status == "sent" and b._in_flight[2] == 1 and not b._room(2)
    b._set(b.items[item_session_id("b", 1)], run, "completed")
    assert not b._room(2)  # no one in flight, but one start in the last minute

    b = batch()
    b._recount(record(b, 1, 2, now - 61))  # started more than a minute ago
    b._set(b.items[item_session_id("b", 1)], b.items[item_session_id("b", 1)].runs[1], "completed")
    assert b._room(2)

    b = batch()
    b._recount(record(b, 2, 1, now - 1, suffix=":other"))
    assert b.items[item_session_id("b", 2)].runs[0].status == "pending"
