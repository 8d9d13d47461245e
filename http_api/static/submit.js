/* The submit page: list a source (GET /api/sources/blob or /api/sources/local), pick files and
 * whole folders, choose a destination, and POST /api/batches; then open the new job's page.
 * A batch reads from one source: changing the source or the container clears the picked files. */
"use strict";

(() => {
  const { api, el, fmtBytes, fmtCount } = App;
  const MAX_ITEMS = 10000; // a batch's limit (shared/batch_contracts.py)
  const form = document.getElementById("submit-form");
  const listingBody = document.querySelector("#listing tbody");
  const picked = new Map(); // item name -> size
  let pickedFrom = null; // "blob:<container>" or "local"
  let listing = null; // the last listing answer, plus what was asked
  let shownFiles = [];

  const sourceKind = () => form.elements.source_kind.value;
  const destinationKind = () => form.elements.destination_kind.value;

  function sourceId() {
    return sourceKind() === "blob" ? `blob:${form.elements.container.value.trim()}` : "local";
  }

  function showSourceFields() {
    const blob = sourceKind() === "blob";
    document.getElementById("blob-source").hidden = !blob;
    document.getElementById("local-source").hidden = blob;
  }

  function showDestinationFields() {
    const put = destinationKind() === "http_put";
    document.getElementById("put-destination").hidden = !put;
    document.getElementById("blob-destination").hidden = put;
  }

  /* The folder being listed: a blob prefix ("a/b/") or a local path ("a/b"). */
  function folder() {
    return sourceKind() === "blob" ? form.elements.prefix.value.trim() : form.elements.path.value.trim().replace(/\/+$/, "");
  }

  function setFolder(name) {
    if (sourceKind() === "blob") form.elements.prefix.value = name;
    else form.elements.path.value = name.replace(/\/+$/, "");
  }

  function query(extra = {}) {
    const q = sourceKind() === "blob"
      ? { container: form.elements.container.value.trim(), prefix: form.elements.prefix.value.trim() }
      : { path: form.elements.path.value.trim() };
    return { ...q, ...extra };
  }

  const route = () => (sourceKind() === "blob" ? "sources/blob" : "sources/local");

  async function list(continuation) {
    App.clearError();
    App.markField(form, null);
    try {
      const answer = await api(route(), { query: query({ continuation }) });
      if (!continuation) {
        listingBody.replaceChildren();
        shownFiles = [];
      }
      listing = answer;
      renderListing(answer, Boolean(continuation));
    } catch (err) {
      App.showError(err, "the source could not be listed");
      App.markField(form, err.field);
    }
  }

  function renderListing(answer, appended) {
    const where = answer.source === "blob"
      ? `container ${answer.container}${answer.prefix ? ", prefix " + answer.prefix : ""}` : `local folder ${answer.path || "(the root)"}`;
    const rows = answer.entries.map((entry) => {
      const label = entry.name.slice(entry.kind === "folder" ? entry.name.slice(0, -1).lastIndexOf("/") + 1 : entry.name.lastIndexOf("/") + 1);
      if (entry.kind === "folder") {
        return el("tr", { dataset: { name: entry.name, kind: "folder" } },
          el("td", { "data-label": "Pick" }, el("button", { type: "button", onclick: () => addFolder(entry.name),
            "aria-label": `Pick every file of folder ${entry.name}` }, "Pick folder")),
          el("td", { "data-label": "Name" }, el("span", { class: "mono" }, label)),
          el("td", { "data-label": "Size" }, "folder"), el("td", { "data-label": "Type" }, ""),
          el("td", { "data-label": "Folder" }, el("button", { type: "button", onclick: () => open(entry.name),
            "aria-label": `Open folder ${entry.name}` }, "Open")));
      }
      shownFiles.push(entry);
      const id = `pick-${shownFiles.length}`;
      const box = el("input", { type: "checkbox", id, checked: picked.has(entry.name), dataset: { name: entry.name } });
      box.addEventListener("change", () => {
        if (box.checked) add([entry]);
        else remove(entry.name);
      });
      return el("tr", { dataset: { name: entry.name, kind: "file" } },
        el("td", { "data-label": "Pick" }, box, el("label", { for: id, class: "visually-hidden" }, `Pick ${entry.name}`)),
        el("td", { "data-label": "Name" }, el("label", { for: id, class: "mono" }, label)),
        el("td", { "data-label": "Size", class: "num" }, fmtBytes(entry.size)),
        el("td", { "data-label": "Type" }, entry.content_type || ""), el("td", { "data-label": "Folder" }, ""));
    });
    if (!appended && !rows.length) rows.push(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "Nothing here.")));
    listingBody.append(...rows);
    document.getElementById("listing-caption").textContent =
      `${fmtCount(listingBody.querySelectorAll("tr[data-name]").length)} entries of ${where}`;
    document.getElementById("listing-more").hidden = !answer.continuation;
    document.getElementById("select-shown").disabled = !shownFiles.length;
  }

  function open(name) {
    setFolder(name);
    list();
  }

  function up() {
    const current = folder();
    if (sourceKind() === "blob") {
      const trimmed = current.endsWith("/") ? current.slice(0, -1) : current.slice(0, current.lastIndexOf("/") + 1).replace(/\/$/, "");
      const cut = trimmed.lastIndexOf("/");
      setFolder(cut >= 0 ? trimmed.slice(0, cut + 1) : "");
    } else {
      const cut = current.lastIndexOf("/");
      setFolder(cut >= 0 ? current.slice(0, cut) : "");
    }
    list();
  }

  function ensureSource() {
    const id = sourceId();
    if (pickedFrom !== null && pickedFrom !== id && picked.size) {
      picked.clear();
      App.notice("The picked files were cleared: a batch reads from one source.");
    }
    pickedFrom = id;
  }

  function add(entries) {
    ensureSource();
    for (const entry of entries) {
      if (picked.size >= MAX_ITEMS && !picked.has(entry.name)) {
        App.showError(new App.ApiError(0, "", `a batch holds at most ${fmtCount(MAX_ITEMS)} files`, "items"));
        break;
      }
      picked.set(entry.name, entry.size);
    }
    renderSelection();
  }

  function remove(name) {
    picked.delete(name);
    renderSelection();
  }

  async function addFolder(name) {
    App.clearError();
    const files = [];
    let continuation = null;
    const ask = sourceKind() === "blob" ? { container: form.elements.container.value.trim(), prefix: name }
      : { path: name.replace(/\/+$/, "") };
    try {
      do {
        const answer = await api(route(), { query: { ...ask, recursive: "true", limit: "1000", continuation } });
        files.push(...answer.entries.filter((e) => e.kind === "file"));
        continuation = answer.continuation;
      } while (continuation && files.length <= MAX_ITEMS);
    } catch (err) {
      App.showError(err, `folder ${name} could not be listed`);
      return;
    }
    add(files);
    App.notice(`Picked ${fmtCount(files.length)} files of folder ${name}.`);
  }

  function renderSelection() {
    const list = document.getElementById("selection");
    const names = Array.from(picked.keys()).sort();
    const total = names.reduce((n, name) => n + Math.max(picked.get(name) || 0, 0), 0);
    document.getElementById("selection-summary").textContent = names.length
      ? `${fmtCount(names.length)} files picked, ${fmtBytes(total)}.` : "No file picked.";
    const shown = names.slice(0, 200).map((name) => el("li", { dataset: { name } }, el("span", { class: "mono" }, name),
      el("button", { type: "button", onclick: () => remove(name), "aria-label": `Remove ${name}` }, "Remove")));
    if (names.length > 200) shown.push(el("li", { class: "muted" }, `and ${fmtCount(names.length - 200)} more`));
    list.replaceChildren(...shown);
    for (const box of listingBody.querySelectorAll("input[type=checkbox][data-name]")) box.checked = picked.has(box.dataset.name);
  }

  function labels() {
    const text = form.elements.labels.value;
    const result = {};
    for (const [i, raw] of text.split("\n").entries()) {
      const line = raw.trim();
      if (!line) continue;
      const at = line.indexOf("=");
      if (at <= 0) throw new App.ApiError(0, "", `line ${i + 1} is not key=value`, "labels");
      result[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return result;
  }

  function body() {
    const items = Array.from(picked.keys()).sort();
    if (!items.length) throw new App.ApiError(0, "", "pick at least one file", "items");
    const source = sourceKind() === "blob"
      ? { kind: "blob", container: pickedFrom ? pickedFrom.slice("blob:".length) : form.elements.container.value.trim() }
      : { kind: "local" };
    let destination;
    if (destinationKind() === "http_put") {
      destination = { kind: "http_put", base_url: form.elements.base_url.value.trim(),
        url_template: form.elements.url_template.value.trim(), auth: form.elements.auth.value,
        create_parents: form.elements.create_parents.checked };
      if (form.elements.secret.value) destination.secret = form.elements.secret.value;
    } else {
      destination = { kind: "blob", container: form.elements.dst_container.value.trim(),
        path_prefix: form.elements.path_prefix.value.trim() };
    }
    const request = { source, items, destination, requested_by: form.elements.requested_by.value.trim(),
      labels: labels() };
    const concurrency = form.elements.concurrency.value.trim();
    if (concurrency) request.options = { concurrency: Number(concurrency) };
    return request;
  }

  async function submit(event) {
    event.preventDefault();
    App.clearError();
    App.markField(form, null);
    const button = document.getElementById("submit");
    let request;
    try {
      request = body();
    } catch (err) {
      App.showError(err);
      App.markField(form, err.field);
      return;
    }
    button.disabled = true;
    try {
      const answer = await api("batches", { method: "POST", body: request });
      App.setMe(request.requested_by);
      location.assign(App.jobHref(answer.id));
    } catch (err) {
      const match = /^items\[(\d+)\]$/.exec(err.field || "");
      App.showError(err, match ? `the batch was refused (item ${request.items[Number(match[1])]})` : "the batch was refused");
      App.markField(form, err.field);
    } finally {
      button.disabled = false;
    }
  }

  async function probeLocal() {
    const note = document.getElementById("local-note");
    try {
      await api("sources/local", { query: { limit: "1" } });
      form.elements.source_kind[1].disabled = false;
      note.hidden = true;
    } catch (err) {
      if (err.status === 404) {
        form.elements.source_kind[1].disabled = true;
        note.textContent = `Local files: ${err.message}.`;
        note.hidden = false;
      } else if (err.status === 401) {
        throw err;
      }
    }
  }

  for (const radio of form.elements.source_kind) radio.addEventListener("change", () => {
    showSourceFields();
    listingBody.replaceChildren();
    shownFiles = [];
    document.getElementById("listing-caption").textContent = "Nothing listed yet.";
  });
  for (const radio of form.elements.destination_kind) radio.addEventListener("change", showDestinationFields);
  for (const name of ["container", "prefix", "path"]) {
    form.elements[name].addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        list();
      }
    });
  }
  document.getElementById("list").addEventListener("click", () => list());
  document.getElementById("up").addEventListener("click", up);
  document.getElementById("listing-more").addEventListener("click", () => list(listing && listing.continuation));
  document.getElementById("select-shown").addEventListener("click", () => add(shownFiles));
  document.getElementById("clear-selection").addEventListener("click", () => {
    picked.clear();
    renderSelection();
  });
  form.addEventListener("submit", submit);
  form.elements.requested_by.value = App.me();
  showSourceFields();
  showDestinationFields();
  renderSelection();
  App.start(probeLocal);
})();
