"""Horizontal scaling shown on one machine: three worker hosts, each a network namespace
the test makes (``ip netns`` with a veth pair) and removes, reaching a Postgres and a Redis
of the test's own over their links. A job spread over the three ends with exactly n
trials, each host's metrics are read over its own address, and a host cut off mid-job
(its link down) is recovered from by the other two: its chunks come back through the
workers' liveness (workers/liveness.py), not after the visibility timeout."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.request

import pytest
from sqlalchemy import create_engine, text

from app.db import market_data as md
from app.db.migrate import upgrade
from app.db.session import dispose_engines, session_scope
from tests.conftest import random_candles
from tests.faults import OwnPostgres, OwnRedis, wait_until
from tests.plugins import write_plugins
from tests.processes import Gunicorn, Worker
from tests.services import service_missing
from tests.steps import FIVE_MIN as STEP
from tests.steps import START

HOSTS = 3
NET = "10.231"
METRICS_PORT = 9811
SECRET = secrets.token_urlsafe(24)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Hosts:
    """``trad-hN`` namespaces; host N is 10.231.N.2, the machine is 10.231.N.1 to it."""

    def __init__(self, n: int):
        self.tag = secrets.token_hex(2)
        self.names = [f"trad-{self.tag}-h{i}" for i in range(1, n + 1)]
        self.made: list[str] = []

    def link(self, i: int) -> str:
        return f"tr{self.tag}v{i}"

    def make(self) -> Hosts:
        for i, name in enumerate(self.names, start=1):
            ip("netns", "add", name)
            self.made.append(name)
            ip("link", "add", self.link(i), "type", "veth", "peer", "name", "eth0", "netns", name)
            ip("addr", "add", f"{NET}.{i}.1/24", "dev", self.link(i))
            ip("link", "set", self.link(i), "up")
            for args in (("addr", "add", f"{NET}.{i}.2/24", "dev", "eth0"),
                         ("link", "set", "eth0", "up"), ("link", "set", "lo", "up")):
                ip("netns", "exec", name, "ip", *args)
        return self

    def machine_address(self, i: int) -> str:
        return f"{NET}.{i}.1"

    def address(self, i: int) -> str:
        return f"{NET}.{i}.2"

    def cut(self, i: int) -> None:
        ip("link", "set", self.link(i), "down")

    def mend(self, i: int) -> None:
        ip("link", "set", self.link(i), "up")

    def remove(self) -> None:
        for name in self.made:   # the veth pair goes with its namespace
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@pytest.fixture
def hosts():
    if shutil.which("ip") is None or os.geteuid() != 0:
        service_missing("network namespaces (ip netns, as root)", PermissionError("ip netns"))
    h = Hosts(HOSTS)
    try:
        h.make()
    except subprocess.CalledProcessError as exc:
        h.remove()
        service_missing("network namespaces (ip netns, as root)", RuntimeError(exc.stderr))
    yield h
    h.remove()


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(trad_\w+?)(\{[^}]*\})? (\S+)$", line)
        if match:
            out[match.group(1)] = out.get(match.group(1), 0.0) + float(match.group(3))
    return out


def call(web, method, path, body=None):
    request = urllib.request.Request(
        web.url + path, data=None if body is None else json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_a_job_spread_over_three_hosts_survives_one_cut_off(hosts, tmp_path):
    listen = tuple(hosts.machine_address(i) for i in range(1, HOSTS + 1))
    (tmp_path / "plugins").mkdir()
    plugins = str(write_plugins(tmp_path / "plugins"))
    pg, broker = OwnPostgres(listen=listen), OwnRedis(listen=listen)
    web, workers = None, []
    try:
        pg.start()
        broker.start()
        upgrade(pg.url)
        with session_scope(pg.url) as s:
            md.upsert_candles(s, "binanceus", "BTC/USDT", "5m",
                              random_candles(2000, seed=4, start_ms=START, step_ms=STEP))
        # Limits well above the run's short test ones: SLOW's finish takes seconds, and a
        # cut-off host's chunks must come back by liveness, long before visibility (600 s).
        common = {"PYTHONPATH": plugins, "TRAD_REDIS_PREFIX": "", "TRAD_TEST_SLOW_TRIAL_S": "0.4",
                  "TRAD_TASK_SOFT_LIMIT_S": "240", "TRAD_TASK_HARD_LIMIT_S": "300",
                  "TRAD_VISIBILITY_TIMEOUT_S": "600"}
        web = Gunicorn(pg.url, workers=1, extra_env={
            **common, "CELERY_BROKER_URL": broker.url, "TRAD_API_TOKENS": f"ops:{SECRET}"})
        for i in range(1, HOSTS + 1):
            there = hosts.machine_address(i)
            workers.append(Worker(
                f"postgresql+psycopg2://postgres@{there}:{pg.port}/postgres", concurrency=1,
                wrap=["ip", "netns", "exec", hosts.names[i - 1]],
                extra_env={**common, "CELERY_BROKER_URL": f"redis://{there}:{broker.port}/0",
                           "TRAD_WORKER_METRICS_PORT": str(METRICS_PORT),
                           "TRAD_METRICS_BIND": hosts.address(i)}))
        web.wait_ready()
        for w in workers:
            w.wait_ready_on()
        n = 39   # SLOW's whole space, 0.4 s a trial on the hosts: about 8 chunks of 5
        job = call(web, "POST", "/api/v2/training/start", {
            "strategy": "SLOW", "symbol": "BTC/USDT", "exchange": "binanceus",
            "timeframe": "5m", "optimizer": "random", "lookback_days": 5,
            "n_iterations": n, "min_trades": 0, "seed": 2})
        metrics = [f"http://{hosts.address(i)}:{METRICS_PORT}/metrics"
                   for i in range(1, HOSTS + 1)]

        def ran(i: int) -> float:
            return scrape(metrics[i]).get("trad_chunks_total", 0.0)

        # Every host takes part before one is cut off: each has run a chunk, and host 2
        # holds another when its link goes down.
        wait_until(lambda: all(ran(i) >= 1 for i in range(HOSTS)), 60, "a chunk on every host")
        taken = lambda: len(re.findall(r"Task trad\.run_trials\[[^]]+\] received",  # noqa: E731
                                       workers[1].output()))
        wait_until(lambda: taken() > ran(1), 30, "host 2 to hold a chunk")
        hosts.cut(2)
        cut_at = time.monotonic()

        def status() -> str:
            return call(web, "GET", f"/api/v2/training/{job['job_id']}")["status"]

        wait_until(lambda: status() in ("succeeded", "failed", "cancelled"), 120,
                   "the job to end with host 2 cut off")
        recovered = time.monotonic() - cut_at
        done = call(web, "GET", f"/api/v2/training/{job['job_id']}")
        assert done["status"] == "succeeded", done["error"]
        engine = create_engine(pg.url)
        with engine.connect() as c:
            numbers = [r[0] for r in c.execute(text(
                "SELECT number FROM trials WHERE job_id = :j ORDER BY number"),
                {"j": job["job_id"]})]
        engine.dispose()
        assert numbers == list(range(n))
        restored = sum(scrape(metrics[i]).get("trad_recoveries_total", 0.0) for i in (0, 2))
        assert restored >= 1
        print(f"job done {recovered:.1f} s after host 2 was cut off; chunks by host "
              f"{[ran(i) for i in (0, 2)]} (+ host 2 before the cut)")
        hosts.mend(2)
        wait_until(lambda: ran(1) >= 1, 30, "host 2's metrics again once its link is back")
    finally:
        if web is not None:
            web.stop()
        for w in workers:
            w.kill()
        dispose_engines()
        pg.remove()
        broker.remove()
