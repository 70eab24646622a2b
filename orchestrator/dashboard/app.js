/* The orchestrator dashboard: a runs list and a run page over the JSON API.
 *
 * Plain JavaScript, no build step, no third-party code. Every API URL is
 * relative to the page, so the dashboard works wherever the API is mounted
 * (an API Gateway stage, the /api prefix, localhost). Pages live in the URL
 * hash (#/?status=failed, #/runs/<id>), so reloads and the back button keep
 * the place. Data is refreshed by polling; a finished run stops polling.
 * Everything from the API is inserted as text, never as HTML.
 */
"use strict";

(function () {
  const STATUSES = ["pending", "running", "sleeping", "waiting", "completed", "failed", "cancelled"];
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const PAGE_SIZE = 50;
  const LIST_REFRESH_MS = 3000;
  const RUN_REFRESH_MS = 1000;

  const view = document.getElementById("view");
  const live = document.getElementById("live");

  // --- DOM ---------------------------------------------------------------------------------
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else if (key === "value") el.value = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  const banner = (kind, text) => h("div", { class: `banner ${kind}`, role: "status" }, text);
  const badge = (status, id) => h("span", { class: `badge ${status}`, id }, status);
  const enc = encodeURIComponent;

  function setLive(state, text) {
    live.className = `live ${state}`;
    live.textContent = text;
  }

  // --- the API -------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (e) {
      throw new ApiError(`cannot reach the API (${e.message})`, 0);
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (!res.ok) {
      // Our errors are {"error": {"message"}}; API Gateway's own are {"message"}.
      const message =
        (data && data.error && data.error.message) ||
        (data && data.message) ||
        `${res.status} ${res.statusText}`;
      throw new ApiError(message, res.status);
    }
    return data;
  }

  // --- time ----------------------------------------------------------------------------------
  const toMs = (iso) => (iso ? Date.parse(iso) : null);
  const pad = (n, width = 2) => String(n).padStart(width, "0");

  function clock(iso, withMs) {
    const d = new Date(iso);
    let text = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (withMs) text += `.${pad(d.getMilliseconds(), 3)}`;
    if (d.toDateString() === new Date().toDateString()) return text;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${text}`;
  }

  function span(ms) {
    if (ms === null || Number.isNaN(ms)) return "";
    ms = Math.max(0, ms);
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 10000) return `${(ms / 1000).toFixed(2)} s`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    const s = Math.floor(ms / 1000);
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
  }

  function ago(iso) {
    const s = (Date.now() - toMs(iso)) / 1000;
    if (s < 5) return "just now";
    if (s < 60) return `${Math.floor(s)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function until(iso) {
    const ms = toMs(iso) - Date.now();
    return ms > 0 ? `in ${span(ms)}` : `${span(-ms)} ago`;
  }

  // Elements that show time relative to now; tick() keeps them current.
  const agoEl = (iso) => h("time", { datetime: iso, title: iso, "data-ago": iso }, ago(iso));
  const untilEl = (iso) => h("span", { title: iso, "data-until": iso }, until(iso));
  const sinceEl = (iso) => h("span", { "data-since": iso }, span(Date.now() - toMs(iso)));
  const at = (iso, withMs) => h("time", { datetime: iso, title: iso }, clock(iso, withMs));

  function tick() {
    for (const el of view.querySelectorAll("[data-ago]")) el.textContent = ago(el.dataset.ago);
    for (const el of view.querySelectorAll("[data-until]")) el.textContent = until(el.dataset.until);
    for (const el of view.querySelectorAll("[data-since]")) {
      el.textContent = span(Date.now() - toMs(el.dataset.since));
    }
  }
  setInterval(tick, 1000);

  function runDuration(run) {
    if (TERMINAL.has(run.status)) return span(toMs(run.updated_at) - toMs(run.created_at));
    return sinceEl(run.created_at);
  }

  // --- values ----------------------------------------------------------------------------------
  function compact(value, max) {
    const text = JSON.stringify(value);
    if (text === undefined) return "";
    return text.length > max ? `${text.slice(0, max - 1)}…` : text;
  }

  // Step results stay on one line when short; inputs and outputs are always indented.
  function jsonBlock(value, pretty) {
    const flat = JSON.stringify(value);
    const short = flat !== undefined && flat.length <= 100;
    const text = short && !pretty ? flat : JSON.stringify(value, null, 2);
    return h("pre", { class: "json" }, text === undefined ? "null" : text);
  }

  // <details> that stay open across re-renders: `open` is the set of open keys.
  function details(open, key, summary, body, openByDefault) {
    if (openByDefault && !open.has(`${key}:seen`)) {
      open.add(`${key}:seen`);
      open.add(key);
    }
    const el = h("details", { open: open.has(key) }, h("summary", {}, summary), body);
    el.addEventListener("toggle", () => (el.open ? open.add(key) : open.delete(key)));
    return el;
  }

  function errorBlock(error, open, key, openByDefault) {
    return h(
      "div",
      { class: "error" },
      h("div", { class: "error-line" }, `${error.type}: ${error.message}`),
      error.traceback
        ? details(open, key, "traceback", h("pre", { class: "trace" }, error.traceback), openByDefault)
        : null,
    );
  }

  // --- polling -----------------------------------------------------------------------------------
  // Each page render takes a new token; a response for an older token is dropped,
  // so a slow request can never paint over the page the user moved to.
  let token = 0;
  let timer = null;

  function schedule(fn, delay) {
    clearTimeout(timer);
    const mine = token;
    timer = setTimeout(() => {
      if (mine !== token) return;
      if (document.hidden) schedule(fn, delay);
      else fn();
    }, delay);
  }

  // --- routing -----------------------------------------------------------------------------------
  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const [path, query] = raw.split("?");
    const run = path.match(/^\/runs\/(.+)$/);
    if (run) {
      // A malformed hash (a lone "%", bad UTF-8) shows the id as typed instead of
      // blanking the page: the API then answers 400 or 404 for it.
      let id = run[1];
      try {
        id = decodeURIComponent(run[1]);
      } catch (e) {
        id = run[1];
      }
      return { page: "run", id };
    }
    if (path === "/schedules") return { page: "schedules" };
    const p = new URLSearchParams(query || "");
    if (path === "/workers") return { page: "workers", all: Boolean(p.get("all")) };
    return {
      page: "list",
      status: p.get("status") || "",
      name: p.get("name") || "",
      build_id: p.get("build_id") || "",
      limit: p.get("limit") || "",
      cursor: p.get("cursor") || "",
    };
  }

  function listHash(q) {
    const p = new URLSearchParams();
    for (const key of ["status", "name", "build_id", "limit", "cursor"]) if (q[key]) p.set(key, q[key]);
    const query = p.toString();
    return `#/${query ? `?${query}` : ""}`;
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  function route() {
    token += 1;
    clearTimeout(timer);
    try {
      const where = parseHash();
      if (where.page === "run") showRun(where.id);
      else if (where.page === "schedules") showSchedules();
      else if (where.page === "workers") window.orchestratorPages.workers(kit, where); // workers.js
      else showList(where);
    } catch (e) {
      // Whatever the hash holds, the page says so and links home instead of going blank.
      const view = document.getElementById("view");
      view.replaceChildren(h("p", {}, `cannot show ${location.hash}: ${e.message} `, h("a", { href: "#/" }, "all runs")));
    }
  }

  // --- the runs list -----------------------------------------------------------------------------
  const newer = []; // cursors of the pages before this one, for "Newer"
  let newerKey = null; // the filter those cursors belong to
  const namesSeen = new Set();

  function runDetail(run) {
    if (run.error) return `${run.error.type}: ${run.error.message}`;
    if (run.cancel_requested && !TERMINAL.has(run.status)) return "cancel requested";
    if (run.unserved) return `no live worker serves “${run.name}”`;
    if (run.stranded) return `stranded: no live worker of build ${run.build_id}`;
    if (run.status === "waiting") {
      return [`waiting for “${run.waiting_for}”`, run.wake_at ? ", times out " : "", run.wake_at ? untilEl(run.wake_at) : ""];
    }
    if (run.status === "sleeping" && run.wake_at) return ["wakes ", untilEl(run.wake_at)];
    if (run.status === "completed") return `→ ${compact(run.output, 80)}`;
    return "";
  }

  function runsTable(runs) {
    if (!runs.length) return h("div", { class: "empty" }, "No runs match.");
    const head = ["Status", "Workflow", "Run id", "Started", "Duration", "Detail"];
    return h(
      "table",
      { class: "runs" },
      h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        runs.map((run) => {
          const href = `#/runs/${enc(run.id)}`;
          const detail = runDetail(run);
          return h(
            "tr",
            {
              "data-id": run.id,
              onclick: (e) => {
                if (!e.target.closest("a") && !window.getSelection().toString()) location.hash = href;
              },
            },
            h("td", {}, badge(run.status)),
            h("td", {}, run.name),
            h("td", { class: "id" }, h("a", { href }, run.id)),
            h("td", { class: "num" }, agoEl(run.created_at)),
            h("td", { class: "num" }, runDuration(run)),
            h("td", { class: "detail", title: typeof detail === "string" ? detail : null }, detail),
          );
        }),
      ),
    );
  }

  function showList(q) {
    const key = `${q.status}|${q.name}|${q.build_id}|${q.limit}`;
    if (key !== newerKey) {
      newer.length = 0;
      newerKey = key;
    }
    if (!q.cursor) newer.length = 0;
    document.title = "Runs · orchestrator";

    const status = h(
      "select",
      { id: "status", name: "status" },
      h("option", { value: "" }, "all statuses"),
      STATUSES.map((s) => h("option", { value: s }, s)),
    );
    status.value = q.status;
    const name = h("input", {
      id: "name",
      name: "name",
      type: "search",
      placeholder: "any workflow",
      list: "names",
      autocomplete: "off",
      value: q.name,
    });
    const build = h("input", {
      id: "build",
      name: "build_id",
      type: "search",
      placeholder: "any build",
      autocomplete: "off",
      value: q.build_id,
    });
    const names = h("datalist", { id: "names" });
    const fillNames = () => names.replaceChildren(...[...namesSeen].sort().map((n) => h("option", { value: n })));
    fillNames();
    const apply = () =>
      go(listHash({ ...q, status: status.value, name: name.value.trim(), build_id: build.value.trim(), cursor: "" }));
    status.addEventListener("change", apply);

    const runId = h("input", { id: "goto", type: "search", placeholder: "run id", autocomplete: "off" });
    const filters = h(
      "form",
      { class: "toolbar", onsubmit: (e) => (e.preventDefault(), apply()) },
      h("label", { class: "field" }, "Status", status),
      h("label", { class: "field" }, "Workflow", name, names),
      h("label", { class: "field" }, "Build", build),
      h("button", { type: "submit" }, "Filter"),
      h("div", { class: "grow" }),
    );
    const open = h(
      "form",
      {
        class: "toolbar",
        onsubmit: (e) => {
          e.preventDefault();
          if (runId.value.trim()) location.hash = `#/runs/${enc(runId.value.trim())}`;
        },
      },
      h("label", { class: "field" }, "Open a run", runId),
      h("button", { type: "submit" }, "Open"),
    );

    const message = h("div");
    const table = h("div", {}, h("div", { class: "empty" }, "Loading…"));
    const info = h("span", { class: "info" });
    const newest = h("button", { type: "button", id: "newest", disabled: !q.cursor }, "Newest");
    const newerBtn = h("button", { type: "button", id: "newer", disabled: !q.cursor }, "← Newer");
    const older = h("button", { type: "button", id: "older", disabled: true }, "Older →");
    newest.addEventListener("click", () => go(listHash({ ...q, cursor: "" })));
    newerBtn.addEventListener("click", () => go(listHash({ ...q, cursor: newer.pop() || "" })));

    view.replaceChildren(
      h("div", { class: "toolbar" }, h("h1", {}, "Runs"), h("span", { class: "muted" }, "newest first")),
      h("div", { class: "panel" }, h("div", { class: "toolbar flush" }, filters, open)),
      message,
      h("div", { class: "panel" }, table, h("div", { class: "pager" }, info, newest, newerBtn, older)),
    );

    let shown = null;
    let next = null;
    older.addEventListener("click", () => {
      if (!next) return;
      newer.push(q.cursor);
      go(listHash({ ...q, cursor: next }));
    });

    async function load() {
      const mine = token;
      const params = new URLSearchParams();
      if (q.status) params.set("status", q.status);
      if (q.name) params.set("name", q.name);
      if (q.build_id) params.set("build_id", q.build_id);
      params.set("limit", q.limit || String(PAGE_SIZE));
      if (q.cursor) params.set("cursor", q.cursor);
      try {
        const page = await api("GET", `workflows?${params}`);
        if (mine !== token) return;
        const snapshot = JSON.stringify(page);
        if (snapshot !== shown) {
          shown = snapshot;
          const before = namesSeen.size;
          for (const run of page.workflows) namesSeen.add(run.name);
          if (namesSeen.size !== before) fillNames();
          table.replaceChildren(runsTable(page.workflows));
          next = page.next_cursor;
          older.disabled = !next;
          const where = q.cursor ? (newer.length ? `page ${newer.length + 1}` : "an older page") : "page 1";
          const count = page.workflows.length;
          info.textContent = `${where} · ${count} run${count === 1 ? "" : "s"}`;
        }
        message.replaceChildren();
        setLive("", `live · updated ${clock(new Date().toISOString())}`);
      } catch (e) {
        if (mine !== token) return;
        message.replaceChildren(banner("error", e.message));
        setLive("down", e.status === 0 ? "API unreachable" : "refresh failed");
        if (e.status >= 400 && e.status < 500) return; // a bad filter: retrying will not help
      }
      schedule(load, LIST_REFRESH_MS);
    }
    load();
  }

  // --- schedules ----------------------------------------------------------------------------------
  function schedulesTable(schedules) {
    if (!schedules.length) {
      return h("div", { class: "empty" }, "No schedules. Create one with `orchestrator schedule create`.");
    }
    const head = ["Schedule", "Workflow", "When", "State", "Next fire", "Last runs"];
    return h(
      "table",
      { class: "runs schedules" },
      h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        schedules.map((s) =>
          h(
            "tr",
            { "data-name": s.name },
            h("td", {}, s.name),
            h("td", {}, s.workflow),
            h(
              "td",
              { class: "id" },
              `${s.expression} ${s.timezone}`,
              s.overlap !== "skip" ? ` (${s.overlap})` : "",
              s.task_queue ? ` · ${s.task_queue}` : "",
            ),
            h("td", {}, s.state, s.note ? h("span", { class: "muted" }, ` — ${s.note}`) : ""),
            h("td", { class: "num" }, s.next_fire_times.length ? untilEl(s.next_fire_times[0]) : "—"),
            h(
              "td",
              {},
              s.recent.slice(0, 5).map((e) =>
                e.run_id
                  ? h("a", { href: `#/runs/${enc(e.run_id)}`, title: `${e.tick} ${e.outcome}` }, badge(e.status || e.outcome))
                  : h("span", { title: e.tick }, badge(e.outcome)),
              ),
            ),
          ),
        ),
      ),
    );
  }

  function showSchedules() {
    document.title = "Schedules · orchestrator";
    const table = h("div");
    const message = h("div");
    view.replaceChildren(
      h("div", { class: "toolbar" }, h("h1", {}, "Schedules"), h("span", { class: "muted" }, "next fire times and the last runs' outcomes")),
      message,
      h("div", { class: "panel" }, table),
    );
    let shown = null;
    async function load() {
      const mine = token;
      try {
        const page = await api("GET", "schedules");
        if (mine !== token) return;
        const snapshot = JSON.stringify(page);
        if (snapshot !== shown) {
          shown = snapshot;
          table.replaceChildren(schedulesTable(page.schedules));
        }
        message.replaceChildren();
        setLive("", `live · updated ${clock(new Date().toISOString())}`);
      } catch (e) {
        if (mine !== token) return;
        message.replaceChildren(banner("error", e.message));
        setLive("down", e.status === 0 ? "API unreachable" : "refresh failed");
      }
      schedule(load, LIST_REFRESH_MS);
    }
    load();
  }

  // --- a run --------------------------------------------------------------------------------------
  function stepEvent(s, run, open) {
    const started = toMs(s.started_at);
    const recorded = toMs(s.recorded_at);
    let state = "ok";
    let took = recorded - started;
    const body = [];
    if (s.kind === "step") {
      if (s.retry_at) {
        state = "open";
        body.push(h("div", { class: "line" }, "attempt failed; next attempt ", untilEl(s.retry_at)));
        took = null;
      } else if (s.error) {
        state = "bad";
        body.push(errorBlock(s.error, open, `step-${s.id}`, false));
      } else {
        body.push(jsonBlock(s.result));
      }
      if (s.attempts && s.attempts.length > 1) body.push(attemptsTable(s.attempts));
    } else if (s.kind === "parallel" || s.kind === "map") {
      const items = s.items || [];
      const counts = {};
      for (const i of items) counts[i.status] = (counts[i.status] || 0) + 1;
      const parts = Object.keys(counts).sort().map((k) => `${counts[k]} ${k}`);
      if (counts.failed) state = "bad";
      body.push(
        h("div", { class: "line" }, `${items.length} branches: ${parts.join(", ") || "none"} · ${(s.completion_reason || "").replaceAll("_", " ")}`),
      );
    } else if (s.kind === "context" || s.kind === "branch" || s.kind === "condition") {
      if (s.error) {
        state = "bad";
        body.push(errorBlock(s.error, open, `step-${s.id}`, false));
      } else if (s.replay_children) {
        body.push(h("div", { class: "line" }, "result too large to keep: replayed from its operations"));
      } else {
        body.push(jsonBlock(s.result));
      }
    } else if (s.kind === "invoke") {
      const link = s.child_id
        ? h("a", { href: `#/runs/${enc(s.child_id)}`, class: "child-link" }, s.child_id)
        : "";
      if (s.child_status && s.child_status !== "completed") {
        state = "bad";
        body.push(h("div", { class: "line" }, "child run ", link, ` ${s.child_status}`));
        if (s.error) body.push(errorBlock(s.error, open, `step-${s.id}`, false));
      } else if (s.child_status) {
        body.push(h("div", { class: "line" }, "child run ", link, " completed; output:"));
        body.push(jsonBlock(s.result));
      } else {
        state = TERMINAL.has(run.status) ? "" : "open";
        took = null;
        body.push(h("div", { class: "line" }, "waiting for child run ", link));
      }
    } else if (s.kind === "cancel") {
      state = "bad";
      body.push(h("div", { class: "line" }, `cancel delivered: ${s.reason || ""}`));
    } else if (s.kind === "sleep") {
      const wake = toMs(s.wake_at);
      const pending = wake > Date.now();
      took = wake - started;
      const line = ["sleep until ", at(s.wake_at), " (", untilEl(s.wake_at), ")"];
      if (pending && TERMINAL.has(run.status)) {
        state = "";
        line.push(`; the run ended before it woke`);
      } else if (pending) {
        state = "timer";
      }
      body.push(h("div", { class: "line" }, line));
    } else {
      const deadline = s.deadline
        ? [", deadline ", at(s.deadline), " (", untilEl(s.deadline), ")"]
        : ", no deadline";
      const what = s.kind === "callback" ? `callback ${s.callback_id}` : `signal “${s.signal}”`;
      if (s.timed_out) {
        state = "timer";
        body.push(h("div", { class: "line" }, `${what} timed out`, deadline));
      } else if (s.resolved) {
        body.push(h("div", { class: "line" }, `${what} received; payload:`));
        body.push(jsonBlock(s.payload));
      } else if (TERMINAL.has(run.status)) {
        // The run ended while it waited: the wait lasted until the end, no longer.
        state = "";
        took = toMs(run.updated_at) - started;
        body.push(h("div", { class: "line" }, `signal “${s.signal}” never came: the run ended (${run.status})`));
      } else {
        state = "open";
        took = null;
        body.push(h("div", { class: "line" }, `waiting for ${what}`, deadline));
      }
    }
    const depth = (s.id.match(/\./g) || []).length;
    return h(
      "li",
      { class: state, "data-kind": s.kind, "data-id": s.id, "data-depth": Math.min(depth, 8) },
      h(
        "div",
        { class: "ev-head" },
        h("span", { class: "pos" }, `#${s.id}`),
        h("span", { class: "badge kind" }, s.kind),
        h("span", { class: "name" }, s.name),
        h(
          "span",
          { class: "when" },
          s.started_at ? at(s.started_at, true) : "",
          took === null ? ["  ·  ", sinceEl(s.started_at)] : `  ·  ${span(took)}`,
        ),
      ),
      h("div", { class: "ev-body" }, body),
    );
  }

  function attemptsTable(attempts) {
    return h(
      "table",
      { class: "attempts" },
      h("thead", {}, h("tr", {}, ["attempt", "started", "took", "outcome"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        attempts.map((a, i) => {
          const error = a.error;
          const outcome = !error
            ? "ok"
            : typeof error === "string"
              ? error
              : `${error.type || "error"}: ${error.message || ""}`;
          return h(
            "tr",
            {},
            h("td", {}, String(a.attempt ?? i + 1)),
            h("td", {}, a.started_at ? at(a.started_at, true) : ""),
            h("td", {}, a.started_at && a.finished_at ? span(toMs(a.finished_at) - toMs(a.started_at)) : ""),
            h("td", { class: error ? "attempt-error" : "" }, outcome),
          );
        }),
      ),
    );
  }

  function boundaryEvent(cls, title, iso, extra) {
    return h(
      "li",
      { class: cls, "data-kind": "run" },
      h(
        "div",
        { class: "ev-head" },
        h("span", { class: "name" }, title),
        h("span", { class: "when" }, iso ? at(iso, true) : "", extra ? ["  ·  ", extra] : ""),
      ),
    );
  }

  // A batch of more than COLLAPSE_OVER branches shows the operations of its failed
  // branches first; the rest sit in a closed <details> that opens on a click.
  const COLLAPSE_OVER = 10;
  function branchOf(batchId, opId) {
    return opId.slice(batchId.length + 1).split(".")[0];
  }
  function timeline(run, steps, open) {
    const items = [boundaryEvent("ok", "created", run.created_at)];
    const big = new Map();
    for (const s of steps) {
      if (s.kind !== "parallel" && s.kind !== "map") continue;
      const inside = steps.filter((o) => o.id.startsWith(s.id + "."));
      const branches = new Set(inside.map((o) => branchOf(s.id, o.id)));
      if (branches.size > COLLAPSE_OVER || (s.items || []).length > COLLAPSE_OVER) big.set(s.id, inside);
    }
    const hidden = (s) => [...big.keys()].some((b) => s.id.startsWith(b + "."));
    for (const s of steps) {
      if (hidden(s)) continue;
      items.push(stepEvent(s, run, open));
      const inside = big.get(s.id);
      if (!inside) continue;
      const failed = new Set((s.items || []).filter((i) => i.status === "failed").map((i) => String(i.index)));
      for (const o of inside) if (o.error) failed.add(branchOf(s.id, o.id));
      const first = inside.filter((o) => failed.has(branchOf(s.id, o.id)));
      const rest = inside.filter((o) => !failed.has(branchOf(s.id, o.id)));
      for (const o of first) items.push(stepEvent(o, run, open));
      if (rest.length) {
        items.push(
          h("li", { class: "collapsed", "data-kind": "collapsed" },
            h("details", {},
              h("summary", {}, `${rest.length} more operations of ${s.kind} ${s.name}`),
              h("ol", { class: "timeline" }, rest.map((o) => stepEvent(o, run, open))))),
        );
      }
    }
    const total = span(toMs(run.updated_at) - toMs(run.created_at));
    if (run.status === "completed") items.push(boundaryEvent("ok", "completed", run.updated_at, total));
    else if (run.status === "failed") items.push(boundaryEvent("bad", "failed", run.updated_at, total));
    else if (run.status === "cancelled") items.push(boundaryEvent("bad", "cancelled", run.updated_at, total));
    else if (run.status === "running") items.push(boundaryEvent("now", "running…", null));
    else if (run.status === "pending") items.push(boundaryEvent("now", "pending: queued for a worker", null));
    return h("ol", { class: "timeline", id: "timeline" }, items);
  }

  function facts(run) {
    const rows = [
      ["Status", badge(run.status)],
      ["Created", [at(run.created_at), " (", agoEl(run.created_at), ")"]],
      ["Updated", [at(run.updated_at), " (", agoEl(run.updated_at), ")"]],
      [
        TERMINAL.has(run.status)
          ? "Took"
          : run.status === "pending" && !run.attempt
            ? "Pending for (not claimed yet)"
            : "Since created",
        runDuration(run),
      ],
      ["Worker claims", h("span", { title: "times a worker took the run; it replays after each sleep or wait" }, String(run.attempt))],
    ];
    if (run.waiting_for) rows.push(["Waiting for signal", run.waiting_for]);
    if (run.wake_at) {
      rows.push([run.status === "waiting" ? "Times out" : "Wakes", [at(run.wake_at), " (", untilEl(run.wake_at), ")"]]);
    }
    if (run.deadline_at) rows.push(["Execution deadline", [at(run.deadline_at), " (", untilEl(run.deadline_at), ")"]]);
    if (run.cancel_requested) rows.push(["Cancel requested", run.cancel_requested]);
    if (run.parent_id) {
      rows.push(["Parent run", h("a", { href: `#/runs/${enc(run.parent_id)}`, id: "parent-link" }, run.parent_id)]);
    }
    if (run.build_id) rows.push(["Build", run.build_id]);
    if (run.generation) rows.push(["Generation", `${run.generation} (continued as new)`]);
    if (run.redrive_count) {
      const last = (run.earlier_outcomes || [])[run.earlier_outcomes.length - 1] || {};
      rows.push(["Redriven", `${run.redrive_count}× (last after ${last.status || "?"}${last.error ? `: ${last.error.type}` : ""})`]);
    }
    if (run.forked_from) {
      rows.push(["Forked from", [h("a", { href: `#/runs/${enc(run.forked_from.id)}` }, run.forked_from.id), ` at operation ${run.forked_from.operation}`]]);
    }
    return h("dl", { class: "facts" }, rows.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
  }

  function outcomePanel(run, open) {
    if (run.error) {
      return h(
        "div",
        { class: "panel", id: "outcome" },
        h("h2", {}, run.status === "cancelled" ? "Cancelled" : "Error"),
        errorBlock(run.error, open, "run-error", true),
      );
    }
    if (run.status === "completed") {
      return h("div", { class: "panel", id: "outcome" }, h("h2", {}, "Output"), jsonBlock(run.output, true));
    }
    const note = run.status === "cancelled" ? "cancelled: no output" : "no output yet";
    return h("div", { class: "panel", id: "outcome" }, h("h2", {}, "Output"), h("div", { class: "muted" }, note));
  }

  function showRun(id) {
    document.title = `${id} · orchestrator`;
    const path = `workflows/${enc(id)}`;
    const open = new Set(); // <details> the user opened, kept across refreshes
    const problem = h("div"); // why the last refresh failed
    const message = h("div"); // what the last action (cancel) did
    const content = h("div", {}, h("div", { class: "empty" }, "Loading…"));

    // The signal and cancel controls are built once, so a refresh never eats typing.
    const signalName = h("input", { id: "signal-name", placeholder: "e.g. approved", autocomplete: "off" });
    const payload = h("textarea", { id: "signal-payload", placeholder: 'JSON, e.g. {"approved": true}' });
    const send = h("button", { type: "submit", class: "primary", id: "signal-send" }, "Send signal");
    const signalMessage = h("div");
    const signalClosed = h("div", { class: "muted", hidden: true }, "The run has finished; it takes no more signals.");
    const signalForm = h(
      "form",
      { class: "signal-form", onsubmit: (e) => (e.preventDefault(), sendSignal()) },
      h("label", { class: "field" }, "Signal name", signalName),
      h("label", { class: "field" }, "Payload (JSON, empty for null)", payload),
      send,
    );
    const cancel = h("button", { type: "button", class: "danger", id: "cancel", disabled: true }, "Cancel run");
    cancel.addEventListener("click", cancelRun);
    // A failed or cancelled run can run again under its id (POST .../redrive).
    const redrive = h("button", { type: "button", class: "primary", id: "redrive", hidden: true }, "Redrive run");
    redrive.addEventListener("click", redriveRun);
    let nameTouched = false;
    signalName.addEventListener("input", () => (nameTouched = true));

    view.replaceChildren(
      h("div", { class: "crumbs" }, h("a", { href: "#/" }, "← Runs")),
      problem,
      message,
      content,
      h("div", { class: "panel", id: "signal" }, h("h2", {}, "Send a signal"), signalMessage, signalForm, signalClosed),
    );

    let shown = null;
    let done = false;

    function inboxPanel(signals) {
      if (!signals.length) return "";
      return h(
        "div",
        { class: "panel", id: "inbox" },
        h("h2", {}, "Inbox ", h("span", { class: "muted" }, `· ${signals.length} buffered, not yet consumed by a wait`)),
        h(
          "table",
          { class: "attempts" },
          h("thead", {}, h("tr", {}, ["#", "signal", "sent", "payload"].map((t) => h("th", {}, t)))),
          h(
            "tbody",
            {},
            signals.map((sig) =>
              h("tr", {}, h("td", {}, String(sig.seq)), h("td", {}, sig.name), h("td", {}, agoEl(sig.sent_at)), h("td", { class: "mono" }, compact(sig.payload, 80))),
            ),
          ),
        ),
      );
    }

    function render(run, steps, signals) {
      document.title = `${run.name} ${run.status} · orchestrator`;
      done = TERMINAL.has(run.status);
      cancel.hidden = done;
      cancel.disabled = done || Boolean(run.cancel_requested);
      cancel.textContent = run.cancel_requested ? "Cancel requested" : "Cancel run";
      redrive.hidden = !(run.status === "failed" || run.status === "cancelled");
      redrive.disabled = false;
      signalForm.hidden = done;
      signalClosed.hidden = !done;
      if (!nameTouched && !signalName.value && run.waiting_for) signalName.value = run.waiting_for;
      content.replaceChildren(
        h(
          "div",
          { class: "run-head" },
          h("h1", {}, h("span", { id: "run-name" }, run.name), badge(run.status, "run-status")),
          h(
            "div",
            { class: "actions" },
            h("a", { class: "button", id: "export", href: `${path}/history`, download: `${run.id}.json` }, "Export JSON"),
            " ",
            cancel,
            " ",
            redrive,
          ),
        ),
        h("div", { class: "run-id mono", id: "run-id" }, run.id),
        h("div", { class: "panel" }, facts(run)),
        h(
          "div",
          { class: run.error ? "columns stacked" : "columns" }, // a traceback needs the width
          h("div", { class: "panel", id: "input" }, h("h2", {}, "Input"), jsonBlock(run.input, true)),
          outcomePanel(run, open),
        ),
        h(
          "div",
          { class: "panel" },
          h("h2", {}, "Timeline ", h("span", { class: "muted" }, `· ${steps.length} durable call${steps.length === 1 ? "" : "s"}`)),
          timeline(run, steps, open),
        ),
        inboxPanel(signals || []),
      );
    }

    async function load() {
      const mine = token;
      try {
        const [run, steps, inbox] = await Promise.all([
          api("GET", path),
          api("GET", `${path}/steps`),
          api("GET", `${path}/signals`),
        ]);
        if (mine !== token) return;
        const snapshot = JSON.stringify([run, steps.steps, inbox.signals]);
        if (snapshot !== shown) {
          shown = snapshot;
          render(run, steps.steps, inbox.signals);
        }
        problem.replaceChildren();
        if (done) {
          setLive("paused", `${run.status} · not refreshing`);
          return;
        }
        setLive("", `live · updated ${clock(new Date().toISOString())}`);
      } catch (e) {
        if (mine !== token) return;
        problem.replaceChildren(banner("error", e.message));
        if (e.status === 404) {
          content.replaceChildren();
          setLive("paused", "no such run");
          return;
        }
        setLive("down", e.status === 0 ? "API unreachable" : "refresh failed");
      }
      schedule(load, RUN_REFRESH_MS);
    }

    async function sendSignal() {
      const name = signalName.value.trim();
      let value = null;
      if (!name) {
        signalMessage.replaceChildren(banner("error", "a signal needs a name"));
        return;
      }
      if (payload.value.trim()) {
        try {
          value = JSON.parse(payload.value);
        } catch (e) {
          signalMessage.replaceChildren(banner("error", `the payload is not valid JSON: ${e.message}`));
          return;
        }
      }
      send.disabled = true;
      try {
        const sent = await api("POST", `${path}/signals`, { name, payload: value });
        const effect = sent.woke ? "it woke the run" : "it is buffered until the run waits for it";
        signalMessage.replaceChildren(
          banner("ok", `Signal “${sent.signal}” sent (#${sent.seq}); ${effect}.`),
          sent.warning ? banner("warn", `Warning: ${sent.warning}.`) : "",
        );
        payload.value = "";
      } catch (e) {
        signalMessage.replaceChildren(banner("error", e.message));
      } finally {
        send.disabled = false;
      }
      load();
    }

    async function redriveRun() {
      if (!window.confirm(`Redrive run ${id}? Recorded steps replay; failed ones run again.`)) return;
      redrive.disabled = true;
      try {
        const res = await api("POST", `${path}/redrive`, {});
        message.replaceChildren(banner("ok", `run is ${res.status} again (redrive ${res.redrive_count})`));
      } catch (e) {
        message.replaceChildren(banner("error", e.message));
        redrive.disabled = false;
      }
      load();
    }

    async function cancelRun() {
      if (!window.confirm(`Cancel run ${id}?`)) return;
      cancel.disabled = true;
      try {
        const res = await api("POST", `${path}/cancel`, {});
        message.replaceChildren(banner("ok", res.message || `run is ${res.status}`));
      } catch (e) {
        message.replaceChildren(banner("error", e.message));
        cancel.disabled = false;
      }
      load();
    }

    load();
  }

  // What the pages in their own files (workers.js) use of this one.
  const kit = { h, api, banner, clock, setLive, schedule, current: () => token, view, enc };

  window.addEventListener("hashchange", route);
  route();
})();
