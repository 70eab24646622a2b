/* The schedules page (#/schedules): each recurring schedule, when it fires
 * next, and its last decisions linked to their runs. It polls every
 * LIST_REFRESH_MS.
 */
"use strict";

window.orchestratorPages = window.orchestratorPages || {};

(function () {
  const { LIST_REFRESH_MS, view, h, banner, badge, enc, setLive, api, clock, untilEl, schedule, current } =
    window.orchestratorKit;

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
      const mine = current();
      try {
        const page = await api("GET", "schedules");
        if (mine !== current()) return;
        const snapshot = JSON.stringify(page);
        if (snapshot !== shown) {
          shown = snapshot;
          table.replaceChildren(schedulesTable(page.schedules));
        }
        message.replaceChildren();
        setLive("", `live · updated ${clock(new Date().toISOString())}`);
      } catch (e) {
        if (mine !== current()) return;
        message.replaceChildren(banner("error", e.message));
        setLive("down", e.status === 0 ? "API unreachable" : "refresh failed");
      }
      schedule(load, LIST_REFRESH_MS);
    }
    load();
  }

  window.orchestratorPages.schedules = () => showSchedules();
})();
