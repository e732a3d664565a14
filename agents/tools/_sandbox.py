"""Confinement of file access to one directory (the sandbox).

Rule: a path is accepted only if it names something *inside* the sandbox both lexically
(no `..` climbing out, no absolute path elsewhere) and physically (no symlink on the way
leads out). The check runs on the resolved path; the file is then opened by walking
from an fd of the sandbox root one component at a time with O_NOFOLLOW, so a symlink
swapped in between the check and the open (by a concurrent `shell` command, say) makes the
open fail instead of escaping. Linux/POSIX only (dir_fd, O_NOFOLLOW, O_DIRECTORY).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agents.tools.errors import ToolFailed, ToolRefused

__all__ = ["SandboxPath", "open_parent", "resolve"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SandboxPath:
    """A requested path, checked: `root` is the real sandbox root, `parts` the
    components below it (no '.', '..' or symlinks), `shown` the path as the model wrote
    it (for messages)."""

    __slots__ = ("parts", "root", "shown")

    def __init__(self, root: Path, parts: tuple[str, ...], shown: str) -> None:
        self.root = root
        self.parts = parts
        self.shown = shown

    @property
    def name(self) -> str:
        return self.parts[-1]


def resolve(root: Path, requested: str, *, create_root: bool = False) -> SandboxPath:
    """Check `requested` against the sandbox at `root`; ToolRefused says how it escapes."""
    if requested == "" or requested.strip() == "":
        raise ToolRefused("The path is empty; give a path relative to the sandbox directory.")
    if "\x00" in requested:
        raise ToolRefused(f"The path {requested!r} contains a NUL byte.")
    if create_root:
        root.mkdir(parents=True, exist_ok=True)
    elif not root.is_dir():
        raise ToolFailed(
            f"The sandbox directory {root} does not exist, so {requested!r} does not either."
        )
    root_real = Path(os.path.realpath(root))
    root_abs = Path(os.path.normpath(root.absolute()))

    asked = Path(requested)
    if asked.is_absolute():
        lexical = Path(os.path.normpath(asked))
        # The sandbox may be reached through a symlinked path (/tmp -> /private/tmp):
        # an absolute path under either spelling of the root is inside.
        for base in (root_real, root_abs):
            if lexical.is_relative_to(base):
                candidate = root_real / lexical.relative_to(base)
                break
        else:
            raise ToolRefused(
                f"The path {requested!r} is an absolute path outside the sandbox directory; "
                "give a path relative to the sandbox instead."
            )
    else:
        candidate = root_real / asked
        if not Path(os.path.normpath(candidate)).is_relative_to(root_real):
            raise ToolRefused(
                f"The path {requested!r} uses '..' to leave the sandbox directory; only "
                "paths inside the sandbox are allowed."
            )

    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(root_real):
        raise ToolRefused(
            f"The path {requested!r} goes through a symbolic link that points outside the "
            "sandbox directory; only paths inside the sandbox are allowed."
        )
    parts = real.relative_to(root_real).parts
    if not parts:
        raise ToolRefused(f"The path {requested!r} is the sandbox directory itself, not a file.")
    return SandboxPath(root_real, parts, requested)


@contextmanager
def open_parent(path: SandboxPath, *, create_dirs: bool = False) -> Iterator[int]:
    """Yield an fd of the directory that holds `path`, reached without following any
    symlink. Missing directories are created when `create_dirs`."""
    fd = os.open(path.root, _DIR_FLAGS)
    try:
        for part in path.parts[:-1]:
            try:
                child = _open_dir(part, fd, create_dirs)
            except FileNotFoundError:
                raise ToolFailed(
                    f"The directory of {path.shown!r} does not exist in the sandbox."
                ) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_dir(name: str, parent: int, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
        try:
            os.mkdir(name, 0o755, dir_fd=parent)
        except FileExistsError:
            pass  # created concurrently: fine, open it below
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise raced(name) from None
        raise


def raced(name: str) -> ToolRefused:
    """A component turned into a symlink (or a non-directory) after the check."""
    return ToolRefused(
        f"The path component {name!r} changed into a symbolic link or a file while it was "
        "being opened; the access was refused."
    )
