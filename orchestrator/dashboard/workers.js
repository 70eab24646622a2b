/* The dashboard's workers page (#/workers): the worker registry from GET /workers.
 *
 * Loaded before app.js, which routes #/workers here and passes its helpers
 * (`kit`). Each worker's heartbeat age is measured against the API's clock
 * (the reply's "now"), not the browser's, so a skewed laptop clock cannot make
 * a live worker look stale. Everything from the API is inserted as text.
 */
"use strict";

window.orchestratorPages = window.orchestratorPages || {};

window.orchestratorPages.workers = function showWorkers(kit, where) {
  const { h, api, banner, clock, setLive, schedule, current, view, enc } = kit;
  const REFRESH_MS = 3000;

  function age(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  // live: heartbeats arriving; stale: silent past the liveness window; stopped: said so at exit.
  const state = (w) => (w.live ? "live" : w.stopped ? "stopped" : "stale");

  function table(workers, now) {
    if (!workers.length) {
      return h(
        "div",
        { class: "empty" },
        where.all ? "No worker has registered." : "No live workers. Start one with `orchestrator worker MODULE`.",
      );
    }
    const head = ["Worker", "Host", "Serves", "Task queues", "Build", "Busy", "Last heartbeat", "State"];
    return h(
      "table",
      { class: "runs workers" },
      h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        workers.map((w) =>
          h(
            "tr",
            { "data-id": w.id, "data-state": state(w) },
            h("td", { class: "id" }, w.id),
            h("td", {}, w.host, h("span", { class: "muted" }, ` pid ${w.pid}`)),
            h(
              "td",
              {},
              [...w.names].sort().map((n, i) => [i ? ", " : "", h("a", { href: `#/?name=${enc(n)}` }, n)]),
            ),
            h("td", {}, (w.task_queues || ["default"]).join(", ")),
            h("td", { class: "id" }, w.build_id || "—"),
            h("td", { class: "num" }, `${w.busy} / ${w.concurrency}`),
            h("td", { class: "num", title: new Date(w.last_seen).toISOString() }, age(now - w.last_seen)),
            h("td", {}, h("span", { class: `badge worker-${state(w)}` }, state(w))),
          ),
        ),
      ),
    );
  }

  document.title = "Workers · orchestrator";
  const all = h("input", { id: "all", type: "checkbox", checked: Boolean(where.all) });
  all.addEventListener("change", () => (location.hash = all.checked ? "#/workers?all=1" : "#/workers"));
  const message = h("div");
  const body = h("div", {}, h("div", { class: "empty" }, "Loading…"));
  view.replaceChildren(
    h(
      "div",
      { class: "toolbar" },
      h("h1", {}, "Workers"),
      h("span", { class: "muted" }, "the registry: most recently seen first"),
      h("div", { class: "grow" }),
      h("label", { class: "check" }, all, " include stopped and stale workers"),
    ),
    message,
    h("div", { class: "panel" }, body),
  );

  async function load() {
    const mine = current();
    try {
      const reply = await api("GET", where.all ? "workers?all=true" : "workers");
      if (mine !== current()) return;
      body.replaceChildren(table(reply.workers, reply.now || Date.now()));
      message.replaceChildren();
      setLive("", `live · updated ${clock(new Date().toISOString())}`);
    } catch (e) {
      if (mine !== current()) return;
      message.replaceChildren(banner("error", e.message));
      setLive("down", e.status === 0 ? "API unreachable" : "refresh failed");
    }
    schedule(load, REFRESH_MS);
  }
  load();
};
