import pytest

from app.config import load_settings
from app.errors import InputError


def test_sampler_parts_default_and_override(tmp_path):
    assert load_settings({"TRAD_HOME": str(tmp_path)}).sampler_parts == 2
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
