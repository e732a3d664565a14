"""The console in a real browser: Debian's headless chromium, driven by Playwright over
the DevTools protocol (an explicit executable_path; Playwright's own browser downloads
are never used), against the live stack of test_console_support (real Kafka, Postgres,
`worker all`, `turnlog ui`).

A person's path through the demo session: start it from the sessions page, watch the
answer stream token by token, ask for the shell, approve the call from the inbox, see
the cost appear, travel to a seq, fork there and continue the fork. Each page is
screenshotted (into TURNLOG_CONSOLE_SCREENSHOTS when set: `docs/` holds the README's).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.integration.test_console_support import Stack, console_stack

__all__ = ["console_stack"]  # the fixture, imported for this module

TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "No chromium on PATH: the console's browser tests need Debian's chromium "
        "(`apt-get install chromium`; .ci/run installs it).",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def browser(console_stack: Stack) -> Iterator[Browser]:
    # After the stack: Playwright's sync API keeps an event loop running in this thread
    # while it is open, and the stack's set-up runs asyncio.run.
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=_chromium(),
            headless=True,
            # As root (CI), chromium refuses its own sandbox; the pages are our own.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, console_stack: Stack) -> Iterator[Page]:
    context = browser.new_context(
        base_url=console_stack.url, viewport={"width": 1360, "height": 900}
    )
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # Every length the streaming box had: proof that the answer arrived in pieces.
    pg.add_init_script(
        """
        window.__streamed = [];
        document.addEventListener("DOMContentLoaded", () => {
          const box = document.getElementById("streaming");
          if (!box) return;
          new MutationObserver(() => window.__streamed.push(box.textContent))
            .observe(box, {childList: true, characterData: true, subtree: true});
        });
        """
    )
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the pages: {errors}"


def _shot(page: Page, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("TURNLOG_CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def _diagnosis(page: Page, stack: Stack, sid: str) -> str:
    """What the page, the projections, the log's ends and the processes' logs say about
    session `sid`: for a failure that a rerun may not show again."""
    import asyncio
    import concurrent.futures

    import psycopg
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.partitioning import partition_for

    rows = page.locator("#timeline tbody tr").all_inner_texts()
    with psycopg.connect(stack.database_url) as conn:
        projected = conn.execute(
            "SELECT seq, event_type, kafka_partition, kafka_offset FROM events "
            "WHERE session_id = %s ORDER BY seq",
            (sid,),
        ).fetchall()
    partitions = int(stack.env["TURNLOG_PARTITIONS"])
    tp = TopicPartition(
        f"{stack.env['TURNLOG_TOPIC_PREFIX']}turnlog.events", partition_for(sid, partitions)
    )

    async def ends() -> dict[str, int]:
        found = {}
        for isolation in ("read_uncommitted", "read_committed"):
            consumer = AIOKafkaConsumer(
                bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"], isolation_level=isolation
            )
            await consumer.start()
            try:
                found[isolation] = (await consumer.end_offsets([tp]))[tp]
            finally:
                await consumer.stop()
        return found

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright holds this loop
        try:
            offsets: Any = pool.submit(asyncio.run, ends()).result(60)
        except Exception as exc:  # a diagnosis must not hide the failure it explains
            offsets = repr(exc)
    return "\n".join(
        [
            f"timeline rows: {rows}",
            f"projected events: {projected}",
            f"{tp} ends: {offsets}",
            "worker all log (tail):",
            stack.worker.log()[-6000:],
            "turnlog ui log (tail):",
            stack.console.log()[-4000:],
        ]
    )


def test_a_person_runs_the_demo_session_in_the_console(
    page: Page, console_stack: Stack, tmp_path: Path
) -> None:
    # Start a session from the sessions page.
    page.goto("/")
    page.locator("details.new-session summary").click()
    page.locator("#new-session select[name=agent]").select_option("assistant")
    page.locator("#new-session textarea[name=text]").fill("what is 17*23?")
    page.locator("#new-session button[type=submit]").click()
    page.wait_for_url(re.compile(r"/sessions/s-[0-9a-f]+\?after_seq=\d+$"))
    sid = page.url.rsplit("/", 1)[1].split("?")[0]
    conversation = page.locator("#conversation")
    expect(conversation).to_contain_text("17 × 23 = 391.")

    # Watch the answer stream: ask again in the same session, and the streaming box
    # grows piece by piece as the token deltas arrive.
    page.evaluate("document.getElementById('streaming').textContent = ''; window.__streamed = []")
    page.locator("#send-message textarea").fill("what is 17*23?")
    page.locator("#send-message button").click()
    expect(page.locator("#streaming")).to_have_text("17 × 23 = 391.")
    seen = page.evaluate("window.__streamed")
    partial = {s for s in seen if s and s != "17 × 23 = 391." and "17 × 23 = 391.".startswith(s)}
    assert len(partial) >= 2, f"the answer did not stream: {seen}"
    try:
        expect(page.locator("#timeline tbody tr", has_text="TurnCompleted")).to_have_count(2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnosis(page, console_stack, sid)}") from None
    _shot(page, "session", tmp_path)

    # Ask for the shell: the policy wants an approval; the session says so inline.
    page.locator("#send-message textarea").fill("list the files here")
    page.locator("#send-message button").click()
    expect(conversation).to_contain_text("waiting for approval")
    expect(page.locator("#phase")).to_have_text("awaiting_approval")

    # Approve it from the inbox (the approver recorded is who the console says we are).
    page.goto("/approvals")
    row = page.locator(f"#approvals tr:has(a[href='/sessions/{sid}'])")
    expect(row).to_contain_text("shell")
    expect(row).to_contain_text("ls -la")
    expect(page.locator("#approvals-count")).to_have_text(re.compile(r"^[1-9]"))
    _shot(page, "approvals", tmp_path)
    row.locator("input[name=reason]").fill("listing is harmless")
    row.locator("button[value=approve]").click()
    expect(page.locator("#flash")).to_contain_text("Approved as local")
    expect(row).to_have_count(0)

    # Back on the session: the approval, the tool's output, the answer and its cost.
    page.goto(f"/sessions/{sid}")
    expect(conversation).to_contain_text("approval granted by local: listing is harmless")
    expect(conversation).to_contain_text("These are the files in the working directory")
    expect(page.locator("#session-cost")).to_have_text(re.compile(r"cost \$0\.\d*[1-9]"))

    page.goto("/costs")
    expect(page.locator("body")).to_have_attribute("data-charts", "drawn")
    expect(page.locator("#cost-sessions")).to_contain_text(sid)
    _shot(page, "costs", tmp_path)

    # Time travel to the end of the first turn, then fork there and continue the fork.
    page.goto(f"/sessions/{sid}")
    first_end = page.locator("#timeline tbody tr", has_text="TurnCompleted").first
    seq = int(first_end.get_attribute("data-seq") or 0)
    first_end.get_by_role("link", name="state").click()
    travel = page.locator("#time-travel")
    expect(travel).to_contain_text(f"State at seq {seq}")
    expect(travel).to_contain_text("phase idle")
    _shot(page, "time-travel", tmp_path)
    travel.get_by_role("button", name=re.compile("Fork here")).click()
    page.wait_for_url(re.compile(r"/sessions/s-[0-9a-f]+\?after_seq=\d+$"))
    fork = page.url.rsplit("/", 1)[1].split("?")[0]
    assert fork != sid
    expect(page.locator("#tree")).to_contain_text(sid)
    expect(conversation.locator(".entry.inherited")).not_to_have_count(0)
    page.locator("#send-message textarea").fill("list the files here")
    page.locator("#send-message button").click()
    expect(conversation).to_contain_text("waiting for approval")
    conversation.locator("form.decide button[value=deny]").click()
    expect(conversation).to_contain_text("approval denied by local")
    expect(conversation).to_contain_text("I could not list the files")
    assert "These are the files" not in conversation.inner_text().split("approval denied")[-1]

    # The list shows both, the fork marked as one; the remaining pages render.
    page.goto("/")
    expect(page.locator("#sessions")).to_contain_text(f"fork of {sid}@{seq}")
    _shot(page, "sessions", tmp_path)
    page.goto("/operations")
    expect(page.locator("#ops")).to_contain_text("Session worker lag")
    page.locator("#audit-verify").click()
    expect(page.locator("#audit-result")).to_contain_text("audit log intact")
    _shot(page, "operations", tmp_path)
    page.goto("/agents")
    expect(page.locator("#agent-assistant")).to_contain_text("scripted-small")
    _shot(page, "agents", tmp_path)
    page.goto("/schedules")
    expect(page.locator("#schedules")).to_be_visible()


def test_a_person_creates_pauses_and_removes_a_schedule_on_the_schedules_page(
    page: Page, console_stack: Stack
) -> None:
    page.goto("/schedules")
    page.locator("details.new-schedule summary").click()
    form = page.locator("#new-schedule")
    form.locator("input[name=id]").fill("page-weekly")
    form.locator("input[name=agent]").fill("assistant")
    form.locator("input[name=when]").fill("0 9 * * 1")
    form.locator("input[name=timezone]").fill("America/New_York")
    form.locator("textarea[name=message]").fill("Weekly digest.")
    row = page.locator("#schedules tr", has_text="page-weekly")

    def answered(method: str, path: str, click: Any) -> None:
        """Click, and wait for the page's call to the API to be answered (the page then
        reloads itself, which would cut a call still on its way)."""
        with page.expect_response(
            lambda r: r.request.method == method and r.url.endswith(path)
        ) as response:
            click()
        assert response.value.status in (200, 201), response.value.text()

    def shows(status: str) -> None:
        """The page reloads once the scheduler projected a change; on a loaded machine
        that can take longer than it waits, so reload until the row shows it."""
        deadline = time.monotonic() + 60
        while True:
            try:
                expect(row.locator("td").nth(3)).to_have_text(status, timeout=5_000)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                page.reload()

    answered("POST", "/api/schedules", form.locator("button[type=submit]").click)
    shows("active")
    expect(row).to_contain_text("cron 0 9 * * 1 America/New_York")
    answered("POST", "/pause", row.locator("button[value=pause]").click)
    shows("paused")
    expect(row.locator("button[value=resume]")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    answered("DELETE", "/api/schedules/page-weekly", row.locator("button[value=remove]").click)
    shows("removed")


def test_the_inbox_refreshes_live_once_the_announced_approval_is_projected(
    page: Page, console_stack: Stack
) -> None:
    from tests.integration.test_console_support import csrf_client

    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "part=table" in r.url else None)
    page.goto("/approvals")
    expect(page.locator("#approvals")).to_be_visible()
    api = csrf_client(console_stack.url)
    try:
        started = api.post(
            "/api/sessions", json={"agent": "assistant", "text": "list the files here"}
        )
        assert started.status_code == 202, started.text
        sid = started.json()["session_id"]
        row = page.locator(f"#approvals tr:has(a[href='/sessions/{sid}'])")
        expect(row).to_contain_text("ls -la")  # no reload: the live refresh brought it
        # The refresh named the events it had been told of, for the server to wait on.
        assert any(f"seen={sid}%3A" in url for url in asked), asked
        row.locator("input[name=reason]").fill("test over")
        row.locator("button[value=deny]").click()
        expect(row).to_have_count(0)
    finally:
        api.close()
