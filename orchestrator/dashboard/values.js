/* Values stored in S3 beyond what the API returns inline (1 MB): a run's
 * `output_link`, a step's `result_link` ({url, bytes, sha256, expires_in}), and
 * in the runs list the same link without a url. A value whose object is gone
 * comes as a link with `unavailable` (the reason) and no url.
 *
 * The page cannot fetch the presigned link itself: its Content-Security-Policy
 * allows fetches from its own origin only, and neither S3 nor the local moto
 * server answers a page from another origin. So it shows the value's size, the
 * first 64 KB from the API (GET values/<sha256>/preview, read once per value:
 * a stored value never changes, its key is its SHA-256), and the link as a
 * "download" that the browser opens in a new tab (a navigation, which the policy
 * does not restrict). A link is valid 15 minutes: one older than that is asked
 * for again when clicked.
 */
"use strict";

(function () {
  const kit = window.orchestratorKit;
  const { h, api, clock, jsonBlock } = kit;

  function size(n) {
    if (n < 1024) return `${n} bytes`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
    return `${(n / (1024 * 1024)).toFixed(1)} MB`;
  }

  const short = (sha256) => `${sha256.slice(0, 12)}…`;

  // sha256 -> the API's preview reply, or a promise of it while it is read.
  const previews = new Map();

  function preview(sha256) {
    if (!previews.has(sha256)) {
      const pending = api("GET", `values/${sha256}/preview`).then(
        (reply) => (previews.set(sha256, reply), reply),
        (e) => {
          previews.delete(sha256); // read again at the next render
          throw e;
        },
      );
      previews.set(sha256, pending);
    }
    return previews.get(sha256);
  }

  function previewBlock(sha256) {
    const pre = h("pre", { class: "json preview" }, "loading a preview…");
    const note = h("div", { class: "muted preview-note" });
    const show = (reply) => {
      const whole = reply.preview_bytes >= reply.bytes;
      pre.textContent = whole ? reply.preview : `${reply.preview}…`;
      note.textContent = whole ? "" : `the first ${size(reply.preview_bytes)} of ${size(reply.bytes)}`;
    };
    const known = previews.get(sha256);
    if (known && !(known instanceof Promise)) show(known);
    else {
      preview(sha256).then(show, (e) => {
        pre.replaceWith(h("div", { class: "muted preview-error" }, `no preview: ${e.message}`));
      });
    }
    return [pre, note];
  }

  // The download link. `refresh` (async) returns the same value's link from a
  // new API answer, for a click after the link has expired.
  function downloadLink(link, refresh) {
    let received = Date.now();
    const validMs = (link.expires_in || 0) * 1000;
    const until = h("span", { class: "muted" });
    const showUntil = () => {
      until.textContent = ` (link valid until ${clock(new Date(received + validMs).toISOString())}, renewed by a later click)`;
    };
    const a = h(
      "a",
      { class: "value-download", href: link.url, target: "_blank", rel: "noopener noreferrer" },
      "download",
    );
    a.addEventListener("click", async (e) => {
      if (Date.now() - received < validMs - 30000 || !refresh) return;
      e.preventDefault();
      const fresh = await refresh().catch(() => null);
      if (fresh && fresh.url) {
        a.href = fresh.url;
        received = Date.now();
        showUntil();
        window.open(fresh.url, "_blank", "noopener,noreferrer");
      }
    });
    showUntil();
    return [a, until];
  }

  // A value as the page shows it: inline JSON, or for a value given as a link, its
  // size, a preview and the download link.
  function valueBlock(value, link, pretty, refresh) {
    if (!link) return jsonBlock(value, pretty);
    if (link.unavailable) {
      // Its S3 object is gone (expired): the API says so instead of the value.
      return h(
        "div",
        { class: "value-link value-unavailable", "data-sha256": link.sha256 },
        h("div", { class: "line value-meta" }, `value unavailable: ${link.unavailable}`),
      );
    }
    return h(
      "div",
      { class: "value-link", "data-sha256": link.sha256, "data-bytes": link.bytes },
      h(
        "div",
        { class: "line value-meta" },
        `${size(link.bytes)} of JSON, stored in S3 (sha256 ${short(link.sha256)}) · `,
        link.url ? downloadLink(link, refresh) : "open the run for the link",
      ),
      previewBlock(link.sha256),
    );
  }

  // One line for a value given as a link, where the page shows values short (the runs list).
  const linkSummary = (link) => `${size(link.bytes)} value stored in S3`;

  // Links (a url, a size, a digest) are new in every API answer: what a page
  // compares to know whether anything changed leaves their urls out.
  function snapshot(data) {
    return JSON.stringify(data, function (key, value) {
      return key === "url" && this && this.sha256 && this.expires_in ? undefined : value;
    });
  }

  Object.assign(kit, { size, valueBlock, linkSummary, snapshot, shortDigest: short });
})();
