"""A real Prometheus scraping the Procfile's web and worker processes, on the shipped
scrape config (deploy/prometheus/prometheus.yml, its targets and token file pointed at
this stack): a job's trials arrive in Prometheus, counted exactly.

Prometheus is Debian's ``prometheus`` package (``make test`` installs it;
``$TRAD_PROMETHEUS``, default /usr/bin/prometheus). Without it the test skips, and fails
under CI=true.
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from app.db import market_data as md
from app.db.session import session_scope
from tests.conftest import random_candles
from tests.processes import ChildProcess, Gunicorn, Worker, free_port
from tests.services import system_program
from tests.steps import FIVE_MIN, START

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
SECRET = secrets.token_urlsafe(24)
SCRAPER_SECRET = secrets.token_urlsafe(24)
# A series of its own, so that no other e2e test's candles change this job.
SERIES = ("binanceus", "ETH/USDT", "5m")
BODY = {"strategy": "SMA_CROSS", "exchange": SERIES[0], "symbol": SERIES[1],
        "timeframe": SERIES[2], "optimizer": "random", "lookback_days": 10, "n_iterations": 40,
        "min_trades": 1, "seed": 3, "run_validation": False}


def prometheus_binary() -> str:
    return system_program("TRAD_PROMETHEUS", "/usr/bin/prometheus", "Prometheus")


def scrape_config(home: Path, web_port: int, worker_port: int) -> Path:
    """The shipped config, scraping every second this stack's web (with a token file of
    its own) and worker; beat is not part of this stack. Its alert rules come along."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    token = home / "prometheus.token"
    token.write_text(SCRAPER_SECRET + "\n")
    targets = {"trad-web": f"127.0.0.1:{web_port}", "trad-worker": f"127.0.0.1:{worker_port}"}
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] not in targets:
            continue
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        job.pop("file_sd_configs", None)
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token)
        jobs.append(job)
    assert {job["job_name"] for job in jobs} == set(targets)
    config["scrape_configs"] = jobs
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", home / "alerts.yml")
    path = home / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Prometheus(ChildProcess):
    """``prometheus`` on a free 127.0.0.1 port, its data in ``home``."""

    def __init__(self, binary: str, config: Path, home: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "prometheus.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - open while the process runs
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            cwd=home, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def get(self, path: str, **params) -> dict:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        with urllib.request.urlopen(self.url + path + query, timeout=5) as answer:
            return json.loads(answer.read())

    def wait_ready(self, timeout: float = 60.0) -> Prometheus:
        return self.wait_http(self.url + "/-/ready", "prometheus", timeout)

    def query(self, expr: str) -> dict[str, float]:
        """An instant query: each series' labels (as JSON) -> value."""
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1])
                for r in answer["data"]["result"]}

    def targets(self) -> list[dict]:
        return [{k: t.get(k) for k in ("scrapePool", "scrapeUrl", "health", "lastError")}
                for t in self.get("/api/v1/targets")["data"]["activeTargets"]]


def call(web: Gunicorn, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(web.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {SECRET}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_a_jobs_trials_reach_a_real_prometheus(e2e_db):
    binary = prometheus_binary()
    with session_scope(e2e_db) as s:
        md.upsert_candles(s, *SERIES, random_candles(3000, seed=11, start_ms=START,
                                                     step_ms=FIVE_MIN, vol=0.004))
    home = Path(tempfile.mkdtemp(prefix="trad-prometheus-"))
    worker_port = free_port()
    web = Gunicorn(e2e_db, extra_env={
        "TRAD_API_TOKENS": f"e2e:{SECRET},prometheus:{SCRAPER_SECRET}"})
    worker = Worker(e2e_db, concurrency=2, extra_env={
        "TRAD_WORKER_METRICS_PORT": str(worker_port), "TRAD_METRICS_BIND": "127.0.0.1"})
    prometheus = None
    try:
        web.wait_ready()
        worker.wait_ready()
        prometheus = Prometheus(binary, scrape_config(home, web.port, worker_port), home)
        prometheus.wait_ready()

        submitted = call(web, "POST", "/api/v2/training/start", BODY)
        deadline = time.monotonic() + 120
        job = call(web, "GET", submitted["status_url"])
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"job still {job['status']} after 120 s"
            time.sleep(0.2)
            job = call(web, "GET", submitted["status_url"])
        assert job["status"] == "succeeded", (job["error"], worker.output())
        assert job["trials_done"] == BODY["n_iterations"]

        # Scraped every second: wait for the worker's count to arrive, never longer.
        wanted = {
            "sum(trad_trials_total)": lambda v: v == [float(BODY["n_iterations"])],
            'up{job="trad-web"}': lambda v: v == [1.0],
            'up{job="trad-worker"}': lambda v: v == [1.0],
            "trad_http_requests_total": lambda v: len(v) > 0,
            'sum(trad_jobs{status="succeeded"})': lambda v: v and v[0] >= 1,
            'sum(trad_job_duration_seconds_count{outcome="succeeded"})': lambda v: v == [1.0],
        }
        deadline = time.monotonic() + 60
        while True:
            got = {expr: sorted(prometheus.query(expr).values()) for expr in wanted}
            missing = {expr: got[expr] for expr, ok in wanted.items() if not ok(got[expr])}
            if not missing:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"not in Prometheus after 60 s: {missing}\n"
                            f"targets: {prometheus.targets()}\n"
                            f"prometheus:\n{prometheus.output()}\n"
                            f"worker:\n{worker.output()}", pytrace=False)
            time.sleep(0.5)
        # The shipped alert rules loaded into the real server too.
        rules = prometheus.get("/api/v1/rules")["data"]["groups"]
        assert sum(len(group["rules"]) for group in rules) > 0
    finally:
        if prometheus is not None:
            prometheus.stop()
        web.stop()
        worker.stop()
        shutil.rmtree(home, ignore_errors=True)
