/* A run's timeline: every durable call at its position (steps with their
 * attempts, sleeps, waits, child runs, batches nested by their branches),
 * between the run's start and its end. Used by the run page (run.js).
 */
"use strict";

(function () {
  const kit = window.orchestratorKit;
  const { TERMINAL, h, enc, toMs, span, at, untilEl, sinceEl, errorBlock } = kit;
  const { size, shortDigest, valueBlock } = kit;

  // `fresh(id)` (async) reads the step again: its result_link, renewed.
  function stepEvent(s, run, open, fresh) {
    const result = (value) => valueBlock(value, s.result_link, false, () => fresh(s.id));
    const started = toMs(s.started_at);
    const recorded = toMs(s.recorded_at);
    let state = "ok";
    // null: still open (time since it started); undefined: no duration to show.
    let took = started === null ? undefined : recorded - started;
    const body = [];
    if (s.kind === "patch") {
      // A marker, not a wait: this run took the patched code path. It has no duration.
      took = undefined;
      body.push(h("div", { class: "line" }, `patch marker: this run took the code path of patch “${s.name}”`));
    } else if (s.kind === "step") {
      if (s.retry_at) {
        state = "open";
        body.push(h("div", { class: "line" }, "attempt failed; next attempt ", untilEl(s.retry_at)));
        took = null;
      } else if (s.error) {
        state = "bad";
        body.push(errorBlock(s.error, open, `step-${s.id}`, false));
      } else {
        body.push(result(s.result));
      }
      if (s.attempts && s.attempts.length > 1) body.push(attemptsTable(s.attempts));
    } else if (s.kind === "parallel" || s.kind === "map") {
      const items = s.items || [];
      const counts = {};
      for (const i of items) counts[i.status] = (counts[i.status] || 0) + 1;
      const parts = Object.keys(counts).sort().map((k) => `${counts[k]} ${k}`);
      if (counts.failed) state = "bad";
      if (s.result_link && !items.length) {
        // The batch's whole result is in S3 beyond the inline limit: no items to count.
        body.push(h("div", { class: "line" }, "batch result:"), result(null));
      } else {
        body.push(
          h("div", { class: "line" }, `${items.length} branches: ${parts.join(", ") || "none"} · ${(s.completion_reason || "").replaceAll("_", " ")}`),
        );
      }
    } else if (s.kind === "context" || s.kind === "branch" || s.kind === "condition") {
      if (s.error) {
        state = "bad";
        body.push(errorBlock(s.error, open, `step-${s.id}`, false));
      } else if (s.replay_children) {
        body.push(h("div", { class: "line" }, "result too large to keep: replayed from its operations"));
      } else {
        body.push(result(s.result));
      }
    } else if (s.kind === "invoke") {
      const link = s.child_id
        ? h("a", { href: `#/runs/${enc(s.child_id)}`, class: "child-link" }, s.child_id)
        : "";
      if (s.child_status && s.child_status !== "completed") {
        state = "bad";
        body.push(h("div", { class: "line" }, "child run ", link, ` ${s.child_status}`));
        if (s.error) body.push(errorBlock(s.error, open, `step-${s.id}`, false));
      } else if (s.output_ref) {
        // The child's output is in S3: the child's own page shows it (this list reads no child values).
        const ref = s.output_ref;
        body.push(
          h(
            "div",
            { class: "line" },
            "child run ",
            link,
            " completed; output: ",
            h(
              "a",
              { href: `#/runs/${enc(s.child_id)}`, class: "child-output", "data-sha256": ref.sha256, "data-bytes": ref.bytes },
              `${size(ref.bytes)} of JSON stored in S3 (sha256 ${shortDigest(ref.sha256)}), on the child run`,
            ),
          ),
        );
      } else if (s.child_status) {
        body.push(h("div", { class: "line" }, "child run ", link, " completed; output:"));
        body.push(result(s.result));
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
      const callback = s.kind === "callback";
      const what = callback ? `callback “${s.name}” (${s.callback_id})` : `signal “${s.signal}”`;
      if (s.timed_out) {
        state = "timer";
        body.push(h("div", { class: "line" }, `${what} timed out`, deadline));
      } else if (callback && s.error) {
        state = "bad";
        body.push(h("div", { class: "line" }, `${what} failed:`));
        body.push(errorBlock(s.error, open, `step-${s.id}`, false));
      } else if (callback && s.resolved) {
        body.push(h("div", { class: "line" }, `${what} completed; result:`));
        body.push(result(s.result));
      } else if (s.resolved) {
        body.push(h("div", { class: "line" }, `${what} received; payload:`));
        body.push(result(s.payload));
      } else if (TERMINAL.has(run.status)) {
        // The run ended while it waited: the wait lasted until the end, no longer.
        state = "";
        took = toMs(run.updated_at) - started;
        const never = callback ? "never completed" : "never came";
        body.push(h("div", { class: "line" }, `${what} ${never}: the run ended (${run.status})`));
      } else {
        state = "open";
        took = null;
        body.push(h("div", { class: "line" }, `waiting for ${what}`, deadline));
      }
    }
    const depth = depthOf(s.id);
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
          took === undefined ? "" : took === null ? ["  ·  ", sinceEl(s.started_at)] : `  ·  ${span(took)}`,
        ),
      ),
      h("div", { class: "ev-body" }, body),
    );
  }

  // The order to show a run's operations in, over every page of its steps: a tree
  // walk of their ids, as orchestrator/step_order.py's display_order (each page
  // comes in that order, but a task scope may belong before an operation of an
  // earlier page). A task scope goes before the first numbered sibling that
  // started after its own first operation; a scope is shown whole.
  const isTask = (part) => /^t\d+$/.test(part);
  const partNumber = (part) => (isTask(part) ? Number(part.slice(1)) : /^\d+$/.test(part) ? Number(part) : 0);
  function displayOrder(steps) {
    const node = (part) => ({ part, ops: [], children: new Map(), first: null });
    const root = node("");
    for (const s of steps) {
      let at = root;
      const parts = s.id.split(".");
      for (const part of parts[0].startsWith("~") ? parts.slice(1) : parts) {
        if (!at.children.has(part)) at.children.set(part, node(part));
        at = at.children.get(part);
      }
      at.ops.push(s);
    }
    const first = (n) => {
      const starts = n.ops.map((s) => s.started_at).filter(Boolean);
      for (const c of n.children.values()) {
        const t = first(c);
        if (t !== null) starts.push(t);
      }
      n.first = starts.length ? starts.reduce((a, b) => (b < a ? b : a)) : null; // ISO 8601 UTC
      return n.first;
    };
    first(root);
    const out = [];
    const byNumber = (a, b) => partNumber(a.part) - partNumber(b.part);
    const walk = (n) => {
      out.push(...n.ops);
      const kids = [...n.children.values()];
      const numbered = kids.filter((c) => !isTask(c.part)).sort(byNumber);
      const tasks = kids.filter((c) => isTask(c.part)).sort(byNumber);
      for (const child of numbered) {
        while (tasks.length && tasks[0].first !== null && child.first !== null && tasks[0].first < child.first) walk(tasks.shift());
        walk(child);
      }
      tasks.forEach(walk);
    };
    walk(root);
    return out;
  }

  // How deep an id nests, not counting a continued-as-new run's generation prefix (~g).
  function depthOf(id) {
    return (id.match(/\./g) || []).length - (id.startsWith("~") ? 1 : 0);
  }

  // The task scopes (t<k> parts) an operation sits in, outermost first:
  // "3.t0.t1.2" -> ["3.t0", "3.t0.t1"]. The API lists a scope's operations together.
  function taskScopes(id) {
    const parts = id.split(".");
    const scopes = [];
    for (let i = 0; i < parts.length - 1; i++) {
      if (/^t\d+$/.test(parts[i])) scopes.push(parts.slice(0, i + 1).join("."));
    }
    return scopes;
  }

  function taskEvent(scope) {
    return h(
      "li",
      { class: "task", "data-kind": "task", "data-id": scope, "data-depth": Math.min(depthOf(scope), 8) },
      h(
        "div",
        { class: "ev-head" },
        h("span", { class: "pos" }, `#${scope}`),
        h("span", { class: "badge kind" }, "task"),
        h("span", { class: "name muted" }, "asyncio task (gather, TaskGroup, create_task)"),
      ),
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
  function timeline(run, steps, open, fresh) {
    const items = [boundaryEvent("ok", "created", run.created_at)];
    const big = new Map();
    for (const s of steps) {
      if (s.kind !== "parallel" && s.kind !== "map") continue;
      const inside = steps.filter((o) => o.id.startsWith(s.id + "."));
      const branches = new Set(inside.map((o) => branchOf(s.id, o.id)));
      if (branches.size > COLLAPSE_OVER || (s.items || []).length > COLLAPSE_OVER) big.set(s.id, inside);
    }
    const hidden = (s) => [...big.keys()].some((b) => s.id.startsWith(b + "."));
    const opened = new Set();
    for (const s of steps) {
      if (hidden(s)) continue;
      for (const scope of taskScopes(s.id)) {
        if (!opened.has(scope)) {
          opened.add(scope);
          items.push(taskEvent(scope));
        }
      }
      items.push(stepEvent(s, run, open, fresh));
      const inside = big.get(s.id);
      if (!inside) continue;
      const failed = new Set((s.items || []).filter((i) => i.status === "failed").map((i) => String(i.index)));
      for (const o of inside) if (o.error) failed.add(branchOf(s.id, o.id));
      const first = inside.filter((o) => failed.has(branchOf(s.id, o.id)));
      const rest = inside.filter((o) => !failed.has(branchOf(s.id, o.id)));
      for (const o of first) items.push(stepEvent(o, run, open, fresh));
      if (rest.length) {
        // Opened stays opened across the page's re-renders (a poll while the run lives).
        const key = `collapsed:${s.id}`;
        const more = h("details", { open: open.has(key) },
          h("summary", {}, `${rest.length} more operations of ${s.kind} ${s.name}`),
          h("ol", { class: "timeline" }, rest.map((o) => stepEvent(o, run, open, fresh))));
        more.addEventListener("toggle", () => (more.open ? open.add(key) : open.delete(key)));
        items.push(h("li", { class: "collapsed", "data-kind": "collapsed" }, more));
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

  kit.timeline = timeline;
  kit.displayOrder = displayOrder;
})();
