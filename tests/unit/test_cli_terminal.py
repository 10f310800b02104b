"""`trad` at a terminal: live progress on stderr, Ctrl-C with the job's id and the command
that cancels it, a closed pipe ending quietly, --json in the HTTP API's shapes, and the
`strategies`, `jobs` and `configs stage` commands. Subprocesses run on the embedded
default (SQLite in a TRAD_HOME of the module's own, tasks in-process), as a user meets it."""
from __future__ import annotations

import codecs
import getpass
import io
import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.cli import main
from app.cli_progress import JobProgress
from app.config import load_settings
from app.strategies import all_strategies, get_strategy
from app.validation.lifecycle import STAGES

TRAD = str(Path(sys.executable).with_name("trad"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MARKET = ["--symbol", "BTC/USDT", "--exchange", "synthetic", "--timeframe", "1h"]

_SLOW = '''
import time

import numpy as np

from app.strategies.base import IntParam, Strategy


class Slow(Strategy):
    """In and out every ``period`` bars, a quarter of a second a run: a job that lasts."""

    name = "SLOW"
    space = (IntParam("period", 2, 40, default=5),)

    def positions(self, candles, params, cache):
        time.sleep(0.25)
        return (np.arange(len(candles)) // params["period"] % 2).astype(float)
'''


def _env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                        "REDIS_URL", "TRAD_ENV_FILE", "TRAD_API_TOKEN")}
    env.update(TRAD_HOME=str(home), COLUMNS="100", TERM="xterm", **extra)
    return env


def _trad(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TRAD, *args], capture_output=True, text=True, env=env,
                          cwd=env["TRAD_HOME"], timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A TRAD_HOME with 480 synthetic hourly candles, one finished SMA_CROSS job (its
    configuration REJECTED: noise), and the SLOW strategy plugin beside it."""
    root = tmp_path_factory.mktemp("terminal")
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "slow_strats.py").write_text(_SLOW)
    dist = plugins / "slow_strats-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-strats\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[trad.strategies]\nSLOW = slow_strats:Slow\n")
    path = root / "home"
    path.mkdir()
    env = _env(path, PYTHONPATH=str(plugins))
    for args in (["db", "upgrade"], ["data", "synth", "--symbol", "BTC/USDT", "--timeframe", "1h",
                                     "--days", "20", "--seed", "3", "--start", "2024-01-01"]):
        assert _trad(env, *args).returncode == 0
    done = _trad(env, "optimize", "--strategy", "SMA_CROSS", *MARKET, "--n-iterations", "20",
                 "--min-trades", "1", "--seed", "2", "--json")
    assert done.returncode == 0, done.stderr
    return SimpleNamespace(path=path, env=env, optimize=done,
                           settings=load_settings({"TRAD_HOME": str(path)}))


@pytest.fixture
def in_home(home, monkeypatch):
    """`main()` in this process, on the module's TRAD_HOME."""
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "TRAD_ENV_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAD_HOME", str(home.path))
    monkeypatch.chdir(home.path)
    return home


def _out(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- progress -----------------------------------------------------------------------------

class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _job(done: int, status: str = "running", **extra) -> dict:
    return {"job_id": "ab" * 16, "status": status, "strategy": "SMA_CROSS",
            "objective": "sharpe_ratio", "trials_done": done, "trials_total": 1000,
            "best_value": 1.23456 if done else None, **extra}


@pytest.fixture
def xterm(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "120")


def test_progress_line_shows_trials_rate_time_left_and_best_so_far(xterm):
    stream, clock = _Tty(), iter([0.0, 1.0, 2.0]).__next__
    progress = JobProgress(stream=stream, clock=clock)
    for done in (0, 100, 300):
        progress(_job(done))
    progress.close()
    last = ANSI.sub("", stream.getvalue()).split("\r")[-1]
    # 200 trials between the readings a second apart; 700 left at 200 a second.
    assert "300/1000" in last and "200 trials/s" in last and "ETA 0:04" in last
    assert "best sharpe_ratio 1.2346" in last and last.endswith("\n")


def test_progress_of_a_finished_job_is_rated_over_its_run_and_says_how_long(xterm):
    stream = _Tty()
    progress = JobProgress(stream=stream, clock=iter([0.0, 0.3]).__next__)
    progress(_job(0, "queued"))
    progress(_job(1000, "succeeded", started_at="2024-01-01T00:00:00",
                  finished_at="2024-01-01T00:00:04"))
    progress.close()
    last = ANSI.sub("", stream.getvalue()).split("\r")[-1]
    assert "1000/1000" in last and "250 trials/s" in last and "took 0:04" in last


def test_progress_draws_nothing_when_stderr_is_no_terminal_or_a_dumb_one(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    for stream in (io.StringIO(), _Tty()):
        progress = JobProgress(stream=stream)
        progress(_job(10))
        progress.close()
        assert stream.getvalue() == ""


def test_optimize_into_a_pipe_prints_one_job_in_the_api_shape_and_no_progress(in_home):
    from app.services import jobs

    assert in_home.optimize.stderr == ""
    job = json.loads(in_home.optimize.stdout)
    assert job == jobs.get_job(in_home.settings, job["job_id"])  # what GET /training/<id> answers
    assert job["status"] == "succeeded" and job["trials_done"] == 20


class _Terminal:
    """What a process shows on the pseudo-terminal its stderr is on."""

    def __init__(self, fd: int):
        self.fd = fd
        self.seen = ""
        self._decode = codecs.getincrementaldecoder("utf-8")("replace").decode

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: every end of the terminal's other side is closed
            chunk = b""
        self.seen += self._decode(chunk)
        return bool(chunk)

    def text(self) -> str:
        return ANSI.sub("", self.seen)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.text())):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 1.0)):
                raise AssertionError(f"{pattern!r} not shown; the terminal shows {self.text()[-1500:]!r}")
        return found

    def read_to_end(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(1.0):
            pass
        os.close(self.fd)
        return self.text()


def _on_a_terminal(env: dict, *args: str) -> tuple[subprocess.Popen, _Terminal]:
    """``trad`` with its stderr on a pseudo-terminal and its stdout a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([TRAD, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, env=env, cwd=env["TRAD_HOME"], text=True)
    os.close(slave)
    return proc, _Terminal(master)


def _finish(proc: subprocess.Popen, terminal: _Terminal) -> tuple[int, str, str]:
    shown = terminal.read_to_end()
    out = proc.stdout.read()
    proc.stdout.close()
    return proc.wait(timeout=60), out, shown


def test_optimize_on_a_terminal_draws_progress_and_prints_the_result_on_stdout(home):
    proc, terminal = _on_a_terminal(home.env, "optimize", "--strategy", "SMA_CROSS", *MARKET,
                                    "--n-iterations", "30", "--min-trades", "1", "--seed", "4")
    code, out, shown = _finish(proc, terminal)
    assert code == 0, shown
    last = shown.rstrip("\r\n").split("\r")[-1]
    assert re.search(r"SMA_CROSS succeeded .*30/30 [\d,.]+ trials/s took \d+:\d\d "
                     r"best sharpe_ratio -?\d+\.\d{4}", last), last
    assert "best configuration" in out and "Traceback" not in shown


# --- Ctrl-C -------------------------------------------------------------------------------

def test_ctrl_c_in_process_says_the_job_stopped_and_marks_it_cancelled(home, in_home, capsys):
    proc, terminal = _on_a_terminal(home.env, "optimize", "--strategy", "SLOW", *MARKET,
                                    "--n-iterations", "30", "--min-trades", "0")
    terminal.wait_for(r"\d+/30 .*trials/s")
    proc.send_signal(signal.SIGINT)
    code, out, shown = _finish(proc, terminal)
    assert code == 130 and out == "" and "Traceback" not in shown
    found = re.search(r"trad: interrupted: job ([0-9a-f]{32}) ran in this process and stopped "
                      r"with it \(marked cancelled; see trad jobs show \1\)", shown)
    assert found, shown
    code, out, _ = _out(capsys, "jobs", "show", found.group(1), "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"


def test_ctrl_c_with_workers_prints_the_command_that_cancels_the_job(home, in_home, capsys):
    # A broker in this process's memory: the job is queued for workers that never come.
    env = {**home.env, "CELERY_BROKER_URL": "memory://", "CELERY_RESULT_BACKEND": "cache+memory://"}
    proc, terminal = _on_a_terminal(env, "optimize", "--strategy", "SMA_CROSS", *MARKET,
                                    "--n-iterations", "20")
    terminal.wait_for(r"SMA_CROSS queued .*0/20")
    proc.send_signal(signal.SIGINT)
    code, out, shown = _finish(proc, terminal)
    assert code == 130 and out == "" and "Traceback" not in shown
    found = re.search(r"trad: interrupted: job ([0-9a-f]{32}) goes on without this command "
                      r"\(see: trad jobs show \1\)\r?\ntrad: cancel it with: (trad jobs cancel \1)\r?\n",
                      shown)
    assert found, shown
    code, out, _ = _out(capsys, *shlex.split(found.group(2))[1:])
    assert code == 0 and out == f"job {found.group(1)} cancelled after 0 of 20 trials\n"


class _FakeApi(BaseHTTPRequestHandler):
    """A running API with one job that runs for ever (until cancelled)."""

    JOB = "f" * 32

    def _view(self, status: str) -> dict:
        return {"job_id": self.JOB, "status": status, "strategy": "SMA_CROSS",
                "objective": "sharpe_ratio", "trials_done": 40, "trials_total": 100,
                "percentage": 40.0, "best_value": 0.5}

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        if self.path == "/api/v2/training/start":
            self._answer(202, {"job_id": self.JOB, "status": "queued", "trials_total": 100,
                               "status_url": f"/api/v2/training/{self.JOB}"})
        elif self.path == f"/api/v2/training/{self.JOB}/cancel":
            self._answer(200, self._view("cancelled"))
        else:
            self._answer(404, {"error": {"code": "not_found", "message": "no such route"}})

    def do_GET(self):
        self._answer(200, self._view("running"))

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_ctrl_c_with_submit_prints_the_command_that_cancels_the_job_there(home, fake_api):
    url = f"http://127.0.0.1:{fake_api.server_address[1]}"
    env = {**home.env, "TRAD_API_TOKEN": "s3cret"}
    proc, terminal = _on_a_terminal(env, "optimize", "--strategy", "SMA_CROSS", *MARKET,
                                    "--submit", url)
    terminal.wait_for(r"40/100 .*best sharpe_ratio 0\.5000")
    proc.send_signal(signal.SIGINT)
    code, out, shown = _finish(proc, terminal)
    assert code == 130 and out == "" and "Traceback" not in shown
    job = _FakeApi.JOB
    assert f"trad: interrupted: job {job} goes on without this command (see: trad jobs show " \
           f"{job} --submit {url})" in shown
    command = re.search(r"trad: cancel it with: (.*?)\r?\n", shown).group(1)
    assert command == f"trad jobs cancel {job} --submit {url}"
    done = _trad(env, *shlex.split(command)[1:])
    assert done.returncode == 0 and done.stdout == f"job {job} cancelled after 40 of 100 trials\n"
    assert fake_api.requests[-1] == (f"/api/v2/training/{job}/cancel", "Bearer s3cret")


# --- closed pipes -------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["strategies"], ["configs", "list", "--json"]])
def test_a_closed_pipe_ends_quietly(home, args):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: every write fails
    try:
        done = subprocess.run([TRAD, *args], stdout=write, stderr=subprocess.PIPE, text=True,
                              env=home.env, cwd=home.path, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 0 and done.stderr == ""


def test_head_takes_the_first_line_and_nothing_complains(home):
    done = subprocess.run(f"{shlex.quote(TRAD)} strategies | head -1", shell=True,
                          capture_output=True, text=True, env=home.env, cwd=home.path, timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == f"{all_strategies()[0].name} v1: {all_strategies()[0].describe()['description']}\n"


# --- strategies ---------------------------------------------------------------------------

def test_strategies_lists_each_with_its_parameter_space(capsys):
    code, out, _ = _out(capsys, "strategies")
    assert code == 0
    for strategy in all_strategies():
        assert f"{strategy.name} v{strategy.version}: " in out
    assert "  fast         int 2..200, default 10; bars in the fast average\n" in out
    assert "  where fast < slow\n" in out


def test_strategies_json_is_what_the_api_answers(capsys):
    code, out, _ = _out(capsys, "strategies", "--json")
    items = [s.describe() for s in all_strategies()]
    assert code == 0 and json.loads(out) == {"strategies": items, "count": len(items)}
    code, out, _ = _out(capsys, "strategies", "sma_cross", "--json")
    assert code == 0 and json.loads(out) == get_strategy("SMA_CROSS").describe()


def test_an_unknown_strategy_is_one_line_with_a_hint(capsys):
    code, out, err = _out(capsys, "strategies", "SMA_CORSS")
    assert code == 2 and out == ""
    assert err == "trad: error: unknown strategy 'SMA_CORSS' (did you mean SMA_CROSS or EMA_CROSS?)\n"


# --- jobs ---------------------------------------------------------------------------------

def test_jobs_show_and_list_print_the_api_shapes(in_home, capsys):
    from app.services import jobs

    job_id = json.loads(in_home.optimize.stdout)["job_id"]
    code, out, _ = _out(capsys, "jobs", "show", job_id, "--json")
    assert code == 0 and json.loads(out) == jobs.get_job(in_home.settings, job_id)
    code, out, _ = _out(capsys, "jobs", "list", "--json")
    assert code == 0 and json.loads(out) == jobs.list_jobs(in_home.settings)
    code, out, _ = _out(capsys, "jobs", "show", job_id)
    assert f"job        {job_id}\nstatus     succeeded  (20 of 20 trials, 100%)\n" in out
    assert "best configuration" in out


@pytest.mark.parametrize("args,message", [
    (["jobs", "show", "nope"], "trad: error: no training job 'nope'"),
    (["jobs", "cancel", "nope"], "trad: error: no training job 'nope'"),
    (["jobs", "list", "--status", "done"],
     "trad: error: unknown status 'done' (known: queued, running, succeeded, failed, cancelled)"),
])
def test_jobs_mistakes_are_one_line_and_exit_2(in_home, capsys, args, message):
    code, out, err = _out(capsys, *args)
    assert code == 2 and out == "" and err == message + "\n"


def test_cancelling_a_finished_job_is_one_line_and_exit_2(in_home, capsys):
    job_id = json.loads(in_home.optimize.stdout)["job_id"]
    code, _, err = _out(capsys, "jobs", "cancel", job_id)
    assert code == 2 and err == f"trad: error: job {job_id} already succeeded\n"


# --- configs ------------------------------------------------------------------------------

@pytest.mark.parametrize("stage,hint", [("NOPE", ""), ("PAPR", "did you mean PAPER? ")])
def test_an_unknown_stage_names_the_stages(capsys, stage, hint):
    code, out, err = _out(capsys, "configs", "list", "--stage", stage)
    assert code == 2 and out == ""
    assert err == f"trad: error: unknown stage {stage!r} ({hint}stages: {', '.join(STAGES)})\n"


def test_configs_stage_moves_a_configuration_and_audits_the_os_user(in_home, capsys):
    name = json.loads(in_home.optimize.stdout)["verdict"]["configuration"]
    code, _, err = _out(capsys, "configs", "stage", name, "PAPER", "--reason", "paper trade it")
    assert code == 2 and err.startswith(f"trad: error: {name} was REJECTED (")
    assert err.endswith("); promoting it needs --force\n")
    code, out, _ = _out(capsys, "configs", "stage", name, "paper", "--reason", "paper trade it",
                        "--force")
    actor = f"cli:{getpass.getuser()}"
    assert code == 0 and out == f"{name}: REJECTED -> PAPER (forced) by {actor}: paper trade it\n"
    code, out, _ = _out(capsys, "configs", "stage", name, "RETIRED", "--reason", "done with it",
                        "--json")
    changed = json.loads(out)
    assert code == 0 and changed["lifecycle_stage"] == "RETIRED"
    assert [(c["from"], c["to"], c["actor"], c["forced"]) for c in changed["stage_history"]] == [
        ("REJECTED", "PAPER", actor, True), ("PAPER", "RETIRED", actor, False)]
    code, out, _ = _out(capsys, "configs", "show", name, "--json")
    assert code == 0 and json.loads(out) == changed  # the API's configuration, both ways
    code, out, _ = _out(capsys, "configs", "list", "--stage", "retired", "--json")
    assert [c["name"] for c in json.loads(out)["configurations"]] == [name]


@pytest.mark.parametrize("args,message", [
    (["configs", "stage", "nope", "LIVE", "--reason", "why not"], "trad: error: no configuration 'nope'"),
    (["configs", "stage", "nope", "LIVE"],
     "trad: error: --reason is required: why this stage, in a few words (kept in the audit trail)"),
    (["configs", "stage", "nope", "LIVEE", "--reason", "why not"],
     f"trad: error: unknown stage 'LIVEE' (did you mean LIVE? stages: {', '.join(STAGES)})"),
])
def test_configs_stage_mistakes_are_one_line_and_exit_2(in_home, capsys, args, message):
    code, out, err = _out(capsys, *args)
    assert code == 2 and out == "" and err == message + "\n"


def test_a_usage_mistake_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["configs", "stage", "NAME"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("trad configs stage: error: the following arguments are "
                                       "required: STAGE (see trad configs stage --help)\n")


def test_db_upgrade_json(in_home, capsys):
    code, out, _ = _out(capsys, "db", "upgrade", "--json")
    body = json.loads(out)
    assert code == 0 and set(body) == {"revision", "database_url"}
