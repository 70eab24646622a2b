/* The runs list (#/, #/?status=failed&name=...&cursor=...): newest first,
 * filtered by status, workflow name and build id, paged with the API's cursor.
 * The filters and the page live in the hash, so a reload keeps them. It polls
 * every LIST_REFRESH_MS.
 */
"use strict";

window.orchestratorPages = window.orchestratorPages || {};

(function () {
  const { STATUSES, TERMINAL, PAGE_SIZE, LIST_REFRESH_MS, view, h, banner, badge, enc, setLive, api } =
    window.orchestratorKit;
  const { clock, agoEl, untilEl, runDuration, compact, linkSummary, schedule, current, go } = window.orchestratorKit;

  function listHash(q) {
    const p = new URLSearchParams();
    for (const key of ["status", "name", "build_id", "limit", "cursor"]) if (q[key]) p.set(key, q[key]);
    const query = p.toString();
    return `#/${query ? `?${query}` : ""}`;
  }

  const newer = []; // cursors of the pages before this one, for "Newer"
  let newerKey = null; // the filter those cursors belong to
  const namesSeen = new Set();

  function runDetail(run) {
    if (run.error) return `${run.error.type}: ${run.error.message}`;
    if (run.cancel_requested && !TERMINAL.has(run.status)) return "cancel requested";
    if (run.unserved) return `no live worker serves “${run.name}”`;
    if (run.stranded) return `stranded: no live worker of build ${run.build_id}`;
    if (run.status === "waiting") {
      const waits = [
        ...(run.waiting_for ? run.waiting_for.split(",").map((n) => `signal “${n}”`) : []),
        ...(run.waiting_for_callbacks || []).map((id) => `callback at #${id}`),
        ...(run.waiting_for_children || []).map((id) => `child run of #${id}`),
      ];
      return [`waiting for ${waits.join(" or ") || "a signal"}`, run.wake_at ? ", times out " : "", run.wake_at ? untilEl(run.wake_at) : ""];
    }
    if (run.status === "sleeping" && run.wake_at) return ["wakes ", untilEl(run.wake_at)];
    if (run.status === "completed" && run.output_link) return `→ ${linkSummary(run.output_link)}`;
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
      const mine = current();
      const params = new URLSearchParams();
      if (q.status) params.set("status", q.status);
      if (q.name) params.set("name", q.name);
      if (q.build_id) params.set("build_id", q.build_id);
      params.set("limit", q.limit || String(PAGE_SIZE));
      if (q.cursor) params.set("cursor", q.cursor);
      try {
        const page = await api("GET", `workflows?${params}`);
        if (mine !== current()) return;
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
        if (mine !== current()) return;
        message.replaceChildren(banner("error", e.message));
        setLive("down", e.status === 0 ? "API unreachable" : "refresh failed");
        if (e.status >= 400 && e.status < 500) return; // a bad filter: retrying will not help
      }
      schedule(load, LIST_REFRESH_MS);
    }
    load();
  }

  window.orchestratorPages.list = (kit, where) => showList(where);
})();
