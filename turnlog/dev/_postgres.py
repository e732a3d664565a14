"""A real PostgreSQL server with its own data directory under <state_dir>/postgres/.

Binaries: TURNLOG_DEV_POSTGRES_BIN, else the newest Debian /usr/lib/postgresql/N/bin,
else `pg_ctl` on PATH, else the `pgserver` wheel's bundled ones.

PostgreSQL refuses to run as root, so when we are root the server runs as the
unprivileged `postgres` system user (created if missing) and owns the data directory;
otherwise it runs as the current user. (If that user cannot enter the state dir, as for
a clone under /root, the data directory goes to /var/tmp/turnlog-postgres-<hash> instead.)
It listens on 127.0.0.1 only (TCP, no Unix socket,
so no socket-path or /var/run permissions to get wrong) with password authentication
(scram-sha-256) for the superuser `turnlog`, and owns a database `turnlog`.

Tuned for tests, not for durability: fsync and full_page_writes are off (a killed server
still recovers; only an OS crash could lose data).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turnlog.dev._errors import DevInfraError, MissingToolError
from turnlog.dev._proc import pid_alive, port_open, read_pid, tail
from turnlog.settings import (
    DEV_DATABASE,
    DEV_DATABASE_PASSWORD,
    DEV_DATABASE_USER,
    Settings,
)

HOST = "127.0.0.1"
_SERVICE_USER = "postgres"

_CONF = """# Written by turnlog dev; rewritten at every start.
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
max_connections = 200
shared_buffers = 128MB
fsync = off
full_page_writes = off
synchronous_commit = on
password_encryption = scram-sha-256
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
"""


@dataclass(frozen=True)
class PostgresPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"


def paths(settings: Settings) -> PostgresPaths:
    """<state_dir>/postgres, unless the service user could not reach it (see below)."""
    root = settings.state_dir.resolve() / "postgres"
    if os.geteuid() == 0 and _blocked_parent(root, _service_uid_gid()) is not None:
        # A clone under a private directory (/root/...): the unprivileged server user
        # cannot enter it, so its data lives in a per-state-dir directory under /var/tmp.
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        root = Path("/var/tmp") / f"turnlog-postgres-{digest}"
    return PostgresPaths(root)


def _service_uid_gid() -> tuple[int, int]:
    try:
        account = pwd.getpwnam(_SERVICE_USER)
        return account.pw_uid, account.pw_gid
    except KeyError:
        return -1, -1  # not created yet: it will own nothing on the way


def _blocked_parent(directory: Path, uid_gid: tuple[int, int]) -> Path | None:
    """The first ancestor of `directory` that uid/gid may not enter, or None."""
    uid, gid = uid_gid
    for parent in reversed(directory.parents):
        try:
            st = parent.stat()
        except OSError:
            return None  # does not exist yet: we create it, and so it will be reachable
        if st.st_uid == uid:
            bit = 0o100
        elif st.st_gid == gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return parent
    return None


def url(settings: Settings, database: str = DEV_DATABASE) -> str:
    return (
        f"postgresql://{DEV_DATABASE_USER}:{DEV_DATABASE_PASSWORD}"
        f"@{HOST}:{settings.dev_postgres_port}/{database}"
    )


# --- binaries and the service user ------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return (0,)


def bin_dir(settings: Settings) -> Path:
    candidates: list[Path] = []
    if settings.dev_postgres_bin is not None:
        candidates.append(settings.dev_postgres_bin)
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    with contextlib.suppress(ImportError):
        import pgserver  # type: ignore[import-not-found]  # optional

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    for candidate in candidates:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    raise MissingToolError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them "
        "(`apt-get install postgresql` on Debian/Ubuntu) or `pip install pgserver`, "
        "or set TURNLOG_DEV_POSTGRES_BIN to the directory that holds pg_ctl."
    )


def server_version(settings: Settings) -> str:
    result = subprocess.run(
        [str(bin_dir(settings) / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip().rsplit(" ", 1)[-1] if result.returncode == 0 else "?"


def _service_account() -> pwd.struct_passwd | None:
    """None when we are not root (the server then runs as us)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            _SERVICE_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DevInfraError(
            "PostgreSQL will not run as root, and creating the unprivileged system user "
            f"'{_SERVICE_USER}' failed: {result.stderr.strip()}"
        )
    return pwd.getpwnam(_SERVICE_USER)


def _run(command: list[str], account: pwd.struct_passwd | None, **kwargs: Any) -> Any:
    if account is not None:
        kwargs.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
        env = dict(
            os.environ, HOME=str(paths_home(account)), USER=account.pw_name, LOGNAME=account.pw_name
        )
        kwargs.setdefault("env", env)
    return subprocess.run(command, check=False, **kwargs)


def paths_home(account: pwd.struct_passwd) -> Path:
    home = Path(account.pw_dir)
    return home if home.is_dir() else Path("/tmp")


def _check_reachable(directory: Path, account: pwd.struct_passwd) -> None:
    """The service user must be able to walk down to the data directory."""
    parent = _blocked_parent(directory, (account.pw_uid, account.pw_gid))
    if parent is not None:
        raise DevInfraError(
            f"PostgreSQL runs as the unprivileged user '{account.pw_name}' (it refuses "
            f"root), and that user cannot enter {parent}. Set TURNLOG_STATE_DIR to a "
            f"directory it can reach, e.g. under /tmp, or `chmod o+x {parent}`."
        )


# --- lifecycle ------------------------------------------------------------------------


def managed_pid(settings: Settings) -> int | None:
    pid = read_pid(paths(settings).data / "postmaster.pid")
    return pid if pid_alive(pid) else None


def _initdb(settings: Settings, account: pwd.struct_passwd | None) -> None:
    p = paths(settings)
    if (p.data / "PG_VERSION").exists():
        return
    shutil.rmtree(p.data, ignore_errors=True)  # a half-done earlier initdb
    pwfile = p.root / ".pwfile"
    pwfile.write_text(DEV_DATABASE_PASSWORD + "\n")
    if account is not None:
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    try:
        result = _run(
            [
                str(bin_dir(settings) / "initdb"),
                "-D",
                str(p.data),
                "-U",
                DEV_DATABASE_USER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            account,
            capture_output=True,
            text=True,
            cwd=p.root,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise DevInfraError(
            f"initdb of {p.data} failed:\n{(result.stdout + result.stderr)[-4000:]}"
        )
    with (p.data / "postgresql.conf").open("a") as conf:
        conf.write("\ninclude_if_exists = 'turnlog.conf'\n")


def start(settings: Settings) -> None:
    """initdb once, then `pg_ctl start -w`; raises with the log tail on failure."""
    account = _service_account()
    p = paths(settings)
    p.root.mkdir(parents=True, exist_ok=True)
    if account is not None:
        _check_reachable(p.root, account)
        os.chown(p.root, account.pw_uid, account.pw_gid)
    _initdb(settings, account)
    conf = p.data / "turnlog.conf"
    conf.write_text(_CONF.format(port=settings.dev_postgres_port))
    if not p.log.exists():
        p.log.touch()
    if account is not None:
        os.chown(conf, account.pw_uid, account.pw_gid)
        os.chown(p.log, account.pw_uid, account.pw_gid)
    timeout = int(settings.dev_start_timeout)
    result = _run(
        [
            str(bin_dir(settings) / "pg_ctl"),
            "-D",
            str(p.data),
            "-l",
            str(p.log),
            "-w",
            "-t",
            str(timeout),
            "start",
        ],
        account,
        capture_output=True,
        text=True,
        cwd=p.root,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise DevInfraError(
            f"PostgreSQL did not start (pg_ctl: {result.stdout.strip()} "
            f"{result.stderr.strip()}).\n--- {p.log} ---\n{tail(p.log)}"
        )


def stop(settings: Settings) -> None:
    p = paths(settings)
    if managed_pid(settings) is None:
        return
    result = _run(
        [
            str(bin_dir(settings) / "pg_ctl"),
            "-D",
            str(p.data),
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "stop",
        ],
        _service_account(),
        capture_output=True,
        text=True,
        cwd=p.root,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0 and managed_pid(settings) is not None:
        raise DevInfraError(
            f"PostgreSQL did not stop: {result.stderr.strip()}\n--- {p.log} ---\n{tail(p.log)}"
        )


def probe(database_url: str, timeout: float = 3.0) -> str | None:
    """server_version when a connection with these credentials works, else None."""
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=max(1, int(timeout))) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"
    except psycopg.Error:
        return None


def answers_on_port(settings: Settings) -> bool:
    return port_open(HOST, settings.dev_postgres_port)


def ensure_database(settings: Settings) -> None:
    """The `turnlog` database exists (created on first start)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url(settings, "postgres"), autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DEV_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEV_DATABASE)))


def log_tail(settings: Settings, lines: int = 40) -> str:
    p = paths(settings)
    return f"--- {p.log} ---\n{tail(p.log, lines)}"
