"""The embedded default on every local core: `trad optimize --workers N` as a user runs it
(a subprocess, SQLite in a TRAD_HOME of its own, no broker). The same trials and the same
result on one process and on two; the chunks really run at the same time in two
processes; a helper killed mid-job loses nothing; Ctrl-C leaves no helper behind; a
mistake in the flag is one line and exit 2, before any work."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.plugins import write_plugins

TRAD = str(Path(sys.executable).with_name("trad"))
MARKET = ["--symbol", "BTC/USDT", "--exchange", "synthetic", "--timeframe", "1h"]


def _env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                        "REDIS_URL", "TRAD_ENV_FILE", "TRAD_API_TOKEN", "TRAD_LOCAL_WORKERS")}
    env.update(TRAD_HOME=str(home), **extra)
    return env


def _trad(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([TRAD, *args], capture_output=True, text=True, env=env,
                          cwd=env["TRAD_HOME"], timeout=timeout)


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> str:
    return str(write_plugins(tmp_path_factory.mktemp("plugins")))


@pytest.fixture
def home(tmp_path, plugins):
    """A fresh TRAD_HOME with 60 days of synthetic hourly candles."""
    path = tmp_path / "home"
    path.mkdir()
    env = _env(path, PYTHONPATH=plugins, TRAD_TEST_PID_DIR=str(tmp_path / "pids"))
    (tmp_path / "pids").mkdir()
    for args in (["db", "upgrade"], ["data", "synth", *MARKET[:2], "--timeframe", "1h",
                                     "--days", "60", "--seed", "5", "--start", "2024-01-01"]):
        done = _trad(env, *args)
        assert done.returncode == 0, done.stderr
    return env


def _start(env: dict, n: int, *args: str, **popen) -> subprocess.Popen:
    """WHERE_RUN over ``n`` trials on two processes, started, not waited for."""
    return subprocess.Popen([TRAD, "optimize", "--strategy", "WHERE_RUN", *MARKET, "--n-iterations",
                             str(n), "--min-trades", "0", "--workers", "2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=env["TRAD_HOME"], **popen)


def _trials(env: dict, job_id: str) -> list[tuple]:
    with sqlite3.connect(Path(env["TRAD_HOME"]) / "trad.sqlite3") as db:
        return db.execute("SELECT number, params, state, value FROM trials WHERE job_id = ? "
                          "ORDER BY number", (job_id,)).fetchall()


def _pids(env: dict) -> set[int]:
    return {int(p.name) for p in Path(env["TRAD_TEST_PID_DIR"]).iterdir()}


@pytest.mark.parametrize("request_args", [
    ["--strategy", "SMA_CROSS", "--optimizer", "random", "--n-iterations", "3000"],
    # Rounds asked in two parts: each part a chunk, asked and run where it lands.
    ["--strategy", "SMA_CROSS", "--optimizer", "bayesian", "--n-iterations", "120",
     "--batch-size", "40", "--sampler-parts", "2"],
], ids=["random", "bayesian-in-parts"])
def test_two_processes_store_the_same_trials_and_reach_the_same_result(home, request_args):
    jobs = {}
    for workers in ("1", "2"):
        done = _trad(home, "optimize", *request_args, *MARKET, "--min-trades", "1", "--seed",
                     "11", "--run-validation", "--workers", workers, "--json")
        assert done.returncode == 0, done.stderr
        jobs[workers] = json.loads(done.stdout)
    one, two = jobs["1"], jobs["2"]
    assert one["status"] == two["status"] == "succeeded"
    n = int(request_args[request_args.index("--n-iterations") + 1])
    assert one["trials_done"] == two["trials_done"] == n
    assert _trials(home, one["job_id"]) == _trials(home, two["job_id"])
    for key in ("best_params", "best_value", "in_sample", "out_of_sample", "lifecycle_stage",
                "confidence", "reasons"):
        assert one["result"][key] == two["result"][key], key
    # One configuration row: the second job found the same parameters and upserted it.
    assert one["result"]["configuration"] == two["result"]["configuration"]


def test_the_chunks_run_at_the_same_time_in_two_processes(home):
    # Each process's first trial waits until two processes have started one: with one
    # process doing every chunk the job fails (after a minute) instead.
    env = {**home, "TRAD_TEST_RENDEZVOUS": "2"}
    proc = _start(env, 400, "--seed", "3", "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    job = json.loads(out)
    assert job["status"] == "succeeded" and job["trials_done"] == 400, job.get("error")
    pids = _pids(home)
    assert len(pids) == 2 and proc.pid in pids, pids


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_helper_killed_mid_job_loses_no_trial(home):
    env = {**home, "TRAD_TEST_SLOW_TRIAL_S": "0.02"}
    proc = _start(env, 300, "--seed", "4", "--json")
    helper = _wait(lambda: next(iter(_pids(home) - {proc.pid}), None), 120,
                   "a helper process to run a trial")
    os.kill(helper, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    job = json.loads(out)
    assert job["status"] == "succeeded" and job["trials_done"] == 300
    assert [n for n, *_ in _trials(home, job["job_id"])] == list(range(300))
    assert "Traceback" not in err


def test_ctrl_c_stops_the_helpers_too(home):
    env = {**home, "TRAD_TEST_SLOW_TRIAL_S": "0.05"}
    # A session of its own, as a terminal's foreground job: Ctrl-C reaches the whole group.
    proc = _start(env, 400, start_new_session=True)
    helper = _wait(lambda: next(iter(_pids(home) - {proc.pid}), None), 120,
                   "a helper process to run a trial")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out == ""
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "marked cancelled" in err
    _wait(lambda: not _alive(helper), 30, f"helper {helper} to stop")


@pytest.mark.parametrize("args, env_extra, message", [
    (["--workers", "0"], {}, "--workers must be a whole number from 1 to 256"),
    (["--workers", "two"], {}, "argument --workers: invalid int value: 'two'"),
    ([], {"TRAD_LOCAL_WORKERS": "0.5"}, "TRAD_LOCAL_WORKERS must be a whole number"),
    (["--workers", "2"], {"CELERY_BROKER_URL": "memory://"},
     "--workers sets the embedded default's local processes"),
    (["--workers", "2", "--submit", "http://127.0.0.1:9"], {},
     "--workers is for a job run on this machine"),
])
def test_a_mistake_with_workers_is_one_line_and_exit_2_before_any_work(home, args, env_extra,
                                                                       message):
    done = _trad({**home, **env_extra}, "optimize", "--strategy", "SMA_CROSS", *MARKET,
                 "--n-iterations", "20", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    with sqlite3.connect(Path(home["TRAD_HOME"]) / "trad.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM training_jobs").fetchone() == (0,)
