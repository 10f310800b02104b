// What every page shares: the token, API calls, the event stream, formatting.
"use strict";

const Trad = (() => {
  const tokenKey = "trad.token";

  function token() { return localStorage.getItem(tokenKey) || ""; }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token()) h.Authorization = "Bearer " + token();
    return h;
  }

  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || ("HTTP " + status));
      this.status = status;
      this.code = e.code;
    }
  }

  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    if (opts.json !== undefined) {
      opts.method = opts.method || "POST";
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    const response = await fetch(path, opts);
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // Server-sent events read with fetch (EventSource cannot send the Authorization header).
  // Reconnects after the server ends a stream or the network drops it.
  function follow(path, onEvent, onState) {
    let stopped = false;
    (async () => {
      while (!stopped) {
        try {
          const response = await fetch(path, {headers: headers(), cache: "no-store"});
          if (!response.ok) {
            let body = null;
            try { body = await response.json(); } catch (_) { body = null; }
            throw new ApiError(response.status, body);
          }
          if (onState) onState(null);
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          let buffer = "";
          for (;;) {
            const {value, done} = await reader.read();
            if (done || stopped) break;
            buffer += value;
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              const block = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              let kind = "message", data = "";
              for (const line of block.split("\n")) {
                if (line.startsWith("event: ")) kind = line.slice(7);
                else if (line.startsWith("data: ")) data += line.slice(6);
              }
              if (data) onEvent(kind, JSON.parse(data));
            }
          }
        } catch (e) {
          if (onState) onState(e);
          if (e.status === 401 || e.status === 404) {
            await waitForToken();
            continue;
          }
        }
        await new Promise(r => setTimeout(r, 1000));
      }
    })();
    return () => { stopped = true; };
  }

  let tokenWaiters = [];
  function waitForToken() { return new Promise(r => tokenWaiters.push(r)); }

  function tokenBox() {
    const box = document.getElementById("token");
    if (!box) return;
    box.value = token();
    box.addEventListener("change", () => {
      localStorage.setItem(tokenKey, box.value.trim());
      const waiters = tokenWaiters;
      tokenWaiters = [];
      waiters.forEach(w => w());
      document.dispatchEvent(new Event("trad:token"));
    });
  }

  function fmt(x, digits) {
    if (x === null || x === undefined || Number.isNaN(x)) return "";
    return Number(x).toFixed(digits === undefined ? 2 : digits);
  }
  function pct(x, digits) { return x === null || x === undefined ? "" : fmt(100 * x, digits === undefined ? 1 : digits) + "%"; }
  function when(iso) { return (iso || "").slice(0, 19).replace("T", " "); }
  function msDate(ms) { return new Date(ms).toISOString().slice(0, 16).replace("T", " "); }
  function duration(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return "";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function showError(target, e) {
    const box = typeof target === "string" ? document.getElementById(target) : target;
    if (!box) return;
    box.textContent = e ? (e.status === 401 ? "the API needs a token: type it above" : e.message) : "";
  }

  // A colour for segment i of an equity line: in sample, out of sample, then folds.
  const colours = ["#0a84ff", "#ff9f0a", "#30b0c7", "#bf5af2", "#34c759", "#ff375f"];

  return {api, follow, tokenBox, fmt, pct, when, msDate, duration, el, showError, colours,
          headers, token};
})();

document.addEventListener("DOMContentLoaded", Trad.tokenBox);
