"""`read_file` and `write_file`: text files inside the configured sandbox directory.

Rule: every path is confined by `_sandbox` (no `..`, no absolute path outside, no
symlink escape — checked, then opened without following links), and every transfer is
bounded by `ToolSettings.files`: reads return at most `max_read_bytes` per call (with an
`offset` to page through a larger file), writes larger than `max_write_bytes` are
refused. Writes replace the file atomically (temp file + rename in the same directory),
so a reader never sees half a file and a repeated write is idempotent.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Annotated

from pydantic import Field

from agents.tools._sandbox import open_parent, raced, resolve
from agents.tools.context import ToolContext
from agents.tools.errors import ToolFailed, ToolRefused

__all__ = ["read_file", "write_file"]

_PATH_DOC = "Path of the file, relative to the sandbox directory (e.g. 'notes/todo.txt')."


def _read(root: Path, requested: str, offset: int, limit: int) -> str:
    path = resolve(root, requested)
    with open_parent(path) as parent:
        try:
            # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
            fd = os.open(
                path.name,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                dir_fd=parent,
            )
        except FileNotFoundError:
            raise ToolFailed(f"There is no file {path.shown!r} in the sandbox.") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # became a symlink after the check
                raise raced(path.name) from None
            raise
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ToolRefused(f"{path.shown!r} is a directory, not a file.")
        if not stat.S_ISREG(info.st_mode):
            raise ToolRefused(f"{path.shown!r} is not a regular file.")
        size = info.st_size
        if offset > size:
            raise ToolRefused(
                f"offset {offset} is past the end of {path.shown!r}, which has {size} bytes."
            )
        data = os.pread(fd, limit, offset)
    finally:
        os.close(fd)
    if b"\x00" in data:
        raise ToolRefused(f"{path.shown!r} is a binary file ({size} bytes); only text is shown.")
    text = data.decode("utf-8", errors="replace")
    end = offset + len(data)
    if offset == 0 and end >= size:
        return text
    more = f" Call read_file again with offset={end} for the rest." if end < size else ""
    return f"{text}\n[bytes {offset}..{end} of {size}.{more}]"


async def read_file(
    ctx: ToolContext,
    path: Annotated[str, Field(description=_PATH_DOC, min_length=1, max_length=4096)],
    offset: Annotated[
        int, Field(description="Byte offset to start reading at (for large files).", ge=0)
    ] = 0,
) -> str:
    """Read a UTF-8 text file from the sandbox directory. Large files are returned in
    pieces: the answer then ends with the byte range shown and the offset to continue at."""
    settings = ctx.settings
    return await asyncio.to_thread(
        _read, settings.sandbox_dir, path, offset, settings.files.max_read_bytes
    )


def _write(root: Path, requested: str, data: bytes) -> None:
    path = resolve(root, requested, create_root=True)
    with open_parent(path, create_dirs=True) as parent:
        temp = f".{path.name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=parent,
        )
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            # rename() replaces a symlink itself rather than writing through it.
            os.replace(temp, path.name, src_dir_fd=parent, dst_dir_fd=parent)
        except IsADirectoryError:
            raise ToolRefused(f"{path.shown!r} is a directory; it cannot be written.") from None
        finally:
            try:
                os.unlink(temp, dir_fd=parent)
            except FileNotFoundError:
                pass  # the rename consumed it


async def write_file(
    ctx: ToolContext,
    path: Annotated[str, Field(description=_PATH_DOC, min_length=1, max_length=4096)],
    content: Annotated[str, Field(description="The complete new text of the file (UTF-8).")],
) -> str:
    """Write a UTF-8 text file in the sandbox directory, replacing it if it exists and
    creating missing parent directories."""
    data = content.encode("utf-8")
    limit = ctx.settings.files.max_write_bytes
    if len(data) > limit:
        raise ToolRefused(
            f"The content for {path!r} is {len(data)} bytes; write_file accepts at most "
            f"{limit} bytes per file."
        )
    await asyncio.to_thread(_write, ctx.settings.sandbox_dir, path, data)
    return f"Wrote {len(data)} bytes to {path}."
