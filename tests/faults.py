"""Servers a fault test owns: a Postgres cluster and a Redis of its own, on free ports, that
the test may stop, kill and restart without touching the shared ones; removed after."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.processes import free_port
from tests.services import service_missing


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def wait_until(condition, timeout: float, what: str, every: float = 0.05):
    """``condition()``'s first truthy value, polled; AssertionError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s: {what}")


class OwnPostgres:
    """``initdb`` in a temporary directory, ``pg_ctl`` to start, stop and restart it."""

    def __init__(self, listen: tuple[str, ...] = ()):
        """``listen``: addresses to take connections on besides 127.0.0.1 (test hosts')."""
        bindir = _postgres_bin()
        if bindir is None:
            service_missing("PostgreSQL's initdb and pg_ctl", FileNotFoundError("pg_ctl"))
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="trad-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        # initdb refuses to run as root: as root, the cluster belongs to the postgres user.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        self.listen = ("127.0.0.1", *listen)
        with open(self.data / "pg_hba.conf", "a") as hba:
            for address in listen:
                hba.write(f"host all all {address}/24 trust\n")

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bindir / program), *args],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> OwnPostgres:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses={','.join(self.listen)} "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", options, "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> float:
        """Stop (fast: every connection is cut) and start again; the outage in seconds."""
        began = time.monotonic()
        self.stop("fast")
        self.start()
        return time.monotonic() - began

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


class OwnRedis:
    """A ``redis-server`` on a free port with an append-only file fsynced on every write,
    as a broker that must not lose messages runs; ``crash`` kills it with SIGKILL."""

    def __init__(self, listen: tuple[str, ...] = ()):
        program = shutil.which("redis-server")
        if program is None:
            service_missing("redis-server", FileNotFoundError("redis-server"))
        self.program = program
        self.root = Path(tempfile.mkdtemp(prefix="trad-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.listen = ("127.0.0.1", *listen)

    def start(self) -> OwnRedis:
        import redis

        self.log = open(self.root / "log", "ab")
        self.proc = subprocess.Popen(
            [self.program, "--port", str(self.port), "--bind", *self.listen,
             "--protected-mode", "no" if len(self.listen) > 1 else "yes", "--dir", str(self.root),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def answers():
            try:
                return client.ping()
            except redis.exceptions.ConnectionError:
                assert self.proc.poll() is None, (self.root / "log").read_text()
                return False

        wait_until(answers, 30, "redis-server answers")
        client.close()
        return self

    def crash(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.log.close()

    def restart(self) -> float:
        """SIGKILL, then start again on the same port; the outage in seconds."""
        began = time.monotonic()
        self.crash()
        self.start()
        return time.monotonic() - began

    def remove(self) -> None:
        self.crash()
        shutil.rmtree(self.root, ignore_errors=True)
