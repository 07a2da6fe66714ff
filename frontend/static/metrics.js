// The function's Metrics tab (frontend/templates/monitoring/metrics.html): fetches the
// metrics API (GET /api/v1/functions/{id}/metrics, columnar series) and draws it with uPlot
// (frontend/build/vendor/uplot). Four charts share one cursor (uPlot's cursor.sync); the
// binding timeline's deploys, release steps and rollbacks are drawn on each as vertical
// lines and listed under the charts; while a release runs, its canary and stable versions
// are drawn side by side from group_by=version. The range, environment and auto refresh
// change without reloading (the URL keeps them, so it can be bookmarked).
(function () {
  "use strict";
  const root = document.querySelector('[data-testid="metrics"]');
  const configNode = document.getElementById("metrics-config");
  if (!root || !configNode || typeof uPlot === "undefined") return;
  const config = JSON.parse(configNode.textContent);
  const form = root.querySelector("form");
  const status = root.querySelector('[data-testid="metrics-status"]');
  const errorBox = root.querySelector('[data-testid="metrics-error"]');
  const releaseCard = document.querySelector('[data-testid="metrics-release"]');
  const MARK_COLOURS = { deploy: "#3552d8", release: "#b54708", rollback: "#b42318" };
  const SYNC = uPlot.sync("stratus-metrics");
  const charts = {};
  let timer = null;
  let inflight = null;

  const markerList = document.createElement("ul");
  markerList.className = "metrics-markers";
  markerList.dataset.testid = "metrics-markers";
  markerList.setAttribute("aria-label", "Timeline in this range");
  root.appendChild(markerList);

  function state() {
    const data = new FormData(form);
    return {
      range: data.get("range") || "1h",
      environment: data.get("environment") || "",
      auto: data.get("auto") === "on",
    };
  }

  function remember(s) {
    const url = new URL(window.location.href);
    url.searchParams.set("range", s.range);
    if (s.environment) url.searchParams.set("environment", s.environment);
    else url.searchParams.delete("environment");
    window.history.replaceState(null, "", url);
  }

  function window_(range) {
    const r = config.ranges[range] || config.ranges["1h"];
    const end = Math.floor(Date.now() / 1000);
    return { start: end - r.seconds, end: end, step: r.step };
  }

  function query(params) {
    const q = new URLSearchParams();
    q.set("start", new Date(params.start * 1000).toISOString());
    q.set("end", new Date(params.end * 1000).toISOString());
    q.set("step", String(params.step));
    if (params.environment) q.set("environment", params.environment);
    if (params.names) q.set("names", params.names);
    if (params.group_by) q.set("group_by", params.group_by);
    return config.api + "?" + q.toString();
  }

  async function getJSON(url, signal) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, signal });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : "The metrics could not be read (" + response.status + ").";
      throw new Error(message);
    }
    return body;
  }

  function visibleMarkers(s, start, end) {
    return config.markers.filter(
      (m) => m.ts >= start && m.ts < end && (!s.environment || m.environment === s.environment)
    );
  }

  // A uPlot plugin drawing the markers as vertical dashed lines over the plot area.
  function markerPlugin(getMarkers) {
    return {
      hooks: {
        draw: [
          (u) => {
            const ctx = u.ctx;
            const top = u.bbox.top;
            const height = u.bbox.height;
            ctx.save();
            ctx.lineWidth = Math.max(1, devicePixelRatio);
            ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
            for (const m of getMarkers()) {
              const x = Math.round(u.valToPos(m.ts, "x", true));
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              ctx.strokeStyle = MARK_COLOURS[m.kind] || "#667085";
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, top + height);
              ctx.stroke();
            }
            ctx.restore();
          },
        ],
      },
    };
  }

  function plotWidth(node) {
    return Math.max(240, Math.floor(node.getBoundingClientRect().width));
  }

  const TIME_AXIS = { stroke: "#667085", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#e3e6ea" } };
  function valueAxis(scale, side, label) {
    return {
      scale: scale,
      side: side,
      label: label,
      labelSize: label ? 18 : 0,
      stroke: "#667085",
      size: 52,
      grid: { show: side === 3, stroke: "#eef0f3" },
      ticks: { stroke: "#e3e6ea" },
    };
  }

  // The x scale spans the asked window (the current minute and a marker in it included),
  // not just the first and last timestamps.
  function draw(key, series, data, getMarkers, axes, scales, span) {
    const figure = document.querySelector('[data-chart="' + key + '"]');
    const node = figure.querySelector(".metrics-plot");
    const opts = {
      width: plotWidth(node),
      height: 190,
      cursor: { sync: { key: SYNC.key, setSeries: false }, drag: { x: false, y: false } },
      legend: { live: true },
      scales: Object.assign({ x: { time: true, range: () => span } }, scales || {}),
      axes: [TIME_AXIS].concat(axes || [valueAxis("y", 3)]),
      series: [{}].concat(series),
      plugins: [markerPlugin(getMarkers)],
    };
    // A lone point between gaps (a minute that ran after idle ones) has no line to show it:
    // draw the points while there are few enough to see them apart.
    if (data[0].length <= 200) {
      for (const sr of opts.series.slice(1)) sr.points = { show: true, size: 5 };
    }
    if (charts[key]) charts[key].destroy();
    node.textContent = "";
    charts[key] = new uPlot(opts, data, node);
    figure.dataset.points = String(data[0].length);
  }

  const line = (label, stroke, extra) =>
    // uPlot's default points: drawn while they have room, so a lone point still shows.
    Object.assign({ label: label, stroke: stroke, width: 1.5, spanGaps: false }, extra || {});

  function drawMain(body, s) {
    const t = body.timestamps;
    const v = body.series;
    const markers = () => visibleMarkers(s, body.start, body.end);
    const span = [body.start, body.end];
    draw("traffic", [line("invocations", "#3552d8"), line("errors", "#b42318")], [t, v.invocations, v.errors], markers, null, null, span);
    draw(
      "duration",
      [line("p50", "#067647"), line("p90", "#b54708"), line("p99", "#b42318")],
      [t, v.duration_p50, v.duration_p90, v.duration_p99],
      markers,
      null,
      null,
      span
    );
    draw("starts", [line("cold starts", "#6941c6"), line("throttles", "#b54708")], [t, v.cold_starts, v.throttles], markers, null, null, span);
    const memory = v.peak_memory_kb.map((kb) => (kb == null ? null : Math.round(kb / 102.4) / 10));
    draw(
      "capacity",
      [line("peak concurrency", "#3552d8"), line("peak memory MB", "#067647", { scale: "mb" })],
      [t, v.peak_concurrency, memory],
      markers,
      [valueAxis("y", 3), valueAxis("mb", 1)],
      { mb: { auto: true } },
      span
    );
    showMarkers(markers());
  }

  function showMarkers(list) {
    markerList.textContent = "";
    for (const m of list) {
      const li = document.createElement("li");
      li.dataset.kind = m.kind;
      const swatch = document.createElement("span");
      swatch.className = "metrics-mark mark-" + m.kind;
      const time = document.createElement("time");
      const at = new Date(m.ts * 1000);
      time.dateTime = at.toISOString();
      time.title = at.toISOString();
      time.textContent = at.toLocaleString();
      li.append(swatch, " ", time, " " + m.label + " · " + m.environment);
      markerList.appendChild(li);
    }
    markerList.hidden = list.length === 0;
  }

  function sum(values) {
    return values.reduce((a, b) => a + (b || 0), 0);
  }

  function latest(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i];
    return null;
  }

  function fmt(value, unit) {
    return value == null ? "—" : (Math.round(value * 10) / 10).toLocaleString() + (unit || "");
  }

  function drawRelease(release, body, s) {
    const groups = body.groups.filter((g) => g.version === release.canary || g.version === release.stable);
    const caption = releaseCard.querySelector("[data-release-caption]");
    caption.textContent =
      "Release " + release.id + " in " + release.environment + ": canary v" + release.canary +
      (release.stable ? " vs stable v" + release.stable : "") + " (" + release.state.replace(/_/g, " ") + "), over the chosen range.";
    const tbody = releaseCard.querySelector("tbody");
    tbody.textContent = "";
    for (const g of groups) {
      const calls = sum(g.series.invocations);
      const role = g.version === release.canary ? "canary" : "stable";
      const cells = [
        "v" + g.version + " (" + role + ")",
        calls.toLocaleString(),
        calls ? fmt((100 * sum(g.series.errors)) / calls, " %") : "—",
        fmt(latest(g.series.duration_p50), " ms"),
        fmt(latest(g.series.duration_p99), " ms"),
        sum(g.series.cold_starts).toLocaleString(),
      ];
      const tr = document.createElement("tr");
      tr.dataset.version = String(g.version);
      cells.forEach((text, i) => {
        const cell = document.createElement(i ? "td" : "th");
        if (i) cell.className = "num";
        else cell.scope = "row";
        cell.textContent = text;
        tr.appendChild(cell);
      });
      tbody.appendChild(tr);
    }
    const colours = { canary: "#b54708", stable: "#3552d8" };
    const t = body.timestamps;
    const markers = () => visibleMarkers({ environment: release.environment }, body.start, body.end);
    const errorSeries = [];
    const errorData = [t];
    const latencySeries = [];
    const latencyData = [t];
    for (const g of groups) {
      const role = g.version === release.canary ? "canary" : "stable";
      errorSeries.push(line("v" + g.version + " " + role, colours[role]));
      errorData.push(g.series.error_rate.map((r) => (r == null ? null : Math.round(r * 1000) / 10)));
      latencySeries.push(line("v" + g.version + " p50", colours[role], { dash: [4, 3] }));
      latencyData.push(g.series.duration_p50);
      latencySeries.push(line("v" + g.version + " p99", colours[role]));
      latencyData.push(g.series.duration_p99);
    }
    releaseCard.hidden = false; // before drawing: a hidden card has no width to size the charts
    const span = [body.start, body.end];
    draw("release-errors", errorSeries, errorData, markers, null, null, span);
    draw("release-p99", latencySeries, latencyData, markers, null, null, span);
    releaseCard.dataset.versions = groups.map((g) => g.version).join(",");
  }

  async function refresh() {
    const s = state();
    remember(s);
    if (inflight) inflight.abort();
    const controller = new AbortController();
    inflight = controller;
    const w = window_(s.range);
    status.textContent = "Loading…";
    try {
      const body = await getJSON(query(Object.assign({ environment: s.environment }, w)), controller.signal);
      errorBox.hidden = true;
      drawMain(body, s);
      const release = config.releases.find((r) => !s.environment || r.environment === s.environment);
      if (release) {
        const names = "invocations,errors,error_rate,duration_p50,duration_p99,cold_starts";
        const url = query(Object.assign({ environment: release.environment, names: names, group_by: "version" }, w));
        drawRelease(release, await getJSON(url, controller.signal), s);
      } else if (releaseCard) {
        releaseCard.hidden = true;
      }
      status.textContent =
        "Updated " + new Date().toLocaleTimeString() + " · " + body.timestamps.length + " points of " +
        (body.step >= 3600 ? body.step / 3600 + " h" : body.step / 60 + " min");
      root.dataset.range = s.range;
      root.dataset.loaded = String(Date.now());
    } catch (err) {
      if (err.name === "AbortError") return;
      errorBox.textContent = err.message;
      errorBox.hidden = false;
      status.textContent = "";
    } finally {
      if (inflight === controller) inflight = null;
    }
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = null;
    if (state().auto) {
      timer = setInterval(() => {
        if (!document.hidden) refresh();
      }, config.refresh_s * 1000);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    refresh();
  });
  form.addEventListener("change", (event) => {
    if (event.target.name === "auto") schedule();
    else refresh();
  });
  // The Apply button is for reading without JavaScript: here every change applies itself.
  const apply = form.querySelector('[data-testid="metrics-apply"]');
  if (apply) apply.hidden = true;
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const key of Object.keys(charts)) {
        const node = document.querySelector('[data-chart="' + key + '"] .metrics-plot');
        charts[key].setSize({ width: plotWidth(node), height: 190 });
      }
    }, 100);
  });
  refresh();
  schedule();
})();
