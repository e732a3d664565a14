"""A worker process tunes the garbage collector once it is built (streams.app.tune_gc):
what is alive then is frozen out of later collections, and the young generation's
threshold is raised. Checked in a fresh interpreter: the test process keeps its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import gc, json
from streams.app import GC_THRESHOLD, tune_gc
before = gc.get_freeze_count()
tune_gc()
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(),
                  "threshold": list(gc.get_threshold()), "expected": list(GC_THRESHOLD)}))
"""


def test_tune_gc_freezes_what_is_alive_and_raises_the_thresholds() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["before"] == 0
    assert probe["frozen"] > 10_000  # the imported modules, classes and functions
    assert probe["threshold"] == probe["expected"]
    assert probe["threshold"][0] > 700  # above Python's default
