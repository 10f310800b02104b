"""The research pages in a real headless Chromium, against gunicorn, a worker, Postgres and
Redis: a finished job's page draws its charts and trust numbers, a running job's page moves
without a reload, a failed job's page and the dashboard show its error, and a stage change
works with a token (and says what is missing without one)."""
from __future__ import annotations

import json
import os
import secrets
import time
import urllib.request

import pytest

from app.db import market_data as md
from app.db.session import session_scope
from tests.conftest import random_candles
from tests.plugins import write_plugins
from tests.processes import Gunicorn, Worker

SECRET = secrets.token_urlsafe(24)
STEP = 300_000
START = 1_700_000_100_000 // STEP * STEP
SHOTS = os.environ.get("TRAD_SCREENSHOTS")  # a folder to keep the pages' screenshots in


def call(web, method, path, body=None, token=SECRET):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(web.url + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_job(web, job_id, until=("succeeded", "failed", "cancelled"), timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = call(web, "GET", f"/api/v2/training/{job_id}")
        if job["status"] in until:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


def submit(web, **body):
    request = {"symbol": "BTC/USDT", "exchange": "binanceus", "timeframe": "5m",
               "optimizer": "random", "lookback_days": 20, "min_trades": 1, "seed": 3, **body}
    return call(web, "POST", "/api/v2/training/start", request)["job_id"]


@pytest.fixture(scope="module")
def stack(e2e_db, tmp_path_factory):
    with session_scope(e2e_db) as s:
        md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                          random_candles(21 * 288, seed=8, start_ms=START, step_ms=STEP, vol=0.004))
    plugins = str(write_plugins(tmp_path_factory.mktemp("plugins")))
    env = {"PYTHONPATH": plugins, "TRAD_TEST_SLOW_TRIAL_S": "0.3"}
    web = Gunicorn(e2e_db, extra_env={"TRAD_API_TOKENS": f"alice:{SECRET}", **env})
    worker = Worker(e2e_db, concurrency=2, extra_env=env)
    try:
        web.wait_ready()
        worker.wait_ready()
        finished = submit(web, strategy="SMA_CROSS", n_iterations=300, run_validation=True)
        failed = submit(web, strategy="EXPLODES", n_iterations=30, min_trades=0, lookback_days=1)
        jobs = {"finished": wait_job(web, finished), "failed": wait_job(web, failed)}
        assert jobs["finished"]["status"] == "succeeded", jobs["finished"]["error"]
        assert jobs["failed"]["status"] == "failed"
        yield web, jobs
    finally:
        web.stop()
        worker.stop()


@pytest.fixture
def signed_in(page, stack):
    web, _ = stack
    page.add_init_script(f"localStorage.setItem('trad.token', {json.dumps(SECRET)})")
    return page


def page_errors(errors: list[str]) -> list[str]:
    """The page's errors but the event stream a navigation away cut off (it is open for as
    long as the page is)."""
    return [e for e in errors if not ("/api/v2/events" in e and "ERR_ABORTED" in e)]


def shot(page, name, tmp_path):
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)
    return path


# How many distinct colours the chart's largest canvas holds: an empty chart has its
# background and grid only, a drawn line or candles add many more.
CANVAS_COLOURS = """sel => {
  const canvases = [...document.querySelectorAll(sel + ' canvas')];
  if (!canvases.length) return 0;
  const c = canvases.reduce((a, b) => a.width * a.height >= b.width * b.height ? a : b);
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4 * 7) seen.add(data[i] << 16 | data[i + 1] << 8 | data[i + 2]);
  return seen.size;
}"""


def test_a_finished_jobs_page_draws_its_equity_trust_numbers_and_trades(signed_in, stack,
                                                                        console_errors, tmp_path):
    web, jobs = stack
    job = jobs["finished"]
    page = signed_in
    page.goto(f"{web.url}/jobs/{job['job_id']}")
    page.wait_for_selector("body[data-drawn='1']")
    trust = job["result"]["trust"]
    cards = page.inner_text("#trust")
    assert f"{trust['deflated_sharpe']['dsr']:.3f}" in cards
    assert job["result"]["lifecycle_stage"] in cards
    if trust.get("psr_oos") is not None:
        assert f"{trust['psr_oos']:.3f}" in cards
    legend = page.inner_text("#equity-legend")
    assert "in sample" in legend and "out of sample" in legend and "points drawn" in legend
    assert page.evaluate(CANVAS_COLOURS, "#equity") > 20
    assert page.evaluate(CANVAS_COLOURS, "#candles") > 20
    assert page.evaluate(CANVAS_COLOURS, "#best-curve") > 5
    trades = call(web, "GET", f"/api/v2/training/{job['job_id']}/trades?per_page=1")
    assert trades["total"] > 0
    assert page.locator("#trades tr").count() == min(50, trades["total"])
    assert f"({trades['total']})" in page.inner_text("#trades-count")
    # In and out of sample side by side, as the API has them.
    metrics = page.inner_text("#metrics")
    assert f"{job['result']['in_sample']['sharpe_ratio']:.2f}" in metrics
    assert f"{job['result']['out_of_sample']['sharpe_ratio']:.2f}" in metrics
    assert page.locator("#slices .panel").count() >= 2
    assert page.locator("#importance .row").count() >= 2
    assert "succeeded" in page.inner_text("#log")
    shot(page, "job-finished", tmp_path)
    assert page_errors(console_errors) == []


def test_a_running_jobs_page_follows_it_without_a_reload(signed_in, stack, console_errors,
                                                         tmp_path):
    web, _ = stack
    job_id = submit(web, strategy="SLOW", n_iterations=39, min_trades=0, lookback_days=5)
    page = signed_in
    page.goto(f"{web.url}/jobs/{job_id}")
    page.wait_for_selector("#trials:not(:empty)")
    # Each value the trials card shows, recorded in the page; a reload would lose the record.
    page.evaluate("""() => {
      window.seen = new Set([document.getElementById('trials').textContent]);
      new MutationObserver(() => window.seen.add(document.getElementById('trials').textContent))
        .observe(document.getElementById('trials'), {childList: true, characterData: true, subtree: true});
    }""")
    page.wait_for_function("() => [...window.seen].some(t => /^([1-9]\\d*) \\/ 39$/.test(t) && t !== '39 / 39')",
                           timeout=60_000)
    page.wait_for_function("() => document.getElementById('status').textContent === 'succeeded'",
                           timeout=120_000)
    seen = page.evaluate("() => [...window.seen]")
    assert len(seen) >= 3 and "39 / 39" in seen, seen
    page.wait_for_selector("body[data-drawn='1']")
    assert page.evaluate(CANVAS_COLOURS, "#equity") > 20
    shot(page, "job-followed", tmp_path)
    assert page_errors(console_errors) == []


def test_a_failed_jobs_error_is_in_plain_sight_on_its_page_and_the_dashboard(
        signed_in, stack, console_errors, tmp_path):
    web, jobs = stack
    job = jobs["failed"]
    page = signed_in
    page.goto(f"{web.url}/jobs/{job['job_id']}")
    page.wait_for_selector("#failure:not([hidden])")
    text = page.inner_text("#failure")
    assert "strategy EXPLODES failed on trial" in text and "is too big" in text
    shot(page, "job-failed", tmp_path)
    page.goto(web.url + "/")
    row = page.locator(f"tr[data-job='{job['job_id']}'] + tr.error-row")
    row.wait_for()
    assert "strategy EXPLODES failed on trial" in row.inner_text()
    assert row.is_visible()
    assert page_errors(console_errors) == []


def test_the_dashboard_shows_a_new_job_and_filters_without_a_reload(signed_in, stack,
                                                                    console_errors, tmp_path):
    web, jobs = stack
    page = signed_in
    page.goto(web.url + "/")
    page.wait_for_selector(f"tr[data-job='{jobs['finished']['job_id']}']")
    page.evaluate("() => { window.marker = 1; }")
    job_id = submit(web, strategy="SMA_CROSS", n_iterations=40, seed=11)
    page.wait_for_selector(f"tr[data-job='{job_id}'] td.succeeded", timeout=60_000)
    assert page.evaluate("() => window.marker") == 1
    link = page.locator(f"tr[data-job='{job_id}'] a")
    assert link.get_attribute("href") == f"/jobs/{job_id}"
    page.select_option("#job-status", "failed")
    page.wait_for_function(f"() => !document.querySelector(\"tr[data-job='{job_id}']\")")
    assert page.locator(f"tr[data-job='{jobs['failed']['job_id']}']").count() == 1
    name = jobs["finished"]["result"]["configuration"]
    assert page.locator(f"tr[data-config='{name}'] a").get_attribute("href") == \
        f"/configurations/{name}"
    shot(page, "dashboard", tmp_path)
    assert page_errors(console_errors) == []


def test_a_stage_change_needs_the_token_and_lands_in_the_history_under_its_name(
        page, stack, console_errors, tmp_path):
    web, jobs = stack
    name = jobs["finished"]["result"]["configuration"]
    before = call(web, "GET", f"/api/v2/configurations/{name}")
    target = "RETIRED" if before["lifecycle_stage"] != "RETIRED" else "PAPER"
    page.goto(f"{web.url}/configurations/{name}")
    page.wait_for_selector("#error:not(:empty)")   # no token yet: it says so
    assert "token" in page.inner_text("#error")
    page.fill("#token", SECRET)
    page.dispatch_event("#token", "change")
    page.wait_for_selector("body[data-drawn='1']")
    assert page.evaluate(CANVAS_COLOURS, "#equity") > 20
    page.select_option("#stage-select", target)
    page.fill("#stage-reason", "browser test: retired by hand")
    page.check("#stage-force")
    page.click("#stage-submit")
    page.wait_for_selector("#stage-result.succeeded")
    assert f"moved to {target}" in page.inner_text("#stage-result")
    after = call(web, "GET", f"/api/v2/configurations/{name}")
    assert after["lifecycle_stage"] == target
    last = after["stage_history"][-1]
    assert (last["to"], last["actor"], last["reason"]) == (target, "alice",
                                                          "browser test: retired by hand")
    assert "alice" in page.inner_text("#history")
    shot(page, "configuration", tmp_path)
    # The 401 the page met before the token was typed is the only error it saw.
    assert all("401" in e for e in page_errors(console_errors)), console_errors
