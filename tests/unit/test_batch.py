"""Batch input at the front door: items from a file (lines or JSON lines), bad lines and
bad settings refused naming what is wrong; item ids fixed by the batch id and place."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from streams.batch import Batch, item_session_id
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
