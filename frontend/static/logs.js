// The live log tail in the browser: a websocket client that resumes from its cursor
// (window.StratusLogTail, shared with the Code tab's logs panel: code-logs.js), and the
// Logs tab's page (filters, highlighted terms, pause with "N new", a request's lines and
// invocation record, history search and download). Plain JS, no framework.
(function () {
  "use strict";

  // --- the client ------------------------------------------------------------------------
  // Messages are those of apps/monitoring/tail.py: backlog, lines, dropped, error, closing.
  // A socket that drops is reopened with after=<cursor>: the server sends every line after it,
  // none twice. Closes 4400 (bad filter), 4401, 4404 and 4410 (function deleted) are final.
  var FINAL = { 4400: "bad filter", 4401: "not signed in", 4404: "not found", 4410: "the function was deleted" };

  function LogTailClient(path, filters, handlers) {
    this.path = path;
    this.filters = filters || {};
    this.handlers = handlers;
    this.cursor = null;
    this.ws = null;
    this.stopped = false;
    this.retry = 500;
  }
  LogTailClient.prototype.url = function () {
    var params = new URLSearchParams();
    Object.keys(this.filters).forEach(function (k) {
      var v = this.filters[k];
      if (v !== "" && v !== null && v !== undefined) params.set(k, v);
    }, this);
    if (this.cursor !== null) params.set("after", this.cursor);
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + location.host + this.path + "?" + params.toString();
  };
  LogTailClient.prototype.open = function () {
    var self = this;
    var ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = function () { self.retry = 500; self.emit("state", "live"); };
    ws.onmessage = function (event) {
      var m = JSON.parse(event.data);
      if (m.type === "backlog" || m.type === "lines" || m.type === "dropped") {
        if (m.cursor !== undefined && m.cursor !== null) self.cursor = m.cursor;
      }
      self.emit(m.type, m);
    };
    ws.onclose = function (event) {
      if (self.ws !== ws) return;
      self.ws = null;
      if (self.stopped) return;
      if (FINAL[event.code]) { self.stopped = true; self.emit("state", "closed: " + FINAL[event.code]); return; }
      self.emit("state", "reconnecting…");
      setTimeout(function () { if (!self.stopped) self.open(); }, self.retry);
      self.retry = Math.min(self.retry * 2, 10000);
    };
  };
  LogTailClient.prototype.emit = function (type, value) {
    var fn = this.handlers[type];
    if (fn) fn(value);
  };
  // New filters: sent on the open socket (answered by a fresh backlog), kept for reconnects.
  LogTailClient.prototype.setFilters = function (filters, backlog) {
    this.filters = filters;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      var msg = Object.assign({ type: "filters" }, filters);
      if (backlog !== undefined) msg.backlog = backlog;
      this.ws.send(JSON.stringify(msg));
    } else {
      this.cursor = null;
      if (this.stopped) { this.stopped = false; this.open(); }
    }
  };
  LogTailClient.prototype.close = function () {
    this.stopped = true;
    if (this.ws) this.ws.close();
  };

  // --- rendering -----------------------------------------------------------------------------
  function searchPattern(q) {
    if (!q) return null;
    var m = /^\/(.*)\/(i?)$/.exec(q);
    try {
      if (m) return new RegExp(m[1], "g" + m[2]);
    } catch (e) { return null; }  // RE2 and JS disagree on a few things: no highlight then
    return new RegExp(q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "gi");
  }

  // The text with the search's matches in <mark> (DOM nodes: no HTML is ever parsed).
  function highlighted(text, pattern) {
    var frag = document.createDocumentFragment();
    if (!pattern) { frag.appendChild(document.createTextNode(text)); return frag; }
    pattern.lastIndex = 0;
    var at = 0, m, guard = 0;
    while ((m = pattern.exec(text)) && guard++ < 1000) {
      if (m[0] === "") { pattern.lastIndex++; continue; }
      frag.appendChild(document.createTextNode(text.slice(at, m.index)));
      var mark = document.createElement("mark");
      mark.textContent = m[0];
      frag.appendChild(mark);
      at = m.index + m[0].length;
    }
    frag.appendChild(document.createTextNode(text.slice(at)));
    return frag;
  }

  function cell(tr, cls, text) {
    var td = document.createElement("td");
    td.className = cls;
    if (text !== undefined) td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function lineRow(line, pattern, compact) {
    var tr = document.createElement("tr");
    tr.className = "level-" + (line.level || "none");
    tr.dataset.id = line.id;
    var ts = new Date(line.ts);
    var td = cell(tr, "nowrap mono logs-ts");
    var time = document.createElement("time");
    time.dateTime = line.ts;
    time.title = line.ts + " (UTC)";
    time.textContent = ts.toLocaleTimeString([], { hour12: false }) + "." + String(ts.getMilliseconds()).padStart(3, "0");
    td.appendChild(time);
    if (!compact) {
      cell(tr, "logs-env", line.environment);
      cell(tr, "logs-ver", line.version === 0 ? "draft" : "v" + line.version);
      cell(tr, "logs-lvl", line.level);
    }
    var rid = cell(tr, "mono logs-rid");
    if (line.request_id) {
      var a = document.createElement("a");
      a.href = "?request_id=" + encodeURIComponent(line.request_id);
      a.dataset.request = line.request_id;
      a.title = line.request_id;
      a.textContent = line.request_id.slice(0, 8);
      rid.appendChild(a);
    }
    cell(tr, "mono logs-text").appendChild(highlighted(line.text, pattern));
    return tr;
  }

  // A scrolling view of lines: keeps the newest MAX_ROWS, follows the bottom unless scrolled up.
  var MAX_ROWS = 2000;
  function LineView(container, compact) {
    this.container = container;
    this.body = container.querySelector("tbody");
    this.compact = compact;
    this.pattern = null;
  }
  LineView.prototype.reset = function () { this.body.textContent = ""; };
  LineView.prototype.add = function (lines) {
    var atBottom = this.container.scrollHeight - this.container.scrollTop - this.container.clientHeight < 40;
    var empty = this.body.querySelector(".logs-empty");
    if (empty && lines.length) empty.remove();
    var frag = document.createDocumentFragment();
    lines.forEach(function (line) { frag.appendChild(lineRow(line, this.pattern, this.compact)); }, this);
    this.body.appendChild(frag);
    while (this.body.rows.length > MAX_ROWS) this.body.deleteRow(0);
    if (atBottom) this.container.scrollTop = this.container.scrollHeight;
  };

  window.StratusLogTail = { LogTailClient: LogTailClient, LineView: LineView, lineRow: lineRow, searchPattern: searchPattern };

  // --- the Logs tab ----------------------------------------------------------------------------
  function formFilters(form) {
    var f = {};
    new FormData(form).forEach(function (v, k) { if (String(v).trim()) f[k] = String(v).trim(); });
    return f;
  }

  function apiQuery(filters, extra) {
    var p = new URLSearchParams();
    ["environment", "level", "version", "request_id"].forEach(function (k) { if (filters[k]) p.set(k, filters[k]); });
    if (filters.q && !/^\/.*\/i?$/.test(filters.q)) p.set("q", filters.q);
    Object.keys(extra || {}).forEach(function (k) { p.set(k, extra[k]); });
    return p.toString();
  }

  async function getJSON(url) {
    var r = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    var body = await r.json();
    if (!r.ok) throw new Error((body.error && body.error.message) || r.statusText);
    return body;
  }

  function initPage(root) {
    var api = root.dataset.api;
    var form = root.querySelector("[data-testid=log-filters]");
    var view = new LineView(root.querySelector(".logs-view"), false);
    var state = root.querySelector("[data-testid=log-state]");
    var errorBox = root.querySelector("[data-testid=log-error]");
    var pauseBtn = root.querySelector("[data-action=pause]");
    var badge = root.querySelector("[data-testid=new-badge]");
    var clearBtn = root.querySelector("[data-action=clear]");
    var droppedBox = root.querySelector("[data-testid=log-dropped]");
    var paused = false, pending = [], dropped = 0;
    var filters = formFilters(form);
    view.pattern = searchPattern(filters.q);
    pauseBtn.hidden = false;
    clearBtn.hidden = false;

    function setState(text) {
      state.textContent = text;
      state.className = "badge " + (text === "live" ? "tone-ok" : text === "paused" ? "tone-wait" : "tone-off");
    }
    function showBadge() {
      badge.hidden = !paused;
      badge.textContent = pending.length + " new";
      badge.setAttribute("aria-label", "Resume: " + pending.length + " new lines");
    }
    var client = new LogTailClient(root.dataset.ws, filters, {
      state: function (s) { setState(paused && s === "live" ? "paused" : s); },
      backlog: function (m) {
        errorBox.hidden = true;
        view.reset();
        pending = [];
        view.add(m.lines);
        if (!m.lines.length) view.body.innerHTML = '<tr class="logs-empty"><td class="muted">No lines match yet; new ones appear here as they are written.</td></tr>';
        view.container.scrollTop = view.container.scrollHeight;
        showBadge();
      },
      lines: function (m) {
        if (paused) { pending = pending.concat(m.lines).slice(-5000); showBadge(); }
        else view.add(m.lines);
      },
      dropped: function (m) {
        dropped += m.count;
        droppedBox.hidden = false;
        droppedBox.textContent = dropped + " lines not shown (" + m.reason.replace("_", " ") + "); search the stored lines below for them";
      },
      error: function (m) { errorBox.hidden = false; errorBox.textContent = m.message; },
      closing: function () { setState("closed: the function was deleted"); },
    });
    client.open();

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      filters = formFilters(form);
      view.pattern = searchPattern(filters.q);
      history.replaceState(null, "", "?" + new URLSearchParams(filters).toString());
      client.setFilters(filters);
    });
    pauseBtn.addEventListener("click", function () {
      paused = !paused;
      pauseBtn.textContent = paused ? "Resume" : "Pause";
      pauseBtn.setAttribute("aria-pressed", String(paused));
      if (!paused) { view.add(pending); pending = []; }
      setState(paused ? "paused" : "live");
      showBadge();
    });
    badge.addEventListener("click", function () { pauseBtn.click(); });
    clearBtn.addEventListener("click", function () { view.reset(); });

    // A request's lines and its invocation record.
    var panel = document.querySelector("[data-testid=request-panel]");
    async function showRequest(rid) {
      panel.hidden = false;
      panel.querySelector("[data-request-id]").textContent = rid;
      var dl = panel.querySelector("[data-testid=invocation]");
      var body = panel.querySelector("[data-request-lines]");
      dl.textContent = "";
      body.textContent = "";
      try {
        var q = "request_id=" + encodeURIComponent(rid);
        var both = await Promise.all([getJSON(api + "logs?" + q + "&limit=500"), getJSON(api + "invocations?" + q)]);
        both[0].results.slice().reverse().forEach(function (line) { body.appendChild(lineRow(line, view.pattern, false)); });
        var call = both[1].results[0];
        var facts = call ? [
          ["Status", call.status + (call.error_type ? " (" + call.error_type + ")" : "")],
          ["Duration", call.duration_ms.toFixed(1) + " ms"],
          ["Cold start", call.cold_start ? "yes" + (call.init_duration_ms ? ", init " + call.init_duration_ms.toFixed(1) + " ms" : "") : "no"],
          ["Memory", call.peak_rss_kb ? (call.peak_rss_kb / 1024).toFixed(1) + " MB peak" : "not measured"],
          ["Version", call.version === 0 ? "draft" : "v" + call.version],
          ["Environment", call.environment],
          ["Started", new Date(call.started_at).toLocaleString()],
        ] : [["Invocation", "no record (yet) for this request"]];
        facts.forEach(function (f) {
          var dt = document.createElement("dt"); dt.textContent = f[0];
          var dd = document.createElement("dd"); dd.textContent = f[1];
          dd.dataset.fact = f[0].toLowerCase().replace(" ", "-");
          dl.appendChild(dt); dl.appendChild(dd);
        });
      } catch (e) {
        dl.textContent = "Could not load the request: " + e.message;
      }
      panel.scrollIntoView({ block: "nearest" });
    }
    document.addEventListener("click", function (event) {
      var a = event.target.closest && event.target.closest("a[data-request]");
      if (!a) return;
      event.preventDefault();
      showRequest(a.dataset.request);
    });
    panel.querySelector("[data-action=close-request]").addEventListener("click", function () { panel.hidden = true; });

    // History: the stored lines in a time range, with the filters; download as text or NDJSON.
    var hist = document.querySelector("[data-testid=history]");
    var histForm = hist.querySelector("form");
    var histStatus = hist.querySelector("[data-testid=history-status]");
    var histBody = hist.querySelector("[data-history-lines]");
    async function fetchHistory() {
      var f = formFilters(form), extra = { limit: 500 };
      var since = histForm.elements.since.value, until = histForm.elements.until.value;
      if (since) extra.since = new Date(since).toISOString();
      if (until) extra.until = new Date(until).toISOString();
      var regex = /^\/.*\/i?$/.test(f.q || "") ? searchPattern(f.q) : null;
      var lines = [];
      for (var offset = 0; offset < 5000; offset += 500) {
        extra.offset = offset;
        var page = await getJSON(api + "logs?" + apiQuery(f, extra));
        lines = lines.concat(page.results);
        if (!page.next) break;
      }
      if (regex) lines = lines.filter(function (l) { regex.lastIndex = 0; return regex.test(l.text); });
      return lines;
    }
    histForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      histStatus.textContent = "Searching…";
      histBody.textContent = "";
      try {
        var lines = await fetchHistory();
        var pattern = searchPattern(formFilters(form).q);
        lines.forEach(function (l) { histBody.appendChild(lineRow(l, pattern, false)); });
        histStatus.textContent = lines.length + " lines" + (lines.length >= 5000 ? " (the newest 5,000)" : "");
      } catch (e) { histStatus.textContent = "Search failed: " + e.message; }
    });
    hist.querySelectorAll("[data-action=download]").forEach(function (btn) {
      btn.addEventListener("click", async function () {
        histStatus.textContent = "Preparing the download…";
        try {
          var lines = (await fetchHistory()).reverse();
          var ndjson = btn.dataset.format === "ndjson";
          var text = lines.map(function (l) {
            return ndjson ? JSON.stringify(l) : [l.ts, l.environment, "v" + l.version, l.level || "-", l.request_id || "-", l.text].join("\t");
          }).join("\n") + (lines.length ? "\n" : "");
          var a = document.createElement("a");
          a.href = URL.createObjectURL(new Blob([text], { type: ndjson ? "application/x-ndjson" : "text/plain" }));
          a.download = "logs-" + new Date().toISOString().replace(/[:.]/g, "-") + (ndjson ? ".ndjson" : ".txt");
          document.body.appendChild(a);
          a.click();
          a.remove();
          histStatus.textContent = lines.length + " lines downloaded";
        } catch (e) { histStatus.textContent = "Download failed: " + e.message; }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-testid=logs]");
    if (root) initPage(root);
  });
})();
