"""Flower, started as the Procfile and trad-flower.service start it, never runs open."""
from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from tests.processes import ROOT, free_port, http_status, procfile_command

CELERY = str(Path(sys.executable).with_name("celery"))


def test_flower_without_auth_refuses_to_start_even_without_the_procfile(e2e_db):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env["DATABASE_URL"] = e2e_db
    done = subprocess.run([CELERY, "-A", "workers.celery_app", "flower",
                           f"--port={free_port()}", "--address=127.0.0.1"],
                          cwd=ROOT, env=env, timeout=60, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "refusing to start without authentication" in done.stderr


def test_flower_with_basic_auth_asks_for_it(e2e_db):
    password = secrets.token_urlsafe(16)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": e2e_db, "FLOWER_PORT": str(port),
           "FLOWER_BASIC_AUTH": f"ops:{password}"}
    proc = subprocess.Popen(procfile_command("flower", env), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while http_status(url) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert http_status(url) == 401
        good = base64.b64encode(f"ops:{password}".encode()).decode()
        assert http_status(url, {"Authorization": f"Basic {good}"}) == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
