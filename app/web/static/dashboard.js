// The dashboard: jobs and configurations, kept current by /api/v2/events.
"use strict";
(() => {
  const {el, fmt, when} = Trad;
  const jobs = new Map(), configs = new Map();
  const $ = id => document.getElementById(id);

  function jobRows(j) {
    const bar = el("span", {class: "bar"}, el("span"));
    bar.firstChild.style.width = Math.min(100, j.percentage) + "%";
    const v = j.verdict;
    const row = el("tr", {"data-job": j.job_id},
      el("td", {}, el("a", {href: "/jobs/" + j.job_id}, j.job_id.slice(0, 10))),
      el("td", {text: j.strategy}), el("td", {text: `${j.exchange} ${j.symbol} ${j.timeframe}`}),
      el("td", {text: j.optimizer}), el("td", {class: j.status, text: j.status}),
      el("td", {}, bar, " " + fmt(j.percentage, 1) + "%"),
      el("td", {class: "num", text: `${j.trials_done} / ${j.trials_total}`}),
      el("td", {class: "num", text: fmt(j.best_value, 4)}),
      el("td", {class: "num", text: v ? `${fmt(v.in_sample && v.in_sample.sharpe_ratio)} / ` +
        (v.out_of_sample ? fmt(v.out_of_sample.sharpe_ratio) : "-") : ""}),
      el("td", {class: v ? v.stage : "", text: v ? v.stage : ""}),
      el("td", {text: when(j.created_at)}));
    if (!j.error) return [row];
    // A failed job's message in plain sight, under its row.
    return [row, el("tr", {class: "error-row"}, el("td", {colspan: 11, text: j.error}))];
  }

  function configRow(c) {
    const oos = c.out_of_sample || {}, t = c.trust || {};
    const row = el("tr", {"data-config": c.name},
      el("td", {}, el("a", {href: "/configurations/" + encodeURIComponent(c.name)}, c.name)),
      el("td", {text: `${c.exchange} ${c.pair} ${c.timeframe}` + (c.synthetic ? " (synthetic)" : "")}),
      el("td", {class: "num", text: fmt(c.in_sample && c.in_sample.sharpe_ratio)}),
      el("td", {class: "num", text: c.in_sample ? c.in_sample.num_trades : ""}),
      el("td", {class: "num", text: fmt(oos.sharpe_ratio)}),
      el("td", {class: "num", text: oos.num_trades === undefined ? "" : oos.num_trades}),
      el("td", {class: "num", text: fmt(t.dsr)}), el("td", {class: "num", text: fmt(t.psr_oos)}),
      el("td", {class: "num", text: fmt(t.pbo)}), el("td", {class: "num", text: fmt(c.confidence, 3)}),
      el("td", {class: c.lifecycle_stage, text: c.lifecycle_stage}),
      el("td", {text: when(c.updated_at)}));
    const reasons = (c.validation && c.validation.reasons) || [];
    if (reasons.length) row.title = reasons.join("\n");
    return row;
  }

  function render() {
    const status = $("job-status").value, js = $("job-strategy").value.trim().toUpperCase();
    const shownJobs = [...jobs.values()]
      .filter(j => (!status || j.status === status) && (!js || j.strategy.includes(js)))
      .sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
    $("jobs").replaceChildren(...shownJobs.flatMap(jobRows));
    $("job-count").textContent = `${shownJobs.length} of ${jobs.size}`;
    const stage = $("config-stage").value, cs = $("config-strategy").value.trim().toUpperCase();
    const shown = [...configs.values()]
      .filter(c => (!stage || c.lifecycle_stage === stage) && (!cs || c.strategy_name.includes(cs)))
      .sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""));
    $("configs").replaceChildren(...shown.map(configRow));
    $("config-count").textContent = `${shown.length} of ${configs.size}`;
  }

  for (const id of ["job-status", "job-strategy", "config-stage", "config-strategy"]) {
    $(id).addEventListener("input", render);
  }

  Trad.follow("/api/v2/events", (kind, body) => {
    if (kind === "jobs") {
      if (body.snapshot) jobs.clear();
      for (const j of body.jobs) jobs.set(j.job_id, j);
    } else if (kind === "configurations") {
      if (body.snapshot) configs.clear();
      for (const c of body.configurations) configs.set(c.name, c);
    } else return;
    render();
  }, e => {
    $("live").className = "live " + (e ? "off" : "on");
    Trad.showError("error", e);
  });
})();
