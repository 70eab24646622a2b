/* The schedules page (#/schedules): each recurring schedule, when it fires
 * next, and its last decisions linked to their runs. It polls every
 * LIST_REFRESH_MS.
 */
"use strict";

window.orchestratorPages = window.orchestratorPages || {};

(function () {
  const { h, badge, enc, untilEl, polledTable } = window.orchestratorKit;

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
    polledTable("Schedules", "next fire times and the last runs' outcomes", "schedules", (page) => schedulesTable(page.schedules));
  }

  window.orchestratorPages.schedules = () => showSchedules();
})();
