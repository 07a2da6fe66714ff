// The Code tab's Python completions, hover and signature help: a Language Server Protocol
// client over /ws/functions/{id}/lsp/ (apps/functions/consumers.py: one confined
// jedi-language-server per editor). The draft's open Python files are synced with full-text
// changes; Monaco asks through its providers, which wait for the server's answer. A socket
// the server closed for idleness is opened again on the next edit.
(function () {
  "use strict";
  const root = document.querySelector("[data-testid=ide]");
  if (!root || !root.dataset.lsp || !(root.dataset.runtime || "").startsWith("python")) return;

  function start(ide) {
    const monaco = ide.monaco;
    const status = root.querySelector("[data-testid=lsp-status]");
    const url = `${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}${root.dataset.lsp}`;
    let socket = null;
    let ready = null; // a promise of an initialized server, while the socket is open
    let refused = "";
    let nextId = 1;
    const pending = new Map(); // request id -> resolve
    const synced = new Map(); // model uri -> version sent

    const isDraftPython = (model) => model && model.uri.scheme === "draft" && model.getLanguageId() === "python";
    const tell = (text, title) => { if (status) { status.textContent = text; status.title = title || ""; } };

    function connect() {
      if (ready) return ready;
      synced.clear();
      ready = new Promise((resolve) => {
        socket = new WebSocket(url);
        socket.addEventListener("message", (event) => {
          let message;
          try { message = JSON.parse(event.data); } catch (_) { return; }
          if (message.stratus === "ready") {
            request("initialize", {
              processId: null,
              rootUri: "draft:/",
              capabilities: {
                textDocument: {
                  completion: { completionItem: { documentationFormat: ["markdown", "plaintext"] } },
                  hover: { contentFormat: ["markdown", "plaintext"] },
                  signatureHelp: { signatureInformation: { documentationFormat: ["markdown", "plaintext"] } },
                },
              },
            }).then(() => {
              notify("initialized", {});
              monaco.editor.getModels().filter(isDraftPython).forEach(sync);
              tell("Python: completions on");
              resolve(true);
            });
          } else if (message.stratus === "refused") {
            refused = message.reason;
            tell("Python: no completions", `The language server did not start: ${message.reason}`);
          } else if (message.id !== undefined && message.method) {
            // A request of the server (progress, registrations): acknowledged, nothing more.
            send({ jsonrpc: "2.0", id: message.id, result: null });
          } else if (message.id !== undefined && pending.has(message.id)) {
            pending.get(message.id)(message.result === undefined ? null : message.result);
            pending.delete(message.id);
          }
        });
        socket.addEventListener("close", (event) => {
          for (const answer of pending.values()) answer(null);
          pending.clear();
          ready = null;
          socket = null;
          resolve(false);
          if (event.code === 4408) tell("Python: completions paused", "Idle: they come back as you type.");
          else if (!refused) tell("Python: no completions", `The language server closed (${event.code}).`);
        });
      });
      return ready;
    }

    const send = (message) => { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message)); };
    const notify = (method, params) => send({ jsonrpc: "2.0", method, params });
    function request(method, params) {
      const id = nextId++;
      return new Promise((resolve) => {
        pending.set(id, resolve);
        send({ jsonrpc: "2.0", id, method, params });
        setTimeout(() => { if (pending.has(id)) { pending.delete(id); resolve(null); } }, 10000);
      });
    }

    function sync(model) {
      if (model.isDisposed()) return; // closed, renamed or deleted while the socket opened
      const uri = model.uri.toString();
      const version = model.getVersionId();
      if (!synced.has(uri)) {
        notify("textDocument/didOpen", { textDocument: { uri, languageId: "python", version, text: model.getValue() } });
      } else if (synced.get(uri) !== version) {
        notify("textDocument/didChange", { textDocument: { uri, version }, contentChanges: [{ text: model.getValue() }] });
      } else return;
      synced.set(uri, version);
    }

    function watch(model) {
      if (!isDraftPython(model)) return;
      model.onDidChangeContent(() => { if (refused) return; connect().then((ok) => ok && sync(model)); });
      model.onWillDispose(() => {
        const uri = model.uri.toString();
        if (synced.has(uri)) { notify("textDocument/didClose", { textDocument: { uri } }); synced.delete(uri); }
      });
      connect().then((ok) => ok && sync(model));
    }
    monaco.editor.getModels().forEach(watch);
    monaco.editor.onDidCreateModel(watch);

    // Ask the server about ``model`` at ``position`` once it has the model's current text.
    async function ask(method, model, position, extra) {
      if (!isDraftPython(model) || refused || !(await connect()) || model.isDisposed()) return null;
      sync(model);
      const answer = await request(method, {
        textDocument: { uri: model.uri.toString() },
        position: { line: position.lineNumber - 1, character: position.column - 1 },
        ...extra,
      });
      // A slow answer may come after the file was renamed, deleted or closed: reading the
      // disposed model (getWordUntilPosition) would throw "TextModelPart is disposed".
      return model.isDisposed() ? null : answer;
    }
    const toRange = (r) => new monaco.Range(r.start.line + 1, r.start.character + 1, r.end.line + 1, r.end.character + 1);
    const docs = (d) => (d === undefined || d === null ? undefined : typeof d === "string" ? d : { value: d.value });
    const KINDS = [null, "Text", "Method", "Function", "Constructor", "Field", "Variable", "Class", "Interface", "Module",
      "Property", "Unit", "Value", "Enum", "Keyword", "Snippet", "Color", "File", "Reference", "Folder", "EnumMember",
      "Constant", "Struct", "Event", "Operator", "TypeParameter"];

    monaco.languages.registerCompletionItemProvider("python", {
      triggerCharacters: ["."],
      async provideCompletionItems(model, position) {
        const result = await ask("textDocument/completion", model, position);
        if (!result) return { suggestions: [] };
        const word = model.getWordUntilPosition(position);
        const fallback = new monaco.Range(position.lineNumber, word.startColumn, position.lineNumber, word.endColumn);
        const items = Array.isArray(result) ? result : result.items || [];
        return {
          incomplete: !Array.isArray(result) && !!result.isIncomplete,
          suggestions: items.map((item) => ({
            label: item.label,
            kind: monaco.languages.CompletionItemKind[KINDS[item.kind] || "Text"],
            detail: item.detail,
            documentation: docs(item.documentation),
            insertText: item.textEdit ? item.textEdit.newText : item.insertText || item.label,
            insertTextRules: item.insertTextFormat === 2 ? monaco.languages.CompletionItemInsertTextRule.InsertAsSnippet : undefined,
            range: item.textEdit && item.textEdit.range ? toRange(item.textEdit.range) : fallback,
            sortText: item.sortText,
            filterText: item.filterText,
          })),
        };
      },
    });

    monaco.languages.registerHoverProvider("python", {
      async provideHover(model, position) {
        const result = await ask("textDocument/hover", model, position);
        if (!result || !result.contents) return null;
        const contents = [].concat(result.contents).map((c) => ({ value: typeof c === "string" ? c : c.value }));
        return { contents, range: result.range ? toRange(result.range) : undefined };
      },
    });

    monaco.languages.registerSignatureHelpProvider("python", {
      signatureHelpTriggerCharacters: ["(", ","],
      async provideSignatureHelp(model, position) {
        const result = await ask("textDocument/signatureHelp", model, position);
        if (!result || !result.signatures || !result.signatures.length) return null;
        return {
          value: {
            signatures: result.signatures.map((s) => ({
              label: s.label,
              documentation: docs(s.documentation),
              parameters: (s.parameters || []).map((p) => ({ label: p.label, documentation: docs(p.documentation) })),
            })),
            activeSignature: result.activeSignature || 0,
            activeParameter: result.activeParameter || 0,
          },
          dispose() {},
        };
      },
    });
  }

  if (window.stratusIde) start(window.stratusIde);
  else document.addEventListener("stratus:ide-ready", (event) => start(event.detail), { once: true });
})();
