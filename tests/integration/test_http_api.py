"""The console's HTTP API against the live stack (real Kafka, Postgres, `worker all`,
`turnlog ui` as subprocesses), as a client that does not speak Kafka uses it: start a
session, follow it as Server-Sent Events (events and token deltas), approve the shell
call (the approver recorded is the caller the console authenticated), fork at a seq and
continue the fork, resume a stream by Last-Event-ID, read sessions, events, costs and
operations — and the guard: CSRF, size limits, clear 400/404s, tokens when configured."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.integration.test_console_support import (
    Stack,
    console_stack,
    csrf_client,
    start_console,
    wait_for,
)
from turnlog.console.reads import Reads

__all__ = ["console_stack"]  # the fixture, imported for this module

TOKEN = "alice-token-0123456789abcdef"


class Sse:
    """An SSE stream read on a thread: `items` are (event, id, data) as they arrive."""

    def __init__(self, api: httpx.Client, url: str, headers: dict[str, str] | None = None):
        self.items: list[tuple[str, str | None, Any]] = []
        self.status: int | None = None
        self._stop = threading.Event()
        # A client of its own: the stream is read on this thread only.
        self._client = httpx.Client(base_url=api.base_url, timeout=httpx.Timeout(60, read=60))
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        event, event_id, data = "message", None, []
        try:
            with self._client.stream("GET", url, headers=headers) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        data.append(line[6:])
                    elif line == "" and data:
                        self.items.append((event, event_id, json.loads("\n".join(data))))
                        event, event_id, data = "message", None, []
        except httpx.HTTPError:
            if not self._stop.is_set():
                raise

    def events(self) -> list[dict[str, Any]]:
        return [d for e, _, d in self.items if e == "event"]

    def types(self) -> list[str]:
        return [d["type"] for d in self.events()]

    def deltas(self) -> list[dict[str, Any]]:
        return [d for e, _, d in self.items if e == "delta"]

    def close(self) -> None:
        self._stop.set()
        self._client.close()
        self._thread.join(5)


@pytest.fixture
def api(console_stack: Stack) -> Iterator[httpx.Client]:
    client = csrf_client(console_stack.url)
    try:
        yield client
    finally:
        client.close()


def _session(api: httpx.Client, sid: str) -> dict[str, Any]:
    r = api.get(f"/api/sessions/{sid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _projected(api: httpx.Client, sid: str, predicate: Any, what: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def check() -> bool:
        r = api.get(f"/api/sessions/{sid}")
        if r.status_code != 200:
            return False
        seen.update(r.json())
        return bool(predicate(seen))

    wait_for(check, 30, what)
    return seen


def test_a_session_driven_through_the_api_streams_is_approved_forked_and_resumed(
    console_stack: Stack, api: httpx.Client
) -> None:
    started = api.post("/api/sessions?wait=true", json={"agent": "assistant", "text": "hi"})
    assert started.status_code == 200, started.text
    sid = started.json()["session_id"]
    assert started.json()["status"] in ("accepted", "completed")
    _projected(api, sid, lambda s: s["session"]["phase"] == "idle", "the first turn")

    follow = Sse(api, f"/api/sessions/{sid}/stream")
    wait_for(lambda: follow.status == 200, 10, "the stream to open")
    sent = api.post(f"/api/sessions/{sid}/messages", json={"text": "list the files here"})
    assert sent.status_code == 202 and sent.json()["status"] == "sent"
    wait_for(lambda: "ApprovalRequested" in follow.types(), 30, "ApprovalRequested on the stream")
    # The answer before the tool call streamed as token deltas of its LLM call.
    requested = next(e for e in follow.events() if e["type"] == "LlmCallRequested")
    streamed = [d for d in follow.deltas() if d["call_id"] == requested["payload"]["call_id"]]
    assert len(streamed) >= 2 and "".join(d["text"] for d in streamed).startswith("I'll list")
    seqs = [e["seq"] for e in follow.events()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # gap-free, in order

    def waiting_here() -> list[dict[str, Any]]:
        inbox = api.get("/api/approvals").json()["approvals"]
        return [a for a in inbox if a["session_id"] == sid]

    wait_for(waiting_here, 30, "the approval in the inbox (projected)")
    (waiting,) = waiting_here()
    assert waiting["tool_name"] == "shell" and waiting["expires_at"]
    decided = api.post(
        f"/api/sessions/{sid}/approvals/{waiting['call_id']}?wait=true",
        # A body naming someone else is refused: the approver is who called.
        json={"decision": "approve", "reason": "listing is harmless"},
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_by"] == "local" and decided.json()["status"] in (
        "accepted",
        "completed",
    )
    wait_for(lambda: follow.types().count("TurnCompleted") >= 1, 30, "the turn to complete")
    follow.close()

    shown = _projected(
        api,
        sid,
        lambda s: any(a["outcome"] == "granted" for a in s["approvals"]),
        "the approval projected",
    )
    (granted,) = shown["approvals"]
    assert (granted["decided_by"], granted["reason"]) == ("local", "listing is harmless")
    assert shown["costs"]["total_usd"] > 0

    again = api.post(
        f"/api/sessions/{sid}/approvals/{waiting['call_id']}?wait=true",
        json={"decision": "deny"},
    )
    assert again.status_code == 409 and again.json()["status"] == "rejected"
    assert again.json()["reason"]

    # Resume: Last-Event-ID k -> the stream starts at k+1, read from the log.
    resumed = Sse(api, f"/api/sessions/{sid}/stream", headers={"last-event-id": "3"})
    wait_for(lambda: len(resumed.events()) >= 5, 20, "the resumed stream to catch up")
    assert [e["seq"] for e in resumed.events()[:5]] == [4, 5, 6, 7, 8]
    assert [i for _, i, _ in resumed.items if i is not None][:2] == ["4", "5"]
    resumed.close()

    events = api.get(f"/api/sessions/{sid}/events", params={"from_seq": 2, "limit": 3}).json()
    assert [e["seq"] for e in events["events"]] == [2, 3, 4]

    state = api.get(f"/api/sessions/{sid}/state", params={"at": 3}).json()
    assert state["state"]["last_seq"] == 3 and state["state"]["phase"] != "idle"

    forked = api.post(f"/api/sessions/{sid}/fork?wait=true", json={"at_seq": 10})
    assert forked.status_code == 200, forked.text
    fork_id = forked.json()["session_id"]
    assert fork_id != sid and forked.json()["status"] in ("forked", "accepted")
    cont = api.post(f"/api/sessions/{fork_id}/messages?wait=true", json={"text": "what is 2*21?"})
    assert cont.status_code == 200, cont.text
    fork = _projected(
        api, fork_id, lambda s: s["session"]["turns_completed"] >= 1, "the fork's own turn"
    )
    assert fork["session"]["forked_from_session_id"] == sid
    assert any(b["session_id"] == sid for b in fork["branches"])
    listed = api.get("/api/sessions", params={"q": sid}).json()["sessions"]
    assert {s["session_id"] for s in listed} == {sid}

    costs = api.get("/api/costs", params={"by": "agent"}).json()
    assert any(r["agent"] == "assistant" for r in costs["rows"])
    ops = api.get("/api/operations").json()
    assert ops["worker_lag"] and all(r["lag"] >= 0 for r in ops["projector_lag"])
    scraped = api.get("/metrics").text
    assert 'turnlog_console_requests_total{type="DecideApproval"}' in scraped
    assert "turnlog_console_followers " in scraped and "turnlog_console_live_ok 1.0" in scraped
    shown = api.get("/api/schedules").json()
    assert isinstance(shown["schedules"], list) and isinstance(shown["runs"], list)
    verified = api.post("/api/audit/verify")
    assert verified.status_code == 200 and verified.json()["ok"] is True


def test_bad_requests_get_clear_errors_and_change_nothing(
    console_stack: Stack, api: httpx.Client
) -> None:
    with psycopg.connect(console_stack.database_url, row_factory=dict_row) as conn:
        before = conn.execute("SELECT count(*) AS n FROM events").fetchone()
    no_csrf = httpx.post(
        f"{console_stack.url}/api/sessions", json={"agent": "assistant", "text": "x"}
    )
    assert no_csrf.status_code == 403 and "X-CSRF-Token" in no_csrf.json()["error"]
    cross = api.post(
        "/api/sessions",
        json={"agent": "assistant", "text": "x"},
        headers={"origin": "http://evil.example"},
    )
    assert cross.status_code == 403 and "Origin" in cross.json()["error"]
    rebinding = httpx.get(f"{console_stack.url}/api/sessions", headers={"host": "evil.example"})
    assert rebinding.status_code == 421

    missing = api.post("/api/sessions", json={"agent": "assistant"})
    assert missing.status_code == 400 and "text" in missing.json()["error"]
    extra = api.post("/api/sessions", json={"agent": "a", "text": "t", "by": "mallory"})
    assert extra.status_code == 400 and "by" in extra.json()["error"]
    bad_decision = api.post("/api/sessions/x/approvals/y", json={"decision": "maybe"})
    assert bad_decision.status_code == 400 and "decision" in bad_decision.json()["error"]
    huge = api.post("/api/sessions", content=b"{" + b" " * 2_000_000 + b"}")
    assert huge.status_code == 413
    # "²" is a digit to str.isdigit and not to int; 5,000 digits are over int's limit.
    for odd in ("\u00b2", "9" * 5000):
        bad_seq = api.get("/api/sessions/x/events", params={"from_seq": odd})
        assert bad_seq.status_code == 400 and "from_seq" in bad_seq.json()["error"]
        bad_limit = api.get("/api/sessions", params={"limit": odd})
        assert bad_limit.status_code == 400 and "limit" in bad_limit.json()["error"]
    bad_filter = api.get("/api/sessions", params={"min_usd": "lots"})
    assert bad_filter.status_code == 400 and "min_usd" in bad_filter.json()["error"]
    assert api.get("/api/sessions/no-such-session").status_code == 404
    assert api.get("/api/sessions/no-such-session/state").status_code == 404
    assert api.get("/sessions/no-such-session").status_code == 404
    for path in (
        "/sessions/a%00b",
        "/api/sessions/a%00b",
        "/api/sessions/a%00b/events",
        "/api/sessions/a%00b/stream?from_seq=1",
    ):
        nul = api.get(path)  # a NUL byte the database cannot take: the caller's fault
        assert nul.status_code == 400 and "NUL" in nul.json()["error"], (path, nul.text)
    for seen in ("s-1", "s-1:x", ":4", "s-\x00:4", "s-1:\u00b2", "s-1:" + "9" * 5000):
        bad_seen = api.get("/api/approvals", params={"seen": seen})
        assert bad_seen.status_code == 400 and "SESSION:SEQ" in bad_seen.json()["error"]

    spec = api.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/sessions",
        "/api/sessions/{session_id}/stream",
        "/api/sessions/{session_id}/approvals/{call_id}",
        "/api/sessions/{session_id}/fork",
        "/api/sessions/{session_id}/cancel",
        "/api/costs",
    ):
        assert path in spec["paths"], path
    with psycopg.connect(console_stack.database_url, row_factory=dict_row) as conn:
        after = conn.execute("SELECT count(*) AS n FROM events").fetchone()
    assert after == before  # nothing was produced by any refused request


def test_with_tokens_every_call_needs_one_and_the_approver_is_the_token_holder(
    console_stack: Stack,
) -> None:
    tokens = console_stack.tmp / "tokens"
    tokens.write_text(f"# who may sign in\nalice:{TOKEN}\n")
    secured = start_console(
        console_stack.env, console_stack.tmp, TURNLOG_UI_TOKENS_FILE=str(tokens)
    )
    try:
        base = secured.url
        assert httpx.get(f"{base}/api/sessions").status_code == 401
        assert httpx.get(f"{base}/metrics").status_code == 401
        page = httpx.get(f"{base}/approvals")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert (
            httpx.get(f"{base}/api/sessions", headers={"authorization": "Bearer wrong"}).status_code
            == 401
        )

        bearer = httpx.Client(
            base_url=base, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        with bearer:
            assert bearer.get("/api/me").json()["identity"] == "alice"
            started = bearer.post(
                "/api/sessions?wait=true",
                json={"agent": "assistant", "text": "list the files here"},
            )
            assert started.status_code == 200, started.text  # bearer calls need no CSRF token
            sid = started.json()["session_id"]
            wait_for(
                lambda: any(
                    a["session_id"] == sid for a in bearer.get("/api/approvals").json()["approvals"]
                ),
                30,
                "the approval request",
            )
            (waiting,) = [
                a
                for a in bearer.get("/api/approvals").json()["approvals"]
                if a["session_id"] == sid
            ]

        # The browser's way: sign in (cookie), then CSRF-protected calls.
        browser = httpx.Client(base_url=base, timeout=30)
        with browser:
            browser.get("/login")
            csrf = browser.cookies.get("turnlog_csrf")
            assert (
                browser.post(
                    "/api/login", json={"token": "nope"}, headers={"x-csrf-token": csrf}
                ).status_code
                == 401
            )
            signed = browser.post(
                "/api/login", json={"token": TOKEN}, headers={"x-csrf-token": csrf}
            )
            assert signed.status_code == 200 and signed.json()["identity"] == "alice"
            assert "turnlog_session" in browser.cookies
            no_header = browser.post(
                f"/api/sessions/{sid}/approvals/{waiting['call_id']}", json={"decision": "deny"}
            )
            assert no_header.status_code == 403
            denied = browser.post(
                f"/api/sessions/{sid}/approvals/{waiting['call_id']}?wait=true",
                json={"decision": "deny", "reason": "not now"},
                headers={"x-csrf-token": csrf},
            )
            assert denied.status_code == 200, denied.text
            assert denied.json()["decided_by"] == "alice"
            page = browser.get(f"/sessions/{sid}")
            assert page.status_code == 200 and TOKEN not in page.text
        with psycopg.connect(console_stack.database_url, row_factory=dict_row) as conn:
            wait_for(
                lambda: (
                    conn.execute(
                        "SELECT decided_by FROM approvals WHERE session_id = %s AND outcome = 'denied'",
                        (sid,),
                    ).fetchone()
                    == {"decided_by": "alice"}
                ),
                30,
                "the denial by alice projected",
            )
    finally:
        secured.stop()
    assert TOKEN not in secured.log()
    # The console's own record of who asked for what (the body's text never logged).
    asked = [
        json.loads(line)
        for line in secured.log().splitlines()
        if line.startswith("{") and '"console.request"' in line
    ]
    assert {(a["request_type"], a["by"], a["auth"]) for a in asked} == {
        ("SendMessage", "alice", "bearer"),
        ("DecideApproval", "alice", "cookie"),
    }


def test_cancel_from_the_api_ends_the_turn_that_waits_for_an_approval(
    console_stack: Stack, api: httpx.Client
) -> None:
    started = api.post(
        "/api/sessions?wait=true", json={"agent": "assistant", "text": "list the files here"}
    )
    assert started.status_code == 200, started.text
    sid = started.json()["session_id"]
    _projected(api, sid, lambda s: s["session"]["phase"] == "awaiting_approval", "the approval")
    # A message while the turn waits is queued, and the answer says so.
    queued = api.post(f"/api/sessions/{sid}/messages?wait=true", json={"text": "hello"})
    assert queued.status_code == 200 and queued.json()["status"] == "queued", queued.text

    cancelled = api.post(f"/api/sessions/{sid}/cancel?wait=true", json={"reason": "not now"})
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["reason"]) == ("cancelled", "not now")
    shown = _projected(
        api, sid, lambda s: s["session"]["turns_cancelled"] == 1, "the cancelled turn"
    )
    assert [a["outcome"] for a in shown["approvals"]] == ["cancelled"]
    assert not any(a["session_id"] == sid for a in api.get("/api/approvals").json()["approvals"])


def test_schedules_are_created_paused_resumed_and_removed_through_the_api(
    console_stack: Stack, api: httpx.Client
) -> None:
    import asyncio

    from agents.events import ScheduleDefined, SchedulePaused, ScheduleRemoved, ScheduleResumed
    from schemas.codec import decode_schedule_record
    from tests.support.harness import read_records

    body = {"id": "api-nightly", "agent": "assistant", "message": "Nightly report."}
    nightly = body | {"cron": "0 3 * * *", "timezone": "Europe/Paris"}
    assert httpx.post(f"{console_stack.url}/api/schedules", json=nightly).status_code == 403
    bad_cron = api.post("/api/schedules", json=body | {"cron": "0 25 * * *"})
    assert bad_cron.status_code == 400 and "cron" in bad_cron.json()["error"], bad_cron.text
    unknown = api.post("/api/schedules", json=nightly | {"by": "mallory"})
    assert unknown.status_code == 400 and "by" in unknown.json()["error"]
    assert api.post("/api/schedules", content=b"[1]").status_code == 400
    assert api.post("/api/schedules/no-such/pause").status_code == 404

    created = api.post("/api/schedules", json=nightly)
    assert created.status_code == 201, created.text
    assert created.json()["next_slot"] and created.json()["definition"]["source"] == "api"

    def status() -> str | None:
        rows = api.get("/api/schedules").json()["schedules"]
        return next((r["status"] for r in rows if r["schedule_id"] == "api-nightly"), None)

    wait_for(lambda: status() == "active", 30, "the schedule projected as active")
    for action, method, shown in [
        ("pause", "POST", "paused"),
        ("resume", "POST", "active"),
        ("", "DELETE", "removed"),
    ]:
        url = f"/api/schedules/api-nightly/{action}".rstrip("/")
        r = api.request(method, url)
        assert r.status_code == 200 and r.json()["by"] == "local", r.text
        wait_for(lambda s=shown: status() == s, 30, f"the schedule projected as {shown}")

    # The records are the ones `turnlog schedule ...` and the client write.
    topic = f"{console_stack.env['TURNLOG_TOPIC_PREFIX']}turnlog.schedules"
    kafka = console_stack.env["KAFKA_BOOTSTRAP_SERVERS"]
    records = [decode_schedule_record(r.value) for r in asyncio.run(read_records(kafka, topic))]
    mine = [
        r.payload
        for r in records
        if r.schedule_id == "api-nightly"
        and isinstance(
            r.payload, ScheduleDefined | SchedulePaused | ScheduleResumed | ScheduleRemoved
        )
    ]
    assert [type(p).__name__ for p in mine] == [
        "ScheduleDefined",
        "SchedulePaused",
        "ScheduleResumed",
        "ScheduleRemoved",
    ]
    defined = mine[0]
    assert isinstance(defined, ScheduleDefined)
    assert (defined.cron, defined.timezone, defined.source) == ("0 3 * * *", "Europe/Paris", "api")
    assert [getattr(p, "by", None) for p in mine[1:]] == ["local"] * 3
    spec = api.get("/api/openapi.json").json()
    assert {"/api/schedules/{schedule_id}/pause", "/api/schedules/{schedule_id}"} <= set(
        spec["paths"]
    )


def test_a_session_page_follows_the_log_from_the_last_event_it_shows(
    console_stack: Stack, api: httpx.Client
) -> None:
    """A session page reads the session row and its events side by side, as separate
    snapshots of a projection that moves on: the projector may commit between the two.
    The page follows the log from the last event it shows, whatever the session row
    says: a row ahead would skip the events in between, one behind would repeat them."""
    started = api.post("/api/sessions?wait=true", json={"agent": "assistant", "text": "hi"})
    assert started.status_code == 200, started.text
    sid = started.json()["session_id"]
    shown = _projected(api, sid, lambda s: s["session"]["phase"] == "idle", "the first turn")
    last = int(shown["session"]["last_seq"])
    assert last > 4

    def page_with_session_row_at(seq: int) -> str:
        with psycopg.connect(console_stack.database_url, autocommit=True) as conn:
            conn.execute("UPDATE sessions SET last_seq = %s WHERE session_id = %s", (seq, sid))
            try:
                r = api.get(f"/sessions/{sid}")
            finally:
                conn.execute("UPDATE sessions SET last_seq = %s WHERE session_id = %s", (last, sid))
        assert r.status_code == 200, r.text
        return r.text

    for row_seq in (last + 3, last - 3):
        html = page_with_session_row_at(row_seq)
        rows = [int(s) for s in re.findall(r'<tr class="kind-[^"]*" data-seq="(\d+)"', html)]
        assert rows == list(range(1, last + 1)), (row_seq, rows)
        assert f'data-last-seq="{last}"' in html, (row_seq, re.findall(r"data-last-seq=\S+", html))
        assert 'id="timeline-earlier"' not in html

    # A long session's page shows its last events (here the last three).
    async def latest() -> list[int]:
        reads = Reads(console_stack.database_url, max_size=1)
        await reads.open()
        try:
            return [r["seq"] for r in await reads.latest_events(sid, limit=3)]
        finally:
            await reads.close()

    assert asyncio.run(latest()) == [last - 2, last - 1, last]


def test_a_live_page_refresh_waits_for_the_events_it_was_told_of(
    console_stack: Stack, api: httpx.Client
) -> None:
    """The console's lists refresh when the live stream tells of an event; the projector
    may not have written that event yet. `seen=SESSION:SEQ` makes the answer wait until
    the projections hold it, so the refresh shows what the stream announced."""
    # Where the demo's approval lands in a session that starts by asking for the shell.
    first = api.post(
        "/api/sessions?wait=true", json={"agent": "assistant", "text": "list the files here"}
    ).json()["session_id"]
    waiting = _projected(
        api, first, lambda s: s["session"]["phase"] == "awaiting_approval", "an approval"
    )
    events = api.get(f"/api/sessions/{first}/events").json()["events"]
    at = next(e["seq"] for e in events if e["type"] == "ApprovalRequested")
    assert waiting["session"]["last_seq"] >= at

    # The same request again, and the inbox asked for right away: the approval is
    # several hops and an LLM call (60 ms) away, yet the answer holds it.
    started = api.post("/api/sessions", json={"agent": "assistant", "text": "list the files here"})
    assert started.status_code == 202, started.text
    sid = started.json()["session_id"]
    inbox = api.get("/api/approvals", params={"seen": f"{sid}:{at}"})
    assert inbox.status_code == 200, inbox.text
    assert sid in {a["session_id"] for a in inbox.json()["approvals"]}
    table = api.get("/", params=[("part", "table"), ("seen", f"{sid}:{at}")])
    assert table.status_code == 200 and sid in table.text and "awaiting_approval" in table.text
    inbox_part = api.get("/approvals", params={"part": "table", "seen": f"{sid}:{at}"})
    assert inbox_part.status_code == 200 and f"/sessions/{sid}" in inbox_part.text

    for s in (first, sid):  # leave no approval waiting in the other tests' inbox
        (call,) = [a for a in api.get("/api/approvals").json()["approvals"] if a["session_id"] == s]
        denied = api.post(
            f"/api/sessions/{s}/approvals/{call['call_id']}?wait=true",
            json={"decision": "deny", "reason": "test over"},
        )
        assert denied.status_code == 200, denied.text


def test_a_session_page_shows_one_state_of_the_projections(
    console_stack: Stack, api: httpx.Client
) -> None:
    """A session page is read in one snapshot, so a projector commit never falls between
    its parts. Loaded again and again while turns run, the page's event count (the
    session row) always equals its last timeline row (the events table). Read apart, as
    they were, the two differed on about one load in six."""
    loads = 0
    skewed: list[tuple[int, int]] = []
    for _ in range(12):
        started = api.post("/api/sessions", json={"agent": "assistant", "text": "what is 17*23?"})
        assert started.status_code == 202, started.text
        sid = started.json()["session_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = api.get(f"/sessions/{sid}")
            if r.status_code == 404:  # not projected yet
                time.sleep(0.01)
                continue
            assert r.status_code == 200, r.text
            rows = [int(s) for s in re.findall(r'<tr class="kind-[^"]*" data-seq="(\d+)"', r.text)]
            count = re.search(r"· (\d+) events", r.text)
            assert count, r.text[-2000:]
            loads += 1
            last_row = rows[-1] if rows else 0
            if int(count.group(1)) != last_row:
                skewed.append((int(count.group(1)), last_row))
            if "TurnCompleted" in r.text:
                break
    assert loads >= 50, loads
    assert skewed == [], f"{len(skewed)} of {loads} loads: {skewed[:10]}"
