// The Code tab (apps/functions/pages/code.py): Monaco, self-hosted (AMD loader from the
// versioned static folder), on the draft API with the session and the CSRF header. A save
// sends If-Match with the file's ETag; a 409 opens Monaco's diff editor, theirs vs yours.
// The other panels of the tab (code-*.js) get the editor through `stratus:ide-ready`
// (window.stratusIde once Monaco is up): see `ide` at the end.
// The draft holds files only (a folder exists by its files). Binary files are downloaded,
// never opened in Monaco; files over 1 MB open read-only. "Upload zip…" replaces every file
// (PUT draft/archive, guarded by the tree's ETag); "Download" is the draft as a zip.
(function () {
  "use strict";
  const root = document.querySelector("[data-testid=ide]");
  if (!root || typeof require === "undefined") return;
  const api = root.dataset.api;
  const canEdit = root.dataset.canEdit === "true";
  const readOnlyReason = canEdit ? "" : root.querySelector("[data-testid=readonly-reason]").textContent.trim();
  const csrf = (JSON.parse(document.body.getAttribute("hx-headers") || "{}") || {})["X-CSRFToken"] || "";
  const tree = root.querySelector("[data-testid=file-tree]");
  const tabsBar = root.querySelector("[data-testid=editor-tabs]");
  const editorHost = root.querySelector("[data-testid=editor]");
  const diffHost = root.querySelector("[data-testid=diff]");
  const conflictBar = root.querySelector("[data-testid=conflict]");
  const statusLine = root.querySelector("[data-testid=ide-status]");
  const publishResult = root.querySelector("[data-testid=publish-result]");
  const fileNote = root.querySelector("[data-testid=file-note]");
  const button = (name) => root.querySelector(`[data-action="${name}"]`);
  const dialog = (name) => root.querySelector(`[data-dialog="${name}"]`);

  let monaco = null;
  let editor = null;
  let diffEditor = null;
  let files = []; // [{path, size, sha256, binary}] from GET draft/
  let treeEtag = null; // the draft's "rev-<n>" when the tree was read: If-Match of an upload
  const collapsed = new Set(); // folders the user folded, kept across re-renders
  const tabs = new Map(); // path -> {model, etag, saved (alternative version id), readOnly, note}
  // Monaco slows down on big files and a browser is a poor place to edit them.
  const EDITABLE_BYTES = 1024 * 1024;
  let current = null;
  let conflict = null; // {path, theirs: {content, etag}, theirsModel}

  const fileUrl = (path) => api + "files/" + path.split("/").map(encodeURIComponent).join("/");
  const rawUrl = (path) => fileUrl(path) + "?raw=1";
  const isBinary = (path) => files.some((f) => f.path === path && f.binary);
  const say = (text) => { statusLine.textContent = text; };

  async function call(method, url, { body, headers } = {}) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrf, ...(body ? { "Content-Type": "application/json" } : {}), ...headers },
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = null;
    if (response.status !== 204) data = await response.json().catch(() => null);
    return { status: response.status, ok: response.ok, data, etag: (response.headers.get("ETag") || "").replace(/^W\//, "").replace(/"/g, "") };
  }
  const message = (result) => (result.data && result.data.error && result.data.error.message) || `The server answered ${result.status}.`;

  // --- the tree ---------------------------------------------------------------------------
  async function loadTree() {
    treeFrom(await call("GET", api));
  }

  function treeFrom(result) {
    if (!result.ok) { say(message(result)); return; }
    files = result.data.files;
    treeEtag = result.data.etag;
    renderTree();
  }

  function renderTree() {
    tree.textContent = "";
    if (!files.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.dataset.testid = "empty-draft";
      p.textContent = "The draft has no files yet." + (canEdit ? " Add one with New file or Upload zip…" : "");
      tree.append(p);
      return;
    }
    // Folders as nested lists, files as buttons that open a tab.
    const top = { dirs: new Map(), files: [] };
    for (const f of files) {
      const parts = f.path.split("/");
      let node = top;
      for (const dir of parts.slice(0, -1)) {
        if (!node.dirs.has(dir)) node.dirs.set(dir, { dirs: new Map(), files: [] });
        node = node.dirs.get(dir);
      }
      node.files.push(f);
    }
    // Folders fold (details/summary: keyboard and screen readers for free); binary files
    // are download links, text files buttons that open a tab.
    const render = (node, prefix) => {
      const ul = document.createElement("ul");
      for (const [name, child] of [...node.dirs].sort()) {
        const folder = prefix + name;
        const li = document.createElement("li");
        const details = document.createElement("details");
        details.dataset.folder = folder;
        details.open = !collapsed.has(folder);
        const summary = document.createElement("summary");
        summary.className = "ide-folder";
        summary.textContent = name + "/";
        details.append(summary, render(child, folder + "/"));
        li.append(details);
        ul.append(li);
      }
      for (const f of node.files) {
        const li = document.createElement("li");
        const name = f.path.split("/").pop();
        let item;
        if (f.binary) {
          item = document.createElement("a");
          item.href = rawUrl(f.path);
          item.download = name;
          item.className = "ide-file ide-binary";
          item.dataset.binary = "true";
          item.title = `${f.path} · ${f.size} bytes · binary: download it`;
          const hint = document.createElement("span");
          hint.className = "ide-file-hint";
          hint.textContent = "↓ binary";
          item.append(name, " ", hint);
        } else {
          item = document.createElement("button");
          item.type = "button";
          item.className = "ide-file";
          item.textContent = name;
          item.title = `${f.path} · ${f.size} bytes` + (f.size > EDITABLE_BYTES ? " · over 1 MB: read-only" : "");
          if (f.path === current) item.setAttribute("aria-current", "true");
        }
        item.dataset.path = f.path;
        li.append(item);
        ul.append(li);
      }
      return ul;
    };
    tree.append(render(top, ""));
  }

  tree.addEventListener("click", (event) => {
    const target = event.target.closest("[data-path]");
    if (!target || target.dataset.binary) return; // a binary file's link downloads it
    event.preventDefault();
    openFile(target.dataset.path);
  });
  // "toggle" does not bubble: listen in the capture phase.
  tree.addEventListener("toggle", (event) => {
    const folder = event.target.dataset && event.target.dataset.folder;
    if (!folder) return;
    if (event.target.open) collapsed.delete(folder); else collapsed.add(folder);
  }, true);

  // --- tabs -------------------------------------------------------------------------------
  function languageOf(path) {
    const name = path.split("/").pop().toLowerCase();
    const ext = name.includes(".") ? "." + name.split(".").pop() : "";
    for (const language of monaco.languages.getLanguages()) {
      if ((language.filenames || []).map((f) => f.toLowerCase()).includes(name)) return language.id;
      if (ext && (language.extensions || []).includes(ext)) return language.id;
    }
    return "plaintext";
  }

  const isDirty = (tab) => !tab.readOnly && tab.model.getAlternativeVersionId() !== tab.saved;

  function renderTabs() {
    tabsBar.textContent = "";
    for (const [path, tab] of tabs) {
      const item = document.createElement("span");
      item.className = "ide-tab";
      const select = document.createElement("button");
      select.type = "button";
      select.setAttribute("role", "tab");
      select.setAttribute("aria-selected", String(path === current));
      select.dataset.tab = path;
      select.title = path;
      const dirty = isDirty(tab);
      select.textContent = path.split("/").pop();
      if (dirty) {
        const mark = document.createElement("span");
        mark.className = "ide-dirty";
        mark.dataset.testid = "unsaved";
        mark.setAttribute("aria-label", "unsaved changes");
        mark.textContent = " ●";
        select.append(mark);
      }
      const close = document.createElement("button");
      close.type = "button";
      close.className = "ide-tab-close";
      close.dataset.close = path;
      close.setAttribute("aria-label", `Close ${path}`);
      close.textContent = "×";
      item.append(select, close);
      tabsBar.append(item);
    }
    const tab = current && tabs.get(current);
    const writable = canEdit && tab && !tab.readOnly;
    button("save").disabled = !writable;
    button("rename").disabled = !canEdit || !tab;
    button("delete").disabled = !canEdit || !tab;
  }

  tabsBar.addEventListener("click", (event) => {
    const close = event.target.closest("[data-close]");
    if (close) {
      const tab = tabs.get(close.dataset.close);
      if (tab && isDirty(tab) && !window.confirm(`Close ${close.dataset.close} without saving?`)) return;
      closeTab(close.dataset.close);
      return;
    }
    const select = event.target.closest("[data-tab]");
    if (select) show(select.dataset.tab);
  });

  function closeTab(path) {
    const tab = tabs.get(path);
    if (!tab) return;
    tabs.delete(path);
    // Detach the model before disposing of it: Monaco rejects the pending work of an
    // attached model with an unhandled "Canceled".
    if (current === path) {
      current = null;
      const next = [...tabs.keys()].pop();
      if (next) show(next); else { editor.setModel(null); showNote(null); renderTabs(); renderTree(); }
    } else renderTabs();
    tab.model.dispose();
  }

  function show(path) {
    const tab = tabs.get(path);
    if (!tab) return;
    current = path;
    editor.setModel(tab.model);
    editor.updateOptions({
      readOnly: !canEdit || tab.readOnly,
      readOnlyMessage: { value: tab.note || readOnlyReason },
    });
    showNote(tab.note);
    renderTabs();
    renderTree();
    editor.focus();
  }

  function showNote(text) {
    fileNote.textContent = text || "";
    fileNote.hidden = !text;
  }

  const binaryNote = (path) => `${path} is a binary file: it is not opened in the editor; download it from the file list.`;

  async function openFile(path) {
    if (tabs.has(path)) { show(path); return tabs.get(path); }
    if (isBinary(path)) { say(binaryNote(path)); return null; }
    say(`Opening ${path}…`);
    return openFrom(path, await call("GET", fileUrl(path)));
  }

  // ``result``: the answer of GET draft/files/<path>.
  function openFrom(path, result) {
    if (tabs.has(path)) { show(path); return tabs.get(path); }
    if (!result.ok) { say(message(result)); return null; }
    if (result.data.encoding !== "utf-8") {
      // The tree sniffs the first KiB only: this file turned out binary further in.
      const entry = files.find((f) => f.path === path);
      if (entry) entry.binary = true;
      renderTree();
      say(binaryNote(path));
      return null;
    }
    const big = result.data.size > EDITABLE_BYTES;
    const note = big ? `${path} is over 1 MB (${(result.data.size / 1048576).toFixed(1)} MB), so it opens read-only here: edit it locally and upload.` : "";
    const model = monaco.editor.createModel(result.data.content, languageOf(path), monaco.Uri.from({ scheme: "draft", path: "/" + path }));
    const tab = { model, etag: result.etag || result.data.sha256, saved: model.getAlternativeVersionId(), readOnly: big, note };
    model.onDidChangeContent(() => renderTabs());
    tabs.set(path, tab);
    show(path);
    say("");
    return tab;
  }

  // Open ``path`` at ``line`` (1-based), e.g. from a stack frame of the run panel.
  async function openAt(path, line, column) {
    const tab = await openFile(path);
    if (!tab) return false;
    const position = { lineNumber: Math.max(1, line || 1), column: Math.max(1, column || 1) };
    editor.setPosition(position);
    editor.revealPositionInCenter(position);
    editor.focus();
    return true;
  }

  // --- save, and the conflict ------------------------------------------------------------
  async function save(path, { force } = {}) {
    const tab = tabs.get(path);
    if (!tab || tab.readOnly || !canEdit) return false;
    const content = tab.model.getValue();
    const version = tab.model.getAlternativeVersionId();
    say(`Saving ${path}…`);
    const result = await call("PUT", fileUrl(path), {
      body: { content },
      headers: { "If-Match": `"${force || tab.etag}"` },
    });
    if (result.status === 409) { await openConflict(path); return false; }
    if (!result.ok) { say(message(result)); return false; }
    tab.etag = result.etag || result.data.sha256;
    tab.saved = version;
    say(`Saved ${path}.`);
    renderTabs();
    loadTree();
    return true;
  }

  // Save every open file with unsaved changes (before a run or a publish); false when one
  // could not be saved (a conflict, a refusal): the caller stops there.
  async function saveAll() {
    for (const [path, tab] of tabs) {
      if (isDirty(tab) && !(await save(path))) return false;
    }
    return true;
  }

  async function openConflict(path) {
    const tab = tabs.get(path);
    const result = await call("GET", fileUrl(path));
    if (result.status === 404) { say(`${path} was deleted meanwhile: save it again to create it.`); tab.etag = "*"; return; }
    if (!result.ok) { say(message(result)); return; }
    const theirs = { content: result.data.content, etag: result.etag || result.data.sha256 };
    if (conflict) closeConflict();
    const theirsModel = monaco.editor.createModel(theirs.content, tab.model.getLanguageId());
    conflict = { path, theirs, theirsModel };
    conflictBar.querySelector(".ide-conflict-title").textContent = `${path} was saved by someone else meanwhile.`;
    conflictBar.hidden = false;
    editorHost.hidden = true;
    diffHost.hidden = false;
    diffEditor = monaco.editor.createDiffEditor(diffHost, {
      automaticLayout: true,
      renderSideBySide: true,
      useInlineViewWhenSpaceIsLimited: false, // theirs | yours, side by side, even on a narrow editor
      originalEditable: false,
      minimap: { enabled: false },
    });
    diffEditor.setModel({ original: theirsModel, modified: tab.model });
    say(`Conflict on ${path}: keep yours or take theirs.`);
  }

  function closeConflict() {
    if (!conflict) return;
    diffEditor.setModel(null);
    diffEditor.dispose();
    diffEditor = null;
    conflict.theirsModel.dispose();
    conflict = null;
    conflictBar.hidden = true;
    diffHost.hidden = true;
    editorHost.hidden = false;
    editor.layout();
  }

  button("keep-mine").addEventListener("click", async () => {
    const { path, theirs } = conflict;
    closeConflict();
    show(path);
    await save(path, { force: theirs.etag });
  });
  button("take-theirs").addEventListener("click", () => {
    const { path, theirs } = conflict;
    const tab = tabs.get(path);
    closeConflict();
    tab.model.setValue(theirs.content);
    tab.etag = theirs.etag;
    tab.saved = tab.model.getAlternativeVersionId();
    show(path);
    say(`Took the saved version of ${path}.`);
  });

  // Ctrl/Cmd+S anywhere on the page, the editor included (its keydown bubbles up to here).
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
      event.preventDefault();
      if (current) save(current);
    }
  });
  button("save").addEventListener("click", () => current && save(current));

  // --- dialogs: new file, rename, delete, publish -----------------------------------------
  function openDialog(name, { current: path, value } = {}) {
    const d = dialog(name);
    const error = d.querySelector("[data-error]");
    error.hidden = true;
    d.querySelectorAll("[data-current]").forEach((c) => { c.textContent = path || ""; });
    const input = d.querySelector("input");
    if (input) input.value = value || "";
    const unsaved = d.querySelector("[data-unsaved]");
    if (unsaved) unsaved.hidden = ![...tabs.values()].some(isDirty);
    d.showModal();
    return d;
  }
  function fail(d, result) {
    const error = d.querySelector("[data-error]");
    error.textContent = typeof result === "string" ? result : message(result);
    error.hidden = false;
  }
  root.querySelectorAll("dialog [data-close]").forEach((c) => c.addEventListener("click", () => c.closest("dialog").close()));

  button("new").addEventListener("click", () => openDialog("new"));
  dialog("new").addEventListener("submit", async (event) => {
    event.preventDefault();
    const d = dialog("new");
    const path = d.querySelector("input").value.trim().replace(/^\/+/, "");
    const result = await call("PUT", fileUrl(path), { body: { content: "" }, headers: { "If-None-Match": "*" } });
    if (!result.ok) { fail(d, result); return; }
    d.close();
    await loadTree();
    await openFile(path);
    say(`Created ${path}.`);
  });

  // A folder is made with its first file (the draft keeps no empty folders): a package's
  // __init__.py for Python, index.js for Node.
  button("new-folder").addEventListener("click", () => {
    const d = openDialog("new-folder");
    d.querySelector("input[name=file]").value = root.dataset.runtime.startsWith("node") ? "index.js" : "__init__.py";
  });
  dialog("new-folder").addEventListener("submit", async (event) => {
    event.preventDefault();
    const d = dialog("new-folder");
    const folder = d.querySelector("input[name=folder]").value.trim().replace(/^\/+|\/+$/g, "");
    const name = d.querySelector("input[name=file]").value.trim().replace(/^\/+/, "");
    if (!folder) { fail(d, "Name the folder."); return; }
    const path = `${folder}/${name}`;
    const result = await call("PUT", fileUrl(path), { body: { content: "" }, headers: { "If-None-Match": "*" } });
    if (!result.ok) { fail(d, result); return; }
    d.close();
    collapsed.delete(folder);
    await loadTree();
    await openFile(path);
    say(`Created ${folder}/ with ${name}.`);
  });

  // Upload zip…: the dialog is the confirmation (it says every file is replaced). The upload
  // carries the tree's ETag, so files saved meanwhile by someone else are not silently lost.
  button("upload").addEventListener("click", () => openDialog("upload"));
  dialog("upload").addEventListener("submit", async (event) => {
    event.preventDefault();
    const d = dialog("upload");
    const input = d.querySelector("input[type=file]");
    const zip = input.files[0];
    if (!zip) { fail(d, "Choose a zip file."); return; }
    const submit = d.querySelector("button[type=submit]");
    const form = new FormData();
    form.append("file", zip);
    submit.disabled = true;
    say(`Uploading ${zip.name}…`);
    let result;
    try {
      const response = await fetch(api + "archive", {
        method: "PUT",
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": csrf, ...(treeEtag ? { "If-Match": `"${treeEtag}"` } : {}) },
        body: form,
      });
      result = { status: response.status, ok: response.ok, data: await response.json().catch(() => null) };
    } catch (error) {
      result = `The upload did not reach the server (${error.message}).`;
    } finally {
      submit.disabled = false;
    }
    if (typeof result === "string" || !result.ok) {
      say("");
      fail(d, result);
      if (result.status === 409) await loadTree(); // the next attempt replaces what is there now
      return;
    }
    d.close();
    // Every open tab showed a file of the old draft: close them all, unsaved edits included
    // (the dialog said so). Detach the model first, as closeTab does.
    if (conflict) closeConflict();
    editor.setModel(null);
    for (const tab of tabs.values()) tab.model.dispose();
    tabs.clear();
    current = null;
    showNote(null);
    renderTabs();
    files = result.data.files;
    treeEtag = result.data.etag;
    renderTree();
    await openFirst();
    say(`Replaced the draft with the ${files.length} file${files.length === 1 ? "" : "s"} of ${zip.name}.`);
  });

  button("rename").addEventListener("click", () => current && openDialog("rename", { current, value: current }));
  dialog("rename").addEventListener("submit", async (event) => {
    event.preventDefault();
    const d = dialog("rename");
    const from = current;
    const to = d.querySelector("input").value.trim().replace(/^\/+/, "");
    const tab = tabs.get(from);
    if (tab && isDirty(tab)) { fail(d, `Save ${from} before renaming it.`); return; }
    const result = await call("POST", api + "rename", { body: { from, to }, headers: { "If-Match": `"${tab.etag}"` } });
    if (!result.ok) { fail(d, result); return; }
    d.close();
    closeTab(from);
    files = result.data.files;
    await openFile(to);
    say(`Renamed ${from} to ${to}.`);
  });

  button("delete").addEventListener("click", () => current && openDialog("delete", { current }));
  dialog("delete").addEventListener("submit", async (event) => {
    event.preventDefault();
    const d = dialog("delete");
    const path = current;
    const result = await call("DELETE", fileUrl(path), { headers: { "If-Match": `"${tabs.get(path).etag}"` } });
    if (!result.ok) { fail(d, result); return; }
    d.close();
    closeTab(path);
    await loadTree();
    say(`Deleted ${path}.`);
  });

  button("publish").addEventListener("click", () => openDialog("publish"));
  dialog("publish").addEventListener("submit", async (event) => {
    event.preventDefault();
    const d = dialog("publish");
    const result = await call("POST", api + "publish", { body: { message: d.querySelector("input").value } });
    if (!result.ok) { fail(d, result); return; }
    d.close();
    const number = result.data.number;
    publishResult.textContent = "";
    const strong = document.createElement("strong");
    strong.textContent = `v${number}`;
    const link = document.createElement("a");
    link.href = root.dataset.environments;
    link.textContent = "Deploy it from Environments & traffic";
    publishResult.append(result.status === 201 ? "Published " : "The draft equals ", strong, result.status === 201 ? ". " : ", already published. ", link, ".");
    publishResult.hidden = false;
    say(`Published v${number}.`);
    // The ship bar (code-ship.js) offers to deploy it or start a release from here.
    document.dispatchEvent(new CustomEvent("stratus:published", { detail: { number, created: result.status === 201 } }));
  });

  // The file to show first: a text file the editor can edit, at the top of the tree if
  // there is one (the handler usually is), in path order.
  function firstFile(entries) {
    const editable = entries.filter((f) => !f.binary && f.size <= EDITABLE_BYTES);
    return editable.find((f) => !f.path.includes("/")) || editable[0];
  }
  async function openFirst() {
    const first = firstFile(files);
    if (first) await openFile(first.path);
  }

  // The draft as the page was rendered (apps/functions/pages/code.py): GET draft/'s answer
  // and, unless it is big, GET draft/files/<the first file>'s. The editor opens that file as
  // soon as Monaco is up, in the same task, without waiting for the API (bench/ide.py
  // measures that moment: when a keystroke lands).
  const initial = JSON.parse(document.getElementById("ide-draft").textContent);
  function openInitial() {
    treeFrom({ ok: true, status: 200, data: initial.tree });
    const first = firstFile(files);
    if (!first) return Promise.resolve(null);
    if (initial.first && initial.first.path === first.path) {
      return Promise.resolve(openFrom(first.path, { ok: true, status: 200, data: initial.first.data, etag: initial.first.etag }));
    }
    return openFile(first.path);
  }

  // --- Monaco -------------------------------------------------------------------------------
  // Workers from the same origin, by URL: Monaco 0.52's default wraps them in a blob: URL,
  // which the CSP (worker-src 'self') refuses. workerMain.js finds vs/ from its own URL.
  const workerUrl = new URL(root.dataset.monaco + "/base/worker/workerMain.js", window.location.href).toString();
  window.MonacoEnvironment = { getWorkerUrl: () => workerUrl };
  require.config({ paths: { vs: root.dataset.monaco } });
  require(["vs/editor/editor.main"], function () {
    monaco = window.monaco;
    editorHost.textContent = "";
    editor = monaco.editor.create(editorHost, {
      model: null,
      automaticLayout: true,
      readOnly: !canEdit,
      readOnlyMessage: { value: readOnlyReason },
      minimap: { enabled: false },
      fontSize: 14,
      // The occurrences highlighter cancels its pending request when a tab's model is
      // disposed (rename, delete, close) and 0.52 leaves that "Canceled" unhandled.
      occurrencesHighlight: "off",
      scrollBeyondLastLine: false,
    });
    root.dataset.ready = "true";
    const opening = openInitial();
    // What the tab's other panels (run, checks, changes) use of the editor.
    const ide = {
      root, api, csrf, canEdit, monaco, editor, call, message, say, openFile, openAt, save, saveAll,
      files: () => files,
      current: () => current,
      model: (path) => (tabs.get(path) || {}).model || null,
      isDirty: (path) => tabs.has(path) && isDirty(tabs.get(path)),
      reloadTree: loadTree,
    };
    // Once the first file is open, in a task of its own: the editor takes keystrokes and
    // paints first, the run panel's own editor and the checks follow.
    const announce = () => setTimeout(() => {
      window.stratusIde = ide;
      document.dispatchEvent(new CustomEvent("stratus:ide-ready", { detail: ide }));
    }, 0);
    opening.then(announce, announce);
  });
})();
