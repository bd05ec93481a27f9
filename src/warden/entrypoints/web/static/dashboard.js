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
  function connect() {
    const query = document.body.dataset.query || "";  // "?account=NAME" with several accounts
    const source = new EventSource("/api/v1/stream" + (query ? query + "&" : "?") + "backlog=0");
    source.onopen = () => { live.textContent = "live"; live.className = "pill on"; };
    source.onerror = () => { live.textContent = "reconnecting…"; live.className = "pill off"; };
    const fire = (e) => {
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
    if (e.detail.target.id === "positions") syncCharts();
    if (e.detail.target.id === "closed") syncEquity();
  });
  connect();
})();
