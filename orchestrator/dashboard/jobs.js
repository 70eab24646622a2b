/* The jobs page (#/jobs): bulk operations and backfills, newest first, with
 * what each does, its status and its progress; a running job can be cancelled
 * (it stops after the page it is on). It polls every LIST_REFRESH_MS.
 */
"use strict";

window.orchestratorPages = window.orchestratorPages || {};

(function () {
  const { h, badge, api, clock, polledTable } = window.orchestratorKit;

  function what(job) {
    const req = job.request;
    if (job.kind === "backfill") return `backfill ${req.schedule} ${req.start} .. ${req.end}`;
    const filters = ["name", "status"].filter((k) => req[k]).map((k) => `${k}=${req[k]}`).join(" ");
    return `bulk ${req.action}${req.dry_run ? " (dry run)" : ""} ${filters}`.trim();
  }

  function progress(job) {
    const p = job.progress || {};
    if (job.kind === "backfill") return `${p.ticks_done || 0} of ${p.total ?? "?"} ticks`;
    if (job.phase === "acting") return `${p.acted || 0} of ${p.total ?? "?"} runs acted on`;
    return `${p.examined || 0} runs examined, ${p.matched || 0} match`;
  }

  function outcome(job, reload) {
    if (job.status === "running") {
      const button = h("button", { type: "button", class: "cancel-job" }, "Cancel");
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await api("POST", `jobs/${encodeURIComponent(job.id)}/cancel`, {});
        } catch (e) {
          button.replaceWith(h("span", { class: "muted" }, e.message));
          return;
        }
        reload();
      });
      return button;
    }
    const r = job.result || {};
    if (job.message) return job.message;
    if (r.outcomes) return Object.entries(r.outcomes).map(([o, n]) => `${n} ${o}`).join(", ") || "nothing to do";
    if (job.kind === "backfill") return `${r.started_count || 0} started, ${r.skipped_count || 0} skipped`;
    return `${r.count || 0} match${r.truncated ? " (more than one job acts on)" : ""}`;
  }

  function jobsTable(jobs, reload) {
    if (!jobs.length) {
      return h("div", { class: "empty" }, "No jobs. `orchestrator bulk` and `orchestrator schedule backfill` start them.");
    }
    const head = ["Job", "Started", "What", "Status", "Progress", "Outcome"];
    return h(
      "table",
      { class: "runs jobs" },
      h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        jobs.map((job) =>
          h(
            "tr",
            { "data-id": job.id },
            h("td", { class: "id" }, job.id),
            h("td", {}, clock(new Date(job.created_at).toISOString())),
            h("td", {}, what(job)),
            h("td", {}, badge(job.status)),
            h("td", {}, progress(job)),
            h("td", {}, outcome(job, reload)),
          ),
        ),
      ),
    );
  }

  function showJobs() {
    polledTable("Jobs", "bulk operations and backfills, newest first", "jobs?limit=50", (page, reload) =>
      jobsTable(page.jobs, reload),
    );
  }

  window.orchestratorPages.jobs = () => showJobs();
})();
