"""The Grafana dashboard (deploy/grafana/turnlog.json) shows only metrics the workers
export, from the provisioned data source."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from projections.metrics import ProjectorMetrics
from projections.projector import Projector, ProjectorConfig
from streams.effects import EffectRunner
from streams.metrics import SessionMetrics
from streams.session_worker import SessionWorker
from streams.topics import topic_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "turnlog.json"
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def exported_families() -> set[str]:
    """Every metric family a session worker, its effect runner and a projector export
    (built, not started: a scrape of a fresh process)."""
    names = topic_names("")
    worker = SessionWorker(bootstrap="127.0.0.1:1", topics=names, partitions=1, registry=None)
    effects = EffectRunner(
        bootstrap="127.0.0.1:1",
        topics=names,
        partitions=1,
        registry=None,
        provider=None,
        tools=None,
    )
    session = SessionMetrics(worker, effects)
    try:
        projector = Projector(
            ProjectorConfig("127.0.0.1:1", "postgresql://x@127.0.0.1/x", names.events, None)
        )
        ProjectorMetrics(projector, registry=session.registry)
        text = generate_latest(session.registry).decode()
    finally:
        session.close()
    return {f.name for f in text_string_to_metric_families(text)}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_every_expression_uses_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported_families()
    used: set[str] = set()
    for panel in panels(dashboard):
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for name in re.findall(r"\bturnlog_[a-z_]+", target["expr"]):
                used.add(name)
                base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
                assert base in known or name in known, (panel["title"], name)
    # The dashboard shows what the issue asks for.
    for family in (
        "turnlog_turns",
        "turnlog_llm_calls",
        "turnlog_llm_tokens",
        "turnlog_llm_cost_usd",
        "turnlog_llm_call_duration_seconds",
        "turnlog_effects_in_flight",
        "turnlog_input_lag",
        "turnlog_restore_duration_seconds",
        "turnlog_dlq_records",
        "turnlog_projector_events_quarantined",
        "turnlog_budget_exceeded",
        "turnlog_projector_lag",
    ):
        assert any(u.startswith(family) for u in used), family


def test_panels_use_the_provisioned_data_source_and_do_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    source = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    (uid,) = [d["uid"] for d in source["datasources"]]
    cells: set[tuple[int, int]] = set()
    ids = set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/turnlog.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
