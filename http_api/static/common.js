/* What every page shares: the key, calls to the JSON API, messages, and small DOM helpers.
 *
 * The key a person enters is kept in sessionStorage (this tab, until it closes) and sent as
 * x-functions-key on every API call; it never goes into a URL. Data from the API is put into
 * the page with textContent only (el() below), never as HTML.
 */
"use strict";

const App = (() => {
  const KEY = "bulkExport.key";
  const ME = "bulkExport.me";
  const base = document.querySelector('meta[name="api-base"]').content;
  const ENDED = new Set(["succeeded", "failed", "cancelled"]);
  const PART_ENDED = new Set(["succeeded", "failed", "cancelled", "skipped"]);
  const SESSION_ENDED = new Set(["complete", "failed", "cancelled"]);
  let starter = null;

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field || null;
    }
  }

  function key() {
    return sessionStorage.getItem(KEY) || "";
  }

  /* Call the API: `path` below the route prefix (e.g. "jobs"), `query` an object of strings
   * (empty values left out), `body` JSON. Answers the parsed JSON (null for 204), or throws
   * ApiError with the API's error.code, error.message and error.field. */
  async function api(path, { method = "GET", query = null, body } = {}) {
    const url = new URL(`${base}/${path}`, location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const headers = { Accept: "application/json", "x-functions-key": key() };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (exc) {
      throw new ApiError(0, "unreachable", `the service did not answer (${exc.message || exc})`, null);
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (exc) {
      data = null;
    }
    if (!response.ok) {
      const err = (data && data.error) || {};
      if (response.status === 401) {
        throw new ApiError(401, "unauthorized",
          "the service refused the key (401 Unauthorized): enter a valid key above" +
          (document.body.dataset.page === "operator" ? " (this page needs the admin key)" : ""), "key");
      }
      const message = err.message || `${response.status} ${response.statusText || "error"}`;
      throw new ApiError(response.status, err.code || `http_${response.status}`, message, err.field);
    }
    return data;
  }

  /* el("a", {href: "x", class: "y"}, "text", child, ...): an element; strings become text. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const messageBox = () => document.getElementById("message");

  /* Show an API error (or any error) where a person sees it: the API's message and field. */
  function showError(err, context = "") {
    const box = messageBox();
    box.replaceChildren();
    const what = context ? `${context}: ` : "";
    box.append(el("strong", {}, "Error: "), what + (err.message || String(err)));
    if (err.field && err.field !== "key") {
      box.append(" ", el("span", { class: "field" }, `(field: ${err.field})`));
    }
    if (err.status) box.append(" ", el("span", { class: "muted" }, `[HTTP ${err.status}${err.code ? ", " + err.code : ""}]`));
    box.hidden = false;
    if (err.status === 401) askForKey();
  }

  function clearError() {
    const box = messageBox();
    box.hidden = true;
    box.replaceChildren();
  }

  function notice(text) {
    const box = document.getElementById("notice");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function fmtBytes(n) {
    if (n === null || n === undefined || n < 0) return "?";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = n;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function fmtCount(n) {
    return Number(n || 0).toLocaleString("en");
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  function timeEl(iso) {
    return iso ? el("time", { datetime: iso }, fmtTime(iso)) : "";
  }

  function badge(state) {
    const word = state || "unknown";
    return el("span", { class: `badge ${word.replace(/\s+/g, "-")}`, dataset: { state: word } }, word);
  }

  function progress(done, total, label, name) {
    const bar = el("progress", { max: Math.max(total, 1), value: Math.min(done, Math.max(total, 1)),
      "aria-label": name || "progress", "aria-valuetext": label });
    return el("div", { class: "progress" }, bar, el("span", { class: "label" }, label));
  }

  /* The numbers of a job's status document, whatever its kind. */
  function summary(doc) {
    if (doc.progress) { // an export: one part per FHIR type
      const parts = Object.values(doc.progress);
      const done = parts.filter((p) => PART_ENDED.has(p.state)).length;
      const resources = parts.reduce((n, p) => n + (p.resources || 0), 0);
      const bytes = parts.reduce((n, p) => n + (p.bytes || 0), 0);
      const label = `${done} of ${parts.length} types · ${fmtCount(resources)} resources · ${fmtBytes(bytes)}`;
      return { done, total: parts.length, unit: "types", resources, bytesDone: bytes, bytesTotal: null,
        failed: parts.filter((p) => p.state === "failed").length, label, short: label };
    }
    const counts = doc.counts || {};
    const total = counts.items || 0;
    const done = ["succeeded", "failed", "cancelled", "skipped"].reduce((n, s) => n + (counts[s] || 0), 0);
    const bytes = doc.bytes || { done: 0, total: 0 };
    const failed = counts.failed || 0;
    const short = `${fmtCount(done)} of ${fmtCount(total)} items` + (failed ? ` · ${fmtCount(failed)} failed` : "");
    return { done, total, unit: "items", bytesDone: bytes.done, bytesTotal: bytes.total, failed, short,
      label: `${fmtCount(done)} of ${fmtCount(total)} items · ${fmtBytes(bytes.done)} of ${fmtBytes(bytes.total)}` +
        (failed ? ` · ${fmtCount(failed)} failed` : "") };
  }

  function jobHref(id) {
    return `${base}/ui/jobs/${encodeURIComponent(id)}`;
  }

  function uiHref(path, query) {
    const url = new URL(`${base}/ui${path ? "/" + path : ""}`, location.origin);
    for (const [name, value] of Object.entries(query || {})) if (value) url.searchParams.set(name, value);
    return url.pathname + url.search;
  }

  function isLink(text) {
    return typeof text === "string" && /^https?:\/\//i.test(text);
  }

  /* Run `fn` now and again `ms` after each run ends (never two at once); paused while the tab
   * is hidden. Answers {stop(), now()}. */
  function every(ms, fn) {
    let timer = null;
    let stopped = false;
    let running = false;
    async function tick() {
      clearTimeout(timer);
      if (stopped || running) return;
      if (document.hidden) {
        timer = setTimeout(tick, ms);
        return;
      }
      running = true;
      try {
        await fn();
      } finally {
        running = false;
        if (!stopped) timer = setTimeout(tick, ms);
      }
    }
    document.addEventListener("visibilitychange", () => { if (!document.hidden && !stopped) tick(); });
    tick();
    return {
      stop() { stopped = true; clearTimeout(timer); },
      now() { tick(); },
    };
  }

  /* Up to `limit` calls of `fn` over `values` at once; answers the results in order. */
  async function pool(values, limit, fn) {
    const results = new Array(values.length);
    let next = 0;
    async function worker() {
      while (next < values.length) {
        const index = next++;
        results[index] = await fn(values[index], index);
      }
    }
    await Promise.all(Array.from({ length: Math.min(limit, values.length) }, worker));
    return results;
  }

  /* The key form in the header. */
  function renderKeyState() {
    const has = Boolean(key());
    document.getElementById("key-entry").hidden = has;
    document.getElementById("key-help").hidden = has;
    document.getElementById("key-set").hidden = !has;
  }

  function askForKey() {
    document.getElementById("key-entry").hidden = false;
    document.getElementById("key-help").hidden = false;
    const input = document.getElementById("key-input");
    input.focus();
  }

  function start(fn) {
    starter = fn;
    if (key()) run();
    else {
      notice("Enter the access key above to see and change the service's jobs.");
      askForKey();
    }
  }

  async function run() {
    if (!starter) return;
    notice("");
    try {
      await starter();
    } catch (err) {
      showError(err);
    }
  }

  function setupKeyForm() {
    const form = document.getElementById("key-form");
    const input = document.getElementById("key-input");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) {
        input.setAttribute("aria-invalid", "true");
        showError(new ApiError(0, "", "enter a key first", "key"));
        input.focus();
        return;
      }
      input.removeAttribute("aria-invalid");
      sessionStorage.setItem(KEY, value);
      input.value = "";
      clearError();
      renderKeyState();
      document.getElementById("main").focus();
      run();
    });
    document.getElementById("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      renderKeyState();
      askForKey();
    });
    document.getElementById("key-change").addEventListener("click", askForKey);
    renderKeyState();
    const current = document.body.dataset.page;
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === current) link.setAttribute("aria-current", "page");
    }
  }

  /* Mark the form control that the API's `field` names (data-field on the control). */
  function markField(form, field) {
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    if (!field) return null;
    let target = null;
    for (const node of form.querySelectorAll("[data-field]")) {
      const names = node.dataset.field.split(" ");
      if (names.includes(field) || names.some((n) => field.startsWith(n + ".") || field.startsWith(n + "["))) {
        target = node;
        break;
      }
    }
    if (target) {
      target.setAttribute("aria-invalid", "true");
      target.focus();
    }
    return target;
  }

  setupKeyForm();

  return {
    ApiError, ENDED, PART_ENDED, SESSION_ENDED, api, badge, base, clearError, el, every, fmtBytes, fmtCount,
    fmtTime, isLink, jobHref, key, markField, notice, pool, progress, showError, start, summary, timeEl, uiHref,
    me: () => localStorage.getItem(ME) || "",
    setMe: (value) => { if (value) localStorage.setItem(ME, value); },
  };
})();
