"""Tracing is off by default and then costs no OpenTelemetry SDK work at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streams import telemetry

ROOT = Path(__file__).resolve().parents[2]


def test_the_worker_modules_do_not_import_the_sdk_while_tracing_is_off() -> None:
    code = (
        "import sys\n"
        "import turnlog.cli.worker, streams.app, streams.effects, streams._partition\n"
        "import streams.session_worker, streams.metrics, streams.endpoint, streams.telemetry\n"
        "import projections.projector\n"
        "assert not streams.telemetry.tracing_enabled()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "print(loaded)\n"
        "assert not any(m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter')) "
        "for m in loaded), loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_hooks_hand_the_incoming_context_through_unchanged_when_off() -> None:
    assert not telemetry.tracing_enabled()
    stats: dict[str, int] = {}
    telemetry.batch_begin(stats)  # no sink, no tracer: nothing is set up
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert telemetry.input_traceparent(None, None, (), incoming) is incoming
    assert telemetry.input_traceparent(None, None, (), None) is None
    telemetry.batch_committed()
    assert telemetry.effect_started(object(), incoming) is incoming
    telemetry.effect_ended(incoming, object(), None)
