"""turnlog as a user installs it: the wheel built from this checkout, installed into a
fresh virtual environment outside the checkout, runs `turnlog demo` from an empty
directory against this run's Kafka and database (the built-in agents and script ship
in the wheel) — and refuses to start, naming the other distribution, once another
wheel has overwritten one of its top-level packages."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.harness import ROOT


def _run(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _other_agents_wheel(directory: Path) -> Path:
    """A distribution that, like openai-agents, ships a top-level `agents` package."""
    info = "other_agents-1.0.dist-info"
    files = {
        "agents/__init__.py": b'"""Another project\'s agents package."""\n',
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: other-agents\nVersion: 1.0\n",
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: turnlog-tests\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "\n".join([*(_record_line(n, d) for n, d in files.items()), f"{info}/RECORD,,"])
    path = directory / "other_agents-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{info}/RECORD", record + "\n")
    return path


def test_the_wheel_runs_the_demo_from_an_empty_directory(
    kafka_bootstrap: str, database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    dist, venv, empty = tmp_path / "dist", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    # From a clean copy of the sources: a build/ left in the checkout by an earlier build
    # could put files into the wheel that the sources no longer have.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".turnlog",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
        ),
    )
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source, cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("turnlog-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    assert {
        "turnlog/builtin/agents.toml",
        "turnlog/builtin/demo.script.yaml",
        "turnlog/builtin/demo_agents.toml",
        "turnlog/builtin/demo_session.script.yaml",
        "projections/migrations/0001_init.sql",
        "turnlog/dev/kafka-pom.xml",
    } <= shipped

    made = _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    installed = _run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "TURNLOG_", "PYTHON", "VIRTUAL_ENV"))
    }
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database_url,
        "TURNLOG_TOPIC_PREFIX": f"{topic_prefix}wheel{secrets.token_hex(2)}.",
        "TURNLOG_PARTITIONS": "4",
        "PYTHONUNBUFFERED": "1",
    }
    settings = _run(venv / "bin" / "turnlog", "settings", cwd=empty, env=env)
    assert settings.returncode == 0, settings.stderr
    site = str(venv)
    agents_line = next(
        line for line in settings.stdout.splitlines() if line.startswith("TURNLOG_AGENTS=")
    )
    assert agents_line.startswith(f"TURNLOG_AGENTS={site}") and "builtin" in agents_line

    demo = _run(venv / "bin" / "turnlog", "demo", cwd=empty, env=env, timeout=300)
    assert demo.returncode == 0, f"{demo.stdout}\n{demo.stderr}"
    assert "[6/6]" in demo.stdout and "✗" not in demo.stdout
    assert "audit log intact" in demo.stdout

    # Another distribution overwrites the top-level `agents` package: turnlog says so.
    other = _other_agents_wheel(tmp_path)
    clash = _run(
        venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", other, cwd=tmp_path
    )
    assert clash.returncode == 0, clash.stderr
    refused = _run(venv / "bin" / "turnlog", "settings", cwd=empty, env=env)
    assert refused.returncode != 0
    assert "LayoutClashError" in refused.stderr
    assert "other-agents" in refused.stderr and "virtual environment" in refused.stderr
