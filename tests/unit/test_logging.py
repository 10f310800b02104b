"""Log lines: key=value text or JSON, one line per event, the running job's id on each;
set around Celery tasks by their signals; Alembic quiet unless migrating."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import datetime

import pytest

from app.logging_setup import (
    JobIdFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    job_context,
    job_id_var,
)


def record(message: str, *args, name: str = "app.x", level: int = logging.INFO,
           exc_info=None) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, message, args, exc_info)
    JobIdFilter().filter(rec)
    return rec


def boom():
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        return sys.exc_info()


def test_text_line_has_the_job_id_once_and_stays_on_one_line():
    fmt = TextFormatter()
    assert "job_id" not in fmt.format(record("outside a job"))
    with job_context("abc123"):
        line = fmt.format(record("trial done n=%d", 3))
        said = fmt.format(record("job started job_id=%s bars=%d", "abc123", 10))
        parent = fmt.format(record("fold parent_job_id=%s", "p1"))
        multi = fmt.format(record("two\nlines", exc_info=boom()))
    assert " level=INFO logger=app.x job_id=abc123 trial done n=3" in line
    assert said.count("job_id=") == 1 and said.endswith("job started job_id=abc123 bars=10")
    assert "logger=app.x job_id=abc123 fold parent_job_id=p1" in parent
    assert "\n" not in multi
    assert "two\\nlines exc=" in multi
    exc = json.loads(multi.split(" exc=", 1)[1])
    assert exc.startswith("Traceback") and exc.endswith("ValueError: first\nsecond")
    assert job_id_var.get() is None


def test_json_line_fields():
    fmt = JsonFormatter()
    with job_context("j-1"):
        inside = json.loads(fmt.format(record("hello %s", "world", name="optuna",
                                              level=logging.WARNING, exc_info=boom())))
    outside = json.loads(fmt.format(record("plain")))
    assert inside["level"] == "WARNING" and inside["logger"] == "optuna"
    assert inside["message"] == "hello world" and inside["job_id"] == "j-1"
    assert "ValueError: first\nsecond" in inside["exc"]
    assert datetime.fromisoformat(inside["ts"]).utcoffset().total_seconds() == 0
    assert set(outside) == {"ts", "level", "logger", "message"}


def test_an_explicit_job_id_wins_over_the_context():
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    rec.job_id = "given"
    with job_context("ctx"):
        JobIdFilter().filter(rec)
    assert rec.job_id == "given"


@pytest.fixture
def fresh_root():
    """The root logger and the quieted libraries as they were, after the test."""
    root = logging.getLogger()
    names = ("optuna", "urllib3", "ccxt", "alembic", "gunicorn.error")
    saved = (list(root.handlers), root.level, {n: logging.getLogger(n).level for n in names},
             list(logging.getLogger("gunicorn.error").handlers))
    yield root
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger("gunicorn.error").handlers[:] = saved[3]


def ours(root):
    return [h for h in root.handlers if getattr(h, "_trad_handler", False)]


def test_configure_logging_installs_one_handler_and_switches_format(fresh_root):
    gunicorn = logging.StreamHandler(sys.stderr)
    logging.getLogger("gunicorn.error").addHandler(gunicorn)
    configure_logging("INFO", "text")
    configure_logging("WARNING", "text")
    assert len(ours(fresh_root)) == 1 and fresh_root.level == logging.WARNING
    assert isinstance(ours(fresh_root)[0].formatter, TextFormatter)
    assert not isinstance(gunicorn.formatter, JsonFormatter)
    configure_logging("INFO", "json")
    assert len(ours(fresh_root)) == 1
    assert isinstance(ours(fresh_root)[0].formatter, JsonFormatter)
    assert isinstance(gunicorn.formatter, JsonFormatter)  # the web's own lines JSON too
    assert logging.getLogger("alembic").level == logging.WARNING


def test_configure_logging_takes_the_format_from_the_environment(fresh_root, monkeypatch):
    monkeypatch.setenv("TRAD_LOG_FORMAT", "json")
    configure_logging("INFO")
    assert isinstance(ours(fresh_root)[0].formatter, JsonFormatter)


@pytest.mark.parametrize("value,expected", [(None, "text"), ("json", "json"), (" JSON ", "json"),
                                            ("text", "text")])
def test_log_format_setting(value, expected):
    from app.config import load_settings

    env = {} if value is None else {"TRAD_LOG_FORMAT": value}
    assert load_settings(env).log_format == expected


def test_a_wrong_log_format_is_one_line_among_the_settings_mistakes():
    from app.config import SettingsError, load_settings

    with pytest.raises(SettingsError, match=r"TRAD_LOG_FORMAT must be one of text, json, "
                                            r"got 'xml'"):
        load_settings({"TRAD_LOG_FORMAT": "xml"})


# -- Celery's signals ------------------------------------------------------------------------


def test_job_id_of_each_task_signature():
    from workers import tasks
    from workers.log_context import job_id_of

    assert job_id_of(tasks.start_job, ("j1",), {}) == "j1"
    assert job_id_of(tasks.run_trials, ("j2", 0, {"numbers": []}), {}) == "j2"
    assert job_id_of(tasks.finish_round, ([{"ask_s": 0}], "j3", 1, 10), {"resume": True}) == "j3"
    assert job_id_of(tasks.finish_round, ([],), {"job_id": "j4", "round_no": 1,
                                                "expected": 2}) == "j4"
    assert job_id_of(tasks.export_study, ("j5",), None) == "j5"
    assert job_id_of(tasks.watchdog, (), {}) is None
    assert job_id_of(tasks.refresh_market_data, (), {}) is None


def test_prerun_sets_the_job_and_postrun_puts_back_the_outer_one(caplog):
    from celery import signals

    from workers import (
        log_context,  # noqa: F401 - connects the signals
        tasks,
    )

    def run(task_id, task, args):
        signals.task_prerun.send(sender=task, task_id=task_id, task=task, args=args, kwargs={})

    def done(task_id, task):
        signals.task_postrun.send(sender=task, task_id=task_id, task=task, args=(), kwargs={},
                                  retval=None, state="SUCCESS")

    run("t1", tasks.start_job, ("outer",))
    assert job_id_var.get() == "outer"
    run("t2", tasks.run_trials, ("inner", 0, {}))  # eager: a task inside another
    assert job_id_var.get() == "inner"
    run("t3", tasks.watchdog, ())  # no job: leaves the context alone
    assert job_id_var.get() == "inner"
    done("t3", tasks.watchdog)
    done("t2", tasks.run_trials)
    assert job_id_var.get() == "outer"
    done("t1", tasks.start_job)
    assert job_id_var.get() is None


def test_results_nobody_reads_are_not_stored_and_the_rest_expire():
    from workers.celery_app import RESULTS_NOBODY_READS, celery_app

    celery_app.loader.import_default_modules()
    assert celery_app.conf.result_expires == max(3600, 2 * celery_app.conf.trad_settings.stall_after_s)
    for name in RESULTS_NOBODY_READS:
        assert celery_app.tasks[name].ignore_result, name
    # The chord's header and the watchdog called by hand keep theirs.
    assert not celery_app.tasks["trad.run_trials"].ignore_result
    assert not celery_app.tasks["trad.watchdog"].ignore_result
    assert celery_app.conf.beat_schedule["watchdog"]["options"]["ignore_result"] is True


def test_a_sender_without_the_task_module_asks_for_no_result():
    from celery import signals

    from workers.celery_app import _store_no_result

    for name, ignored in (("trad.start_job", True), ("trad.run_trials", False)):
        headers = {"ignore_result": False, "task": name}
        assert _store_no_result in [r() for _, r in signals.before_task_publish.receivers]
        _store_no_result(sender=name, headers=headers)
        assert headers["ignore_result"] is ignored


# -- Alembic ---------------------------------------------------------------------------------


def test_importing_the_migrations_module_logs_nothing():
    """Every server process imports it at start; Alembic used to say seven lines there."""
    code = ("import logging; logging.basicConfig(level=logging.INFO); "
            "import app.db.migrate")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stderr == ""


def test_upgrade_logs_one_line_per_migration_and_the_schema_check_none(tmp_path, caplog):
    from pathlib import Path

    from app.db.migrate import require_schema, upgrade
    from app.db.session import dispose_engines

    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    migrations = [p for p in (Path(__file__).parents[2] / "app/db/migrations/versions").glob("*.py")
                  if not p.name.startswith("_")]
    try:
        with caplog.at_level(logging.INFO):
            upgrade(url)
            ran = [r.getMessage() for r in caplog.records if r.name.startswith("alembic")]
            caplog.clear()
            upgrade(url)
            require_schema(url)
            again = [r.getMessage() for r in caplog.records if r.name.startswith("alembic")]
    finally:
        dispose_engines()
    assert len(ran) == len(migrations) and all(m.startswith("Running upgrade") for m in ran), ran
    assert again == []
    assert logging.getLogger("alembic.runtime.migration").level == logging.NOTSET
