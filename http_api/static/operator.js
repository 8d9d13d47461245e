/* The operator view (admin key): failed jobs with their failed parts and a retry, jobs retrying
 * now, and the mail dead letter (GET /api/notifications?state=dead) with re-send and delete.
 * Refreshed every 10 seconds. */
"use strict";

(() => {
  const { api, el, badge, jobHref, fmtTime } = App;
  const SHOWN_PARTS = 5;
  let loop = null;

  function td(label, ...content) {
    return el("td", { "data-label": label }, ...content);
  }

  function empty(columns, text) {
    return el("tr", {}, el("td", { colspan: columns, class: "empty" }, text));
  }

  /* The failed parts of a status document: [name, reason]. */
  function failedParts(doc) {
    if (doc.progress) {
      return Object.entries(doc.progress).filter(([, p]) => p.state === "failed").map(([t, p]) => [t, p.last_error || ""]);
    }
    return (doc.items || []).filter((i) => i.state === "failed").map((i) => [i.item, i.last_error || ""]);
  }

  async function details(jobs) {
    return App.pool(jobs, 4, async (job) => {
      try {
        return await api(`jobs/${encodeURIComponent(job.id)}`);
      } catch (err) {
        if (err.status === 401) throw err;
        return null;
      }
    });
  }

  async function action(button, run, done) {
    button.disabled = true;
    try {
      await run();
      App.clearError();
      App.notice(done);
      if (loop) loop.now();
    } catch (err) {
      App.showError(err);
    } finally {
      button.disabled = false;
    }
  }

  function failedRow(job, doc) {
    const parts = doc ? failedParts(doc) : [];
    const what = el("div", {});
    if (doc && doc.last_error) what.append(el("div", { class: "error-text" }, doc.last_error));
    if (parts.length) {
      what.append(el("ul", {}, ...parts.slice(0, SHOWN_PARTS).map(([name, reason]) =>
        el("li", {}, el("span", { class: "mono" }, name), reason ? ": " : "", el("span", { class: "error-text" }, reason)))));
      if (parts.length > SHOWN_PARTS) what.append(el("p", { class: "muted" }, `and ${parts.length - SHOWN_PARTS} more failed parts`));
    }
    const retry = el("button", { type: "button", class: "primary", "aria-label": `Retry job ${job.id}` }, "Retry");
    retry.addEventListener("click", () => action(retry, () => api(`jobs/${encodeURIComponent(job.id)}/retry`, { method: "POST" }),
      `Job ${job.id} queued again.`));
    return el("tr", { class: "failed", dataset: { jobId: job.id } },
      td("Job", el("a", { href: jobHref(job.id), class: "mono" }, job.id), el("div", { class: "muted" }, fmtTime(job.created))),
      td("Kind", job.kind), td("Requested by", job.requested_by), el("td", { "data-label": "What failed" }, what),
      td("Actions", retry));
  }

  function deadRow(entry) {
    const resend = el("button", { type: "button", class: "primary", "aria-label": `Re-send mail ${entry.key}` }, "Re-send");
    resend.addEventListener("click", () => action(resend,
      () => api(`notifications/${encodeURIComponent(entry.key)}/retry`, { method: "POST" }), `Mail ${entry.key} queued again.`));
    const drop = el("button", { type: "button", class: "danger", "aria-label": `Delete mail ${entry.key}` }, "Delete");
    drop.addEventListener("click", () => {
      if (!window.confirm(`Delete the mail "${entry.subject}" to ${entry.to.join(", ")}? It will not be sent.`)) return;
      action(drop, () => api(`notifications/${encodeURIComponent(entry.key)}`, { method: "DELETE" }), `Mail ${entry.key} deleted.`);
    });
    return el("tr", { dataset: { key: entry.key } },
      td("Job", el("a", { href: jobHref(entry.job_id), class: "mono" }, entry.job_id)), td("To", entry.to.join(", ")),
      td("Subject", entry.subject), td("Attempts", String(entry.attempts)),
      el("td", { "data-label": "Last error", class: "error" }, entry.last_error || ""),
      td("Actions", el("div", { class: "actions" }, resend, drop)));
  }

  async function refresh() {
    const [failed, running, retryingJobs] = await Promise.all([
      api("jobs", { query: { state: "failed", limit: "100" } }),
      api("jobs", { query: { state: "running", limit: "100" } }),
      api("jobs", { query: { state: "retrying", limit: "100" } }),
    ]);
    const retrying = { jobs: [...retryingJobs.jobs, ...running.jobs] };
    const failedDocs = await details(failed.jobs);
    document.querySelector("#failed tbody").replaceChildren(...(failed.jobs.length
      ? failed.jobs.map((job, i) => failedRow(job, failedDocs[i])) : [empty(5, "No failed job.")]));
    document.getElementById("failed-caption").textContent =
      `${failed.jobs.length}${failed.continuation ? "+" : ""} failed jobs, newest first`;
    // A job waiting to retry a part is `running` in the index; its status document says `retrying`.
    const runningDocs = await details(retrying.jobs);
    const waiting = retrying.jobs.map((job, i) => [job, runningDocs[i]]).filter(([, doc]) => doc && doc.state === "retrying");
    document.querySelector("#retrying tbody").replaceChildren(...(waiting.length ? waiting.map(([job, doc]) => el("tr", {},
      td("Job", el("a", { href: jobHref(job.id), class: "mono" }, job.id), " ", badge(doc.state)), td("Kind", job.kind),
      td("Requested by", job.requested_by),
      el("td", { "data-label": "Last error", class: "error" }, doc.last_error || failedOrRetrying(doc)))) : [empty(4, "No job is retrying.")]));
    let dead;
    try {
      dead = await api("notifications", { query: { state: "dead", limit: "100" } });
    } catch (err) {
      document.querySelector("#dead tbody").replaceChildren(empty(6, "The dead letter needs the admin key."));
      throw err;
    }
    document.querySelector("#dead tbody").replaceChildren(...(dead.notifications.length
      ? dead.notifications.map(deadRow) : [empty(6, "No dead mail.")]));
    document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  function failedOrRetrying(doc) {
    const items = doc.items || [];
    const waiting = items.find((i) => i.state === "retrying");
    if (waiting) return `${waiting.item}: ${waiting.last_error || ""}`;
    const type = Object.entries(doc.progress || {}).find(([, p]) => p.state === "retrying");
    return type ? `${type[0]}: ${type[1].last_error || ""}` : "";
  }

  async function safeRefresh() {
    try {
      await refresh();
    } catch (err) {
      App.showError(err, err.status === 401 ? "" : "the operator view could not be read");
    }
  }

  document.getElementById("refresh-now").addEventListener("click", safeRefresh);
  App.start(() => {
    if (loop) loop.now();
    else loop = App.every(10000, safeRefresh);
  });
})();
