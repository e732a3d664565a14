"""The schema evolution gate: the current schema set stays backward AND forward compatible
with the last released set, and the gate is shown to fail on breaking changes."""

from __future__ import annotations

import copy
import io
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.events import Event, LlmCallCompleted, Usage, event_id_for
from schemas import codec
from schemas.compat import dynamic_problems, evolution_problems, exemplars, static_problems
from schemas.loader import (
    CURRENT_DIR,
    ENVELOPES,
    current_set,
    load_schema_set,
    released_sets,
)
from tests.strategies import avro_values

CURRENT = current_set()
RELEASED = released_sets()
LAST = RELEASED[-1]

# Fingerprints of released sets are frozen: a release is never edited, a new one is added.
RELEASED_FINGERPRINTS = {
    "v1.0": {
        "Request": "c788e467550eac98",
        # v1.0 is the first release: context references became seq ranges before it
        # shipped (nothing was ever written with the earlier draft).
        "Event": "dbb9fd4f5ae25b65",
        "TokenDelta": "a51f3c67c025e9b1",
        "AuditCheckpoint": "22c518c797139044",
    },
}


def test_released_sets_are_kept_and_frozen() -> None:
    assert [s.version for s in RELEASED][: len(RELEASED_FINGERPRINTS)] == list(
        RELEASED_FINGERPRINTS
    )
    for schema_set in RELEASED:
        if schema_set.version in RELEASED_FINGERPRINTS:
            got = {n: codec.schema_fingerprint(s) for n, s in schema_set.envelopes.items()}
            assert got == RELEASED_FINGERPRINTS[schema_set.version], (
                f"released schema set {schema_set.version} changed; releases are frozen"
            )


def test_every_released_fingerprint_is_readable() -> None:
    known = codec.known_fingerprints()
    for fps in RELEASED_FINGERPRINTS.values():
        for envelope, fp in fps.items():
            assert known[fp][0] == envelope


# Envelopes the last release has (one added since has no older writer to resolve).
RELEASED_ENVELOPES = [name for name in ENVELOPES if name in LAST.envelopes]


def test_only_new_envelopes_are_missing_from_the_last_release() -> None:
    assert set(ENVELOPES) - set(LAST.envelopes) <= {"Snapshot", "AgentVersion", "ScheduleRecord"}


# Event types added since the last release. A new type is a new branch of the payload
# union, which a reader of the release cannot decode: that is the one forward break the
# gate allows, by name. Everything else (every other branch and field) must still resolve
# both ways, and the full current set must read everything the release wrote.
# Upgrade rule (README, "Upgrading"): upgrade the projector, then the workers.
ADDED_SINCE_RELEASE: dict[str, frozenset[str]] = {
    "Event": frozenset(
        {
            "MessageQueued",
            "QueuedMessageDropped",
            "AgentVersionChanged",
            "ModelChanged",
            "OrchestrationStarted",
            "OrchestrationMemberCancelled",
            "OrchestrationCompleted",
            "AgentHandedOff",
            "GuardrailTripped",
            "StructuredOutputInvalid",
            "StructuredOutputAccepted",
            "BudgetAlert",
            "BudgetLimitReached",
            "AdmissionRequested",
            "AdmissionDecided",
        }
    ),
    "Request": frozenset(
        {"UpgradeAgent", "SetModel", "EnforceBudget", "ReissueEffect", "CompleteAdmission"}
    ),
}


def _without_added(envelope: str, schema: dict[str, Any]) -> dict[str, Any]:
    added = ADDED_SINCE_RELEASE.get(envelope)
    if not added:
        return schema
    trimmed = copy.deepcopy(schema)
    payload = next(f for f in trimmed["fields"] if f["name"] == "payload")
    payload["type"] = [
        b for b in payload["type"] if not (isinstance(b, dict) and b["name"] in added)
    ]
    return trimmed


@pytest.mark.parametrize("envelope", RELEASED_ENVELOPES)
def test_current_set_is_backward_and_forward_compatible_with_the_last_release(
    envelope: str,
) -> None:
    old, new = LAST.envelopes[envelope], CURRENT.envelopes[envelope]
    backward = [
        *static_problems(old, new),
        *dynamic_problems(old, new),
    ]
    assert backward == [], "\n".join(backward)
    problems = evolution_problems(old, _without_added(envelope, new))
    assert problems == [], "\n".join(problems)


def test_added_event_types_are_exactly_the_new_union_branches() -> None:
    def branches(schema: dict[str, Any]) -> set[str]:
        payload = next(f for f in schema["fields"] if f["name"] == "payload")["type"]
        return {b["name"] for b in payload if isinstance(b, dict)}

    old, new = LAST.envelopes["Event"], CURRENT.envelopes["Event"]
    assert branches(new) - branches(old) == ADDED_SINCE_RELEASE["Event"]
    # and the gate does flag them, so the allowance above is not vacuous
    flagged = static_problems(new, old)
    assert {
        name for name in ADDED_SINCE_RELEASE["Event"] if any(name in p for p in flagged)
    } == ADDED_SINCE_RELEASE["Event"]


@pytest.mark.parametrize("envelope", RELEASED_ENVELOPES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_values_resolve_both_ways(envelope: str, data: st.DataObject) -> None:
    old, new = LAST.envelopes[envelope], CURRENT.envelopes[envelope]
    backward = data.draw(avro_values(old), label="written with the release")
    forward = data.draw(
        avro_values(_without_added(envelope, new)), label="written with the current set"
    )
    assert dynamic_problems(old, new, [backward]) == []
    assert dynamic_problems(new, old, [forward]) == []


def test_exemplars_take_every_union_branch_and_enum_symbol() -> None:
    values = exemplars(CURRENT.envelopes["Event"])
    branches = {v["payload"][0] for v in values}
    assert len(branches) == 40
    decisions = {
        v["payload"][1]["decision"] for v in values if v["payload"][0].endswith("ToolCallRequested")
    }
    assert decisions == {"allow", "deny", "require_approval"}


# --------------------------------------------------------------------------- the gate fails


def _event_schema() -> dict[str, Any]:
    return copy.deepcopy(CURRENT.envelopes["Event"])


def _branch(schema: dict[str, Any], name: str) -> dict[str, Any]:
    payload = next(f for f in schema["fields"] if f["name"] == "payload")["type"]
    return next(b for b in payload if isinstance(b, dict) and b["name"] == name)


def _field(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in record["fields"] if f["name"] == name)


def _add_field_without_default(s: dict[str, Any]) -> None:
    _branch(s, "LlmCallCompleted")["fields"].append({"name": "note", "type": "string"})


def _remove_union_branch(s: dict[str, Any]) -> None:
    payload = _field(s, "payload")
    payload["type"] = [b for b in payload["type"] if b.get("name") != "TurnCancelled"]


def _remove_required_field(s: dict[str, Any]) -> None:
    record = _branch(s, "LlmCallCompleted")
    record["fields"] = [f for f in record["fields"] if f["name"] != "model"]


def _change_field_type(s: dict[str, Any]) -> None:
    _field(_branch(s, "TurnStarted"), "turn_no")["type"] = "string"


def _add_enum_symbol_without_default(s: dict[str, Any]) -> None:
    enum = _field(_branch(s, "EffectReissued"), "kind")["type"]
    enum["symbols"] = [*enum["symbols"], "webhook"]


def _rename_record(s: dict[str, Any]) -> None:
    _branch(s, "TurnFailed")["name"] = "TurnBroke"


BREAKING: list[tuple[Callable[[dict[str, Any]], None], str, str]] = [
    # (change made in the NEW schema, direction that must break, what the message names)
    (_add_field_without_default, "backward", "LlmCallCompleted.note"),
    (_remove_union_branch, "backward", "TurnCancelled"),
    (_remove_required_field, "forward", "LlmCallCompleted.model"),
    (_change_field_type, "backward", "TurnStarted.turn_no"),
    (_change_field_type, "forward", "TurnStarted.turn_no"),
    (_add_enum_symbol_without_default, "forward", "EffectKind"),
    (_rename_record, "backward", "TurnFailed"),
]


@pytest.mark.parametrize(
    ("change", "direction", "named"), BREAKING, ids=[f"{c.__name__}-{d}" for c, d, _ in BREAKING]
)
def test_the_static_gate_catches_a_breaking_change_naming_record_and_field(
    change: Callable[[dict[str, Any]], None], direction: str, named: str
) -> None:
    new = _event_schema()
    change(new)
    problems = evolution_problems(CURRENT.envelopes["Event"], new)
    static = [p for p in problems if p.startswith(direction) and "could not be read" not in p]
    assert any(named in p for p in static), "\n".join(problems) or "the gate passed"


@pytest.mark.parametrize(
    ("change", "direction", "named"), BREAKING, ids=[f"{c.__name__}-{d}" for c, d, _ in BREAKING]
)
def test_the_dynamic_gate_catches_the_same_breaking_changes(
    change: Callable[[dict[str, Any]], None], direction: str, named: str
) -> None:
    old, new = CURRENT.envelopes["Event"], _event_schema()
    change(new)
    writer, reader = (old, new) if direction == "backward" else (new, old)
    assert dynamic_problems(writer, reader) != []


def _add_field_with_default(s: dict[str, Any]) -> None:
    _branch(s, "LlmCallCompleted")["fields"].append(
        {"name": "note", "type": ["null", "string"], "default": None}
    )


def _remove_defaulted_field(s: dict[str, Any]) -> None:
    record = _branch(s, "LlmCallCompleted")
    record["fields"] = [f for f in record["fields"] if f["name"] != "fallback_used"]


def _add_enum_symbol_with_default(s: dict[str, Any]) -> None:
    enum = _field(_branch(s, "ToolCallRequested"), "decision")["type"]
    enum["symbols"] = [*enum["symbols"], "audit"]


@pytest.mark.parametrize(
    "change", [_add_field_with_default, _remove_defaulted_field, _add_enum_symbol_with_default]
)
def test_the_gate_passes_compatible_changes(change: Callable[[dict[str, Any]], None]) -> None:
    new = _event_schema()
    change(new)
    assert evolution_problems(CURRENT.envelopes["Event"], new) == []


def test_static_check_of_identical_schemas_is_clean() -> None:
    for schema in CURRENT.envelopes.values():
        assert static_problems(schema, schema) == []


# --------------------------------------------------------------------------- old writers


@pytest.fixture
def older_release(tmp_path: Path) -> Any:
    """A synthetic older release whose LlmCallCompleted lacks `fallback_used` (which has a
    default), registered with the codec for the duration of a test."""
    directory = tmp_path / "v0.9"
    shutil.copytree(CURRENT_DIR, directory)
    path = directory / "turnlog.v1.LlmCallCompleted.avsc"
    text = path.read_text()
    start = text.index('    {"name": "fallback_used"')
    path.write_text(text[:start].rstrip().rstrip(",") + "\n  ]\n}\n")
    schema_set = load_schema_set(directory, "v0.9-test")
    added = codec._register(schema_set, codec._WRITERS, codec._PARSED)
    try:
        yield schema_set
    finally:
        for key in added:
            del codec._WRITERS[key]


def test_a_message_from_an_older_schema_version_decodes_with_defaults(older_release: Any) -> None:
    old_schema = older_release.envelopes["Event"]
    fp = codec.schema_fingerprint(old_schema)
    assert fp != codec.current_fingerprint("Event")
    assert codec.known_fingerprints()[fp] == ("Event", "v0.9-test")
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    record = {
        "event_id": event_id_for("s", 5),
        "session_id": "s",
        "seq": 5,
        "occurred_at": t0,
        "agent": "a",
        "payload": (
            "turnlog.v1.LlmCallCompleted",
            {
                "call_id": "c",
                "model": "m",
                "text": "t",
                "tool_call_ids": [],
                "stop_reason": "x",
                "usage": {
                    "input_tokens": 1,
                    "output_tokens": 2,
                    "cache_read_tokens": 0,
                    "cache_write_tokens": 0,
                },
                "cost_nanos": 3,
                "latency_ms": 4,
                "attempts": 1,
            },
        ),
        "turn_id": None,
        "causation_id": None,
        "correlation_id": None,
    }
    out = io.BytesIO()
    out.write(codec.MAGIC + bytes.fromhex(fp))
    schemaless_writer(out, parse_schema(old_schema), record)
    decoded = codec.decode_event(out.getvalue())
    assert decoded == Event(
        event_id_for("s", 5),
        "s",
        5,
        t0,
        "a",
        LlmCallCompleted("c", "m", "t", (), "x", Usage(1, 2, 0, 0), 3, 4, 1, fallback_used=False),
    )


def test_a_corrupt_message_from_an_older_schema_is_a_decode_error(older_release: Any) -> None:
    fp = codec.schema_fingerprint(older_release.envelopes["Event"])
    from agents.errors import DecodeError

    with pytest.raises(DecodeError, match="truncated or corrupt") as err:
        codec.decode_event(codec.MAGIC + bytes.fromhex(fp) + b"\x02")
    assert err.value.fingerprint == fp


# --------------------------------------------------------------------------- v1.1: claimed_at


def _event(claimed_at: datetime | None) -> Event:
    return Event(
        event_id=event_id_for("s1", 1),
        session_id="s1",
        seq=1,
        occurred_at=datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
        agent="a",
        payload=LlmCallCompleted("c1", "m", "hi", (), "end_turn", Usage(1, 1), 0, 1, 1),
        claimed_at=claimed_at,
    )


def test_an_event_of_the_release_reads_with_no_claim() -> None:
    """Backward: the log written before the ingest time existed reads as it was."""
    ev = _event(None)
    body = io.BytesIO()
    old = parse_schema(LAST.envelopes["Event"])
    record = codec._TO_AVRO["Event"](ev)
    del record["claimed_at"]
    schemaless_writer(body, old, record)
    fp = bytes.fromhex(RELEASED_FINGERPRINTS["v1.0"]["Event"])
    assert codec.decode_event(codec.MAGIC + fp + body.getvalue()) == ev


def test_an_event_with_a_claim_reads_with_the_release_schema() -> None:
    """Forward: a worker not yet upgraded reads the new events (the claim is dropped)."""
    from fastavro import schemaless_reader

    claimed = datetime(2026, 5, 1, 11, 0, tzinfo=UTC)
    data = codec.encode_event(_event(claimed))
    new = parse_schema(CURRENT.envelopes["Event"])
    old = parse_schema(LAST.envelopes["Event"])
    record = schemaless_reader(io.BytesIO(data[codec.HEADER_SIZE :]), new, old)
    assert isinstance(record, dict) and "claimed_at" not in record
    assert codec.decode_event(data).claimed_at == claimed
