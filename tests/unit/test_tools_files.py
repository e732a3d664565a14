"""`read_file` / `write_file`: confined to the sandbox, bounded in size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agents.tools import (
    FileLimits,
    ToolContext,
    ToolRefused,
    ToolResult,
    ToolSettings,
    builtin_registry,
)
from agents.tools._sandbox import open_parent, resolve

REGISTRY = builtin_registry()


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """(sandbox, outside): a sandbox directory and a secret file beside it."""
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET")
    return sandbox, outside


def ctx_for(sandbox: Path, **limits: int) -> ToolContext:
    return ToolContext("s", "c", ToolSettings(sandbox_dir=sandbox, files=FileLimits(**limits)))


async def read(sandbox: Path, path: str, **extra: object) -> ToolResult:
    args = json.dumps({"path": path, **extra})
    return await REGISTRY.execute("read_file", args, ctx_for(sandbox))


async def write(sandbox: Path, path: str, content: str, **limits: int) -> ToolResult:
    args = json.dumps({"path": path, "content": content})
    return await REGISTRY.execute("write_file", args, ctx_for(sandbox, **limits))


async def test_write_then_read_round_trips_and_creates_directories(
    world: tuple[Path, Path],
) -> None:
    sandbox, _ = world
    written = await write(sandbox, "notes/day 1/todo.txt", "héllo\nworld\n")
    assert written == ToolResult(
        True, "Wrote 13 bytes to notes/day 1/todo.txt.", written.latency_ms
    )
    assert (sandbox / "notes/day 1/todo.txt").read_text() == "héllo\nworld\n"
    assert (await read(sandbox, "notes/day 1/todo.txt")).content == "héllo\nworld\n"
    assert (await read(sandbox, "./notes/../notes/day 1/todo.txt")).content == "héllo\nworld\n"


async def test_write_replaces_the_file_and_leaves_no_temp_files(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    await write(sandbox, "a.txt", "first version, longer")
    await write(sandbox, "a.txt", "second")
    assert (sandbox / "a.txt").read_text() == "second"
    assert sorted(p.name for p in sandbox.iterdir()) == ["a.txt"]


async def test_absolute_path_inside_the_sandbox_is_accepted(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    (sandbox / "in.txt").write_text("inside")
    assert (await read(sandbox, str(sandbox / "in.txt"))).content == "inside"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside/secret.txt", "uses '..' to leave the sandbox directory"),
        ("a/../../outside/secret.txt", "uses '..' to leave the sandbox directory"),
        ("..", "uses '..' to leave the sandbox directory"),
        ("/etc/passwd", "is an absolute path outside the sandbox directory"),
        ("", "String should have at least 1 character"),
        ("   ", "The path is empty"),
        (".", "is the sandbox directory itself, not a file"),
        ("a\x00b", "contains a NUL byte"),
    ],
)
async def test_paths_leaving_the_sandbox_are_refused_for_read_and_write(
    world: tuple[Path, Path], path: str, message: str
) -> None:
    sandbox, outside = world
    for result in (await read(sandbox, path), await write(sandbox, path, "pwned")):
        assert not result.ok
        assert message in result.content
        assert "TOP SECRET" not in result.content
    assert (outside / "secret.txt").read_text() == "TOP SECRET"


async def test_absolute_path_to_the_secret_is_refused(world: tuple[Path, Path]) -> None:
    sandbox, outside = world
    result = await read(sandbox, str(outside / "secret.txt"))
    assert (result.ok, result.error_kind) == (False, "refused")
    assert result.content == (
        f"The path {str(outside / 'secret.txt')!r} is an absolute path outside the sandbox "
        "directory; give a path relative to the sandbox instead."
    )


async def test_symlink_escapes_are_refused(world: tuple[Path, Path]) -> None:
    sandbox, outside = world
    (sandbox / "link.txt").symlink_to(outside / "secret.txt")
    (sandbox / "linkdir").symlink_to(outside)
    for path in ("link.txt", "linkdir/secret.txt", "linkdir/new.txt"):
        result = await read(sandbox, path)
        assert not result.ok, path
        assert "goes through a symbolic link that points outside the sandbox" in result.content
        written = await write(sandbox, path, "pwned")
        assert not written.ok and "symbolic link" in written.content
    assert (outside / "secret.txt").read_text() == "TOP SECRET"
    assert not (outside / "new.txt").exists()


async def test_symlinks_that_stay_inside_are_followed(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    (sandbox / "real").mkdir()
    (sandbox / "real/data.txt").write_text("data")
    (sandbox / "alias").symlink_to(sandbox / "real")
    (sandbox / "shortcut.txt").symlink_to("real/data.txt")
    assert (await read(sandbox, "alias/data.txt")).content == "data"
    assert (await read(sandbox, "shortcut.txt")).content == "data"


async def test_sandbox_reached_through_a_symlinked_path_still_confines(
    world: tuple[Path, Path],
) -> None:
    sandbox, outside = world
    via = sandbox.parent / "via"
    via.symlink_to(sandbox)
    (sandbox / "x.txt").write_text("x")
    assert (await read(via, "x.txt")).content == "x"
    assert (await read(via, str(via / "x.txt"))).content == "x"
    assert not (await read(via, "../outside/secret.txt")).ok
    assert not (await read(via, str(outside / "secret.txt"))).ok


async def test_missing_file_directory_and_special_files_fail_clearly(
    world: tuple[Path, Path],
) -> None:
    sandbox, _ = world
    (sandbox / "sub").mkdir()
    os.mkfifo(sandbox / "pipe")  # opening it for reading must not wait for a writer
    assert (
        await read(sandbox, "nope.txt")
    ).content == "There is no file 'nope.txt' in the sandbox."
    assert (await read(sandbox, "nope/x.txt")).content == (
        "The directory of 'nope/x.txt' does not exist in the sandbox."
    )
    assert (await read(sandbox, "sub")).content == "'sub' is a directory, not a file."
    assert (await read(sandbox, "pipe")).content == "'pipe' is not a regular file."
    assert (
        await write(sandbox, "sub", "x")
    ).content == "'sub' is a directory; it cannot be written."


async def test_read_is_bounded_and_pages_with_offset(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    (sandbox / "big.txt").write_text("0123456789" * 3)
    ctx = ctx_for(sandbox, max_read_bytes=12)
    first = await REGISTRY.execute("read_file", '{"path": "big.txt"}', ctx)
    assert first.content == (
        "012345678901\n[bytes 0..12 of 30. Call read_file again with offset=12 for the rest.]"
    )
    last = await REGISTRY.execute("read_file", '{"path": "big.txt", "offset": 24}', ctx)
    assert last.content == "456789\n[bytes 24..30 of 30.]"
    past = await REGISTRY.execute("read_file", '{"path": "big.txt", "offset": 31}', ctx)
    assert past.content == "offset 31 is past the end of 'big.txt', which has 30 bytes."
    negative = await REGISTRY.execute("read_file", '{"path": "big.txt", "offset": -1}', ctx)
    assert negative.error_kind == "invalid_arguments"


async def test_binary_files_are_not_shown(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    (sandbox / "blob.bin").write_bytes(b"\x89PNG\x00\x01\x02")
    result = await read(sandbox, "blob.bin")
    assert (result.ok, result.content) == (
        False,
        "'blob.bin' is a binary file (7 bytes); only text is shown.",
    )


async def test_write_is_bounded(world: tuple[Path, Path]) -> None:
    sandbox, _ = world
    result = await write(sandbox, "big.txt", "é" * 6, max_write_bytes=10)
    assert result.content == (
        "The content for 'big.txt' is 12 bytes; write_file accepts at most 10 bytes per file."
    )
    assert not (sandbox / "big.txt").exists()


async def test_write_creates_the_sandbox_and_read_reports_a_missing_one(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    assert (await read(missing, "a.txt")).content == (
        f"The sandbox directory {missing} does not exist, so 'a.txt' does not either."
    )
    assert (await write(missing, "a.txt", "a")).ok
    assert (missing / "a.txt").read_text() == "a"


def test_a_directory_swapped_for_a_symlink_after_the_check_is_not_followed(
    world: tuple[Path, Path],
) -> None:
    sandbox, outside = world
    (sandbox / "d").mkdir()
    checked = resolve(sandbox, "d/secret.txt")
    # A concurrent command replaces the checked directory with a link out of the sandbox.
    (sandbox / "d").rmdir()
    (sandbox / "d").symlink_to(outside)
    with pytest.raises(ToolRefused, match="'d' changed into a symbolic link"), open_parent(checked):
        pass
