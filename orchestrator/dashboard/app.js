/* The orchestrator dashboard: a runs list, a run page, schedules, jobs and workers
 * over the JSON API. This file is the router; the pages and their helpers are
 * the other scripts, loaded before it in this order (index.html):
 *
 *   kit.js        DOM, the API, time and value formatting, polling
 *   values.js     values stored in S3, given as links: size, preview, download
 *   timeline.js   a run's timeline
 *   list.js, run.js, schedules.js, jobs.js, workers.js   the pages
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
  const kit = window.orchestratorKit;
  const pages = window.orchestratorPages;

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
    if (path === "/jobs") return { page: "jobs" };
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

  function route() {
    kit.nextPage();
    try {
      const where = parseHash();
      pages[where.page](kit, where);
    } catch (e) {
      // Whatever the hash holds, the page says so and links home instead of going blank.
      const view = document.getElementById("view");
      view.replaceChildren(kit.h("p", {}, `cannot show ${location.hash}: ${e.message} `, kit.h("a", { href: "#/" }, "all runs")));
    }
  }

  window.addEventListener("hashchange", route);
  route();
})();
