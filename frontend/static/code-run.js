// The Code tab's run panel: stored test events (shared with the API and VS Code) edited in a
// small JSON editor, run against the draft's saved files in an environment
// (POST draft/invoke) or against what an environment serves (POST invoke); the answer shows
// status, result or HTTP answer, the error with a stack whose file:line entries open the
// file, the request's log lines and its timings. Ctrl/Cmd+Enter runs, from anywhere on the page.
(function () {
  "use strict";
  const panel = document.querySelector("[data-testid=run-panel]");
  if (!panel) return;

  function start(ide) {
    const monaco = ide.monaco;
    const canRun = panel.dataset.canRun === "true";
    const kind = panel.dataset.kind; // event | http
    const targetSelect = panel.querySelector("[data-testid=run-target]");
    const eventSelect = panel.querySelector("[data-testid=run-event]");
    const eventError = panel.querySelector("[data-testid=event-error]");
    const resultBox = panel.querySelector("[data-testid=run-result]");
    const action = (name) => panel.querySelector(`[data-action="${name}"]`);
    const saveAsDialog = ide.root.querySelector('[data-dialog="event-save-as"]');
    const eventsUrl = panel.dataset.testEvents;

    targetSelect.querySelectorAll("optgroup").forEach((group) => { if (!group.children.length) group.remove(); });
    const firstRunnable = [...targetSelect.options].find((o) => !o.disabled);
    if (firstRunnable) targetSelect.value = firstRunnable.value;

    // --- the event editor ---------------------------------------------------------------
    const eventModel = monaco.editor.createModel("{}", "json", monaco.Uri.parse("inmemory://stratus/test-event.json"));
    const eventEditor = monaco.editor.create(panel.querySelector("[data-testid=event-editor]"), {
      model: eventModel,
      automaticLayout: true,
      minimap: { enabled: false },
      fontSize: 13,
      lineNumbers: "off",
      scrollBeyondLastLine: false,
      folding: false,
      occurrencesHighlight: "off",
    });
    let events = []; // stored: [{id, name, body, shared, created_by}]
    let templates = [];
    let loadedBody = "{}"; // what the selected stored event holds, to know if it was edited

    const pretty = (value) => JSON.stringify(value, null, 2);
    const selectedEvent = () => {
      const value = eventSelect.value;
      return value.startsWith("saved:") ? events.find((e) => String(e.id) === value.slice(6)) : null;
    };
    function syncButtons() {
      const stored = selectedEvent();
      action("event-save").disabled = !stored || eventModel.getValue() === loadedBody;
      action("event-delete").disabled = !stored;
    }
    eventModel.onDidChangeContent(syncButtons);

    function renderEventOptions(selected) {
      eventSelect.textContent = "";
      const mine = document.createElement("optgroup");
      mine.label = "Saved test events";
      for (const e of events) {
        const option = new Option(e.name + (e.shared ? " (shared)" : ""), "saved:" + e.id);
        mine.append(option);
      }
      if (events.length) eventSelect.append(mine);
      const fresh = document.createElement("optgroup");
      fresh.label = "New from a template";
      for (const t of templates) fresh.append(new Option(t.name, "template:" + t.id));
      eventSelect.append(fresh);
      if (selected && [...eventSelect.options].some((o) => o.value === selected)) eventSelect.value = selected;
      else eventSelect.selectedIndex = 0;
      loadSelected();
    }

    function loadSelected() {
      const value = eventSelect.value;
      let body = {};
      if (value.startsWith("saved:")) body = (selectedEvent() || {}).body;
      else if (value.startsWith("template:")) body = (templates.find((t) => "template:" + t.id === value) || {}).body || {};
      loadedBody = pretty(body);
      eventModel.setValue(loadedBody);
      eventError.hidden = true;
      syncButtons();
    }
    eventSelect.addEventListener("change", loadSelected);

    async function loadEvents(selected) {
      const [stored, offered] = await Promise.all([ide.call("GET", eventsUrl), ide.call("GET", panel.dataset.templates)]);
      events = stored.ok ? (stored.data.results || stored.data) : [];
      // Templates for this function's kind first (an http function takes a request object).
      templates = offered.ok ? offered.data.filter((t) => t.kind === kind).concat(offered.data.filter((t) => t.kind !== kind)) : [];
      renderEventOptions(selected);
    }

    function parseEvent() {
      try {
        const value = JSON.parse(eventModel.getValue());
        eventError.hidden = true;
        return { ok: true, value };
      } catch (error) {
        eventError.textContent = `The event is not valid JSON: ${error.message}`;
        eventError.hidden = false;
        return { ok: false };
      }
    }

    action("event-save").addEventListener("click", async () => {
      const stored = selectedEvent();
      const parsed = parseEvent();
      if (!stored || !parsed.ok) return;
      const result = await ide.call("PATCH", `${eventsUrl}${stored.id}/`, { body: { body: parsed.value } });
      if (!result.ok) { eventError.textContent = ide.message(result); eventError.hidden = false; return; }
      ide.say(`Saved the test event ${stored.name}.`);
      await loadEvents("saved:" + stored.id);
    });

    action("event-save-as").addEventListener("click", () => {
      if (!parseEvent().ok) return;
      saveAsDialog.querySelector("[data-error]").hidden = true;
      const name = saveAsDialog.querySelector("input[name=name]");
      const stored = selectedEvent();
      name.value = stored ? `${stored.name} (copy)` : "";
      saveAsDialog.querySelector("input[name=shared]").checked = false;
      saveAsDialog.showModal();
    });
    saveAsDialog.addEventListener("submit", async (event) => {
      event.preventDefault();
      const parsed = parseEvent();
      if (!parsed.ok) { saveAsDialog.close(); return; }
      const result = await ide.call("POST", eventsUrl, {
        body: {
          name: saveAsDialog.querySelector("input[name=name]").value.trim(),
          body: parsed.value,
          shared: saveAsDialog.querySelector("input[name=shared]").checked,
        },
      });
      if (!result.ok) {
        const error = saveAsDialog.querySelector("[data-error]");
        error.textContent = ide.message(result);
        error.hidden = false;
        return;
      }
      saveAsDialog.close();
      ide.say(`Saved the test event ${result.data.name}.`);
      await loadEvents("saved:" + result.data.id);
    });

    action("event-delete").addEventListener("click", async () => {
      const stored = selectedEvent();
      if (!stored || !window.confirm(`Delete the test event ${stored.name}?`)) return;
      const result = await ide.call("DELETE", `${eventsUrl}${stored.id}/`);
      if (!result.ok) { eventError.textContent = ide.message(result); eventError.hidden = false; return; }
      ide.say(`Deleted the test event ${stored.name}.`);
      await loadEvents();
    });

    // --- running --------------------------------------------------------------------------
    let running = false;
    async function run() {
      if (!canRun || running) return;
      const parsed = parseEvent();
      if (!parsed.ok) return;
      const [mode, environment] = targetSelect.value.split(/:(.*)/s);
      if (!environment) return;
      running = true;
      action("run").disabled = true;
      try {
        if (mode === "draft" && !(await ide.saveAll())) {
          showMessage("error", "Not run: a file could not be saved (see the status line). The draft runs as saved.");
          return;
        }
        showMessage("muted", mode === "draft" ? `Running the draft in ${environment}…` : `Running what ${environment} serves…`);
        const url = mode === "draft" ? panel.dataset.draftInvoke : panel.dataset.invoke;
        const began = performance.now();
        const result = await ide.call("POST", url, { body: { environment, event: parsed.value } });
        const roundTrip = performance.now() - began;
        if (result.data && result.data.request_id) showResult(result.data, { mode, environment, roundTrip });
        else showMessage("error", ide.message(result));
      } catch (error) {
        showMessage("error", `The run could not be sent: ${error.message}`);
      } finally {
        running = false;
        action("run").disabled = false;
      }
    }
    action("run").addEventListener("click", run);
    // Inside the editors Monaco owns the keys (Ctrl+Enter would insert a line): a command there,
    // and a page-wide listener for the rest of the page.
    const chord = monaco.KeyMod.CtrlCmd | monaco.KeyCode.Enter;
    ide.editor.addCommand(chord, run);
    eventEditor.addCommand(chord, run);
    document.addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && !event.defaultPrevented) {
        event.preventDefault();
        run();
      }
    });

    // --- the answer -----------------------------------------------------------------------
    const el = (tag, { dataset, ...props } = {}, ...children) => {
      const node = document.createElement(tag);
      Object.assign(node, props);
      for (const [key, value] of Object.entries(dataset || {})) node.dataset[key] = value;
      node.append(...children.filter((c) => c !== null && c !== undefined));
      return node;
    };

    function showMessage(kindOf, text) {
      resultBox.textContent = "";
      resultBox.append(el("p", { className: kindOf === "error" ? "error" : "muted", textContent: text }));
    }

    const STATE = { ok: "succeeded", error: "failed", crashed: "failed", timeout: "failed", throttled: "waiting_approval" };
    const ms = (value) => (value === null || value === undefined ? "" : `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`);

    function showResult(data, { mode, environment, roundTrip }) {
      resultBox.textContent = "";
      const head = el("div", { className: "ide-result-head" },
        el("span", { className: `state state-${STATE[data.status] || "canceled"}`, textContent: data.status, dataset: { testid: "run-status" } }),
        el("span", { textContent: data.draft ? `draft in ${environment}` : `${environment} · v${data.version}` }),
      );
      resultBox.append(head);
      const facts = el("dl", { className: "ide-facts", dataset: { testid: "run-facts" } });
      const fact = (label, value) => { if (value !== "" && value !== null) facts.append(el("dt", { textContent: label }), el("dd", { textContent: value })); };
      fact("Duration", ms(data.duration_ms));
      fact("Init", data.cold_start ? `${ms(data.init_duration_ms)} (cold start)` : "warm");
      fact("Peak memory", data.peak_rss_kb ? `${(data.peak_rss_kb / 1024).toFixed(1)} MB` : "");
      fact("Round trip", ms(roundTrip));
      fact("Request", data.request_id);
      resultBox.append(facts);

      if (data.error) resultBox.append(renderError(data.error));
      if (data.status === "ok") resultBox.append(renderAnswer(data.result));

      const logs = el("pre", { className: "log ide-logs", dataset: { testid: "run-logs" } });
      if (!data.logs.length) logs.append(el("span", { className: "system", textContent: "(no log lines)" }));
      for (const line of data.logs) {
        logs.append(el("span", { className: line.stream, textContent: line.text }), "\n");
      }
      resultBox.append(el("h3", { textContent: "Log lines" }), logs);
      ide.say(`${mode === "draft" ? "Draft" : environment} ran: ${data.status} in ${ms(data.duration_ms)}.`);
    }

    function renderAnswer(result) {
      const box = el("div", { dataset: { testid: "run-answer" } });
      const isHttp = result && typeof result === "object" && "statusCode" in result && Array.isArray(result.headers);
      if (isHttp) {
        box.append(el("h3", { textContent: `HTTP ${result.statusCode}` }));
        const headers = result.headers.map(([name, value]) => `${name}: ${value}`).join("\n");
        if (headers) box.append(el("pre", { className: "ide-json", textContent: headers }));
        let body = result.body;
        if (!result.isBase64Encoded) {
          try { body = pretty(JSON.parse(body)); } catch (_) { /* not JSON: as sent */ }
        }
        box.append(el("pre", { className: "ide-json", textContent: body === "" ? "(empty body)" : body }));
      } else {
        box.append(el("h3", { textContent: "Result" }), el("pre", { className: "ide-json", textContent: pretty(result) }));
      }
      return box;
    }

    // A stack entry's file, as a path of the draft: the longest tail of the runtime's path
    // that names a draft file (the code runs from a copy whose prefix is the platform's).
    function draftPathOf(file) {
      const parts = file.split("/");
      const known = new Set(ide.files().map((f) => f.path));
      for (let i = 0; i < parts.length; i += 1) {
        const candidate = parts.slice(i).join("/");
        if (known.has(candidate)) return candidate;
      }
      return null;
    }
    const FRAME = [/File "([^"]+)", line (\d+)/, /\(?([^\s()]+\.(?:m?js|cjs|ts)):(\d+):(\d+)\)?/];

    function renderError(error) {
      const box = el("div", { className: "ide-error", dataset: { testid: "run-error" } });
      box.append(el("p", {}, el("strong", { textContent: error.type }), `: ${error.message}`));
      // The frames only: not Python's "Traceback" header nor the closing "Type: message"
      // line, which the line above already says.
      const frames = (error.stack || []).filter((frame) => {
        const text = frame.trim();
        return text && !text.startsWith("Traceback (most recent call last)") && !text.startsWith(`${error.type}:`);
      });
      if (frames.length) {
        const list = el("ul", { className: "ide-stack" });
        for (const frame of frames) {
          const item = el("li");
          let match = null;
          for (const pattern of FRAME) { match = frame.match(pattern); if (match) break; }
          const path = match && draftPathOf(match[1]);
          if (path) {
            const line = Number(match[2]);
            const column = match[3] ? Number(match[3]) : 1;
            const link = el("button", { type: "button", className: "ide-frame", textContent: `${path}:${line}`, dataset: { path, line: String(line) } });
            link.addEventListener("click", () => ide.openAt(path, line, column));
            item.append(link, el("code", { textContent: " " + frame.trim().split("\n").slice(1).join(" ").trim() }));
          } else {
            item.append(el("code", { textContent: frame.trim() }));
          }
          list.append(item);
        }
        box.append(list);
      }
      return box;
    }

    loadEvents();
  }

  if (window.stratusIde) start(window.stratusIde);
  else document.addEventListener("stratus:ide-ready", (event) => start(event.detail), { once: true });
})();
