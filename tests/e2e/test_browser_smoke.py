"""The vendored chart libraries load and draw in a real headless Chromium, without errors.

A local http.server serves app/web's static files at /static/ (the paths Flask serves
them at) and one page that draws a uPlot line chart and a lightweight-charts candlestick
chart with markers, a line and an area series. Set TRAD_SMOKE_SCREENSHOT=/tmp/smoke.png
to keep a screenshot.
"""
from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest


WEB = Path(__file__).resolve().parents[2] / "app" / "web"
LWC = "/static/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.js"
UPLOT_JS = "/static/vendor/uplot-1.6.32/uPlot.iife.min.js"
UPLOT_CSS = "/static/vendor/uplot-1.6.32/uPlot.min.css"

SMOKE_HTML = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chart smoke</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{UPLOT_CSS}">
<script src="{UPLOT_JS}"></script>
<script src="{LWC}"></script>
<style>body {{ margin: 10px; font: 13px sans-serif; }} #lwc, #uplot {{ width: 900px; }}</style>
</head><body>
<div id="lwc" style="height: 330px"></div>
<div id="uplot"></div>
<script>
  const t0 = 1700000000;  // UTCTimestamp: seconds (candle ts_ms / 1000)
  const candles = [], closes = [];
  let c = 100;
  for (let i = 0; i < 40; i++) {{
    const o = c; c = o + 4 * Math.sin(i / 3) + (i % 5) - 2;
    candles.push({{time: t0 + 3600 * i, open: o, close: c,
                  high: Math.max(o, c) + 1.5, low: Math.min(o, c) - 1.5}});
    closes.push({{time: t0 + 3600 * i, value: c}});
  }}

  const LC = LightweightCharts;
  const chart = LC.createChart(document.getElementById("lwc"), {{
    width: 900, height: 330, layout: {{background: {{color: "#ffffff"}}}}}});
  const candle = chart.addSeries(LC.CandlestickSeries, {{
    upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
    wickUpColor: "#26a69a", wickDownColor: "#ef5350"}});
  candle.setData(candles);
  const markers = LC.createSeriesMarkers(candle, [
    {{time: candles[8].time, position: "belowBar", color: "#2962ff", shape: "arrowUp", text: "B"}},
    {{time: candles[20].time, position: "aboveBar", color: "#e91e63", shape: "arrowDown", text: "S"}},
  ]);
  const line = chart.addSeries(LC.LineSeries, {{color: "#ff9800", lineWidth: 2}});
  line.setData(closes.map(p => ({{time: p.time, value: p.value + 6}})));
  const area = chart.addSeries(LC.AreaSeries, {{
    lineColor: "#7b1fa2", topColor: "rgba(123,31,162,0.4)", bottomColor: "rgba(123,31,162,0)"}},
    1);  // pane 1: its own pane below the candles
  area.setData(closes.map(p => ({{time: p.time, value: p.value - 100}})));
  chart.timeScale().fitContent();

  const xs = closes.map(p => p.time), ys = closes.map(p => p.value);
  const plot = new uPlot({{width: 900, height: 250, title: "uPlot",
    series: [{{}}, {{label: "close", stroke: "#0a84ff", width: 2}}]}},
    [xs, ys], document.getElementById("uplot"));

  // How many pixels, over all canvases under root, are within 8 of the colour #rrggbb.
  window.countColour = (root, hex) => {{
    const [r, g, b] = [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16));
    let n = 0;
    for (const cv of document.querySelectorAll(root + " canvas")) {{
      if (!cv.width || !cv.height) continue;
      const d = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
      for (let i = 0; i < d.length; i += 4)
        if (d[i + 3] > 200 && Math.abs(d[i] - r) < 8 && Math.abs(d[i + 1] - g) < 8
            && Math.abs(d[i + 2] - b) < 8) n++;
    }}
    return n;
  }};
  window.smoke = {{chart, candle, markers, line, area, plot}};
</script></body></html>
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/smoke.html":
            body = SMOKE_HTML.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.startswith("/static/"):
            super().do_GET()
        else:
            self.send_error(404)

    def log_message(self, format, *args):
        pass  # keep the test output quiet


@pytest.fixture
def static_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(WEB)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_vendored_charts_draw_without_errors(static_server, page, console_errors, tmp_path):
    page.goto(f"{static_server}/smoke.html")
    page.wait_for_function("() => window.smoke !== undefined")
    assert page.evaluate("typeof window.uPlot") == "function"
    assert page.evaluate("typeof window.LightweightCharts.createChart") == "function"

    # lightweight-charts draws on animation frames: wait for candles in both colours, the
    # line, the area's line (in its own pane) and the two markers' colours.
    for colour in ("#26a69a", "#ef5350", "#ff9800", "#7b1fa2", "#2962ff", "#e91e63"):
        page.wait_for_function(f"() => window.countColour('#lwc', '{colour}') > 20")
    assert page.evaluate("window.smoke.markers.markers().length") == 2
    assert page.evaluate("window.smoke.chart.panes().length") == 2
    assert page.evaluate("document.querySelectorAll('#lwc canvas').length") >= 2

    # uPlot: one sized canvas with the series drawn in its stroke colour.
    size = page.evaluate("(() => { const c = document.querySelector('#uplot .uplot canvas');"
                         " return c ? [c.width, c.height] : null; })()")
    assert size is not None and size[0] > 0 and size[1] > 0
    page.wait_for_function("() => window.countColour('#uplot', '#0a84ff') > 20")

    shot = tmp_path / "smoke.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    if os.environ.get("TRAD_SMOKE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["TRAD_SMOKE_SCREENSHOT"])
    assert console_errors == []
