// warden dashboard: the event stream drives htmx refreshes; lightweight-charts draws prices and PnL.
(function () {
  "use strict";
  const LWC = window.LightweightCharts;
  const kinds = JSON.parse(document.body.dataset.kinds || "[]");
  const live = document.getElementById("live");
  const toast = document.getElementById("toast");
  const theme = {
    layout: { background: { color: "#171b21" }, textColor: "#8a93a0" },
    grid: { vertLines: { color: "#20262e" }, horzLines: { color: "#20262e" } },
    timeScale: { timeVisible: true, secondsVisible: true },
    autoSize: true,
  };

  // -- the event stream ------------------------------------------------------------------------
  // A browser's EventSource reconnects by itself after a dropped connection, but gives up for good
  // on an answer that is not 200 (a 503 while the account's engine restarts, a 401 once signed
  // out): then a new one is opened, every RETRY ms, from the last event seen.
  const RETRY = 2000;
  let lastId = "";
  let stream = null;
  function connect() {
    const query = document.body.dataset.query || "";  // "?account=NAME" with several accounts
    const from = lastId ? "after=" + encodeURIComponent(lastId) : "backlog=0";
    const source = new EventSource("/api/v1/stream" + (query ? query + "&" : "?") + from);
    stream = source;
    source.onopen = () => { live.textContent = "live"; live.className = "pill on"; };
    source.onerror = () => {
      live.textContent = "reconnecting…"; live.className = "pill off";
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, RETRY);
    };
    const fire = (e) => {
      if (e.lastEventId) lastId = e.lastEventId;
      htmx.trigger(document.body, "warden-event");
      try { onEvent(JSON.parse(e.data)); } catch (err) { /* a comment or keep-alive */ }
    };
    kinds.forEach((kind) => source.addEventListener(kind, fire));
  }

  // -- errors from actions ---------------------------------------------------------------------
  document.body.addEventListener("htmx:responseError", (e) => {
    let text = "request failed";
    try { const body = JSON.parse(e.detail.xhr.responseText); text = (body.field ? body.field + ": " : "") + body.message; } catch (err) { /* not JSON */ }
    toast.textContent = text;
    setTimeout(() => { toast.textContent = ""; }, 6000);
  });

  // -- no answer at all ------------------------------------------------------------------------
  // warden itself stopped (a crash, a reboot, a restart): its port refuses connections, nothing
  // answers, and htmx swaps nothing on a request that got no answer, so the last state stayed on
  // the page as if live — the engine "ready", every stop "resting". The status says warden does
  // not answer (since when), no stop is shown resting, and an action says it is not known to be
  // done. The next answer swaps the real state back in.
  // warden may also hang rather than stop (its event loop blocked): its port still takes
  // connections, nothing fails, and a request without a time limit waits for ever while the page
  // shows the last state. A read of the page's parts unanswered for READ_TIMEOUT ms is no answer.
  // Actions (close, kill) keep no limit: abandoning one would not stop it, only hide its outcome.
  const READ_TIMEOUT = 8000;
  document.body.addEventListener("htmx:configRequest", (e) => {
    if (e.detail.verb === "get") e.detail.timeout = READ_TIMEOUT;
  });
  const unanswered = (e) => {
    const elt = e.detail.elt;
    const since = new Date().toLocaleTimeString();
    if (elt && elt.id === "status") {
      if (elt.querySelector(".unanswered")) return; // still the first failure's time
      const p = document.createElement("p");
      p.className = "down unanswered";
      p.setAttribute("role", "alert");
      p.textContent = "warden does not answer (since " + since + "): nothing below is live; " +
        "check the exchange for your positions and stops.";
      elt.replaceChildren(p);
      // A hung warden keeps its event stream connected, only silent: the pill would say "live".
      live.textContent = "no answer"; live.className = "pill off";
    } else if (elt && elt.id === "positions") {
      elt.querySelectorAll(".stop").forEach((stop) => {
        if (stop.dataset.resting === "unknown") return;
        stop.dataset.resting = "unknown";
        const row = stop.closest("[data-position]");
        if (row) row.dataset.resting = "unknown";
        stop.className = "stop bad";
        stop.textContent = stop.textContent.split(" · ")[0] + " · unknown: warden does not answer";
      });
    } else if (elt && elt.closest && !elt.closest("#closed, #events")) {
      toast.textContent = "no answer from warden: not known whether it was done; check the status";
      setTimeout(() => { toast.textContent = ""; }, 6000);
    }
  };
  document.body.addEventListener("htmx:sendError", unanswered);
  document.body.addEventListener("htmx:timeout", unanswered);

  // -- kill and flatten ------------------------------------------------------------------------
  // POST /api/v1/kill {"flatten": true}: htmx would send a form, the API wants a JSON boolean.
  // Confirmed first (it closes every position); the answer stays on the page until the next one.
  const outcome = document.getElementById("kill-outcome");

  function say(state, lines) {
    outcome.hidden = false;
    outcome.dataset.outcome = state; // done | partial | error
    outcome.className = state === "done" ? "up" : "down";
    outcome.replaceChildren(...lines.map(([text, cls]) => {
      const span = document.createElement("span");
      span.textContent = text;
      if (cls) span.className = cls;
      return span;
    }));
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function flattened(reply, where) {
    const closed = reply.closed || [];
    const failed = Object.entries(reply.failed || {});
    const named = closed.map((p) => p.symbol + " " + p.side + " (PnL " + p.realized_pnl + ")").join(", ");
    const pnl = closed.reduce((sum, p) => sum + Number(p.realized_pnl || 0), 0);
    const leftover = reply.cancelled_orders || 0;
    const lines = [[
      "Kill switch on for " + where + " (" + new Date().toLocaleTimeString() + "): " +
      (closed.length ? "closed " + plural(closed.length, "position") + ": " + named +
        "; realized PnL " + Math.round(pnl * 1e8) / 1e8 : "no open position to close") +
      (leftover ? "; cancelled " + plural(leftover, "leftover warden order") : "") +
      ". New entries are refused until resume. ",
      "",
    ]];
    failed.forEach(([id, why]) => lines.push(["NOT closed: " + id + ": " + why, "failed"]));
    return { state: failed.length ? "partial" : "done", lines };
  }

  async function killAndFlatten(button) {
    const where = button.dataset.scope;
    const shown = document.querySelectorAll("#positions [data-position]").length;
    const question = "Kill " + where + " AND FLATTEN?\n\nThis closes EVERY open position at market " +
      "(reduce-only; " + plural(shown, "position") + " shown now) and cancels every warden order. " +
      "New entries stay refused until resume.";
    if (!window.confirm(question)) return;
    button.disabled = true;
    say("pending", [["Flattening " + where + "…", ""]]);
    const query = document.body.dataset.query || "";
    try {
      const response = await fetch("/api/v1/kill" + query, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ flatten: true, reason: "dashboard: kill and flatten" }),
        credentials: "same-origin",
      });
      let body = null;
      try { body = await response.json(); } catch (err) { /* not JSON */ }
      if (!response.ok) {
        const why = body && body.message ? (body.field ? body.field + ": " : "") + body.message : "HTTP " + response.status;
        say("error", [["Kill and flatten failed: " + why, ""]]);
      } else if (body && body.accounts) { // every account at once (no ?account= on several)
        const each = Object.entries(body.accounts).map(([name, one]) => flattened(one, "account " + name));
        say(each.every((o) => o.state === "done") ? "done" : "partial", each.flatMap((o) => o.lines));
      } else {
        const o = flattened(body, where);
        say(o.state, o.lines);
      }
    } catch (err) {
      say("error", [["Kill and flatten: no answer from warden (" + err + "); check the status above.", ""]]);
    } finally {
      button.disabled = false;
      htmx.trigger(document.body, "warden-event");
    }
  }

  document.querySelectorAll("[data-flatten]").forEach((button) =>
    button.addEventListener("click", () => killAndFlatten(button)));

  // -- per-position charts ---------------------------------------------------------------------
  const charts = new Map(); // position id -> {chart, price, stop, lines, box, lastStop}
  const now = () => Math.floor(Date.now() / 1000);

  function line(series, price, color, title) {
    if (!price) return null;
    return series.createPriceLine({ price: Number(price), color, lineWidth: 1, lineStyle: 2, axisLabelVisible: true, title });
  }

  function chartFor(el) {
    const id = el.dataset.position;
    let c = charts.get(id);
    if (c) return c;
    const box = document.createElement("div");
    box.className = "chart-box";
    box.dataset.chart = id;
    box.innerHTML = "<h3></h3><div class=\"chart\"></div>";
    box.querySelector("h3").textContent = el.dataset.symbol + " " + el.dataset.side + " · " + id;
    document.getElementById("charts").appendChild(box);
    const chart = LWC.createChart(box.querySelector(".chart"), theme);
    const price = chart.addSeries(LWC.LineSeries, { color: "#4c8dff", lineWidth: 2, title: "mark" });
    const stop = chart.addSeries(LWC.LineSeries, { color: "#ef4f4f", lineWidth: 2, lineType: 1, title: "stop" });
    c = { chart, price, stop, box, lines: [], levels: "", lastTime: 0, lastStopTime: 0 };
    charts.set(id, c);
    return c;
  }

  function update(el) {
    const c = chartFor(el);
    const d = el.dataset;
    const levels = [d.entry, d.tp1, d.tp2].join("|");
    if (levels !== c.levels) {
      c.lines.forEach((l) => c.price.removePriceLine(l));
      c.lines = [line(c.price, d.entry, "#8a93a0", "entry"), line(c.price, d.tp1, "#2fbf71", "TP1"),
                 line(c.price, d.tp2, "#2fbf71", "TP2")].filter(Boolean);
      c.levels = levels;
    }
    const t = Math.max(now(), c.lastTime);
    const mark = d.last || d.entry; // no tick since the fill yet: the entry is the price
    if (mark) c.price.update({ time: t, value: Number(mark) });
    if (d.stop) c.stop.update({ time: t, value: Number(d.stop) });
    c.lastTime = t;
  }

  function onEvent(ev) {
    if (ev.kind === "stop_moved" && ev.data && ev.data.to && charts.has(ev.position_id)) {
      const c = charts.get(ev.position_id);
      const t = Math.max(now(), c.lastTime);
      c.stop.update({ time: t, value: Number(ev.data.to) });
      c.lastTime = t;
    }
  }

  function syncCharts() {
    const open = new Set();
    document.querySelectorAll("#positions [data-position]").forEach((el) => {
      open.add(el.dataset.position);
      update(el);
    });
    for (const [id, c] of charts) {
      if (!open.has(id)) { c.chart.remove(); c.box.remove(); charts.delete(id); }
    }
  }

  // -- the realized PnL curve ------------------------------------------------------------------
  let equity = null;
  function syncEquity() {
    const data = document.getElementById("equity-data");
    if (!data) return;
    if (!equity) {
      const chart = LWC.createChart(document.getElementById("equity"), theme);
      equity = chart.addSeries(LWC.AreaSeries, { lineColor: "#4c8dff", topColor: "rgba(76,141,255,.3)", bottomColor: "rgba(76,141,255,0)" });
    }
    let total = 0, last = 0;
    const points = [];
    const closed = JSON.parse(data.textContent);
    if (closed.length) { last = closed[0].t - 60; points.push({ time: last, value: 0 }); }
    closed.forEach((p) => {
      total += Number(p.pnl);
      const t = Math.max(p.t, last + 1);
      points.push({ time: t, value: Math.round(total * 1e8) / 1e8 });
      last = t;
    });
    equity.setData(points);
  }

  document.body.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target.id === "status" && e.detail.xhr.status === 200 && stream && stream.readyState === EventSource.OPEN) {
      live.textContent = "live"; live.className = "pill on"; // answered again, the stream still open
    }
    if (e.detail.target.id === "positions") syncCharts();
    if (e.detail.target.id === "closed") syncEquity();
  });
  connect();
})();
