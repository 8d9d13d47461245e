/* One job's page: GET /api/jobs/{id} (a batch's later items through /api/batches/{id}?items_offset),
 * each part's outcome and error, retry (a failed job) and cancel (a job not ended), the output
 * files or each item's destination. Refreshed every 3 seconds until the job ends. */
"use strict";

(() => {
  const { api, el, badge, progress, summary, fmtBytes, fmtCount, timeEl, isLink, ENDED } = App;
  const jobId = decodeURIComponent(location.pathname.replace(/\/+$/, "").split("/").pop());
  const WINDOW = 1000; // items in one status answer
  let doc = null;
  let loop = null;
  let itemsOffset = 0;
  const secrets = {}; // "source.secret" -> value, for a retry that needs them again

  document.getElementById("page-title").textContent = `Job ${jobId}`;
  document.title = `Job ${jobId} · Bulk export`;

  async function load() {
    if (doc && doc.kind === "batch" && itemsOffset > 0) {
      return api(`batches/${encodeURIComponent(jobId)}`, { query: { items_offset: String(itemsOffset) } });
    }
    return api(`jobs/${encodeURIComponent(jobId)}`);
  }

  function fact(list, name, ...value) {
    if (value.every((v) => v === null || v === undefined || v === "")) return;
    list.append(el("dt", {}, name), el("dd", {}, ...value));
  }

  function describeSource(request, kind) {
    const source = request.source || {};
    if (kind === "fhir-export") return `FHIR ${source.base_url || ""} · types ${(source.types || []).join(", ")}`;
    if (kind === "session") return `app ${request.app}, session ${request.session_id}`;
    if (source.kind === "blob") return `blob container ${source.container}`;
    if (source.kind === "local") return "files under the local root";
    return source.kind || "";
  }

  function describeDestination(destination) {
    if (!destination) return "";
    if (destination.kind === "blob") {
      return `blob container ${destination.container}${destination.path_prefix ? " / " + destination.path_prefix : ""}`;
    }
    if (destination.kind === "http_put") return `HTTP PUT ${destination.url_template} (base ${destination.base_url})`;
    return destination.kind || "";
  }

  function renderHeader() {
    const s = summary(doc);
    document.getElementById("job-state").replaceChildren(el("span", {}, "State: "), badge(doc.state),
      doc.status && doc.status !== doc.state ? el("span", { class: "muted" }, ` (${doc.status})`) : "",
      doc.cancel_requested && !ENDED.has(doc.state) ? el("span", { class: "muted" }, " cancel requested") : "");
    const bars = [progress(s.done, s.total, s.bytesTotal ? s.short : s.label, `${s.unit} done`)];
    if (s.bytesTotal) bars.push(progress(s.bytesDone, s.bytesTotal, `${fmtBytes(s.bytesDone)} of ${fmtBytes(s.bytesTotal)}`, "bytes moved"));
    document.getElementById("job-progress").replaceChildren(...bars);
    const error = document.getElementById("job-error");
    error.replaceChildren();
    if (doc.last_error) {
      error.append(el("div", { class: "panel error-panel", id: "job-last-error" }, el("strong", {}, "Last error: "), doc.last_error));
    }
    if (doc.note) error.append(el("p", { class: "notice" }, doc.note));
    document.getElementById("retry").hidden = doc.state !== "failed";
    document.getElementById("cancel").hidden = ENDED.has(doc.state);
    document.getElementById("updated").textContent = ENDED.has(doc.state)
      ? "" : `Refreshing every 3 s · updated ${new Date().toLocaleTimeString()}`;
    const facts = document.getElementById("job-facts");
    facts.replaceChildren();
    const request = doc.request || {};
    fact(facts, "Kind", doc.kind);
    fact(facts, "Requested by", doc.requested_by);
    if (doc.waiting) fact(facts, "Waiting", doc.waiting);
    const labels = Object.entries(doc.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    fact(facts, "Labels", labels);
    if (doc.session) {
      fact(facts, "Session", doc.session.session_id ? el("a", { href: App.uiHref("sessions", { session: doc.session.session_id }) }, doc.session.session_id) : "");
      fact(facts, "Study", doc.session.study_id ? el("a", { href: App.uiHref("sessions", { study: doc.session.study_id }) }, doc.session.study_id) : "");
      fact(facts, "App", doc.session.app);
    } else {
      fact(facts, "Source", describeSource(request, doc.kind));
    }
    fact(facts, "Destination", describeDestination(request.destination));
    fact(facts, "Created", timeEl(doc.created));
    fact(facts, "Started", timeEl(doc.started));
    fact(facts, "Finished", timeEl(doc.finished));
    fact(facts, "Updated", timeEl(doc.updated));
    const attempts = typeof doc.attempts === "object" ? doc.attempts.job : doc.attempts;
    fact(facts, "Job attempts", attempts ? String(attempts) : "");
  }

  function td(label, content, cls) {
    return el("td", { "data-label": label, class: cls }, content);
  }

  function destinationCell(destination) {
    if (!destination) return "";
    return isLink(destination) ? el("a", { href: destination, class: "mono" }, destination) : el("span", { class: "mono" }, destination);
  }

  function wanted(state) {
    const filter = document.getElementById("parts-filter").value;
    if (filter === "failed") return state === "failed";
    if (filter === "open") return state !== "succeeded" && state !== "skipped";
    return true;
  }

  function renderParts() {
    const table = document.getElementById("parts");
    const head = table.tHead;
    const body = table.tBodies[0];
    let columns;
    let rows;
    if (doc.progress) {
      columns = ["Type", "State", "Resources", "Files", "Bytes", "Pages", "Failed attempts", "Error"];
      const failures = (doc.attempts && doc.attempts.types) || {};
      rows = Object.entries(doc.progress).filter(([, p]) => wanted(p.state)).map(([type, p]) => el("tr", { class: p.state === "failed" ? "failed" : "", dataset: { part: type, state: p.state } },
        td("Type", type), td("State", badge(p.state)), td("Resources", fmtCount(p.resources), "num"),
        td("Files", fmtCount(p.files), "num"), td("Bytes", fmtBytes(p.bytes), "num"), td("Pages", fmtCount(p.pages), "num"),
        td("Failed attempts", String(failures[type] || 0), "num"), td("Error", p.last_error || "", "error")));
      document.getElementById("parts-title").textContent = "Resource types";
    } else {
      const session = doc.kind === "session";
      columns = session
        ? ["Item", "State", "Bytes", "Attempts", "Rule", "Error", "Destination"]
        : ["#", "Item", "State", "Bytes", "Attempts", "Error", "Destination"];
      rows = (doc.items || []).filter((i) => wanted(i.state)).map((item) => {
        const total = item.bytes_total;
        const bytes = total ? progress(item.bytes_done, total, `${fmtBytes(item.bytes_done)} of ${fmtBytes(total)}`, `bytes of ${item.item}`)
          : fmtBytes(item.bytes_done);
        const cells = [
          td("Item", el("span", { class: "mono" }, item.item)), td("State", badge(item.state)), td("Bytes", bytes),
          td("Attempts", String(item.attempts || 0), "num"),
        ];
        if (session) cells.push(td("Rule", item.rule || ""));
        cells.push(td("Error", item.last_error || "", "error"), td("Destination", destinationCell(item.destination)));
        if (!session) cells.unshift(td("#", String(item.index), "num"));
        return el("tr", { class: item.state === "failed" ? "failed" : "", dataset: { part: item.item, state: item.state } }, ...cells);
      });
      document.getElementById("parts-title").textContent = session ? "Session items" : "Items";
    }
    head.replaceChildren(el("tr", {}, ...columns.map((c) => el("th", { scope: "col" }, c))));
    if (!rows.length) rows = [el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, "No part to show."))];
    body.replaceChildren(...rows);
    const count = doc.counts ? doc.counts.items : Object.keys(doc.progress || {}).length;
    const first = doc.items_offset || 0;
    const shownItems = doc.items ? doc.items.length : count;
    document.getElementById("parts-caption").textContent = doc.items && count > WINDOW
      ? `Items ${first + 1}–${first + shownItems} of ${fmtCount(count)}` : `${fmtCount(count)} parts`;
    const more = document.getElementById("more-items");
    more.hidden = !(doc.kind === "batch" && (doc.items_more || itemsOffset > 0));
    more.textContent = doc.items_more ? "Show the next items" : "Back to the first items";
  }

  function renderOutput() {
    const section = document.getElementById("output-section");
    const files = doc.output || [];
    section.hidden = !doc.progress;
    const body = document.querySelector("#output tbody");
    if (!files.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "empty" }, ENDED.has(doc.state) ? "No file was kept." : "No file yet.")));
      return;
    }
    body.replaceChildren(...files.map((f) => el("tr", {},
      td("File", isLink(f.url) ? el("a", { href: f.url, class: "mono" }, f.name) : f.name), td("Type", f.type),
      td("Resources", fmtCount(f.count), "num"), td("Bytes", fmtBytes(f.committed_bytes), "num"))));
  }

  function render() {
    document.getElementById("job").hidden = false;
    renderHeader();
    renderParts();
    renderOutput();
  }

  async function refresh() {
    try {
      doc = await load();
      App.clearError();
      render();
      if (ENDED.has(doc.state) && loop) {
        loop.stop();
        loop = null;
      }
    } catch (err) {
      App.showError(err, `job ${jobId} could not be read`);
    }
  }

  function follow() {
    if (loop) loop.now();
    else loop = App.every(3000, refresh);
  }

  function secretFields(field) {
    const form = document.getElementById("retry-secrets");
    const box = document.getElementById("retry-secret-fields");
    if (!box.querySelector(`[data-field="${field}"]`)) {
      const id = `secret-${field.replace(/\W/g, "-")}`;
      box.append(el("div", { class: "field" }, el("label", { for: id }, `${field} (sent once, not kept)`),
        el("input", { id, type: "password", autocomplete: "off", dataset: { field }, required: true })));
    }
    form.hidden = false;
    box.querySelector(`[data-field="${field}"]`).focus();
  }

  function retryBody() {
    const body = {};
    for (const [field, value] of Object.entries(secrets)) {
      const [section, name] = field.split(".");
      body[section] = { ...(body[section] || {}), [name]: value };
    }
    return Object.keys(body).length ? body : undefined;
  }

  async function retry() {
    const button = document.getElementById("retry");
    button.disabled = true;
    try {
      await api(`jobs/${encodeURIComponent(jobId)}/retry`, { method: "POST", body: retryBody() });
      document.getElementById("retry-secrets").hidden = true;
      App.clearError();
      App.notice("Retry queued: the failed parts run again.");
      follow();
    } catch (err) {
      App.showError(err, "the retry was refused");
      if (err.status === 400 && /^(source|destination)\.(secret|auth_secret)$/.test(err.field || "")) secretFields(err.field);
    } finally {
      button.disabled = false;
    }
  }

  async function cancel() {
    if (!window.confirm(`Cancel job ${jobId}? Work under way stops, and what it wrote is removed.`)) return;
    const button = document.getElementById("cancel");
    button.disabled = true;
    try {
      await api(`jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
      App.clearError();
      App.notice("Cancel requested: the job stops at its next step.");
      follow();
    } catch (err) {
      App.showError(err, "the cancel was refused");
    } finally {
      button.disabled = false;
    }
  }

  document.getElementById("retry").addEventListener("click", retry);
  document.getElementById("cancel").addEventListener("click", cancel);
  document.getElementById("retry-secrets").addEventListener("submit", (event) => {
    event.preventDefault();
    for (const input of event.target.querySelectorAll("input[data-field]")) secrets[input.dataset.field] = input.value;
    retry();
  });
  document.getElementById("parts-filter").addEventListener("change", () => doc && renderParts());
  document.getElementById("more-items").addEventListener("click", async () => {
    itemsOffset = doc.items_more ? itemsOffset + WINDOW : 0;
    await refresh();
  });
  App.start(follow);
})();
