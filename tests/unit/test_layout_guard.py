"""turnlog refuses to start when one of its top-level import names (agents, schemas,
streams, projections) resolves to someone else's code, and says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from turnlog import _layout


def test_this_checkout_passes_the_guard() -> None:
    _layout.check_top_level_packages()


@pytest.mark.parametrize("name", sorted(_layout.OURS))
def test_a_package_of_the_same_name_in_the_current_directory_is_refused(
    name: str, tmp_path: Path
) -> None:
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text('"""A project of the user\'s."""\n')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "turnlog", "settings"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "LayoutClashError" in result.stderr
    assert f"{name!r} is imported from {tmp_path / name}" in result.stderr
    assert "virtual environment of its own" in result.stderr
