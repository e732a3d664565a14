"""`turnlog schedule add` refuses an invalid schedule before it connects to anything:
exit code 1, the message names the schedule and the field, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def turnlog(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNLOG_")}
    # Nothing listens there: a command that tried to connect would fail differently.
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"
    return subprocess.run(
        [sys.executable, "-m", "turnlog", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--cron", "61 2 * * *"], "schedule 'nightly': cron: Bad minute in '61 2 * * *'"),
        (["--cron", "0 2 * *"], "schedule 'nightly': cron: Wrong number of fields"),
        (
            ["--cron", "0 2 * * *", "--timezone", "Mars/Olympus"],
            "schedule 'nightly': timezone: unknown time zone 'Mars/Olympus'",
        ),
        (["--every", "soon"], "schedule 'nightly': every: 'soon' is not a duration"),
        (["--every", "1h", "--overlap", "maybe"], "schedule 'nightly': overlap:"),
    ],
)
def test_an_invalid_schedule_is_refused_naming_the_field(options: list[str], expected: str) -> None:
    result = turnlog("schedule", "add", "nightly", "--agent", "a", "--message", "m", *options)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
