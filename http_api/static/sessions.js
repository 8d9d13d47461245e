/* The study/session overview: GET /api/sessions/{id} or /api/studies/{id}, shown with a word per
 * session and app and each item's outcome; refreshed every 5 seconds until it has ended. */
"use strict";

(() => {
  const { api, el, badge, fmtBytes, fmtCount, timeEl, isLink, jobHref, SESSION_ENDED } = App;
  const result = document.getElementById("result");
  const sessionForm = document.getElementById("session-form");
  const studyForm = document.getElementById("study-form");
  let loop = null;
  let current = null; // {kind: "session"|"study", id}

  function td(label, ...content) {
    return el("td", { "data-label": label }, ...content);
  }

  function countsText(counts) {
    return Object.entries(counts || {}).filter(([, n]) => n).map(([state, n]) => `${fmtCount(n)} ${state}`).join(", ");
  }

  function table(caption, columns, rows) {
    return el("div", { class: "table-wrap" }, el("table", { class: "cards" }, el("caption", {}, caption),
      el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { scope: "col" }, c)))),
      el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, "Nothing yet."))]))));
  }

  function renderSession(status) {
    const parts = [el("h2", {}, `Session ${status.session_id} `, badge(status.state))];
    const studies = Array.isArray(status.study_id) ? status.study_id : status.study_id ? [status.study_id] : [];
    if (studies.length) {
      parts.push(el("p", {}, "Study: ", ...studies.map((s, i) => [i ? ", " : "", el("a", { href: App.uiHref("sessions", { study: s }) }, s)])));
    }
    for (const app of status.apps) {
      parts.push(el("h3", {}, `App ${app.app} `, badge(app.status)));
      parts.push(el("dl", { class: "facts" },
        el("dt", {}, "Job"), el("dd", {}, el("a", { href: jobHref(app.job_id), class: "mono" }, app.job_id)),
        el("dt", {}, "Items"), el("dd", {}, countsText(app.counts) || "none"),
        el("dt", {}, "Bytes"), el("dd", {}, `${fmtBytes(app.bytes.done)} of ${fmtBytes(app.bytes.total)}`),
        el("dt", {}, "Completion message"), el("dd", {}, app.session_completed ? "received" : "not yet"),
        el("dt", {}, "Updated"), el("dd", {}, timeEl(app.updated))));
      if (app.last_error) parts.push(el("div", { class: "panel error-panel" }, el("strong", {}, "Last error: "), app.last_error));
      if (app.note) parts.push(el("p", { class: "notice" }, app.note));
      parts.push(table(`Items of ${app.app}`, ["Item", "State", "Bytes", "Attempts", "Rule", "Error", "Destination"],
        app.items.map((item) => el("tr", { class: item.state === "failed" ? "failed" : "" },
          td("Item", el("span", { class: "mono" }, item.item)), td("State", badge(item.state)),
          td("Bytes", item.bytes_total ? `${fmtBytes(item.bytes_done)} of ${fmtBytes(item.bytes_total)}` : fmtBytes(item.bytes_done)),
          td("Attempts", String(item.attempts || 0)), td("Rule", item.rule || ""),
          el("td", { "data-label": "Error", class: "error" }, item.last_error || ""),
          td("Destination", isLink(item.destination) ? el("a", { href: item.destination, class: "mono" }, item.destination) : item.destination || "")))));
    }
    result.replaceChildren(...parts);
  }

  function renderStudy(status) {
    result.replaceChildren(el("h2", {}, `Study ${status.study_id} `, badge(status.state)),
      table(`Sessions of study ${status.study_id}`, ["Session", "State", "Apps", "Items", "Updated"],
        status.sessions.map((s) => el("tr", { class: s.state === "failed" ? "failed" : "" },
          td("Session", el("a", { href: App.uiHref("sessions", { session: s.session_id }) }, s.session_id)),
          td("State", badge(s.state)), td("Apps", s.apps.join(", ")), td("Items", countsText(s.counts)),
          td("Updated", timeEl(s.updated))))));
  }

  async function refresh() {
    if (!current) return;
    const { kind, id } = current;
    try {
      const status = await api(`${kind === "session" ? "sessions" : "studies"}/${encodeURIComponent(id)}`);
      App.clearError();
      if (kind === "session") renderSession(status);
      else renderStudy(status);
      if (SESSION_ENDED.has(status.state) && loop) {
        loop.stop();
        loop = null;
      }
    } catch (err) {
      if (loop) loop.stop();
      loop = null;
      result.replaceChildren();
      App.showError(err, `${kind} ${id}`);
      App.markField(kind === "session" ? sessionForm : studyForm, err.field);
    }
  }

  function show(kind, id) {
    current = { kind, id };
    const params = new URLSearchParams({ [kind]: id });
    history.replaceState(null, "", `${location.pathname}?${params}`);
    if (loop) loop.stop();
    loop = App.every(5000, refresh);
  }

  sessionForm.addEventListener("submit", (event) => {
    event.preventDefault();
    show("session", sessionForm.elements.id.value.trim());
  });
  studyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    show("study", studyForm.elements.id.value.trim());
  });

  App.start(() => {
    const params = new URLSearchParams(location.search);
    if (params.get("session")) {
      sessionForm.elements.id.value = params.get("session");
      show("session", params.get("session"));
    } else if (params.get("study")) {
      studyForm.elements.id.value = params.get("study");
      show("study", params.get("study"));
    }
  });
})();
