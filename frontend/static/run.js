// The run page: the log and the state, live over /ws/runs/<id>/ (the backlog first, then each
// line as the worker writes it); the steps table is re-read from the API when the state or
// the current step changes. Reconnects with ?after=<last seq>, so no line shows twice.
(function () {
  "use strict";
  const card = document.getElementById("run");
  if (!card) return;
  const runId = card.dataset.runId;
  const log = document.getElementById("log");
  const live = document.getElementById("live");
  const stateEl = document.getElementById("run-state");
  const reasonEl = document.getElementById("run-reason");
  const stepsEl = document.getElementById("steps");
  const terminal = new Set(["succeeded", "failed", "canceled"]);
  let lastSeq = 0;
  let lastStep = null;
  let state = card.dataset.state;

  function showActions() {
    document.querySelectorAll("form[data-when]").forEach((form) => {
      form.hidden = !form.dataset.when.split(" ").includes(state);
    });
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      td.appendChild(span);
    } else {
      td.textContent = text;
    }
    return td;
  }

  async function refreshSteps() {
    const response = await fetch(`/api/v1/runs/${runId}/`, { credentials: "same-origin" });
    if (!response.ok) return;
    const run = await response.json();
    stepsEl.replaceChildren(
      ...run.steps.map((step) => {
        const tr = document.createElement("tr");
        tr.dataset.step = step.name;
        tr.append(
          cell(step.name),
          cell(step.state, `state state-${step.state}`),
          cell(step.exit_code === null ? "" : String(step.exit_code)),
          cell(step.duration_ms === null ? "" : `${Math.round(step.duration_ms)} ms`),
        );
        return tr;
      }),
    );
  }

  function addLines(lines) {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const fragment = document.createDocumentFragment();
    for (const line of lines) {
      if (line.seq <= lastSeq) continue;
      lastSeq = line.seq;
      const div = document.createElement("div");
      div.className = `line ${line.stream}`;
      div.dataset.seq = line.seq;
      div.textContent = line.text;
      fragment.appendChild(div);
      if (line.step !== lastStep) {
        lastStep = line.step;
        refreshSteps();
      }
    }
    log.appendChild(fragment);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function setState(message) {
    state = message.state;
    card.dataset.state = state;
    stateEl.textContent = state;
    stateEl.className = `state state-${state}`;
    reasonEl.textContent = message.reason || "";
    showActions();
    refreshSteps();
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/runs/${runId}/?after=${lastSeq}`);
    socket.onopen = () => { live.textContent = "live"; delay = 500; };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "lines") addLines(message.lines);
      else if (message.type === "state") setState(message);
    };
    socket.onclose = () => {
      live.textContent = terminal.has(state) ? "" : "reconnecting…";
      if (!terminal.has(state)) setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
    };
  }

  showActions();
  connect(500);
})();
