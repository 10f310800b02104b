import pytest

from app.config import load_settings
from app.errors import InputError


def test_sampler_parts_default_and_override(tmp_path):
    assert load_settings({"TRAD_HOME": str(tmp_path)}).sampler_parts == 1
    assert load_settings({"TRAD_HOME": str(tmp_path), "TRAD_SAMPLER_PARTS": "6"}).sampler_parts == 6


@pytest.mark.parametrize("value", ["0", "65", "1.5", "two"])
def test_a_bad_sampler_parts_is_one_clear_error(tmp_path, value):
    with pytest.raises(InputError, match="TRAD_SAMPLER_PARTS"):
        load_settings({"TRAD_HOME": str(tmp_path), "TRAD_SAMPLER_PARTS": value})


def test_task_limits_rise_and_the_watchdog_waits_past_the_visibility_timeout(tmp_path):
    settings = load_settings({"TRAD_HOME": str(tmp_path)})
    soft, hard, visibility = settings.task_time_limits
    assert (soft, hard, visibility) == (600.0, 660.0, 960.0)
    assert settings.stall_after_s == visibility + 120
    custom = load_settings({"TRAD_HOME": str(tmp_path), "TRAD_TASK_HARD_LIMIT_S": "1200"})
    assert custom.task_time_limits[2] == 1500.0
    with pytest.raises(InputError, match="must satisfy"):
        load_settings({"TRAD_HOME": str(tmp_path), "TRAD_TASK_HARD_LIMIT_S": "1200",
                       "TRAD_VISIBILITY_TIMEOUT_S": "900"})


def test_the_deploy_env_example_loads_and_states_the_defaults():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "deploy" / "trad.env.example"
    settings = load_settings({"TRAD_ENV_FILE": str(example)})
    defaults = load_settings({"TRAD_HOME": "/var/lib/trad"})
    assert settings.task_time_limits == defaults.task_time_limits
    assert settings.sampler_parts == defaults.sampler_parts
    assert settings.stall_after_s == defaults.stall_after_s
    assert settings.database_url.startswith("postgresql")


def test_every_mistake_in_the_settings_is_named_on_its_own_line(tmp_path):
    from app.config import SettingsError

    with pytest.raises(SettingsError) as wrong:
        load_settings({"TRAD_HOME": str(tmp_path), "TRAD_WATCHDOG_INTERVAL_S": "-5",
                       "TRAD_DATA_WATCH_INTERVAL_S": "nan", "TRAD_STALL_AFTER_S": "30",
                       "TRAD_WORKER_DEAD_AFTER_S": "1", "TRAD_LOG_LEVEL": "loud", "TRAD_MAX_TRIALS": "0",
                       "TRAD_API_TOKENS": "nameless", "TRAD_API_OPEN": "maybe"})
    lines = str(wrong.value).splitlines()
    assert [line.split()[0] for line in lines] == [
        "TRAD_API_TOKENS", "TRAD_API_OPEN", "TRAD_MAX_TRIALS", "TRAD_STALL_AFTER_S",
        "TRAD_WORKER_DEAD_AFTER_S", "TRAD_LOG_LEVEL", "TRAD_DATA_WATCH_INTERVAL_S", "TRAD_WATCHDOG_INTERVAL_S"], lines


def test_named_tokens_are_read_and_never_shown(tmp_path):
    settings = load_settings({"TRAD_HOME": str(tmp_path),
                              "TRAD_API_TOKENS": " alice:0123456789abcdef , bob:fedcba9876543210"})
    assert [t.name for t in settings.api_tokens] == ["alice", "bob"]
    assert settings.api_tokens[0].secret == "0123456789abcdef"
    shown = repr(settings) + str(settings.redacted())
    assert "0123456789abcdef" not in shown and "alice" in shown
