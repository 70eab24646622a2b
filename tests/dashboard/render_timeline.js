/* Renders the run page's timeline (orchestrator/dashboard/timeline.js) under
 * Node, with just enough of a DOM for the dashboard's `h`: reads {run, steps}
 * as JSON on stdin, prints the timeline's entries as JSON lines
 * ({kind, id, depth, head, body}); with "order": true, the ids of the steps in the
 * order the run page shows them. Used by tests/dashboard/test_timeline_text.py.
 */
"use strict";
const fs = require("fs");
const path = require("path");
const vm = require("vm");

class Node {}
class Element extends Node {
  constructor(tag) {
    super();
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.attributes = {};
    this.className = "";
  }
  setAttribute(k, v) {
    this.attributes[k] = v;
  }
  getAttribute(k) {
    return this.attributes[k];
  }
  addEventListener() {}
  append(...items) {
    this.children.push(...items);
  }
  get textContent() {
    return this.children.map((c) => (typeof c === "string" ? c : c.textContent)).join("");
  }
  querySelectorAll() {
    return [];
  }
}
const document = {
  createElement: (tag) => new Element(tag),
  getElementById: (id) => new Element(`#${id}`),
  hidden: false,
};
const window = { open() {}, addEventListener() {}, dispatchEvent() {} };
const noop = () => 0;
const context = vm.createContext({ window, document, Node, location: { hash: "" }, console, Date, Intl, setTimeout: noop, clearTimeout: noop, setInterval: noop });
const dir = path.join(__dirname, "..", "..", "orchestrator", "dashboard");
for (const file of ["kit.js", "values.js", "timeline.js"]) {
  vm.runInContext(fs.readFileSync(path.join(dir, file), "utf8"), context, { filename: file });
}
const { run, steps, order } = JSON.parse(fs.readFileSync(0, "utf8"));
if (order) {
  // {"order": true}: the ids in the order the run page shows them (displayOrder).
  console.log(JSON.stringify(window.orchestratorKit.displayOrder(steps).map((s) => s.id)));
  process.exit(0);
}
const list = window.orchestratorKit.timeline(run, steps, new Set(), () => Promise.resolve(null));
for (const li of list.children) {
  const head = li.children.find((c) => c.className === "ev-head");
  const body = li.children.find((c) => c.className === "ev-body");
  console.log(
    JSON.stringify({
      kind: li.attributes["data-kind"],
      id: li.attributes["data-id"] || null,
      depth: Number(li.attributes["data-depth"] || 0),
      head: head ? head.textContent : li.textContent,
      body: body ? body.textContent : "",
    }),
  );
}
