// turnlog console: keeps the server-rendered pages live and sends actions through the
// HTTP API. No framework and no build step: the pages are whole without this file; it
// only follows event streams (EventSource), swaps server-rendered fragments, and posts
// JSON with the CSRF header (the value of the turnlog_csrf cookie).
"use strict";

(function () {
  const page = document.body.dataset.page;

  function cookie(name) {
    const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
  }

  function flash(message, bad) {
    const box = document.getElementById("flash");
    box.textContent = message;
    box.className = "flash " + (bad ? "bad" : "ok");
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => (box.hidden = true), 6000);
  }

  async function post(url, body) {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": cookie("turnlog_csrf") },
      body: JSON.stringify(body || {}),
      credentials: "same-origin",
    });
    let data = {};
    try {
      data = await res.json();
    } catch (e) {
      data = { error: res.statusText };
    }
    if (!res.ok) {
      const why = data.error || data.reason || res.statusText;
      flash(why, true);
      const err = new Error(why);
      err.data = data;
      throw err;
    }
    return data;
  }

  async function swap(id, url) {
    const res = await fetch(url, { credentials: "same-origin" });
    if (!res.ok) return;
    const el = document.getElementById(id);
    if (el) el.innerHTML = await res.text();
    wire(el || document);
    deadlines();
  }

  function debounce(fn, ms) {
    let t = null;
    return function () {
      clearTimeout(t);
      t = setTimeout(fn, ms);
    };
  }

  // ------------------------------------------------------------------ shared widgets

  function wire(root) {
    root.querySelectorAll("form.decide").forEach((form) => {
      if (form.dataset.wired) return;
      form.dataset.wired = "1";
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const decision = ev.submitter ? ev.submitter.value : "approve";
        const reason = form.querySelector("[name=reason]").value || null;
        const url = `/api/sessions/${encodeURIComponent(form.dataset.session)}/approvals/${encodeURIComponent(form.dataset.call)}?wait=true`;
        form.querySelectorAll("button").forEach((b) => (b.disabled = true));
        try {
          const r = await post(url, { decision, reason });
          flash(`${decision === "approve" ? "Approved" : "Denied"} as ${r.decided_by}.`);
          const row = form.closest("tr");
          if (row && page === "approvals") row.remove();
        } catch (e) {
          form.querySelectorAll("button").forEach((b) => (b.disabled = false));
        }
      });
    });
    root.querySelectorAll("form.fork, a.fork-at").forEach((el) => {
      if (el.dataset.wired) return;
      el.dataset.wired = "1";
      el.addEventListener(el.tagName === "FORM" ? "submit" : "click", async (ev) => {
        ev.preventDefault();
        const sid = document.body.dataset.session;
        const seq = parseInt(el.dataset.seq, 10);
        try {
          const r = await post(`/api/sessions/${encodeURIComponent(sid)}/fork?wait=true`, { at_seq: seq });
          location.href = `/sessions/${encodeURIComponent(r.session_id)}?after_seq=${r.seq || 1}`;
        } catch (e) {}
      });
    });
  }

  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async (ev) => {
      ev.preventDefault();
      await post("/api/logout");
      location.href = "/login";
    });
  }

  // the approvals counter in the navigation, on every page
  async function countApprovals(seen) {
    const res = await fetch("/api/approvals?" + (seen || ""), { credentials: "same-origin" });
    if (!res.ok) return;
    const n = (await res.json()).approvals.length;
    const el = document.getElementById("approvals-count");
    if (el) el.textContent = n ? String(n) : "";
  }

  // every session's events (no payloads): refresh lists and counters
  function followAll(onEvent) {
    const source = new EventSource("/api/stream");
    source.addEventListener("session", (msg) => onEvent(JSON.parse(msg.data)));
    source.addEventListener("reset", () => {
      source.close();
      setTimeout(() => followAll(onEvent), 500);
    });
    return source;
  }

  // A refresh after events: `load` gets them as seen=SESSION:SEQ parameters, and the
  // server answers once its projections hold them (the projector may still be writing
  // an event the stream just told of; a refresh before that would show the old state).
  function refresher(load, ms) {
    const seen = new Map();
    const run = debounce(() => {
      const query = [...seen].map(([sid, seq]) => "seen=" + encodeURIComponent(`${sid}:${seq}`)).join("&");
      seen.clear();
      load(query);
    }, ms);
    return (ev) => {
      seen.delete(ev.session_id); // re-inserted last: the oldest go first past 50
      seen.set(ev.session_id, ev.seq);
      if (seen.size > 50) seen.delete(seen.keys().next().value);
      run();
    };
  }

  if (page !== "login") {
    countApprovals();
    const recount = refresher(countApprovals, 300);
    const refreshSessions = refresher((seen) => swap("sessions-table", "/?part=table&" + location.search.slice(1) + "&" + seen), 400);
    const refreshInbox = refresher((seen) => swap("approvals-table", "/approvals?part=table&" + seen), 300);
    followAll((ev) => {
      if (ev.type.startsWith("Approval") || ev.type.startsWith("Turn")) recount(ev);
      if (page === "sessions") refreshSessions(ev);
      if (page === "approvals" && (ev.type.startsWith("Approval") || ev.type.startsWith("Turn"))) refreshInbox(ev);
    });
  }
  wire(document);

  // ------------------------------------------------------------------ pages

  // Approval deadlines: how long is left, kept current.
  function deadlines() {
    document.querySelectorAll("[data-deadline]").forEach((el) => {
      if (!el.dataset.deadline) return;
      if (!el.dataset.shown) el.dataset.shown = el.textContent;
      const left = Math.round((Date.parse(el.dataset.deadline) - Date.now()) / 60000);
      el.textContent = `${el.dataset.shown} · ${left > 0 ? `in ${left} min` : left === 0 ? "now" : "overdue"}`;
      el.classList.toggle("bad", left <= 1);
    });
  }
  deadlines();
  setInterval(deadlines, 15000);

  if (page === "login") {
    const form = document.getElementById("login-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await post("/api/login", { token: document.getElementById("token").value });
        const next = form.dataset.next || "/";
        location.href = next.startsWith("/") && !next.startsWith("//") ? next : "/";
      } catch (e) {}
    });
  }

  if (page === "sessions") {
    const form = document.getElementById("new-session");
    if (form) {
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const agent = form.agent_other.value.trim() || form.agent.value;
        try {
          // wait=true: the worker took it; after_seq: the page waits for the projection.
          const r = await post("/api/sessions?wait=true", { agent, text: form.text.value });
          location.href = `/sessions/${encodeURIComponent(r.session_id)}?after_seq=${r.seq || 1}`;
        } catch (e) {}
      });
    }
  }

  if (page === "session") {
    const sid = document.body.dataset.session;
    const timeline = document.querySelector("#timeline tbody");
    const streaming = document.getElementById("streaming");
    let lastSeq = parseInt(document.body.dataset.lastSeq || "0", 10);
    let refreshAt = 0;
    const refresh = debounce(() => swap("session-live", `/sessions/${encodeURIComponent(sid)}?part=live&after_seq=${refreshAt}`), 150);

    function addRow(ev) {
      const tr = document.createElement("tr");
      tr.className = "kind-" + ev.kind + " fresh";
      tr.dataset.seq = ev.seq;
      const cells = [String(ev.seq), ev.occurred_at.replace("T", " ").slice(0, 19), ev.type, (ev.turn_id || "").slice(-8)];
      cells.forEach((text) => {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      tr.children[2].title = ev.text;
      const td = document.createElement("td");
      const a = document.createElement("a");
      a.href = `?at=${ev.seq}#time-travel`;
      a.textContent = "state";
      const f = document.createElement("a");
      f.href = "#";
      f.className = "fork-at";
      f.dataset.seq = ev.seq;
      f.textContent = "fork here";
      td.append(a, " · ", f);
      tr.appendChild(td);
      timeline.appendChild(tr);
      wire(tr);
    }

    function connect() {
      // Resumable: from the seq after the last one shown; the browser sends
      // Last-Event-ID itself when it reconnects after a network error.
      const source = new EventSource(`/api/sessions/${encodeURIComponent(sid)}/stream?from_seq=${lastSeq + 1}`);
      source.addEventListener("event", (msg) => {
        const ev = JSON.parse(msg.data);
        if (ev.seq <= lastSeq) return;
        lastSeq = ev.seq;
        addRow(ev);
        // A call's deltas can arrive before the event that requested it (two topics):
        // the box is cleared only for a call it is not already showing.
        if (ev.type === "LlmCallRequested" && streaming.dataset.call !== ev.payload.call_id) {
          streaming.textContent = "";
          streaming.dataset.call = ev.payload.call_id || "";
          streaming.classList.remove("done");
        }
        if (ev.type === "LlmCallCompleted" && ev.payload && ev.payload.text && !streaming.textContent) {
          streaming.textContent = ev.payload.text;
        }
        if (ev.refresh) {
          refreshAt = ev.seq;
          refresh();
        }
      });
      source.addEventListener("delta", (msg) => {
        const d = JSON.parse(msg.data);
        if (streaming.dataset.call !== d.call_id) {
          streaming.dataset.call = d.call_id;
          streaming.textContent = "";
        }
        streaming.textContent += d.text;
        streaming.classList.toggle("done", !!d.done);
      });
      source.addEventListener("reset", () => {
        source.close();
        setTimeout(connect, 200);
      });
    }
    connect();

    document.getElementById("send-message").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const form = ev.target;
      try {
        const r = await post(`/api/sessions/${encodeURIComponent(sid)}/messages?wait=true`, { text: form.text.value });
        flash(r.status === "queued" ? "Queued: a turn is running." : "Sent.");
        form.text.value = "";
      } catch (e) {}
    });
    document.getElementById("cancel-turn").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const form = ev.target;
      try {
        await post(`/api/sessions/${encodeURIComponent(sid)}/cancel?wait=true`, { reason: form.reason.value || null });
        flash("Cancelled.");
      } catch (e) {}
    });
  }

  if (page === "costs") {
    const data = JSON.parse(document.getElementById("chart-data").textContent);
    const make = (id, type, d, color) => {
      const el = document.getElementById(id);
      if (!el || typeof Chart === "undefined") return;
      new Chart(el, {
        type,
        data: { labels: d.labels, datasets: [{ label: "USD", data: d.values, backgroundColor: color, borderColor: color }] },
        options: { animation: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
      });
    };
    const draw = () => {
      make("chart-day", data.day.labels.length > 1 ? "line" : "bar", data.day, "#3b6ea5");
      make("chart-agent", "bar", data.agent, "#5a9a5a");
      make("chart-model", "bar", data.model, "#a5673b");
      document.body.dataset.charts = "drawn";
    };
    if (typeof Chart === "undefined") window.addEventListener("load", draw);
    else draw();
  }

  if (page === "schedules") {
    // The schedule calls of the HTTP API (turnlog/console/schedules.py), then a reload:
    // the page shows what the scheduler projected.
    const send = async (method, url, body) => {
      if (method === "POST") return post(url, body);
      const res = await fetch(url, {
        method,
        headers: { "x-csrf-token": cookie("turnlog_csrf") },
        credentials: "same-origin",
      });
      const data = await res.json().catch(() => ({ error: res.statusText }));
      if (!res.ok) {
        flash(data.error || res.statusText, true);
        throw new Error(data.error);
      }
      return data;
    };
    // Reload once the scheduler has projected the change (or after 30 s regardless).
    const later = async (id, status) => {
      try {
        for (let i = 0; i < 100; i++) {
          const res = await fetch("/api/schedules", { credentials: "same-origin" });
          const rows = res.ok ? (await res.json()).schedules : [];
          const row = rows.find((r) => r.schedule_id === id);
          if (row && (!status || row.status === status)) break;
          await new Promise((done) => setTimeout(done, 300));
        }
      } catch (e) {} // the page is going away, or the console is: reload shows which
      location.reload();
    };
    const form = document.getElementById("new-schedule");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const field = (name) => form.elements.namedItem(name).value.trim();
      const body = { id: field("id"), agent: field("agent"), message: form.elements.namedItem("message").value };
      body[field("kind")] = field("when");
      if (field("kind") === "cron") body.timezone = field("timezone") || "UTC";
      body.overlap = field("overlap");
      try {
        const r = await post("/api/schedules", body);
        flash(`Schedule ${r.schedule_id} created; next slot ${r.next_slot || "(none)"}.`);
        later(r.schedule_id, r.definition.paused ? "paused" : "active");
      } catch (e) {}
    });
    document.querySelectorAll("form.schedule-actions").forEach((f) => {
      f.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const action = ev.submitter ? ev.submitter.value : "pause";
        const id = encodeURIComponent(f.dataset.schedule);
        if (action === "remove" && !confirm(`Remove schedule ${f.dataset.schedule}?`)) return;
        try {
          const r = action === "remove"
            ? await send("DELETE", `/api/schedules/${id}`)
            : await send("POST", `/api/schedules/${id}/${action}`, {});
          flash(`Schedule ${r.schedule_id} ${r.status}.`);
          later(r.schedule_id, { paused: "paused", resumed: "active", removed: "removed" }[r.status]);
        } catch (e) {}
      });
    });
  }

  if (page === "operations") {
    const box = document.getElementById("ops");
    const esc = (v) => (v === null || v === undefined ? "—" : String(v));
    const table = (rows, cols) => {
      const t = document.createElement("table");
      t.className = "grid small";
      const head = t.createTHead().insertRow();
      cols.forEach((c) => {
        const th = document.createElement("th");
        th.textContent = c;
        head.appendChild(th);
      });
      const body = t.createTBody();
      if (!rows.length) {
        const td = body.insertRow().insertCell();
        td.colSpan = cols.length;
        td.className = "empty";
        td.textContent = "none";
      }
      rows.forEach((r) => {
        const tr = body.insertRow();
        cols.forEach((c) => (tr.insertCell().textContent = esc(r[c])));
      });
      return t;
    };
    const section = (title, node) => {
      const s = document.createElement("section");
      s.className = "card";
      const h = document.createElement("h2");
      h.textContent = title;
      s.append(h, node);
      return s;
    };
    fetch("/api/operations", { credentials: "same-origin" })
      .then((r) => r.json().then((d) => ({ ok: r.ok, d })))
      .then(({ ok, d }) => {
        box.textContent = "";
        box.classList.remove("loading");
        if (!ok) {
          box.textContent = d.error;
          return;
        }
        const lag = (rows) => rows.reduce((n, r) => n + (r.lag || 0), 0);
        box.append(
          section(`Session worker lag: ${lag(d.worker_lag)} request(s)`, table(d.worker_lag, ["group", "topic", "partition", "committed", "end", "lag"])),
          section(`Projector lag: ${lag(d.projector_lag)} event(s)`, table(d.projector_lag, ["consumer", "partition", "next_offset", "end", "lag", "quarantined", "stopped_reason"])),
          section(`DLQ: ${d.dlq.length} newest record(s)`, table(d.dlq, ["partition", "offset", "key", "error_type", "error_message", "value_bytes"])),
          section(`Quarantine: ${d.quarantine.length} event(s)`, table(d.quarantine, Object.keys(d.quarantine[0] || { quarantine_id: 0, session_id: 0, seq: 0, error: 0 }))),
          section("Live hub", table([d.live], ["followers", "records_seen", "error"]))
        );
      });
    document.getElementById("audit-verify").addEventListener("click", async () => {
      const out = document.getElementById("audit-result");
      out.textContent = "verifying…";
      try {
        const r = await post("/api/audit/verify");
        out.textContent = (r.ok ? "✓ audit log intact" : "✗ audit log BROKEN") + `: ${r.rows} rows, ${r.checkpoints_matched}/${r.checkpoints} checkpoints match` + (r.unproven ? `\n${r.unproven}` : "") + (r.first_broken_row ? `\nfirst broken row: ${JSON.stringify(r.first_broken_row)}` : "");
        out.className = r.ok ? "ok" : "bad";
      } catch (e) {
        out.textContent = e.message;
      }
    });
  }
})();
