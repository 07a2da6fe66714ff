// The Code tab's way out of the editor: after a publish, deploy the new version to an
// environment (POST deploy, then the binding is followed until it serves) or start a release
// on the Releases tab; and the Changes view, Monaco's diff editor between the draft and a
// published version or what an environment serves now.
(function () {
  "use strict";
  const ship = document.querySelector("[data-testid=ship]");
  const changes = document.querySelector("[data-testid=changes]");
  if (!ship || !changes) return;

  function start(ide) {
    const monaco = ide.monaco;
    const status = ship.querySelector("[data-testid=ship-status]");
    const envSelect = ship.querySelector("[data-testid=ship-environment]");
    const deployButton = ship.querySelector("[data-action=ship-deploy]");
    const releaseLink = ship.querySelector("[data-testid=ship-release]");
    let version = null;

    // --- deploy what was just published ------------------------------------------------
    document.addEventListener("stratus:published", (event) => {
      version = event.detail.number;
      ship.querySelector("[data-version]").textContent = `v${version}`;
      status.textContent = "";
      deployButton.disabled = !ide.canEdit;
      syncReleaseLink();
      ship.hidden = false;
    });
    function syncReleaseLink() {
      if (!releaseLink || version === null) return;
      const url = new URL(ship.dataset.releases, window.location.href);
      url.searchParams.set("version", version);
      url.searchParams.set("environment", envSelect.value);
      releaseLink.href = url.pathname + url.search;
    }
    envSelect.addEventListener("change", syncReleaseLink);

    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    deployButton.addEventListener("click", async () => {
      if (version === null) return;
      const environment = envSelect.value;
      deployButton.disabled = true;
      status.textContent = `Deploying v${version} to ${environment}…`;
      try {
        const result = await ide.call("POST", ship.dataset.deploy, { body: { environment, version } });
        if (!result.ok) { status.textContent = ide.message(result); return; }
        // The worker applies the deploy; follow the binding until it serves (or says why not).
        let binding = result.data;
        const deadline = Date.now() + 60000;
        while (binding.status === "pending" && Date.now() < deadline) {
          await sleep(400);
          const next = await ide.call("GET", `${ship.dataset.bindings}${encodeURIComponent(environment)}`);
          if (next.ok) binding = next.data;
        }
        status.textContent = "";
        if (binding.status === "ready") {
          const link = document.createElement("a");
          link.href = binding.url;
          link.textContent = binding.url;
          link.target = "_blank";
          link.rel = "noopener";
          status.append(`v${version} serves in ${environment}: `, link);
          ide.say(`Deployed v${version} to ${environment}.`);
        } else {
          status.textContent = `The deploy to ${environment} is ${binding.status}: ${binding.status_message || "see Environments & traffic"}.`;
        }
      } finally {
        deployButton.disabled = false;
      }
    });

    // --- the Changes view ----------------------------------------------------------------
    const toggle = ide.root.querySelector("[data-action=changes]");
    const baseSelect = changes.querySelector("[data-testid=changes-base]");
    const fileList = changes.querySelector("[data-testid=changed-files]");
    const diffHost = changes.querySelector("[data-testid=changes-diff]");
    const hidden = [ide.root.querySelector("[data-testid=editor]"), ide.root.querySelector("[data-testid=editor-tabs]")];
    const versionsUrl = changes.dataset.versions;
    let diffEditor = null;
    let models = [];
    let compared = []; // [{path, change, base: {path, sha256} | null, draft: {path, sha256} | null}]

    const fileUrl = (base, path) => base + path.split("/").map(encodeURIComponent).join("/");
    async function text(url) {
      const result = await ide.call("GET", url);
      if (!result.ok) return { content: "", note: ide.message(result) };
      if (result.data.encoding !== "utf-8") return { content: `(binary file, ${result.data.size} bytes)`, binary: true };
      return { content: result.data.content };
    }

    async function open() {
      toggle.setAttribute("aria-pressed", "true");
      hidden.forEach((node) => { node.hidden = true; });
      changes.hidden = false;
      await refreshBases();
      await compare();
    }

    // What to compare with, read again on each opening: a publish or a deploy made from this
    // page (or elsewhere) since it loaded is offered too. Environments first, then versions.
    async function refreshBases() {
      const [versions, bindings] = await Promise.all([
        ide.call("GET", versionsUrl),
        ide.call("GET", ship.dataset.bindings),
      ]);
      if (!versions.ok || !bindings.ok) return; // keep the options the page came with
      const chosen = baseSelect.value;
      baseSelect.textContent = "";
      for (const binding of bindings.data.results || bindings.data) {
        const serving = (binding.traffic || []).filter((entry) => entry.weight > 0);
        if (!serving.length) continue;
        const split = serving.length > 1 ? `, of ${serving.map((e) => `v${e.version} ${e.weight}%`).join(" · ")}` : "";
        baseSelect.append(new Option(`what ${binding.environment} serves (v${serving[0].version}${split})`, String(serving[0].version)));
      }
      for (const v of versions.data.results || versions.data) {
        baseSelect.append(new Option(`v${v.number}${v.message ? " · " + v.message.slice(0, 50) : ""}`, String(v.number)));
      }
      if (!baseSelect.options.length) {
        const none = new Option("no published version yet", "");
        none.disabled = true;
        baseSelect.append(none);
      }
      const keep = [...baseSelect.options].findIndex((o) => o.value === chosen && chosen);
      baseSelect.selectedIndex = keep >= 0 ? keep : 0;
    }
    function close() {
      toggle.setAttribute("aria-pressed", "false");
      disposeDiff();
      changes.hidden = true;
      hidden.forEach((node) => { node.hidden = false; });
      ide.editor.layout();
    }
    toggle.addEventListener("click", () => (changes.hidden ? open() : close()));
    changes.querySelector("[data-action=changes-close]").addEventListener("click", close);
    baseSelect.addEventListener("change", compare);

    function disposeDiff() {
      if (diffEditor) { diffEditor.setModel(null); diffEditor.dispose(); diffEditor = null; }
      models.forEach((m) => m.dispose());
      models = [];
    }

    async function compare() {
      fileList.textContent = "";
      disposeDiff();
      const number = baseSelect.value;
      if (!number) { fileList.append(item("Publish a version first: there is nothing to compare with.")); return; }
      const [listing] = await Promise.all([ide.call("GET", `${versionsUrl}${number}/files/`), ide.reloadTree()]);
      if (!listing.ok) { fileList.append(item(ide.message(listing))); return; }
      const base = new Map(listing.data.map((f) => [f.path, f]));
      const draft = new Map(ide.files().map((f) => [f.path, f]));
      compared = [];
      for (const path of [...new Set([...base.keys(), ...draft.keys()])].sort()) {
        const was = base.get(path) || null;
        const now = draft.get(path) || null;
        const dirty = ide.isDirty(path);
        if (was && now && was.sha256 === now.sha256 && !dirty) continue;
        compared.push({ path, change: !was ? "added" : !now ? "deleted" : "modified", dirty });
      }
      if (!compared.length) {
        fileList.append(item(`The draft equals v${number}.`));
        return;
      }
      for (const entry of compared) {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = `ide-change ide-change-${entry.change}`;
        button.dataset.path = entry.path;
        button.textContent = entry.path;
        const badge = document.createElement("span");
        badge.className = "muted";
        badge.textContent = ` ${entry.change}${entry.dirty ? ", unsaved" : ""}`;
        button.append(badge);
        button.addEventListener("click", () => showDiff(entry, number));
        li.append(button);
        fileList.append(li);
      }
      await showDiff(compared[0], number);
    }

    function item(message) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = message;
      return li;
    }

    async function showDiff(entry, number) {
      fileList.querySelectorAll("[aria-current]").forEach((b) => b.removeAttribute("aria-current"));
      const current = fileList.querySelector(`[data-path="${CSS.escape(entry.path)}"]`);
      if (current) current.setAttribute("aria-current", "true");
      const [was, now] = await Promise.all([
        entry.change === "added" ? { content: "" } : text(fileUrl(`${versionsUrl}${number}/files/`, entry.path)),
        entry.change === "deleted" ? { content: "" }
          : ide.model(entry.path) ? { content: ide.model(entry.path).getValue() } // the open buffer, unsaved edits included
          : text(fileUrl(`${ide.api}files/`, entry.path)),
      ]);
      disposeDiff();
      const language = ide.model(entry.path) ? ide.model(entry.path).getLanguageId() : undefined;
      const original = monaco.editor.createModel(was.content, language);
      const modified = monaco.editor.createModel(now.content, language);
      models = [original, modified];
      diffEditor = monaco.editor.createDiffEditor(diffHost, {
        automaticLayout: true,
        readOnly: true,
        originalEditable: false,
        renderSideBySide: true,
        minimap: { enabled: false },
      });
      diffEditor.setModel({ original, modified });
      ide.say(`Changes of ${entry.path}: v${number} (left) and the draft (right).`);
    }
  }

  if (window.stratusIde) start(window.stratusIde);
  else document.addEventListener("stratus:ide-ready", (event) => start(event.detail), { once: true });
})();
