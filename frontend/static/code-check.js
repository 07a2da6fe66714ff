// The Code tab's Python check: each open Python file is sent to POST draft/check (pyflakes on
// the server, apps/functions/code_checks.py) when it opens and ~300 ms after each change, and
// the answer becomes the model's markers (owner "pyflakes": squiggles, hovers, the problems
// count in the toolbar). Only the latest request's answer of a model is applied, so a slow
// answer to older text never replaces a newer one.
(function () {
  "use strict";
  const OWNER = "pyflakes";
  const DELAY_MS = 300;
  let started = false;

  function start(ide) {
    if (started) return;
    started = true;
    const { monaco, editor } = ide;
    const url = ide.api + "check";
    const states = new Map(); // model -> {path, timer, latest (request number)}
    let requests = 0;

    // The draft path of a model code.js opened (draft:/<path>); null for other models (the
    // conflict's "theirs" side) and for files that are not Python (binary ones are plaintext).
    const draftPath = (model) =>
      model.uri.scheme === "draft" && model.getLanguageId() === "python" ? model.uri.path.replace(/^\//, "") : null;

    // The server counts columns in characters; Monaco in UTF-16 code units (an emoji is 2).
    function utf16Column(model, line, column) {
      const text = model.getLineContent(line);
      let units = 0;
      let chars = 0;
      for (const ch of text) {
        if (chars >= column - 1) break;
        units += ch.length;
        chars += 1;
      }
      return units + 1 + Math.max(0, column - 1 - chars);
    }

    function toMarker(model, d) {
      const last = model.getLineCount();
      const line = Math.min(Math.max(1, d.line), last);
      const endLine = Math.min(Math.max(line, d.end_line), last);
      return {
        startLineNumber: line,
        startColumn: utf16Column(model, line, d.column),
        endLineNumber: endLine,
        endColumn: utf16Column(model, endLine, d.end_column),
        severity: d.severity === "error" ? monaco.MarkerSeverity.Error : monaco.MarkerSeverity.Warning,
        message: d.message,
        code: d.code,
        source: d.source,
      };
    }

    async function check(model) {
      const state = states.get(model);
      if (!state || model.isDisposed()) return; // closed, renamed or deleted meanwhile
      clearTimeout(state.timer);
      const number = ++requests;
      state.latest = number;
      const result = await ide.call("POST", url, { body: { path: state.path, content: model.getValue() } }).catch(() => null);
      if (model.isDisposed() || states.get(model) !== state || state.latest !== number) return; // closed, or a later check was sent
      if (result && result.ok) {
        monaco.editor.setModelMarkers(model, OWNER, result.data.diagnostics.map((d) => toMarker(model, d)));
      } else if (result && result.status === 413) {
        // Too large to check: say so on line 1 rather than keep markers of older text.
        const why = { line: 1, column: 1, end_line: 1, end_column: 2, message: ide.message(result), code: "check_too_large", source: OWNER };
        monaco.editor.setModelMarkers(model, OWNER, [{ ...toMarker(model, why), severity: monaco.MarkerSeverity.Info }]);
      }
      // Anything else (busy, offline): keep the markers; the next change checks again.
    }

    function watch(model) {
      const path = draftPath(model);
      if (!path || states.has(model)) return;
      const state = { path, timer: null, latest: 0 };
      states.set(model, state);
      model.onDidChangeContent(() => {
        clearTimeout(state.timer);
        state.timer = setTimeout(() => check(model), DELAY_MS);
      });
      model.onWillDispose(() => {
        clearTimeout(state.timer);
        states.delete(model);
      });
      check(model);
    }

    // The count of the shown file's problems, at the end of the toolbar; a click goes to the first.
    const problems = document.createElement("button");
    problems.type = "button";
    problems.className = "ide-problems secondary small";
    problems.dataset.testid = "ide-problems";
    problems.hidden = true;
    ide.root.querySelector(".ide-toolbar").append(problems);

    function markersOf(model) {
      return model ? monaco.editor.getModelMarkers({ owner: OWNER, resource: model.uri }) : [];
    }

    function renderCount() {
      const model = editor.getModel();
      if (!model || !states.has(model)) { problems.hidden = true; return; }
      const markers = markersOf(model);
      const count = (severity) => markers.filter((m) => m.severity === severity).length;
      const errors = count(monaco.MarkerSeverity.Error);
      const warnings = count(monaco.MarkerSeverity.Warning);
      const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
      problems.textContent = errors + warnings ? `${plural(errors, "error")}, ${plural(warnings, "warning")}` : markers.length ? "Not checked" : "No problems";
      problems.dataset.errors = String(errors);
      problems.dataset.warnings = String(warnings);
      problems.classList.toggle("has-errors", errors > 0);
      problems.disabled = !markers.length;
      problems.title = markers.length ? "Go to the first problem (pyflakes)" : "pyflakes found nothing to report";
      problems.hidden = false;
    }

    problems.addEventListener("click", () => {
      const [first] = markersOf(editor.getModel()).sort((a, b) => a.startLineNumber - b.startLineNumber || a.startColumn - b.startColumn);
      if (!first) return;
      const position = { lineNumber: first.startLineNumber, column: first.startColumn };
      editor.setPosition(position);
      editor.revealPositionInCenter(position);
      editor.focus();
    });

    monaco.editor.onDidCreateModel(watch);
    monaco.editor.getModels().forEach(watch); // opened before this script got the editor
    monaco.editor.onDidChangeMarkers(renderCount);
    editor.onDidChangeModel(renderCount);
    renderCount();
  }

  // code.js may have the editor ready before this script runs, or announce it later.
  if (window.stratusIde) start(window.stratusIde);
  else document.addEventListener("stratus:ide-ready", (event) => start(event.detail), { once: true });
})();
