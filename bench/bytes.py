"""Where the bytes of a turn go: one session's records, read back from the broker's segments.

    .venv/bin/python -m bench.bytes [--turns 1000] [--windows 91-100,991-1000] [--keep]

One `turnlog worker session` (the calc agent on the scripted provider at zero latency)
runs one session for --turns turns, back to back, on fresh topics; then this script
decodes the log segment files (.log) the dev broker wrote for the session's partition of
each topic (Kafka's record batch v2 format, zstd batches decompressed) and prints, per
topic and per turn (the mean over each window of turns):

- logical bytes: record keys, values (for events and requests: the envelope's fields
  one by one, the payload, the 10-byte single-object framing) and headers by header
  name (its name + its value, as a producer's size limit counts them);
- on-disk bytes: data record batches (their compressed records), their 61-byte batch
  headers, and control batches (transaction markers).

A record is given to the turn of its event (`turn_id`), a request to the turn of the
events it caused (their `causation_id`), a snapshot to the turn of the event it covers;
a batch to the turn of its first record given one; a control batch to the turn of the
data batch before it in the same partition. Records of no turn (session-level events,
inputs that caused nothing) are counted apart.

What stays and what goes: the events topic is kept forever (the source of truth), the
snapshots topic is compacted (one snapshot per session, and the partition's restore
point, stay once its segment rolls: what it holds per turn before compaction is not kept
for good), the requests topic is an input queue with a time retention
(TURNLOG_REQUESTS_RETENTION_HOURS, default a week). The table says which is which.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import struct
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cramjam

from agents.events import Event, Request, SessionSnapshot
from bench.peers._turnlog import KAFKA_DATA, TurnClient
from schemas import codec
from schemas.codec import decode_event, decode_request, decode_snapshot
from streams.partitioning import partition_for
from streams.topics import delete_topics, ensure_topics
from tests.support.harness import WorkerProcess, scripted_script, worker_env

SESSION = "bytes-session"
BATCH_HEADER = 61  # record batch v2: offset, length, epoch, magic, crc, ... record count
_COMPRESSION = {0: None, 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

# --------------------------------------------------------------------------- segments


@dataclass
class Record:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    value_at: int = 0  # where the value starts in its batch's (decompressed) records


@dataclass
class Batch:
    base_offset: int
    size: int  # on disk: the 12-byte offset + length prefix included
    control: bool
    compression: str | None
    records: list[Record] = field(default_factory=list)
    turn: int | None = None
    body: bytes = b""  # the records, decompressed


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint (Kafka's record fields) at `pos`: (value, next position)."""
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def _bytes_field(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    n, pos = _varint(buf, pos)
    if n < 0:
        return None, pos
    return buf[pos : pos + n], pos + n


def _records(body: bytes, base_offset: int, count: int) -> list[Record]:
    out: list[Record] = []
    pos = 0
    for _ in range(count):
        length, pos = _varint(body, pos)
        end = pos + length
        pos += 1  # attributes
        _, pos = _varint(body, pos)  # timestamp delta
        delta, pos = _varint(body, pos)
        key, pos = _bytes_field(body, pos)
        value, pos = _bytes_field(body, pos)
        value_at = pos - len(value or b"")
        n_headers, pos = _varint(body, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(n_headers):
            name, pos = _bytes_field(body, pos)
            hval, pos = _bytes_field(body, pos)
            headers.append(((name or b"").decode(), hval))
        if pos != end:
            raise ValueError(f"record at offset {base_offset + delta} does not end at its length")
        out.append(Record(base_offset + delta, key, value, headers, value_at))
    return out


def read_segments(directory: Path) -> list[Batch]:
    """Every record batch of one partition directory's .log files, in offset order."""
    batches: list[Batch] = []
    for path in sorted(directory.glob("*.log")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            base_offset, length = struct.unpack_from(">qi", data, pos)
            if length <= 0 or pos + 12 + length > len(data):
                break  # the tail of a segment being written
            magic = data[pos + 16]
            if magic != 2:
                raise ValueError(f"{path}: batch at {base_offset} has magic {magic}, not 2")
            attributes = struct.unpack_from(">h", data, pos + 21)[0]
            count = struct.unpack_from(">i", data, pos + 57)[0]
            codec = _COMPRESSION[attributes & 0x7]
            body = data[pos + BATCH_HEADER : pos + 12 + length]
            if codec == "zstd":
                body = bytes(cramjam.zstd.decompress(body))
            elif codec is not None:
                raise ValueError(f"{path}: batch at {base_offset} is {codec}, not read here")
            batches.append(
                Batch(
                    base_offset,
                    12 + length,
                    bool(attributes & 0x20),
                    codec,
                    _records(body, base_offset, count),
                    body=body,
                )
            )
            pos += 12 + length
    return batches


# --------------------------------------------------------------------------- avro sizes


def _zigzag_len(n: int) -> int:
    z = (n << 1) ^ (n >> 63)
    size = 1
    while z >= 0x80:
        z >>= 7
        size += 1
    return size


def _str_len(s: str) -> int:
    b = len(s.encode())
    return _zigzag_len(b) + b


def _opt_str_len(s: str | None) -> int:
    return 1 if s is None else 1 + _str_len(s)


def _micros(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def event_fields(ev: Event) -> dict[str, int]:
    """Bytes of each envelope field of an event as Avro writes it (the order of
    turnlog.v1.Event.avsc); the payload (union branch + record) is the rest."""
    return {
        "event_id": _str_len(ev.event_id),
        "session_id": _str_len(ev.session_id),
        "seq": _zigzag_len(ev.seq),
        "occurred_at": _zigzag_len(_micros(ev.occurred_at)),
        "agent": _str_len(ev.agent),
        "turn_id": _opt_str_len(ev.turn_id),
        "causation_id": _opt_str_len(ev.causation_id),
        "correlation_id": _opt_str_len(ev.correlation_id),
        "claimed_at": 1 if ev.claimed_at is None else 1 + _zigzag_len(_micros(ev.claimed_at)),
    }


def request_fields(req: Request) -> dict[str, int]:
    """As `event_fields`, for turnlog.v1.Request.avsc's envelope."""
    out = {
        "request_id": _str_len(req.request_id),
        "session_id": _str_len(req.session_id),
        "occurred_at": _zigzag_len(_micros(req.occurred_at)),
        "correlation_id": _opt_str_len(req.correlation_id),
        "causation_id": _opt_str_len(req.causation_id),
        "agent": _opt_str_len(req.agent),
    }
    # Fields added to the envelope since (read by name when present).
    for name in ("client",):
        if hasattr(req, name):
            out[name] = _opt_str_len(getattr(req, name))
    return out


# --------------------------------------------------------------------------- accounting

FRAMING = 10  # C3 01 + the 8-byte schema fingerprint
# Compact events (schemas.codec) carry no event_id: the reader derives it.
_COMPACT_HEADER = codec.MAGIC + bytes.fromhex(
    codec.schema_fingerprint(codec.compact_event_schema())
)


def _compact(value: bytes) -> bool:
    return value[:FRAMING] == _COMPACT_HEADER


@dataclass
class Tally:
    """Bytes of one topic, by component, summed over records/batches given to turns."""

    parts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    records: int = 0
    batches: int = 0
    markers: int = 0

    def add(self, name: str, n: int) -> None:
        self.parts[name] += n


def _turn_no(turn_id: str | None) -> int | None:
    if turn_id is None:
        return None
    return int(turn_id.rsplit(":t", 1)[1])


def account(
    topics: dict[str, list[Batch]],
) -> tuple[dict[str, dict[int | None, Tally]], dict[str, Any]]:
    """topic -> turn -> Tally; plus a few facts (events per turn, ...)."""
    out: dict[str, dict[int | None, Tally]] = {t: defaultdict(Tally) for t in topics}
    turn_of_request: dict[str, int] = {}
    turn_of_seq: dict[int, int | None] = {}
    decoded_events: dict[int, Event] = {}
    for batch in topics.get("events", ()):
        for rec in batch.records:
            if not batch.control and rec.value is not None:
                ev = decode_event(rec.value)
                decoded_events[rec.offset] = ev
                turn = _turn_no(ev.turn_id)
                turn_of_seq[ev.seq] = turn
                if ev.causation_id is not None and turn is not None:
                    turn_of_request.setdefault(ev.causation_id, turn)
    last_seen_turn: int | None = None
    for topic, batches in topics.items():
        last_seen_turn = None
        for batch in batches:
            if batch.control:
                tally = out[topic][last_seen_turn]
                tally.markers += 1
                tally.add("disk: control batches (transaction markers)", batch.size)
                continue
            parts = [
                _record_parts(topic, rec, decoded_events, turn_of_seq, turn_of_request)
                for rec in batch.records
            ]
            known = [turn for turn, _, _ in parts if turn is not None]
            batch.turn = known[0] if known else None
            last_seen_turn = batch.turn if batch.turn is not None else last_seen_turn
            for rec, (turn, fields, payload) in zip(batch.records, parts, strict=True):
                # A record of no turn of its own (a restore point) goes with its batch.
                tally = out[topic][turn if turn is not None else batch.turn]
                tally.records += 1
                tally.add("key", len(rec.key or b""))
                for name, n in fields.items():
                    tally.add(f"value: envelope {name}", n)
                tally.add("value: payload" if fields else "value", payload)
                for name, hval in rec.headers:
                    tally.add(f"header {name}", len(name) + len(hval or b""))
            tally = out[topic][batch.turn]
            tally.batches += 1
            tally.add("disk: batch headers (61 B each)", BATCH_HEADER)
            tally.add("disk: records in data batches", batch.size - BATCH_HEADER)
    facts = {"events": len(decoded_events)}
    return out, facts


def _record_parts(
    topic: str,
    rec: Record,
    events: dict[int, Event],
    turn_of_seq: dict[int, int | None],
    turn_of_request: dict[str, int],
) -> tuple[int | None, dict[str, int], int]:
    """(turn, envelope field sizes, payload bytes) of one record."""
    value = rec.value or b""
    if topic == "events":
        ev = events[rec.offset]
        fields = event_fields(ev)
        fields["framing"] = FRAMING
        if _compact(value):
            fields["event_id"] = 0
        return _turn_no(ev.turn_id), fields, len(value) - sum(fields.values())
    if topic == "requests":
        req = decode_request(value)
        fields = request_fields(req)
        fields["framing"] = FRAMING
        return turn_of_request.get(req.request_id), fields, len(value) - sum(fields.values())
    if topic == "snapshots" and value:
        snap = decode_snapshot(value)
        turn = None
        if isinstance(snap.payload, SessionSnapshot):
            turn = turn_of_seq.get(snap.payload.seq)
        return turn, {}, len(value)
    return None, {}, len(value)


# --------------------------------------------------------------------------- what if

# Envelope fields a compact event envelope could leave out (derivable), in the order they
# lead the value: event_id (a function of session_id and seq; a compact event has none to
# cut), then session_id (the key).
WHAT_IF = {"without event_id": 1, "without event_id and session_id": 2}


def what_if(batches: list[Batch], lo: int, hi: int) -> dict[str, float]:
    """On-disk bytes per turn the events' data batches of turns lo..hi would save if their
    values lacked the leading envelope fields of WHAT_IF: each batch's records compressed
    again (zstd level 3, the producer's) as they are and with those bytes cut out of every
    value; the difference of the two, per turn (record length varints left as they are:
    a byte or so per record)."""
    out = dict.fromkeys(WHAT_IF, 0.0)
    for batch in batches:
        if batch.control or batch.turn is None or not lo <= batch.turn <= hi:
            continue
        base = len(cramjam.zstd.compress(batch.body, level=3))
        for name, n_fields in WHAT_IF.items():
            parts, pos = [], 0
            for rec in batch.records:
                ev = decode_event(rec.value or b"")
                cut = (0 if _compact(rec.value or b"") else _str_len(ev.event_id)) + (
                    _str_len(ev.session_id) if n_fields > 1 else 0
                )
                start = rec.value_at + FRAMING
                parts.append(batch.body[pos:start])
                pos = start + cut
            parts.append(batch.body[pos:])
            out[name] += base - len(cramjam.zstd.compress(b"".join(parts), level=3))
    return {name: v / (hi - lo + 1) for name, v in out.items()}


# --------------------------------------------------------------------------- the run


async def run_session(bootstrap: str, turns_n: int, partitions: int, keep: bool) -> dict[str, Any]:
    """One session, `turns_n` turns back to back, on fresh topics; its partition's
    segments decoded per topic."""
    prefix = f"bytes{secrets.token_hex(3)}."
    names = (await ensure_topics(bootstrap, prefix, partitions=partitions)).names
    p = partition_for(SESSION, partitions)
    with tempfile.TemporaryDirectory(prefix="bench-bytes-") as tmpname:
        tmp = Path(tmpname)
        script = scripted_script(tmp, latency_ms=0)
        env = worker_env(bootstrap, prefix, partitions=partitions, script=script, sandbox=tmp)
        try:
            worker = WorkerProcess("bytes", env, tmp / "worker.log").start()
            client = TurnClient(bootstrap, names, partitions)
            client.n_sessions = 1
            try:
                await worker.wait_assigned(at_least=partitions)
                await client.start()
                client.target_turns = turns_n
                observer = asyncio.create_task(client.observe_events())
                started = time.monotonic()
                await client.send_turn(SESSION, first=True)
                while len(client.obs.turns_done) < turns_n:
                    if time.monotonic() > started + 1800 or not worker.alive:
                        raise RuntimeError(f"{turns_n} turns did not finish:\n{worker.tail()}")
                    await asyncio.sleep(0.05)  # polling the client's own counter
                elapsed = time.monotonic() - started
                await asyncio.sleep(1.0)  # the last effects' reports reach the broker
                observer.cancel()
                await asyncio.gather(observer, return_exceptions=True)
            finally:
                await client.stop()
                worker.terminate()
            topics = {
                short: read_segments(KAFKA_DATA / f"{getattr(names, short)}-{p}")
                for short in ("events", "requests", "snapshots")
            }
        finally:
            if not keep:
                await delete_topics(bootstrap, prefix)
    return {"topics": topics, "elapsed_s": elapsed, "prefix": prefix, "partition": p}


KEPT = {"events": "kept for good", "snapshots": "compacted", "requests": "transient (retention)"}


def _window_rows(
    tallies: dict[str, dict[int | None, Tally]], lo: int, hi: int
) -> Iterator[tuple[str, str, float]]:
    n = hi - lo + 1
    for topic, by_turn in tallies.items():
        sums: dict[str, int] = defaultdict(int)
        counts = {"records": 0, "batches": 0, "markers": 0}
        for turn in range(lo, hi + 1):
            t = by_turn.get(turn)
            if t is None:
                continue
            for name, v in t.parts.items():
                sums[name] += v
            counts["records"] += t.records
            counts["batches"] += t.batches
            counts["markers"] += t.markers
        logical = sum(v for k, v in sums.items() if not k.startswith("disk"))
        disk = sum(v for k, v in sums.items() if k.startswith("disk"))
        yield topic, f"logical ({KEPT[topic]})", logical / n
        for name in sorted(k for k in sums if not k.startswith("disk")):
            yield topic, f"  {name}", sums[name] / n
        yield topic, f"on disk ({KEPT[topic]})", disk / n
        for name in sorted(k for k in sums if k.startswith("disk")):
            yield topic, f"  {name.removeprefix('disk: ')}", sums[name] / n
        for name, c in counts.items():
            yield topic, f"  {name} per turn", c / n


def report(tallies: dict[str, dict[int | None, Tally]], windows: list[tuple[int, int]]) -> str:
    rows: dict[tuple[str, str], list[float]] = {}
    for lo, hi in windows:
        for topic, name, v in _window_rows(tallies, lo, hi):
            rows.setdefault((topic, name), []).append(v)
    head = "| topic | bytes per turn | " + " | ".join(f"turns {lo:,}–{hi:,}" for lo, hi in windows)
    lines = [head + " |", "|---|---|" + "---:|" * len(windows)]
    for (topic, name), vals in rows.items():
        cells = " | ".join(f"{v:,.1f}" if "per turn" in name else f"{v:,.0f}" for v in vals)
        lines.append(f"| {topic} | {name.replace('|', '/')} | {cells} |")
    for label, chosen in (
        ("kept for good (events)", ("events",)),
        ("kept, compacted (snapshots, before compaction)", ("snapshots",)),
        ("transient (requests)", ("requests",)),
        ("all", ("events", "snapshots", "requests")),
    ):
        for kind in ("logical", "on disk"):
            vals = [
                sum(
                    v
                    for t, n, v in _window_rows(tallies, lo, hi)
                    if t in chosen and n.startswith(kind)
                )
                for lo, hi in windows
            ]
            cells = " | ".join(f"{v:,.0f}" for v in vals)
            lines.append(f"| **{label}** | **{kind}** | {cells} |")
    return "\n".join(lines)


def _windows(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        lo, hi = part.split("-")
        out.append((int(lo), int(hi)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--windows", default="91-100,991-1000")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the run's topics")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    windows = [(lo, hi) for lo, hi in _windows(args.windows) if hi <= args.turns]
    run = asyncio.run(run_session(args.bootstrap, args.turns, args.partitions, args.keep))
    tallies, facts = account(run["topics"])
    print(
        f"bench.bytes: session {SESSION!r}, {args.turns} turns in {run['elapsed_s']:.1f} s, "
        f"partition {run['partition']} of {args.partitions} (topics {run['prefix']}*), "
        f"{facts['events']} events"
    )
    print(report(tallies, windows))
    print()
    print(
        "| events on disk: what a compact envelope would save per turn | "
        + " | ".join(f"turns {lo:,}–{hi:,}" for lo, hi in windows)
        + " |"
    )
    print("|---|" + "---:|" * len(windows))
    saved = [what_if(run["topics"]["events"], lo, hi) for lo, hi in windows]
    for name in WHAT_IF:
        print(f"| {name} | " + " | ".join(f"{s[name]:,.0f}" for s in saved) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
