// A configuration's page: in and out of sample side by side, equity, trades, stage history,
// and a person's stage change (with the token's name in the audit trail).
"use strict";
(() => {
  const {api, el, fmt, when} = Trad;
  const $ = id => document.getElementById(id);
  const name = $("page").dataset.name;
  const base = `/api/v2/configurations/${encodeURIComponent(name)}`;
  let drawn = false;

  function render(c) {
    $("subtitle").textContent = `${c.strategy_name} v${c.strategy_version} on ${c.exchange} ${c.pair} ` +
      `${c.timeframe} · objective ${c.objective} · validation ${c.validation_method || "none"} · ` +
      `trained by job ` ;
    $("subtitle").append(el("a", {href: "/jobs/" + c.job_id}, c.job_id.slice(0, 10)),
      ` · updated ${when(c.updated_at)}`);
    const t = c.trust || {};
    const card = (k, v, cls) => el("div", {class: "card"}, el("div", {class: "k", text: k}),
      el("div", {class: "v " + (cls || ""), text: v}));
    $("cards").replaceChildren(card("stage", c.lifecycle_stage, c.lifecycle_stage),
      card("confidence", fmt(c.confidence, 3)), card("DSR", fmt(t.dsr, 3)),
      card("PSR out of sample", fmt(t.psr_oos, 3)), card("PBO", fmt(t.pbo, 3)),
      card("effective trials", fmt(t.effective_trials, 1)),
      ...(t.wfe !== null && t.wfe !== undefined ? [card("WFE", fmt(t.wfe, 2))] : []),
      card("lookahead", t.lookahead ? "found" : "none found", t.lookahead ? "failed" : "succeeded"));
    const reasons = ((c.validation && c.validation.reasons) || []).slice();
    if (t.lookahead) reasons.unshift("lookahead: " + t.lookahead);
    $("reasons").replaceChildren(...reasons.map(r => el("li", {text: r})));
    TradCharts.metrics($("metrics"), c.in_sample_metrics, c.out_of_sample_metrics,
      c.validation_method === "walk_forward" ? ["in sample (fold mean)", "out of sample (stitched)"] : null);
    $("params").replaceChildren(...Object.entries(c.params || {}).map(([k, v]) =>
      el("tr", {}, el("th", {text: k}), el("td", {text: String(v)}))));
    $("history").replaceChildren(...(c.stage_history || []).slice().reverse().map(h => el("tr", {},
      el("td", {text: when(h.ts)}), el("td", {text: h.from || ""}), el("td", {class: h.to, text: h.to}),
      el("td", {text: h.actor}), el("td", {text: h.forced ? "yes" : ""}),
      el("td", {text: h.reason, style: "white-space:normal"}))));
  }

  async function load() {
    const c = await api(base);
    render(c);
    if (drawn) return;
    drawn = true;
    const chart = await api(`${base}/chart?points=1500`).catch(e => { Trad.showError("error", e); return null; });
    if (chart) TradCharts.equity($("equity"), $("equity-legend"), chart);
    if (chart) await TradCharts.tradesTable(`${base}/trades`, $("trades"), $("trades-count"),
      $("trades-page"), $("trades-prev"), $("trades-next"));
    document.body.dataset.drawn = "1";
  }

  $("stage-form").addEventListener("submit", async event => {
    event.preventDefault();
    const out = $("stage-result");
    out.className = "muted";
    out.textContent = "…";
    try {
      const c = await api(`${base}/stage`, {json: {stage: $("stage-select").value,
        reason: $("stage-reason").value, force: $("stage-force").checked}});
      render(c);
      out.className = "succeeded";
      out.textContent = `moved to ${c.lifecycle_stage}`;
      $("stage-reason").value = "";
    } catch (e) {
      out.className = "err";
      out.textContent = e.status === 401 ? "the API needs a token: type it above" : e.message;
    }
  });

  const retry = () => load().then(() => Trad.showError("error", null)).catch(e => Trad.showError("error", e));
  document.addEventListener("trad:token", retry);
  retry();
})();
