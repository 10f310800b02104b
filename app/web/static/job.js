// A job's page: live progress, the search's plots, the winner's charts, trust and trades.
"use strict";
(() => {
  const {api, el, fmt, duration, when} = Trad;
  const $ = id => document.getElementById(id);
  const jobId = $("page").dataset.job;
  const base = `/api/v2/training/${jobId}`;
  let job = null, drawnFinal = false, lastPlot = 0, plotTimer = null;

  function show(id, on) { $(id).hidden = !on; }

  function rate(j) {
    if (!j.started_at || !j.trials_done) return null;
    const end = j.finished_at ? Date.parse(j.finished_at) : Date.now();
    const seconds = (end - Date.parse(j.started_at)) / 1000;
    return seconds > 0 ? j.trials_done / seconds : null;
  }

  function renderJob(j) {
    job = j;
    $("title").textContent = `${j.strategy} on ${j.exchange} ${j.symbol} ${j.timeframe}`;
    $("subtitle").textContent = `job ${j.job_id} · ${j.optimizer} · objective ${j.objective}` +
      ` · created ${when(j.created_at)}` + (j.data_start ? ` · data ${when(j.data_start)} … ${when(j.data_end)}` : "");
    $("status").textContent = j.status;
    $("status").className = "v " + j.status;
    $("trials").textContent = `${j.trials_done} / ${j.trials_total}`;
    const r = rate(j);
    $("rate").textContent = r === null ? "" : fmt(r, r < 10 ? 2 : 0);
    const left = j.trials_total - j.trials_done;
    $("eta").textContent = j.status === "running" && r ? duration(left / r)
      : (j.finished_at && j.started_at ? "took " + duration((Date.parse(j.finished_at) - Date.parse(j.started_at)) / 1000) : "");
    $("best").textContent = fmt(j.best_value, 4);
    $("bar").style.width = Math.min(100, j.percentage) + "%";
    show("cancel-card", j.status === "queued" || j.status === "running");
    if (j.error) { $("failure").textContent = `${j.status}: ${j.error}`; show("failure", true); }
    if (j.result && j.result.lifecycle_stage) renderTrust(j);
  }

  function renderTrust(j) {
    const res = j.result, t = res.trust || {};
    const card = (k, v, cls) => el("div", {class: "card"}, el("div", {class: "k", text: k}),
      el("div", {class: "v " + (cls || ""), text: v}));
    const dsr = (t.deflated_sharpe || {}).dsr, pbo = (t.pbo || {}).pbo;
    const look = t.lookahead;
    $("trust").replaceChildren(
      card("stage", res.lifecycle_stage, res.lifecycle_stage),
      card("confidence", fmt(res.confidence, 3)),
      card("DSR", fmt(dsr, 3)), card("PSR out of sample", fmt(t.psr_oos, 3)),
      card("PBO", fmt(pbo, 3)),
      card("effective trials", t.effective_trials === undefined ? "" : fmt(t.effective_trials, 1) +
        (t.n_trials ? ` of ${t.n_trials}` : "")),
      card("evidence", fmt(t.evidence, 3)),
      ...(t.wfe !== undefined && t.wfe !== null ? [card("WFE", fmt(t.wfe, 2))] : []),
      card("lookahead", look ? "found" : "none found", look ? "failed" : "succeeded"));
    const reasons = (res.reasons || []).slice();
    if (look && look.message) reasons.unshift("lookahead: " + look.message);
    $("reasons").replaceChildren(...reasons.map(r => el("li", {text: r})));
    show("trust-section", true);
    TradCharts.metrics($("metrics"), res.in_sample, res.out_of_sample);
  }

  async function drawSearch() {
    lastPlot = Date.now();
    const plot = await api(`${base}/trials/plot?points=2000`);
    if (!plot.trials) return;
    TradCharts.bestCurve($("best-curve"), plot.best_so_far, plot.objective);
    const names = Object.keys((plot.sample.params[0]) || {}).filter(
      k => plot.sample.params.some(p => typeof p[k] === "number"));
    const slices = $("slices");
    slices.replaceChildren(...names.map(n => el("div", {class: "panel", "data-param": n})));
    [...slices.children].forEach(node => TradCharts.slice(node, node.dataset.param, plot.sample, plot.objective));
    return {plot, names};
  }

  async function drawFinal() {
    if (drawnFinal) return;
    drawnFinal = true;
    const search = await drawSearch();
    const imp = await api(`${base}/importance`).catch(() => null);
    let pair = search ? search.names.slice(0, 2) : [];
    if (imp && Object.keys(imp.importance).length) {
      TradCharts.importance($("importance"), imp.importance);
      show("importance-panel", true);
      const ranked = Object.keys(imp.importance).filter(k => search.names.includes(k));
      if (ranked.length >= 2) pair = ranked.slice(0, 2);
    }
    if (search && pair.length === 2) {
      show("heatmap-panel", TradCharts.heatmap($("heatmap"), $("heatmap-title"), pair[0], pair[1], search.plot.sample));
    }
    const chart = await api(`${base}/chart?points=1500`).catch(e => { Trad.showError("error", e); return null; });
    if (!chart) return;
    show("equity-section", true);
    TradCharts.equity($("equity"), $("equity-legend"), chart);
    show("trades-section", true);
    const [candles, trades] = await Promise.all([
      api(`${base}/candles?points=1500`), api(`${base}/trades?per_page=1000&page=1`)]);
    // The markers: the latest trades (the route pages oldest first).
    let latest = trades.trades;
    if (trades.total > trades.per_page) {
      const last = Math.ceil(trades.total / trades.per_page);
      latest = (await api(`${base}/trades?per_page=1000&page=${last}`)).trades;
    }
    TradCharts.candles($("candles"), candles, latest);
    await TradCharts.tradesTable(`${base}/trades`, $("trades"), $("trades-count"), $("trades-page"),
                                 $("trades-prev"), $("trades-next"));
    document.body.dataset.drawn = "1";
  }

  function log(rows) {
    const box = $("log");
    const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    for (const r of rows) {
      box.append(el("div", {}, `${when(r.ts)}  ${r.stage.padEnd(10)} ${fmt(r.percentage, 1).padStart(5)}%  ${r.message}`));
    }
    if (atEnd) box.scrollTop = box.scrollHeight;
  }

  function onJob(j) {
    renderJob(j);
    if (j.status === "succeeded") drawFinal().catch(e => Trad.showError("error", e));
    else if (j.status === "running" && Date.now() - lastPlot > 2000) {
      clearTimeout(plotTimer);
      plotTimer = setTimeout(() => drawSearch().catch(() => {}), 300);
    } else if (j.status === "failed" || j.status === "cancelled") {
      drawSearch().catch(() => {});
      document.body.dataset.drawn = "1";
    }
  }

  $("cancel").addEventListener("click", async () => {
    try { onJob(await api(`${base}/cancel`, {method: "POST"})); }
    catch (e) { Trad.showError("error", e); }
  });

  Trad.follow(`/api/v2/events?job=${jobId}`, (kind, body) => {
    if (kind === "job") onJob(body);
    else if (kind === "progress") log(body.progress);
  }, e => {
    $("live").className = "live " + (e ? "off" : "on");
    Trad.showError("error", e);
  });
})();
