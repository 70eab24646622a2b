/* What every page of the dashboard uses: DOM built from text, the JSON API,
 * time and value formatting, and polling that moving to another page cancels.
 *
 * Loaded first (index.html); the other scripts take their helpers from
 * window.orchestratorKit, and the router (app.js) hands it to each page. Every
 * API URL is relative to the page, and everything from the API is inserted as
 * text, never as HTML.
 */
"use strict";

(function () {
  const STATUSES = ["pending", "running", "sleeping", "waiting", "completed", "failed", "cancelled"];
  const TERMINAL = new Set(["completed", "failed", "cancelled"]);
  const PAGE_SIZE = 50;
  const MAX_PAGE = 1000; // the most items a page of a run's steps, signals or history holds
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

  // Every page of a run's steps, signals or history: follows each page's `next`
  // (null after the last), asking for the largest pages (the API also cuts a
  // page by bytes, so any page may hold fewer).
  async function apiPages(path) {
    const pages = [];
    let cursor = null;
    do {
      const query = `limit=${MAX_PAGE}` + (cursor ? `&cursor=${enc(cursor)}` : "");
      const page = await api("GET", `${path}?${query}`);
      pages.push(page);
      cursor = page.next;
    } while (cursor);
    return pages;
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

  // A new page: the responses and timers of the page before are dropped.
  function nextPage() {
    token += 1;
    clearTimeout(timer);
  }

  function schedule(fn, delay) {
    clearTimeout(timer);
    const mine = token;
    timer = setTimeout(() => {
      if (mine !== token) return;
      if (document.hidden) schedule(fn, delay);
      else fn();
    }, delay);
  }

  // Show another page: the router (app.js) follows the hash.
  function go(hash) {
    if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = hash;
  }

  // A page that is one polled table (schedules, jobs): a title, a panel that
  // `render(answer, reload)` fills from GET `path`, redrawn only when the answer
  // changed, refreshed every LIST_REFRESH_MS; an error shows as a banner.
  function polledTable(title, subtitle, path, render) {
    document.title = `${title} · orchestrator`;
    const table = h("div");
    const message = h("div");
    view.replaceChildren(
      h("div", { class: "toolbar" }, h("h1", {}, title), h("span", { class: "muted" }, subtitle)),
      message,
      h("div", { class: "panel" }, table),
    );
    let shown = null;
    async function load() {
      const mine = token;
      try {
        const answer = await api("GET", path);
        if (mine !== token) return;
        const snapshot = JSON.stringify(answer);
        if (snapshot !== shown) {
          shown = snapshot;
          table.replaceChildren(render(answer, load));
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

  window.orchestratorKit = {
    polledTable,
    STATUSES,
    TERMINAL,
    PAGE_SIZE,
    LIST_REFRESH_MS,
    RUN_REFRESH_MS,
    view,
    h,
    banner,
    badge,
    enc,
    setLive,
    ApiError,
    api,
    apiPages,
    toMs,
    clock,
    span,
    agoEl,
    untilEl,
    sinceEl,
    at,
    runDuration,
    compact,
    jsonBlock,
    details,
    errorBlock,
    schedule,
    nextPage,
    current: () => token,
    go,
  };
})();
