/* The work list: GET /api/jobs with the filters, then each shown job's status document for its
 * progress (again while it runs; once when it has ended). Rows are updated in place, so the
 * page never reloads and keyboard focus stays where it was. */
"use strict";

(() => {
  const { api, el, badge, progress, summary, jobHref, fmtTime, ENDED } = App;
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#jobs tbody");
  const details = new Map(); // job id -> its status document
  const rows = new Map(); // job id -> <tr>
  const FIELDS = ["requested_by", "kind", "state", "created_from", "created_to", "limit"];
  let loop = null;
  // Bumped by every change of the filters: a listing still under way for older filters (a slow
  // unfiltered one) must not overwrite the newer list when it finally answers.
  let generation = 0;

  function readUrl() {
    const params = new URLSearchParams(location.search);
    form.elements.mine.checked = params.get("mine") === "1";
    form.elements.requested_by.value = params.get("requested_by") || App.me();
    for (const name of FIELDS.slice(1)) {
      if (params.has(name)) form.elements[name].value = params.get(name);
    }
  }

  function filters() {
    const values = {};
    for (const name of FIELDS) values[name] = form.elements[name].value.trim();
    if (!form.elements.mine.checked) values.requested_by = "";
    return values;
  }

  function writeUrl() {
    const values = filters();
    const params = new URLSearchParams();
    if (form.elements.mine.checked) params.set("mine", "1");
    for (const [name, value] of Object.entries(values)) if (value && !(name === "limit" && value === "50")) params.set(name, value);
    if (form.elements.mine.checked && values.requested_by) App.setMe(values.requested_by);
    history.replaceState(null, "", `${location.pathname}${params.toString() ? "?" + params : ""}`);
  }

  function cell(label, ...content) {
    return el("td", { "data-label": label }, ...content);
  }

  function progressCell(job) {
    const doc = details.get(job.id);
    if (!doc) return el("span", { class: "muted" }, "…");
    const s = summary(doc);
    return progress(s.done, s.total, s.label, `progress of job ${job.id}`);
  }

  function render(job) {
    const doc = details.get(job.id);
    const state = doc ? doc.state : job.state;
    let tr = rows.get(job.id);
    if (!tr) {
      tr = el("tr", { dataset: { jobId: job.id } });
      rows.set(job.id, tr);
    }
    const title = job.labels && Object.keys(job.labels).length
      ? Object.entries(job.labels).map(([k, v]) => `${k}=${v}`).join(", ") : "";
    tr.className = state === "failed" ? "failed" : "";
    tr.dataset.state = state;
    tr.dataset.kind = job.kind;
    const link = el("a", { href: jobHref(job.id), class: "mono" }, job.id);
    const error = doc && doc.last_error && state === "failed"
      ? el("div", { class: "error-text" }, doc.last_error) : null;
    const cells = [
      cell("Job", link, title ? el("div", { class: "muted" }, title) : null, error),
      cell("Kind", job.kind),
      cell("State", badge(state)),
      cell("Progress", progressCell(job)),
      cell("Requested by", job.requested_by),
      cell("Created", el("time", { datetime: job.created }, fmtTime(job.created))),
    ];
    // Keep the link (and its focus) when only the numbers change.
    const focused = tr.contains(document.activeElement) ? document.activeElement : null;
    if (focused && focused.tagName === "A" && tr.cells.length) {
      for (let i = 1; i < cells.length; i++) tr.cells[i].replaceWith(cells[i]);
    } else {
      tr.replaceChildren(...cells);
    }
    return tr;
  }

  async function refresh() {
    const asked = generation;
    const values = filters();
    const page = await api("jobs", { query: values });
    if (asked !== generation) return;
    App.clearError();
    const wanted = page.jobs.filter((j) => !details.has(j.id) || !ENDED.has(details.get(j.id).state) || j.state !== details.get(j.id).state);
    await App.pool(wanted, 4, async (job) => {
      try {
        details.set(job.id, await api(`jobs/${encodeURIComponent(job.id)}`));
      } catch (err) {
        if (err.status === 401) throw err;
        details.delete(job.id); // gone meanwhile, or a passing outage: the next refresh tries again
      }
    });
    if (asked !== generation) return;
    const order = page.jobs.map(render);
    const shown = new Set(page.jobs.map((j) => j.id));
    for (const [id, tr] of rows) {
      if (!shown.has(id)) {
        tr.remove();
        rows.delete(id);
      }
    }
    const current = Array.from(tbody.children);
    if (current.length !== order.length || order.some((tr, i) => current[i] !== tr)) {
      const focused = document.activeElement;
      tbody.replaceChildren(...order);
      if (focused && tbody.contains(focused)) focused.focus();
    }
    if (!order.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No job matches these filters.")));
    }
    document.getElementById("jobs-caption").textContent =
      `Jobs (${page.jobs.length}${page.continuation ? "+" : ""} shown)`;
    document.getElementById("jobs-more").hidden = !page.continuation;
    document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  async function safeRefresh() {
    try {
      await refresh();
    } catch (err) {
      App.showError(err, "the job list could not be read");
      if (err.field && err.field !== "key") App.markField(form, err.field);
    }
  }

  function restart() {
    generation += 1;
    rows.clear();
    tbody.replaceChildren();
    writeUrl();
    if (loop) loop.stop();
    loop = null;
    if (document.getElementById("auto-refresh").checked) loop = App.every(5000, safeRefresh);
    else safeRefresh();
  }

  readUrl();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    App.markField(form, null);
    restart();
  });
  form.elements.mine.addEventListener("change", () => {
    if (form.elements.mine.checked && !form.elements.requested_by.value) form.elements.requested_by.focus();
    else restart();
  });
  for (const name of ["kind", "state", "limit"]) form.elements[name].addEventListener("change", restart);
  document.getElementById("f-clear").addEventListener("click", () => {
    form.reset();
    form.elements.requested_by.value = App.me();
    restart();
  });
  document.getElementById("auto-refresh").addEventListener("change", (event) => {
    if (event.target.checked) {
      if (!loop) loop = App.every(5000, safeRefresh);
    } else if (loop) {
      loop.stop();
      loop = null;
    }
  });
  document.getElementById("refresh-now").addEventListener("click", safeRefresh);
  App.start(restart);
})();
