"""Confinement of the `shell` tool's commands: bubblewrap, and the choice of the program.

Rule: a command never runs in the worker's world. It runs under bubblewrap (`bwrap`) in
fresh user, mount, PID, IPC, UTS (and, unless `ShellSettings.network`, network)
namespaces, where

* the only writable place is the sandbox directory, bound at its own path as the cwd and
  HOME (and /tmp, /var/tmp: empty tmpfs of the call's own, gone with it); the root is a
  read-only tmpfs;
* the system's programs and libraries (/usr, /bin, /sbin, /lib*) are bound read-only, and
  of /etc only what programs need to start (the dynamic linker's cache, the alternatives
  links, the time zone; resolver and CA files when the network is allowed); /etc/passwd,
  /etc/group and /etc/nsswitch.conf are synthetic (one user, `sandbox`, uid 1000);
  nothing else of the host is there: no /home, /root, /run, /var, /sys, no repository;
* /proc belongs to the new PID namespace: the worker and every other host process are
  invisible, so no /proc/<pid>/environ of the worker can be read;
* bwrap itself is started with an environment holding only the passthrough variables
  (`--clearenv` then sets them again for the command), so not even the namespace's pid 1
  ever had the API key or the database password; no descriptor of the worker (Kafka
  sockets, database connections) is inherited;
* the command runs as an unprivileged user with no capabilities, cannot create further
  user namespaces (`--disable-userns`), runs in a new session (no TIOCSTI into a
  terminal), and dies with its parent: killing bwrap kills the namespace's pid 1, and the
  kernel kills every process of a PID namespace whose pid 1 dies, so no grandchild, not
  even one that daemonised, outlives the call.

Why bubblewrap: it is one small, setuid-free, audited program (Flatpak's sandbox) that sets
up every one of these namespaces in one exec, from an argument vector we can read and
test; Debian ships it (package `bubblewrap`). Landlock would confine the file system only
(not /proc of other processes, not the network before Linux 6.7, not PIDs) and needs
ctypes syscalls in a pre-exec hook of a forked asyncio worker; building the namespaces by
hand (unshare + mounts + pivot_root in a pre-exec hook) is what bwrap is, minus its review;
a separate unprivileged user needs root to switch to and still sees the host's files,
processes (their environments are hidden, their command lines are not) and network.

When bwrap is missing or cannot create namespaces (a container without user namespaces,
an AppArmor profile forbidding them) the call FAILS naming the cause; it never runs
unconfined silently. `ShellSettings.allow_unconfined` lets a developer machine without
bubblewrap run commands unconfined (off by default).

The program is chosen before bwrap runs (`choose_program`): the command's first word is
resolved on the PATH of the sandbox (system directories only) to a real file in a system
directory, never to one in the sandbox (a script or a copied binary there would be code
the model wrote). Its name and the name of the file it resolves to are checked against
`ShellSettings.allowed_commands` and against `INTERPRETERS` — programs whose purpose is to
run other code or another command (shells, `env`, `xargs`, `python`, `awk`, ...) — which
are refused unless `ShellSettings.allowed_interpreters` names them: with them, one allowed
command line is any command line, and the policy rules that read the command cannot see
what runs. The list cannot name every program with an escape hatch (`find -exec`, `sed`'s
`e`, `git -c core.pager=...`): what a program can do is bounded by the sandbox above, not by
this list, and a strict deployment lists `allowed_commands`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agents.tools.context import ShellSettings
from agents.tools.errors import ToolFailed, ToolRefused

__all__ = [
    "INTERPRETERS",
    "SANDBOX_UID",
    "Program",
    "bwrap_argv",
    "choose_program",
    "find_bwrap",
    "is_interpreter",
    "sandbox_path_variable",
    "synthetic_etc",
]

SANDBOX_UID = 1000
SANDBOX_USER = "sandbox"

# Bound read-only when they exist; a symlink (merged /usr: /bin -> usr/bin) is recreated
# as the same symlink.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
# Of /etc, what programs need to start and print sensible output; none of it is secret.
_ETC = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "timezone",
    "mime.types",
    "services",
    "protocols",
    "magic",
    "magic.mime",
)
# Added when the network is allowed: name resolution and TLS trust.
_ETC_NETWORK = ("resolv.conf", "hosts", "gai.conf", "host.conf", "ssl", "ca-certificates")

# Programs that run other code or another command line (matched by basename, of the
# name written and of the file it resolves to: `/bin/sh`, `sh` -> dash, `awk` -> mawk).
_INTERPRETER_NAMES = frozenset(
    {
        # shells and multi-call binaries
        "sh",
        "bash",
        "rbash",
        "dash",
        "zsh",
        "ksh",
        "ksh93",
        "mksh",
        "pdksh",
        "csh",
        "tcsh",
        "fish",
        "ash",
        "yash",
        "posh",
        "elvish",
        "nu",
        "xonsh",
        "busybox",
        "toybox",
        # command runners: they exec their arguments as a command
        "env",
        "xargs",
        "nice",
        "nohup",
        "timeout",
        "stdbuf",
        "setsid",
        "setpriv",
        "ionice",
        "chrt",
        "taskset",
        "flock",
        "sudo",
        "su",
        "doas",
        "runuser",
        "chroot",
        "unshare",
        "nsenter",
        "strace",
        "ltrace",
        "gdb",
        "watch",
        "parallel",
        "script",
        "time",
        "eatmydata",
        "fakeroot",
        "faketime",
        "firejail",
        "bwrap",
        "systemd-run",
        "start-stop-daemon",
        "run-parts",
        "ssh",
        "expect",
        "screen",
        "tmux",
        "make",
        "cmake",
        "ninja",
        "sg",
        "newgrp",
        "capsh",
        "prlimit",
        "numactl",
        "valgrind",
        # language interpreters and REPLs
        "awk",
        "gawk",
        "mawk",
        "nawk",
        "node",
        "nodejs",
        "deno",
        "bun",
        "irb",
        "R",
        "Rscript",
        "julia",
        "racket",
        "sbcl",
        "clisp",
        "ocaml",
        "ghci",
        "runghc",
        "scala",
        "groovy",
        "jshell",
        "java",
        "dotnet",
        "osascript",
        "m4",
        "dc",
        "ed",
        "ex",
        "emacs",
        "nvim",
        "rvim",
        "view",
    }
)
_INTERPRETER_FAMILIES = re.compile(
    r"^(python|pypy|perl|ruby|php|lua|luajit|tclsh|wish|guile|pwsh|vim?)(\d[\d.]*|\.\w+)?$"
)

INTERPRETERS: tuple[str, ...] = tuple(sorted(_INTERPRETER_NAMES))
"""The names refused as a command unless `ShellSettings.allowed_interpreters` lists them
(and every python*, perl*, ruby*, php*, lua*, tclsh*, guile*, vi/vim* spelling)."""


def is_interpreter(name: str) -> bool:
    """Whether the program called `name` (a basename) runs other code or commands."""
    return name in _INTERPRETER_NAMES or _INTERPRETER_FAMILIES.match(name) is not None


@dataclass(frozen=True, slots=True)
class Program:
    """The program a command runs: `exec_path` (what bwrap executes: the word itself when
    it was found on the sandbox's PATH, which names the same read-only directories inside,
    so the program sees its name as written; else the real file, so that a symlink in the
    sandbox swapped after the check cannot redirect it), `path` (the real file, in a
    system directory) and the names it was checked under."""

    exec_path: str
    path: str
    names: frozenset[str]


def _system_roots() -> tuple[Path, ...]:
    roots: dict[Path, None] = {}
    for d in SYSTEM_DIRS:
        if os.path.isdir(d):
            roots[Path(os.path.realpath(d))] = None
    return tuple(roots)


def sandbox_path_variable(settings: ShellSettings) -> str:
    """PATH inside the sandbox: the passthrough PATH's entries that lie in a bound system
    directory (others do not exist there), else the usual system PATH."""
    passed = os.environ.get("PATH", "") if "PATH" in settings.env_passthrough else ""
    roots = _system_roots()
    kept = [
        entry
        for entry in passed.split(os.pathsep)
        if entry.startswith("/")
        and any(Path(os.path.realpath(entry)).is_relative_to(r) for r in roots)
    ]
    return os.pathsep.join(dict.fromkeys(kept)) or _DEFAULT_PATH


def _matches(names: Iterable[str], listed: Iterable[str]) -> bool:
    wanted = set(listed)
    return any(n in wanted for n in names)


def choose_program(word: str, settings: ShellSettings, sandbox: Path, path: str) -> Program:
    """Resolve the command's first word to the program to run; ToolRefused when it is not
    allowed (an interpreter, not on `allowed_commands`, or a file in the sandbox),
    ToolFailed when it does not exist."""
    written = os.path.basename(word)
    if is_interpreter(written) and written not in settings.allowed_interpreters:
        raise _interpreter(word, written)  # whether or not it is installed
    if "/" in word:
        candidate = word if word.startswith("/") else str(sandbox / word)
        found = candidate if os.path.isfile(candidate) else None
    else:
        found = shutil.which(word, path=path)
    if found is None or not os.access(found, os.X_OK):
        raise ToolFailed(f"Command not found: {word!r}.")
    real = Path(os.path.realpath(found))
    sandbox_real = Path(os.path.realpath(sandbox))
    if real.is_relative_to(sandbox_real) or not any(
        real.is_relative_to(r) for r in _system_roots()
    ):
        raise ToolRefused(
            f"The command {word!r} is refused: only installed programs (in /usr, /bin, "
            "/sbin or /lib) can run, not files in the sandbox or elsewhere."
        )
    # The names the program is known by: its real file's, and the name it was called by
    # when that name lives outside the sandbox (/usr/bin/vi -> vim.basic is `vi`; a
    # symlink `./ls` the model made to /bin/rm is `rm`, not `ls`).
    names = {str(real), real.name}
    called = os.path.normpath(os.path.abspath(found))
    if not Path(os.path.realpath(os.path.dirname(called))).is_relative_to(sandbox_real):
        names |= {called, os.path.basename(called), word}
    allowed = settings.allowed_commands
    if allowed is not None and not _matches(names, allowed):
        raise ToolRefused(
            f"The command {word!r} is not allowed; allowed commands: "
            + (", ".join(allowed) or "none")
            + "."
        )
    if is_interpreter(real.name) and not _matches(names, settings.allowed_interpreters):
        raise _interpreter(word, f"{written} ({real})" if written != real.name else written)
    return Program(word if "/" not in word else str(real), str(real), frozenset(names))


def _interpreter(word: str, shown: str) -> ToolRefused:
    return ToolRefused(
        f"The command {word!r} is refused: {shown} runs other commands or code, which "
        "would hide what runs from the policy. Run the program you need directly, one "
        "command per call."
    )


def find_bwrap(settings: ShellSettings) -> str | None:
    """The bubblewrap executable: `ShellSettings.bwrap_path`, else `bwrap` on the worker's
    PATH (or in /usr/bin)."""
    if settings.bwrap_path is not None:
        path = str(settings.bwrap_path)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/bin")


def synthetic_etc(home: Path) -> dict[str, bytes]:
    """The /etc files written for the sandbox instead of the host's."""
    return {
        "/etc/passwd": (
            "root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_UID}:turnlog sandbox:{home}:/usr/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ).encode(),
        "/etc/group": (f"root:x:0:\n{SANDBOX_USER}:x:{SANDBOX_UID}:\nnogroup:x:65534:\n").encode(),
        "/etc/nsswitch.conf": b"passwd: files\ngroup: files\nhosts: files dns\n",
    }


def bwrap_argv(
    bwrap: str,
    settings: ShellSettings,
    sandbox: Path,
    env: dict[str, str],
    data_fds: dict[str, int],
    command: list[str],
) -> list[str]:
    """The bwrap command line that runs `command` confined (see the module docstring).
    `data_fds` maps each synthetic /etc file to the fd bwrap reads it from."""
    argv = [bwrap, "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not settings.network:
        argv.append("--unshare-net")
    argv += ["--hostname", "sandbox", "--disable-userns", "--die-with-parent", "--new-session"]
    argv += ["--cap-drop", "ALL"]
    for d in SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    argv += ["--dir", "/etc"]
    for name in (*_ETC, *(_ETC_NETWORK if settings.network else ())):
        path = f"/etc/{name}"
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    for dest, fd in data_fds.items():
        argv += ["--perms", "0644", "--ro-bind-data", str(fd), dest]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]
    real = os.path.realpath(sandbox)
    argv += ["--bind", real, real, "--chdir", real]
    argv += ["--remount-ro", "/"]  # the root tmpfs (/etc and the mount points) too
    argv.append("--clearenv")
    for name, value in env.items():
        argv += ["--setenv", name, value]
    return [*argv, "--", *command]
