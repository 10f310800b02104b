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
