"""The Procfile's web process as an operator meets it: refuses bad settings in one line,
keeps tokens out of its access log, and comes back on the same port after its master is
killed outright."""
from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from tests.processes import ROOT, Gunicorn, http_status, procfile_command

SECRET = secrets.token_urlsafe(24)
TOKENS = {"TRAD_API_TOKENS": f"ops:{SECRET}"}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_bad_settings_stop_the_web_process_with_one_line_each(e2e_db):
    env = {**os.environ, "DATABASE_URL": e2e_db, "TRAD_BIND": "127.0.0.1:0",
           "TRAD_WATCHDOG_INTERVAL_S": "-1", "TRAD_API_TOKENS": "nameless"}
    done = subprocess.run(procfile_command("web", env), cwd=ROOT, env=env, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("trad: ")]
    assert lines == ["trad: TRAD_API_TOKENS entry 1 has no name: write name:secret (the name "
                     "is who acts in the audit trail), e.g. alice:<secret>",
                     "trad: TRAD_WATCHDOG_INTERVAL_S must be above 0, got '-1'"], done.stderr
    assert "Traceback" not in done.stderr
    env.pop("TRAD_WATCHDOG_INTERVAL_S")
    env.pop("TRAD_API_TOKENS")
    done = subprocess.run(procfile_command("web", env), cwd=ROOT, env=env, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "trad: no TRAD_API_TOKENS" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_access_log_never_prints_a_token(e2e_db):
    web = Gunicorn(e2e_db, workers=1, extra_env=TOKENS)
    try:
        web.wait_ready()
        basic = base64.b64encode(f"{SECRET}:x".encode()).decode()
        assert http_status(web.url + "/api/v2/strategies", {"Authorization": f"Basic {basic}"}) == 401
        assert http_status(web.url + "/api/v2/strategies", {"Authorization": f"Bearer {SECRET}"}) == 200
        _until(lambda: web.output().count('"GET /api/v2/strategies HTTP/1.1"') >= 2, 10,
               "both requests in the access log")
        log = web.output()
        assert SECRET not in log and basic not in log
        assert '"GET /api/v2/strategies HTTP/1.1" 401' in log
    finally:
        web.stop()


def test_a_killed_master_takes_its_workers_and_a_restart_gets_the_port(e2e_db):
    first = Gunicorn(e2e_db, workers=2, extra_env=TOKENS)
    try:
        first.wait_ready()
        _until(lambda: len(_children(first.proc.pid)) == 2, 30, "two gunicorn workers")
        workers = _children(first.proc.pid)
        os.kill(first.proc.pid, signal.SIGKILL)   # the master alone: no goodbye to its workers
        first.proc.wait(timeout=10)
        _until(lambda: not any(_alive(w) for w in workers), 10, "the orphaned workers exit")
        started = time.monotonic()
        second = Gunicorn(e2e_db, workers=1, extra_env=TOKENS, port=first.port)
        try:
            second.wait_ready(timeout=30)
            print(f"restarted on port {first.port} in {time.monotonic() - started:.2f} s")
            assert http_status(second.url + "/healthz") == 200
        finally:
            second.stop()
    finally:
        first.stop()


def test_each_worker_warms_up_before_its_first_request_and_says_when_it_cannot(e2e_db):
    web = Gunicorn(e2e_db, workers=2, extra_env=TOKENS).wait_ready()
    try:
        _until(lambda: web.log_path.read_text().count("web worker warmed") == 2, 30,
               "both workers warmed")
        assert "warm-up incomplete" not in web.log_path.read_text()
    finally:
        web.stop()
    # A broker out of reach: the worker starts anyway, says so once, and serves.
    web = Gunicorn(e2e_db, workers=1, extra_env={
        **TOKENS, "CELERY_BROKER_URL": "redis://127.0.0.1:9/0"}).wait_ready()
    try:
        _until(lambda: "warm-up incomplete" in web.log_path.read_text(), 30, "the warning")
        log = web.log_path.read_text()
        assert log.count("web warm-up incomplete error=OperationalError") == 1, log
        assert "web worker warmed" not in log and "Traceback" not in log
        assert http_status(web.url + "/healthz") == 200
    finally:
        web.stop()
