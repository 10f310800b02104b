"""`trad db` and `trad data` as a user runs them: a subprocess on the embedded default."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TRAD = str(Path(sys.executable).with_name("trad"))


@pytest.fixture
def trad(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")}
    env["TRAD_HOME"] = str(tmp_path / "home")

    def run(*args, check=True):
        done = subprocess.run([TRAD, *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)
        if check:
            assert done.returncode == 0, done.stderr
        return done
    return run


def test_commands_that_need_the_schema_say_so(trad):
    done = trad("data", "list", check=False)
    assert done.returncode == 2
    assert "trad db upgrade" in done.stderr and done.stderr.count("\n") == 1


def test_synth_list_gaps_import_and_optimize(trad, tmp_path):
    assert "revision" in trad("db", "upgrade").stdout
    synth = json.loads(trad("data", "synth", "--symbol", "ETH/USDT", "--timeframe", "1h",
                            "--days", "20", "--seed", "3", "--start", "2024-01-01", "--json").stdout)
    assert synth["rows"] == 480 and synth["first"] == "2024-01-01T00:00:00Z"
    listing = json.loads(trad("data", "list", "--json").stdout)
    assert listing == [{"exchange": "synthetic", "symbol": "ETH/USDT", "timeframe": "1h",
                        "first": "2024-01-01T00:00:00Z", "last": "2024-01-20T23:00:00Z",
                        "rows": 480, "gaps": 0, "missing_bars": 0, "calendar": "24/7",
                        "bars_per_year": 8760.0, "bars_per_year_source": "measured",
                        "synthetic": True}]
    assert json.loads(trad("data", "gaps", "--exchange", "synthetic", "--symbol", "ETH/USDT",
                           "--timeframe", "1h", "--json").stdout) == []
    csv = tmp_path / "btc.csv"
    csv.write_text("time,open,high,low,close,volume\n"
                   "2024-01-01T00:00:00Z,1,2,0.5,1.5,10\n2024-01-01T01:00:00Z,1.5,2,1,1.2,3\n")
    imported = json.loads(trad("data", "import", str(csv), "--exchange", "binanceus", "--symbol",
                               "BTC/USDT", "--timeframe", "1h", "--json").stdout)
    assert imported["rows"] == 2
    out = trad("optimize", "--strategy", "SMA_CROSS", "--symbol", "ETH/USDT", "--exchange",
               "synthetic", "--timeframe", "1h", "--n-iterations", "20", "--min-trades", "1",
               "--seed", "2", "--run-validation").stdout
    assert "best configuration" in out and "lifecycle stage" in out and "deflated Sharpe" in out
    shown = trad("configs", "list", "--json").stdout
    name = json.loads(shown)["configurations"][0]["name"]
    assert json.loads(trad("configs", "show", name).stdout)["name"] == name


@pytest.mark.parametrize("args,message", [
    (["data", "fetch", "--exchange", "binanse", "--symbol", "BTC/USDT", "--timeframe", "5m"],
     "did you mean binance"),
    (["data", "synth", "--symbol", "BTC/USDT", "--timeframe", "7m"], "unknown timeframe"),
    (["data", "import", "nope.csv", "--exchange", "binanceus", "--symbol", "BTC/USDT",
      "--timeframe", "5m"], "no such file"),
    (["data", "gaps", "--exchange", "binanceus", "--symbol", "XRP/USDT", "--timeframe", "5m"],
     "no 5m candles for XRP/USDT"),
    (["optimize", "--strategy", "NOPE", "--symbol", "BTC/USDT", "--timeframe", "5m"],
     "unknown strategy"),
    (["optimize", "--strategy", "SMA_CROSS", "--symbol", "BTC/USDT", "--timeframe", "5m",
      "--params", "{bad"], "--params is not valid JSON"),
    (["optimize", "--strategy", "SMA_CROSS", "--symbol", "BTC/USDT", "--timeframe", "5m",
      "--sampler-parts", "2"], "sampler_parts applies to bayesian only"),
])
def test_mistakes_are_one_line_and_exit_2(trad, args, message):
    trad("db", "upgrade")
    done = trad(*args, check=False)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
