"""The Procfile's processes, started for real by the tests: Celery workers, beat, gunicorn.

Each command is the Procfile's own line, its ``${VAR:-default}`` filled from the test's
environment, so a test runs what production runs (a worker gets only a name and
``--without-mingle --without-gossip`` added, so tests can ping it and start fast).
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
_VARIABLE = re.compile(r"\$\{(\w+)(?::([-?])([^}]*))?\}|\$(\w+)")


def procfile_command(process: str, env: dict) -> list[str]:
    """The Procfile's command for ``process``, its variables filled from ``env``, its
    program taken from this virtualenv."""
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                 if line.strip() and not line.startswith("#"))

    def fill(match):
        name, kind, default, bare = match.groups()
        value = env.get(name or bare)
        if value:
            return value
        if kind == "?":
            raise RuntimeError(f"the Procfile's {process} needs {name}: {default}")
        return default or ""

    argv = shlex.split(_VARIABLE.sub(fill, lines[process].strip()))
    program = BIN / argv[0]
    return [str(program) if program.exists() else argv[0], *argv[1:]]


class ChildProcess:
    """A child process in its own session, its output in a log file."""

    proc: subprocess.Popen
    log_path: Path

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL the whole process group: no goodbye."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.log.close()

    def wait_http(self, url: str, what: str, timeout: float = 60.0):
        """Returns self once ``url`` answers 200; fails early, with the log, if the
        process exits first."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout} s:\n{self.output()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.log.closed:
            self.log.close()


class Worker(ChildProcess):
    """A real `celery worker` process on this run's database and Redis prefix."""

    def __init__(self, db_url: str, concurrency: int = 2, queues: str = "trad.trials,trad.control",
                 extra_env: dict | None = None, wrap: list[str] | None = None):
        """``wrap``: a command the worker runs under (``ip netns exec HOST``: a worker host)."""
        self.name = f"trad-test-{uuid.uuid4().hex[:8]}@localhost"
        env = {**os.environ, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1",
               "TRAD_WORKER_QUEUES": queues, "TRAD_WORKER_CONCURRENCY": str(concurrency),
               "TRAD_LOG_LEVEL": "INFO", **(extra_env or {})}
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{self.name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*(wrap or []), *procfile_command("worker", env), "-n", self.name,
             "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> Worker:
        from workers.celery_app import celery_app

        return self._wait_ready(celery_app, timeout)

    def wait_ready_on(self, timeout: float = 90.0) -> Worker:
        """Ready, by its own word (its log's "ready." line): for a worker on a broker other
        than the run's own (a fault test's Redis), which this process has no app for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            if f"{self.name} ready." in self.output():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout} s:\n{self.output()}")

    def _wait_ready(self, app, timeout: float) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            if app.control.ping(destination=[self.name], timeout=0.5):
                return self
        raise RuntimeError(f"worker not ready after {timeout} s:\n{self.output()}")


class Beat(ChildProcess):
    """The `beat` process of the Procfile (the watchdog's schedule), its state in ``home``."""

    def __init__(self, home: Path, extra_env: dict | None = None):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TRAD_HOME": str(home),
               "TRAD_LOG_LEVEL": "INFO", **(extra_env or {})}
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"beat-{uuid.uuid4().hex[:8]}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(procfile_command("beat", env), cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)


def http_status(url: str, headers: dict | None = None, timeout: float = 10.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=timeout) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn(ChildProcess):
    """The `web` process of the Procfile on a free port."""

    def __init__(self, db_url: str, workers: int = 2, extra_env: dict | None = None,
                 port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1",
               "TRAD_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers),
               **(extra_env or {})}
        self.log_path = (Path(os.environ.get("TMPDIR", "/tmp"))
                         / f"gunicorn-{self.port}-{uuid.uuid4().hex[:6]}.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(procfile_command("web", env), cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def post(self, path: str, body: dict, token: str) -> dict:
        import json
        import urllib.request

        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def wait_ready(self, timeout: float = 60.0) -> Gunicorn:
        return self.wait_http(self.url + "/healthz", "gunicorn", timeout)
