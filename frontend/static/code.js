// The Code tab (apps/functions/pages/code.py): Monaco, self-hosted (AMD loader from the
// versioned static folder), on the draft API with the session and the CSRF header. A save
// sends If-Match with the file's ETag; a 409 opens Monaco's diff editor, theirs vs yours.
// The other panels of the tab (code-*.js) get the editor through `stratus:ide-ready`
// (window.stratusIde once Monaco is up): see `ide` at the end.
(function () {
  "use strict";
  const root = document.querySelector("[data-testid=ide]");
  if (!root || typeof require === "undefined") return;
  const api = root.dataset.api;
  const canEdit = root.dataset.canEdit === "true";
  const csrf = (JSON.parse(document.body.getAttribute("hx-headers") || "{}") || {})["X-CSRFToken"] || "";
  const tree = root.querySelector("[data-testid=file-tree]");
  const tabsBar = root.querySelector("[data-testid=editor-tabs]");
  const editorHost = root.querySelector("[data-testid=editor]");
  const diffHost = root.querySelector("[data-testid=diff]");
  const conflictBar = root.querySelector("[data-testid=conflict]");
  const statusLine = root.querySelector("[data-testid=ide-status]");
  const publishResult = root.querySelector("[data-testid=publish-result]");
  const button = (name) => root.querySelector(`[data-action="${name}"]`);
  const dialog = (name) => root.querySelector(`[data-dialog="${name}"]`);

  let monaco = null;
  let editor = null;
  let diffEditor = null;
  let files = []; // [{path, size, sha256}] from GET draft/
  const tabs = new Map(); // path -> {model, etag, saved (alternative version id), binary}
  let current = null;
  let conflict = null; // {path, theirs: {content, etag}, theirsModel}

  const fileUrl = (path) => api + "files/" + path.split("/").map(encodeURIComponent).join("/");
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
    const result = await call("GET", api);
    if (!result.ok) { say(message(result)); return; }
    files = result.data.files;
    renderTree();
  }

  function renderTree() {
    tree.textContent = "";
    if (!files.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.dataset.testid = "empty-draft";
      p.textContent = "The draft has no files yet." + (canEdit ? " Add one with New file." : "");
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
    const render = (node) => {
      const ul = document.createElement("ul");
      for (const [name, child] of [...node.dirs].sort()) {
        const li = document.createElement("li");
        const label = document.createElement("span");
        label.className = "ide-folder";
        label.textContent = name + "/";
        li.append(label, render(child));
        ul.append(li);
      }
      for (const f of node.files) {
        const li = document.createElement("li");
        const open = document.createElement("button");
        open.type = "button";
        open.className = "ide-file";
        open.dataset.path = f.path;
        open.textContent = f.path.split("/").pop();
        open.title = `${f.path} · ${f.size} bytes`;
        if (f.path === current) open.setAttribute("aria-current", "true");
        li.append(open);
        ul.append(li);
      }
      return ul;
    };
    tree.append(render(top));
  }

  tree.addEventListener("click", (event) => {
    const target = event.target.closest("[data-path]");
    if (!target) return;
    event.preventDefault();
    openFile(target.dataset.path);
  });

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

  const isDirty = (tab) => !tab.binary && tab.model.getAlternativeVersionId() !== tab.saved;

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
    const writable = canEdit && tab && !tab.binary;
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
      if (next) show(next); else { editor.setModel(null); renderTabs(); renderTree(); }
    } else renderTabs();
    tab.model.dispose();
  }

  function show(path) {
    const tab = tabs.get(path);
    if (!tab) return;
    current = path;
    editor.setModel(tab.model);
    editor.updateOptions({ readOnly: !canEdit || tab.binary });
    renderTabs();
    renderTree();
    editor.focus();
  }

  async function openFile(path) {
    if (tabs.has(path)) { show(path); return tabs.get(path); }
    say(`Opening ${path}…`);
    const result = await call("GET", fileUrl(path));
    if (!result.ok) { say(message(result)); return null; }
    const binary = result.data.encoding !== "utf-8";
    const text = binary ? `${path} is a binary file (${result.data.size} bytes): download it from the file list.` : result.data.content;
    const model = monaco.editor.createModel(text, binary ? "plaintext" : languageOf(path), monaco.Uri.from({ scheme: "draft", path: "/" + path }));
    const tab = { model, etag: result.etag || result.data.sha256, saved: model.getAlternativeVersionId(), binary };
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
    if (!tab || tab.binary || !canEdit) return false;
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
  });

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
      readOnlyMessage: { value: canEdit ? "" : root.querySelector("[data-testid=readonly-reason]").textContent.trim() },
      minimap: { enabled: false },
      fontSize: 14,
      // The occurrences highlighter cancels its pending request when a tab's model is
      // disposed (rename, delete, close) and 0.52 leaves that "Canceled" unhandled.
      occurrencesHighlight: "off",
      scrollBeyondLastLine: false,
    });
    root.dataset.ready = "true";
    loadTree().then(() => { if (files.length) openFile(files[0].path); });
    // What the tab's other panels (run, checks, changes) use of the editor.
    const ide = {
      root, api, csrf, canEdit, monaco, editor, call, message, say, openFile, openAt, save, saveAll,
      files: () => files,
      current: () => current,
      model: (path) => (tabs.get(path) || {}).model || null,
      isDirty: (path) => tabs.has(path) && isDirty(tabs.get(path)),
      reloadTree: loadTree,
    };
    window.stratusIde = ide;
    document.dispatchEvent(new CustomEvent("stratus:ide-ready", { detail: ide }));
  });
})();
