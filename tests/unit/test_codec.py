"""The codec's wire format, JSON form, encode errors, and the schema/dataclass mirror."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import typing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

import agents.events as ev_mod
from agents.errors import ContractError, DecodeError, InvalidRecord
from agents.events import (
    AuditCheckpoint,
    ChildStatus,
    CompleteChildSession,
    CompleteLlmCall,
    Event,
    LlmCallCompleted,
    LlmCallRequested,
    PolicyAction,
    Request,
    SendMessage,
    Tick,
    TokenDelta,
    ToolCallRequested,
    ToolUse,
    TurnStarted,
    Usage,
    event_id_for,
)
from schemas import codec
from schemas._convert import build_converters
from schemas.loader import CURRENT_DIR, ENVELOPES, NAMESPACE, current_set, load_definitions

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _event(payload: object, seq: int = 3, session: str = "s1") -> Event:
    return Event(event_id_for(session, seq), session, seq, T0, "helper", payload, turn_id="t1")


LLM_DONE = _event(
    LlmCallCompleted(
        "c1", "claude-x", "hello", ("t1", "t2"), "tool_use", Usage(100, 20, 5, 1), 1234, 800, 2
    )
)
REQ = Request(
    "r1",
    "s1",
    T0,
    CompleteLlmCall("c1", "claude-x", "hi", (ToolUse("t1", "search", '{"q":"x"}'),)),
    correlation_id="corr",
)


# --------------------------------------------------------------------------- wire format


def test_single_object_header_is_magic_and_the_schema_fingerprint() -> None:
    data = codec.encode_event(LLM_DONE)
    schema = codec.current_schema("Event")
    expected = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    assert data[:2] == b"\xc3\x01"
    assert data[2:10].hex() == expected == codec.current_fingerprint("Event")
    assert codec.peek_fingerprint(data) == expected


def test_body_is_plain_avro_that_any_reader_with_the_schema_can_read() -> None:
    data = codec.encode_event(LLM_DONE)
    record = schemaless_reader(
        io.BytesIO(data[10:]),
        parse_schema(codec.current_schema("Event")),
        None,
        return_record_name=True,
    )
    assert record["session_id"] == "s1"
    assert record["seq"] == 3
    assert record["occurred_at"] == T0
    assert record["payload"][0] == "turnlog.v1.LlmCallCompleted"
    assert record["payload"][1]["usage"]["cache_write_tokens"] == 1


def test_each_envelope_has_its_own_fingerprint_and_all_are_known() -> None:
    fps = {name: codec.current_fingerprint(name) for name in ENVELOPES}
    assert len(set(fps.values())) == len(ENVELOPES)
    known = codec.known_fingerprints()
    for name, fp in fps.items():
        assert known[fp] == (name, "current")


@pytest.mark.parametrize(
    ("encode", "decode", "value"),
    [
        (codec.encode_event, codec.decode_event, LLM_DONE),
        (codec.encode_request, codec.decode_request, REQ),
        (codec.encode_delta, codec.decode_delta, TokenDelta("s1", "c1", 4, "tok", T0, done=True)),
        (codec.encode_checkpoint, codec.decode_checkpoint, AuditCheckpoint(9, "ab" * 32, 9, T0)),
    ],
)
def test_each_envelope_round_trips(encode: typing.Any, decode: typing.Any, value: object) -> None:
    assert decode(encode(value)) == value


def test_non_utc_datetimes_read_back_as_the_same_instant_in_utc() -> None:
    local = datetime(2024, 5, 1, 14, 0, 0, 7, tzinfo=timezone(timedelta(hours=2)))
    ev = Event(event_id_for("s", 1), "s", 1, local, "a", TurnStarted(1))
    back = codec.decode_event(codec.encode_event(ev))
    assert back.occurred_at == local
    assert back.occurred_at.tzinfo == UTC
    assert back.occurred_at.microsecond == 7


def test_decoding_accepts_bytearray_and_memoryview() -> None:
    data = codec.encode_event(LLM_DONE)
    assert codec.decode_event(bytearray(data)) == LLM_DONE
    assert codec.decode_event(memoryview(data)) == LLM_DONE


def test_enums_and_nested_records_decode_to_their_python_types() -> None:
    ev = _event(ToolCallRequested("c2", "c1", "search", "{}", PolicyAction.DENY, None, T0))
    back = codec.decode_event(codec.encode_event(ev))
    assert isinstance(back.payload, ToolCallRequested)
    assert back.payload.decision is PolicyAction.DENY
    req = Request("r", "s", T0, CompleteChildSession("c", "k", ChildStatus.FAILED))
    out = codec.decode_request(codec.encode_request(req))
    assert isinstance(out.payload, CompleteChildSession)
    assert out.payload.status is ChildStatus.FAILED
    assert isinstance(out.payload.usage, Usage)


# --------------------------------------------------------------------------- encode errors


def test_encoding_an_int_beyond_64_bits_is_an_invalid_record_naming_the_event() -> None:
    ev = _event(LlmCallCompleted("c", "m", "", (), "end", Usage(), 1 << 64, 0, 1), seq=7)
    with pytest.raises(InvalidRecord, match=r"session 's1' seq 7"):
        codec.encode_event(ev)


def test_encoding_text_that_is_not_utf8_encodable_is_an_invalid_record() -> None:
    req = Request("r1", "s1", T0, SendMessage("bad \ud800 surrogate"))
    with pytest.raises(InvalidRecord, match=r"Request 'r1' of session 's1'"):
        codec.encode_request(req)


def test_encoding_the_wrong_envelope_type_is_an_invalid_record() -> None:
    with pytest.raises(InvalidRecord, match="encoder takes Event records, got Request"):
        codec.encode_event(REQ)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- JSON form


def test_event_dict_tags_the_payload_and_spells_datetimes_as_utc_iso() -> None:
    d = codec.event_to_dict(LLM_DONE)
    assert d["occurred_at"] == "2024-05-01T12:00:00.123456Z"
    assert d["payload"]["type"] == "LlmCallCompleted"
    assert d["payload"]["tool_call_ids"] == ["t1", "t2"]
    assert d["payload"]["usage"] == {
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_read_tokens": 5,
        "cache_write_tokens": 1,
        "reasoning_tokens": 0,
    }
    assert json.loads(json.dumps(d)) == d  # JSON-safe as it is


def test_whole_second_datetimes_still_carry_microseconds() -> None:
    ev = Event(event_id_for("s", 1), "s", 1, T0.replace(microsecond=0), "a", TurnStarted(1))
    assert codec.event_to_dict(ev)["occurred_at"] == "2024-05-01T12:00:00.000000Z"


def test_enum_fields_are_their_string_values_in_the_dict() -> None:
    ev = _event(ToolCallRequested("c2", "c1", "x", "{}", PolicyAction.REQUIRE_APPROVAL, "r", T0))
    assert codec.event_to_dict(ev)["payload"]["decision"] == "require_approval"


def test_canonical_json_is_sorted_compact_and_unicode() -> None:
    ev = _event(LlmCallCompleted("c", "m", "héllo ✓", (), "end", Usage(), 0, 0, 1))
    text = codec.canonical_event_json(ev)
    assert " " not in text.replace("héllo ✓", "")
    assert "héllo ✓" in text
    parsed = json.loads(text)
    assert list(parsed) == sorted(parsed)
    assert list(parsed["payload"]) == sorted(parsed["payload"])
    assert parsed == codec.event_to_dict(ev)


def test_canonical_json_refuses_a_nan_float() -> None:
    payload = LlmCallRequested("c", "m", (), 10, math.nan, (), 0, "h", "h", "d", 0, T0)
    with pytest.raises(InvalidRecord, match="canonical JSON"):
        codec.canonical_event_json(_event(payload))


def test_request_dict_round_trips_and_has_no_type_clash() -> None:
    d = codec.request_to_dict(REQ)
    assert d["payload"]["type"] == "CompleteLlmCall"
    assert d["payload"]["tool_uses"] == [
        {"call_id": "t1", "name": "search", "arguments_json": '{"q":"x"}'}
    ]
    assert codec.request_from_dict(d) == REQ
    assert codec.canonical_request_json(REQ) == json.dumps(
        d, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def test_from_dict_fills_absent_fields_that_have_defaults() -> None:
    d = codec.request_to_dict(REQ)
    for key in ("correlation_id", "causation_id", "agent"):
        del d[key]
    for key in ("stop_reason", "usage", "latency_ms", "circuits_opened"):
        del d["payload"][key]
    back = codec.request_from_dict(d)
    assert back.correlation_id is None
    assert back.payload.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert back.payload.usage == Usage()  # type: ignore[union-attr]


def test_from_dict_accepts_any_utc_offset_spelling() -> None:
    d = codec.event_to_dict(LLM_DONE)
    d["occurred_at"] = "2024-05-01T14:00:00.123456+02:00"
    assert codec.event_from_dict(d).occurred_at == T0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("session_id"), "no field 'session_id'"),
        (lambda d: d.update(bogus=1), r"unknown field\(s\) \['bogus'\]"),
        (lambda d: d["payload"].update(type="NoSuchRecord"), "unknown type 'NoSuchRecord'"),
        (lambda d: d["payload"].pop("type"), "'type' tag"),
        (lambda d: d["payload"].update(extra="x"), r"LlmCallCompleted has unknown field"),
        (lambda d: d.update(seq="3"), "seq"),
        (lambda d: d.update(occurred_at="2024-05-01T12:00:00"), "no UTC offset"),
        (lambda d: d.update(seq=4), "event_id of session s1 seq 4"),
        (lambda d: d["payload"]["usage"].update(input_tokens=-1), "input_tokens"),
        (lambda d: d["payload"].update(usage=[1, 2]), "Usage must be a JSON object"),
    ],
)
def test_from_dict_rejects_bad_dicts_with_a_decode_error_saying_why(
    mutate: typing.Any, message: str
) -> None:
    d = copy.deepcopy(codec.event_to_dict(LLM_DONE))
    mutate(d)
    with pytest.raises(DecodeError, match=message):
        codec.event_from_dict(d)


def test_from_dict_rejects_a_non_dict() -> None:
    with pytest.raises(DecodeError):
        codec.request_from_dict(["not", "a", "dict"])  # type: ignore[arg-type]


def test_tick_has_an_empty_payload_dict() -> None:
    req = Request("r", "s", T0, Tick())
    assert codec.request_to_dict(req)["payload"] == {"type": "Tick"}
    assert codec.request_from_dict(codec.request_to_dict(req)) == req


# --------------------------------------------------------------------------- the mirror


def _record_files() -> dict[str, dict[str, typing.Any]]:
    return load_definitions(CURRENT_DIR)


def test_every_schema_file_is_a_documented_turnlog_v1_type() -> None:
    for full, schema in _record_files().items():
        assert schema["namespace"] == NAMESPACE, full
        assert schema.get("doc", "").strip(), f"{full} needs a doc"


def test_every_dataclass_and_enum_of_the_contract_has_a_schema_file() -> None:
    names = {full.rpartition(".")[2] for full in _record_files()}
    expected = (
        {cls.__name__ for cls in (*ev_mod.REQUEST_TYPES, *ev_mod.EVENT_TYPES)}
        | {"Request", "Event", "TokenDelta", "AuditCheckpoint", "Usage", "ToolUse"}
        | {"ThinkingBlock", "Attachment"}
        | {"Snapshot", "SessionSnapshot", "RestorePoint", "AgentVersion"}
        | {"ScheduleRecord", *(cls.__name__ for cls in ev_mod.SCHEDULE_TYPES)}
        | {"PolicyAction", "ChildStatus", "BudgetScope", "BudgetUnit", "EffectKind"}
    )
    assert names == expected


def test_payload_unions_list_every_record_type_in_order() -> None:
    s = current_set().envelopes
    for envelope, types in (("Request", ev_mod.REQUEST_TYPES), ("Event", ev_mod.EVENT_TYPES)):
        payload = next(f for f in s[envelope]["fields"] if f["name"] == "payload")
        names = [
            b["name"] if isinstance(b, dict) else b.rpartition(".")[2] for b in payload["type"]
        ]
        assert names == [t.__name__ for t in types]


def test_optional_fields_are_null_unions_with_a_null_default_and_datetimes_are_micros() -> None:
    for full, schema in _record_files().items():
        cls = getattr(ev_mod, full.rpartition(".")[2])
        if schema["type"] != "record":
            continue
        hints = typing.get_type_hints(cls, vars(ev_mod))
        for f in schema["fields"]:
            hint = hints[f["name"]]
            if type(None) in typing.get_args(hint):
                assert f["type"][0] == "null" and f["default"] is None, f"{full}.{f['name']}"
            if hint is datetime:
                assert f["type"] == {"type": "long", "logicalType": "timestamp-micros"}


def test_a_schema_that_drifts_from_its_dataclass_is_refused_naming_record_and_field() -> None:
    envelopes = copy.deepcopy(current_set().envelopes)
    payload = envelopes["Request"]["fields"][3]["type"]
    llm = next(b for b in payload if isinstance(b, dict) and b["name"] == "CompleteLlmCall")
    llm["fields"] = [f for f in llm["fields"] if f["name"] != "attempts"]
    with pytest.raises(ContractError, match=r"turnlog.v1.CompleteLlmCall .*attempts"):
        build_converters(envelopes)


def test_a_default_that_differs_from_the_dataclass_default_is_refused() -> None:
    envelopes = copy.deepcopy(current_set().envelopes)
    payload = envelopes["Request"]["fields"][3]["type"]
    llm = next(b for b in payload if isinstance(b, dict) and b["name"] == "CompleteLlmCall")
    next(f for f in llm["fields"] if f["name"] == "stop_reason")["default"] = "stop"
    with pytest.raises(ContractError, match=r"CompleteLlmCall.stop_reason has the default"):
        build_converters(envelopes)


def test_avro_defaults_spell_dataclass_defaults_the_avro_way() -> None:
    # The import-time mirror check enforces equality for every field (tested above with a
    # drifted default); here, one default of each kind and its Avro spelling.
    fields = {f.name: f for f in dataclasses.fields(CompleteLlmCall)}
    llm = _record_files()["turnlog.v1.CompleteLlmCall"]
    avro = {f["name"]: f.get("default") for f in llm["fields"]}
    assert avro["tool_uses"] == [] and fields["tool_uses"].default == ()
    assert avro["usage"] == dataclasses.asdict(Usage())
    assert avro["attempts"] == fields["attempts"].default == 1


def test_schema_files_are_valid_json_named_after_their_type(tmp_path: Path) -> None:
    (tmp_path / "turnlog.v1.Wrong.avsc").write_text(
        json.dumps({"type": "record", "name": "Other", "namespace": "turnlog.v1", "fields": []})
    )
    with pytest.raises(ContractError, match="must be named turnlog.v1.Other.avsc"):
        load_definitions(tmp_path)


def test_an_unresolved_reference_is_named(tmp_path: Path) -> None:
    for path in CURRENT_DIR.glob("*.avsc"):
        if path.name != "turnlog.v1.Usage.avsc":
            (tmp_path / path.name).write_text(path.read_text())
    from schemas.loader import load_schema_set

    with pytest.raises(ContractError, match=r"refers to turnlog.v1.Usage"):
        load_schema_set(tmp_path, "broken")


def test_encoding_matches_fastavro_bit_for_bit() -> None:
    # The header is ours; the body must be exactly what fastavro writes for the schema.
    schema = parse_schema(codec.current_schema("Request"))
    record = codec.request_to_dict(REQ)  # JSON shape -> rebuild the fastavro shape by hand
    body = io.BytesIO()
    payload = dict(record["payload"])
    kind = payload.pop("type")
    record = {**record, "occurred_at": T0, "payload": (f"turnlog.v1.{kind}", payload)}
    schemaless_writer(body, schema, record)
    assert codec.encode_request(REQ)[10:] == body.getvalue()


def test_a_union_member_with_a_field_named_type_is_refused() -> None:
    envelopes = copy.deepcopy(current_set().envelopes)
    payload = envelopes["Request"]["fields"][3]["type"]
    tick = next(b for b in payload if isinstance(b, dict) and b["name"] == "Tick")
    tick["fields"] = [{"name": "type", "type": "string"}]
    with pytest.raises(ContractError, match="Tick has a field named 'type'"):
        build_converters(envelopes)


@pytest.mark.parametrize(
    "n",
    [
        0,
        1,
        -1,
        63,
        64,
        -64,
        -65,
        8191,
        8192,
        -8192,
        -8193,
        (1 << 20) - 1,
        -(1 << 20),
        1 << 20,
        -(1 << 20) - 1,
        1 << 27,
        1 << 34,
        -(1 << 41),
        1 << 48,
        (1 << 55) - 1,
        1 << 55,
        -(1 << 62),
        (1 << 63) - 1,
        -(1 << 63),
    ],
)
def test_the_fast_reader_reads_varints_of_every_width(n: int) -> None:
    from agents.events import BudgetExceeded, BudgetScope, BudgetUnit

    ev = _event(BudgetExceeded(BudgetScope.TURN, BudgetUnit.TOKENS, n, n, 7))
    data = codec.encode_event(ev)
    fast, end = codec._FAST["Event"](data, codec.HEADER_SIZE, len(data))
    assert end == len(data)
    assert fast == ev == codec.decode_event(data)


@pytest.mark.parametrize(
    "micros",
    [
        0,
        1,
        -1,
        (1 << 48) - 1,
        -(1 << 48),  # the last 7-byte varints
        1 << 48,
        -(1 << 48) - 1,  # the first 8-byte ones: the unrolled path
        1_790_000_000_123_456,  # 2026
        (1 << 55) - 1,
        -(1 << 55),  # the last 8-byte ones
        1 << 55,
        -(1 << 55) - 1,  # 9 bytes: back to the loop
        253402300799999999,  # 9999-12-31T23:59:59.999999
        -62135596800000000,  # 0001-01-01
    ],
)
def test_the_fast_reader_reads_timestamps_of_every_width(micros: int) -> None:
    from agents.events import TurnStarted

    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    ev = Event(event_id_for("s", 1), "s", 1, at, "a", TurnStarted(1))
    data = codec.encode_event(ev)
    fast, end = codec._FAST["Event"](data, codec.HEADER_SIZE, len(data))
    assert end == len(data)
    assert fast == ev == codec.decode_event(data)
    assert fast.occurred_at == at


@pytest.mark.parametrize("envelope", list(ENVELOPES))
def test_fastavro_load_schema_reads_the_files_to_the_same_fingerprint(envelope: str) -> None:
    # The directory layout is fastavro's own (<full name>.avsc), so tools outside turnlog
    # can load an envelope straight from the files and agree on its fingerprint.
    from fastavro.schema import load_schema

    loaded = load_schema(str(CURRENT_DIR / f"{NAMESPACE}.{envelope}.avsc"))
    canonical = to_parsing_canonical_form(loaded)
    assert fingerprint(canonical, "CRC-64-AVRO") == codec.current_fingerprint(envelope)


def test_an_int_in_a_float_field_has_the_json_it_has_after_the_wire() -> None:
    ev = _event(LlmCallRequested("c", "m", (), 10, 1, (), 0, "h", "h", "d", 0, T0))  # type: ignore[arg-type]
    over_the_wire = codec.decode_event(codec.encode_event(ev))
    assert codec.canonical_event_json(ev) == codec.canonical_event_json(over_the_wire)
    assert '"temperature":1.0' in codec.canonical_event_json(ev)
    d = codec.event_to_dict(ev)
    d["payload"]["temperature"] = "1"
    with pytest.raises(DecodeError, match="expected a number"):
        codec.event_from_dict(d)


def test_long_form_varints_that_fastavro_accepts_decode_the_same() -> None:
    # Avro writers emit the shortest varint, but a longer form of the same number is
    # still valid Avro: the fast reader may refuse it (then the reference decoder reads
    # it) but must never read it differently.
    from agents.events import TurnStarted

    ev = Event(event_id_for("s", 1), "s", 1, T0, "zz-agent-zz", TurnStarted(1))
    data = codec.encode_event(ev)
    assert data.endswith(b"\x00\x00\x00")  # turn_id, causation_id, correlation_id: null
    long_null = data[:-1] + b"\x80\x00"  # correlation_id's union index 0 in two bytes
    assert data.count(b"\x16zz-agent-zz") == 1
    long_len = data.replace(b"\x16zz-agent-zz", b"\x96\x00zz-agent-zz")  # length 11
    for variant in (long_null, long_len):
        assert variant != data
        assert codec.decode_event(variant) == ev
