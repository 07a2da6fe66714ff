// The Code tab's logs panel: the function's lines in the chosen environment, live, the draft's
// runs only (version 0) or every version. Opens its socket when the panel is first opened.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var panel = document.querySelector("[data-testid=ide-logs]");
    if (!panel || !window.StratusLogTail) return;
    var T = window.StratusLogTail;
    var env = panel.querySelector("[data-logs-env]");
    var draft = panel.querySelector("[data-logs-draft]");
    var stateBox = panel.querySelector("[data-logs-state]");
    var view = new T.LineView(panel.querySelector(".logs-view"), true);
    var client = null;
    function filters() {
      var f = { environment: env.value, backlog: 50 };
      if (draft.checked) f.version = 0;
      return f;
    }
    function start() {
      client = new T.LogTailClient(panel.dataset.ws, filters(), {
        state: function (s) { stateBox.textContent = s === "live" ? "· live" : "· " + s; },
        backlog: function (m) { view.reset(); view.add(m.lines); },
        lines: function (m) { view.add(m.lines); },
        dropped: function (m) { stateBox.textContent = "· " + m.count + " lines not shown (" + m.reason + ")"; },
        error: function (m) { stateBox.textContent = "· " + m.message; },
      });
      client.open();
    }
    panel.addEventListener("toggle", function () { if (panel.open && !client) start(); });
    function refilter() {
      if (!client) return;
      var f = filters();
      delete f.backlog;
      client.setFilters(f, 50);
    }
    env.addEventListener("change", refilter);
    draft.addEventListener("change", refilter);
  });
})();
