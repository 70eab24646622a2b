/* A run's page (#/runs/<id>): its facts, input, output or error, timeline and
 * inbox, with the signal form and the cancel and redrive buttons. It polls every
 * RUN_REFRESH_MS until the run ends.
 */
"use strict";

window.orchestratorPages = window.orchestratorPages || {};

(function () {
  const { TERMINAL, RUN_REFRESH_MS, view, h, banner, badge, enc, setLive, api } = window.orchestratorKit;
  const { clock, at, agoEl, untilEl, runDuration, compact, jsonBlock, errorBlock } = window.orchestratorKit;
  const { schedule, current, timeline, valueBlock, snapshot, apiPages, displayOrder } = window.orchestratorKit;

  // A record's place in the store's key order (orchestrator/model.py, op_sort_key):
  // numbered parts padded to six digits, task and generation parts to five.
  const opSortKey = (id) =>
    id
      .split(".")
      .map((p) => (/^\d+$/.test(p) ? p.padStart(6, "0") : p[0] + p.slice(1).padStart(5, "0")))
      .join(".");
  const byKey = (a, b) => (opSortKey(a.id) < opSortKey(b.id) ? -1 : opSortKey(a.id) > opSortKey(b.id) ? 1 : 0);

  function facts(run, steps) {
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
    // Callbacks and child runs by the name of their operation (the engine's own
    // signals behind them are not something a user sends).
    const named = (id) => {
      const s = steps.find((o) => o.id === id);
      return s ? `“${s.name}” (#${id})` : `#${id}`;
    };
    for (const id of run.waiting_for_callbacks || []) rows.push(["Waiting for callback", named(id)]);
    for (const id of run.waiting_for_children || []) rows.push(["Waiting for child run of", named(id)]);
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

  function outcomePanel(run, open, fresh) {
    if (run.error) {
      return h(
        "div",
        { class: "panel", id: "outcome" },
        h("h2", {}, run.status === "cancelled" ? "Cancelled" : "Error"),
        errorBlock(run.error, open, "run-error", true),
      );
    }
    if (run.status === "completed") {
      const output = valueBlock(run.output, run.output_link, true, fresh.output);
      return h("div", { class: "panel", id: "outcome" }, h("h2", {}, "Output"), output);
    }
    const note = run.status === "cancelled" ? "cancelled: no output" : "no output yet";
    return h("div", { class: "panel", id: "outcome" }, h("h2", {}, "Output"), h("div", { class: "muted" }, note));
  }

  function showRun(id) {
    document.title = `${id} · orchestrator`;
    const path = `workflows/${enc(id)}`;
    // A value's link from a new answer, for a click on a link that has expired.
    const fresh = {
      output: () => api("GET", path).then((r) => r.output_link),
      result: (stepId) =>
        apiPages(`${path}/steps`).then((pages) => (pages.flatMap((p) => p.steps).find((s) => s.id === stepId) || {}).result_link),
    };
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
            h("button", { type: "button", class: "button", id: "export", onclick: exportHistory }, "Export JSON"),
            " ",
            cancel,
            " ",
            redrive,
          ),
        ),
        h("div", { class: "run-id mono", id: "run-id" }, run.id),
        h("div", { class: "panel" }, facts(run, steps)),
        h(
          "div",
          { class: run.error ? "columns stacked" : "columns" }, // a traceback needs the width
          h("div", { class: "panel", id: "input" }, h("h2", {}, "Input"), jsonBlock(run.input, true)),
          outcomePanel(run, open, fresh),
        ),
        h(
          "div",
          { class: "panel" },
          h("h2", {}, "Timeline ", h("span", { class: "muted" }, `· ${steps.length} durable call${steps.length === 1 ? "" : "s"}`)),
          timeline(run, steps, open, fresh.result),
        ),
        inboxPanel(signals || []),
      );
    }

    async function load() {
      const mine = current();
      try {
        // The steps and the inbox come a page at a time (each bounded by bytes): all
        // of them, the steps in the order the code created them, signals by arrival.
        const [run, stepPages, inboxPages] = await Promise.all([
          api("GET", path),
          apiPages(`${path}/steps`),
          apiPages(`${path}/signals`),
        ]);
        if (mine !== current()) return;
        const steps = displayOrder(stepPages.flatMap((p) => p.steps));
        const signals = inboxPages.flatMap((p) => p.signals).sort((a, b) => a.seq - b.seq);
        const seen = snapshot([run, steps, signals]);
        if (seen !== shown) {
          shown = seen;
          render(run, steps, signals);
        }
        problem.replaceChildren();
        if (done) {
          setLive("paused", `${run.status} · not refreshing`);
          return;
        }
        setLive("", `live · updated ${clock(new Date().toISOString())}`);
      } catch (e) {
        if (mine !== current()) return;
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

    // The run's history as one JSON file, from every page of GET .../history: the
    // run (on the first page), its records by operation id, its signals by arrival.
    async function exportHistory(e) {
      const button = e.currentTarget;
      button.disabled = true;
      try {
        const pages = await apiPages(`${path}/history`);
        const whole = {
          format: pages[0].format,
          workflow: pages[0].workflow,
          steps: pages.flatMap((p) => p.steps).sort(byKey),
          signals: pages.flatMap((p) => p.signals).sort((a, b) => a.seq - b.seq),
        };
        const url = URL.createObjectURL(new Blob([JSON.stringify(whole, null, 2)], { type: "application/json" }));
        const link = h("a", { href: url, download: `${id}.json`, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
      } catch (err) {
        message.replaceChildren(banner("error", `export failed: ${err.message}`));
      } finally {
        button.disabled = false;
      }
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

  window.orchestratorPages.run = (kit, where) => showRun(where.id);
})();
