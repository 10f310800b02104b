// Charts the job and configuration pages share: lightweight-charts for time series
// (equity, drawdown, candles with trades), uPlot for the search's plots.
"use strict";

const TradCharts = (() => {
  const LW = window.LightweightCharts;
  const {el, fmt, colours, msDate} = Trad;

  function lwChart(node, height) {
    node.replaceChildren();
    const chart = LW.createChart(node, {
      height: height || node.clientHeight || 320, autoSize: true,
      layout: {background: {color: "#ffffff"}, textColor: "#3a3a3c", fontSize: 11},
      grid: {vertLines: {color: "#f2f2f7"}, horzLines: {color: "#f2f2f7"}},
      timeScale: {timeVisible: true, secondsVisible: false, borderColor: "#e5e5ea"},
      rightPriceScale: {borderColor: "#e5e5ea"},
    });
    return chart;
  }

  // The winner's equity (one line per segment: in sample, out of sample, or each fold)
  // and its drawdown below, with the holdout's or each fold's start marked.
  function equity(node, legend, body) {
    const chart = lwChart(node);
    const n = body.t.length;
    const bySegment = body.segments.map(() => []);
    const drawdown = [];
    let previous = null;
    for (let i = 0; i < n; i++) {
      const point = {time: Math.floor(body.t[i] / 1000), value: body.equity[i]};
      const s = body.segment[i];
      // Each segment starts where the last ended, so the line is unbroken.
      if (bySegment[s].length === 0 && previous && previous.s !== s) bySegment[s].push(previous.point);
      bySegment[s].push(point);
      previous = {s, point};
      drawdown.push({time: point.time, value: 100 * body.drawdown[i]});
    }
    const lines = bySegment.map((points, s) => {
      const series = chart.addSeries(LW.LineSeries, {
        color: colours[s % colours.length], lineWidth: 2, priceLineVisible: false,
        title: body.segments[s].replaceAll("_", " ")});
      series.setData(points);
      return series;
    });
    const dd = chart.addSeries(LW.AreaSeries, {
      lineColor: "#d70015", topColor: "rgba(215,0,21,0.05)", bottomColor: "rgba(215,0,21,0.35)",
      lineWidth: 1, priceLineVisible: false, title: "drawdown %",
      priceFormat: {type: "custom", formatter: v => v.toFixed(1) + "%"}}, 1);
    dd.setData(drawdown);
    const panes = chart.panes();
    if (panes[1]) panes[1].setHeight(90);
    const marks = (body.marks || []).map(m => ({
      time: Math.floor(m.t / 1000), position: "aboveBar", shape: "arrowDown", color: "#3a3a3c",
      text: m.label}));
    const target = lines[Math.min(1, lines.length - 1)];
    if (marks.length && target) {
      // Markers sit on a series that has a point at their time: the segment that starts there.
      marks.forEach((m, i) => {
        const s = Math.min(lines.length - 1, body.segments.length > 2 ? i : 1);
        LW.createSeriesMarkers(lines[s], [m]);
      });
    }
    chart.timeScale().fitContent();
    if (legend) {
      legend.replaceChildren(...body.segments.map((name, s) =>
        el("span", {}, el("i", {style: `background:${colours[s % colours.length]}`}), name.replaceAll("_", " "))),
        el("span", {class: "muted", text: `${body.bars} bars, ${n} points drawn`}));
    }
    return chart;
  }

  // The candles, merged server-side, with each trade's entry and exit marked on the bar
  // that holds it.
  function candles(node, c, trades) {
    const chart = lwChart(node);
    const series = chart.addSeries(LW.CandlestickSeries, {
      upColor: "#34c759", downColor: "#ff3b30", borderVisible: false,
      wickUpColor: "#34c759", wickDownColor: "#ff3b30", priceLineVisible: false});
    const times = c.t.map(t => Math.floor(t / 1000));
    series.setData(times.map((time, i) => ({time, open: c.open[i], high: c.high[i], low: c.low[i], close: c.close[i]})));
    const barOf = ms => {           // the merged bar holding this time
      const s = Math.floor(ms / 1000);
      let lo = 0, hi = times.length - 1;
      if (hi < 0 || s < times[0]) return null;
      while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (times[mid] <= s) lo = mid; else hi = mid - 1; }
      return times[lo];
    };
    const markers = [];
    for (const t of trades.slice(-400)) {
      const entry = barOf(t.entry_time), exit = barOf(t.exit_time);
      const long = t.side > 0;
      if (entry !== null) markers.push({time: entry, position: long ? "belowBar" : "aboveBar",
        shape: long ? "arrowUp" : "arrowDown", color: long ? "#0a84ff" : "#bf5af2", text: long ? "L" : "S"});
      if (exit !== null) markers.push({time: exit, position: long ? "aboveBar" : "belowBar",
        shape: "circle", color: t.pnl >= 0 ? "#248a3d" : "#d70015", text: ""});
    }
    markers.sort((a, b) => a.time - b.time);
    LW.createSeriesMarkers(series, markers);
    chart.timeScale().fitContent();
    return chart;
  }

  function uplot(node, opts, data) {
    node.replaceChildren();
    const width = Math.max(280, node.clientWidth || 320);
    return new uPlot(Object.assign({width, height: 220, legend: {show: false},
      cursor: {drag: {x: true, y: false}}}, opts), data, node);
  }

  // The best objective value so far, a step at each trial that improved it.
  function bestCurve(node, best, objective) {
    const xs = best.number, ys = best.value;
    return uplot(node, {
      scales: {x: {time: false}},
      axes: [{label: "trial"}, {label: objective, size: 60}],
      series: [{}, {label: "best", stroke: "#0a84ff", width: 2,
                    paths: uPlot.paths.stepped({align: 1})}],
    }, [xs, ys]);
  }

  // The objective against one parameter over a sample of the trials.
  function slice(node, name, sample, objective) {
    const pairs = [];
    for (let i = 0; i < sample.number.length; i++) {
      const x = sample.params[i][name], y = sample.value[i];
      if (typeof x === "number" && y !== null) pairs.push([x, y]);
    }
    pairs.sort((a, b) => a[0] - b[0]);
    return uplot(node, {
      title: name,
      scales: {x: {time: false}},
      axes: [{label: name}, {label: objective, size: 60}],
      series: [{}, {stroke: "#0a84ff", fill: "rgba(10,132,255,0.35)", paths: () => null,
                    points: {show: true, size: 4, stroke: "#0a84ff", fill: "rgba(10,132,255,0.35)"}}],
    }, [pairs.map(p => p[0]), pairs.map(p => p[1])]);
  }

  // The mean objective over a grid of two parameters, on a canvas.
  function heatmap(canvas, title, a, b, sample) {
    const xs = [], ys = [], vs = [];
    for (let i = 0; i < sample.number.length; i++) {
      const p = sample.params[i], v = sample.value[i];
      if (typeof p[a] === "number" && typeof p[b] === "number" && v !== null) {
        xs.push(p[a]); ys.push(p[b]); vs.push(v);
      }
    }
    if (!vs.length) return false;
    const nb = 16, ctx = canvas.getContext("2d");
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const sum = new Float64Array(nb * nb), cnt = new Float64Array(nb * nb);
    const cell = (v, lo, hi) => hi > lo ? Math.min(nb - 1, Math.floor((v - lo) / (hi - lo) * nb)) : 0;
    xs.forEach((x, i) => { const k = cell(ys[i], y0, y1) * nb + cell(x, x0, x1); sum[k] += vs[i]; cnt[k]++; });
    let lo = Infinity, hi = -Infinity;
    for (let k = 0; k < nb * nb; k++) if (cnt[k]) { const m = sum[k] / cnt[k]; lo = Math.min(lo, m); hi = Math.max(hi, m); }
    const pad = 34, w = canvas.width - pad, h = canvas.height - pad;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    for (let r = 0; r < nb; r++) for (let c = 0; c < nb; c++) {
      const k = r * nb + c;
      if (!cnt[k]) continue;
      const f = hi > lo ? (sum[k] / cnt[k] - lo) / (hi - lo) : 0.5;
      ctx.fillStyle = `hsl(${Math.round(240 - 240 * f)}, 80%, ${45 + 10 * (1 - f)}%)`;
      ctx.fillRect(pad + c * w / nb, (nb - 1 - r) * h / nb, w / nb + 0.5, h / nb + 0.5);
    }
    ctx.fillStyle = "#3a3a3c";
    ctx.font = "11px system-ui";
    ctx.fillText(`${a}: ${fmt(x0, 2)} … ${fmt(x1, 2)}`, pad, canvas.height - 8);
    ctx.save(); ctx.translate(12, h); ctx.rotate(-Math.PI / 2);
    ctx.fillText(`${b}: ${fmt(y0, 2)} … ${fmt(y1, 2)}`, 0, 0); ctx.restore();
    title.textContent = `mean objective over ${a} × ${b} (blue low, red high: ${fmt(lo, 3)} … ${fmt(hi, 3)})`;
    return true;
  }

  function importance(node, values) {
    const entries = Object.entries(values);
    const top = entries.length ? entries[0][1] : 1;
    node.replaceChildren(...entries.map(([name, v]) => el("div", {class: "row"},
      el("span", {class: "name", text: name}),
      el("span", {class: "fill", style: `width:${Math.max(2, 180 * v / (top || 1))}px`}),
      el("span", {class: "muted", text: fmt(v, 3)}))));
  }

  const METRICS = [["sharpe_ratio", "Sharpe", 2], ["sortino_ratio", "Sortino", 2],
    ["net_profit", "net profit", 2], ["total_return", "total return", 4], ["cagr", "CAGR", 4],
    ["max_drawdown", "max drawdown", 4], ["num_trades", "trades", 0], ["win_rate", "win rate", 3],
    ["profit_factor", "profit factor", 2], ["exposure", "exposure", 3]];

  // In and out of sample side by side.
  function metrics(table, ins, oos, labels) {
    const [a, b] = labels || ["in sample", "out of sample"];
    const rows = METRICS.filter(([k]) => (ins && k in ins) || (oos && k in oos)).map(([k, name, d]) =>
      el("tr", {}, el("th", {text: name}), el("td", {class: "num", text: ins ? fmt(ins[k], d) : ""}),
        el("td", {class: "num", text: oos ? fmt(oos[k], d) : "-"})));
    table.replaceChildren(el("thead", {}, el("tr", {}, el("th"), el("th", {class: "num", text: a}),
      el("th", {class: "num", text: b}))), el("tbody", {}, ...rows));
  }

  function tradeRows(trades) {
    return trades.map(t => el("tr", {},
      el("td", {text: (t.segment || "").replaceAll("_", " ")}), el("td", {text: msDate(t.entry_time)}),
      el("td", {text: msDate(t.exit_time)}), el("td", {text: t.side > 0 ? "long" : "short"}),
      el("td", {class: "num", text: fmt(t.entry_price, 4)}), el("td", {class: "num", text: fmt(t.exit_price, 4)}),
      el("td", {class: "num " + (t.pnl >= 0 ? "succeeded" : "failed"), text: fmt(t.pnl, 2)}),
      el("td", {class: "num", text: fmt(t.fees, 2)}), el("td", {text: t.exit_reason})));
  }

  // A paged trades table, newest first, from a trades route.
  async function tradesTable(route, tbody, count, pageLabel, prev, next, perPage) {
    const size = perPage || 50;
    const first = await Trad.api(`${route}?per_page=1`);
    const total = first.total;
    count.textContent = first.trades_total > total
      ? `(${total} shown of ${first.trades_total}: the latest)` : `(${total})`;
    const pages = Math.max(1, Math.ceil(total / size));
    let page = 1;   // page 1 is the newest
    async function show() {
      // The route pages oldest first: the newest page is its last one.
      const server = pages - page + 1;
      const body = total ? await Trad.api(`${route}?page=${server}&per_page=${size}`) : {trades: []};
      tbody.replaceChildren(...tradeRows(body.trades.slice().reverse()));
      pageLabel.textContent = `page ${page} of ${pages}`;
      prev.disabled = page <= 1; next.disabled = page >= pages;
    }
    prev.onclick = () => { page = Math.max(1, page - 1); show(); };
    next.onclick = () => { page = Math.min(pages, page + 1); show(); };
    await show();
    return total;
  }

  return {equity, candles, bestCurve, slice, heatmap, importance, metrics, tradesTable};
})();
