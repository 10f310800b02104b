"""The `trad` command: readable output, JSON output, one-line errors with exit code 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.data.synthetic import synthetic_candles

TRAD = str(Path(sys.executable).with_name("trad"))


@pytest.fixture
def csv_file(tmp_path):
    candles = synthetic_candles(400, timeframe="1h", seed=5, start=1_700_000_000_000 // 3_600_000 * 3_600_000)
    path = tmp_path / "candles.csv"
    candles.to_frame().to_csv(path)
    return path


def test_backtest_prints_a_table(csv_file, capsys):
    assert main(["backtest", "--strategy", "SMA_CROSS", "--params", '{"fast": 5, "slow": 20}',
                 "--csv", str(csv_file)]) == 0
    out = capsys.readouterr().out
    assert "sharpe_ratio" in out and "400 bars" in out and "(1h, 8760 bars a year, measured)" in out


def test_backtest_json_is_one_object_with_metrics_and_trades(csv_file):
    done = subprocess.run([TRAD, "backtest", "--strategy", "SMA_CROSS", "--params",
                           '{"fast": 5, "slow": 20}', "--csv", str(csv_file), "--json",
                           "--fee", "0.002", "--slippage-bps", "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"metrics", "trades"}
    assert body["metrics"]["num_trades"] == len(body["trades"]) > 0
    trade = body["trades"][0]
    assert {"entry_time", "exit_time", "side", "entry_price", "exit_price", "pnl", "fees"} <= set(trade)
    assert trade["entry_time"].endswith("Z")


def test_periods_per_year_override_changes_the_sharpe(csv_file, capsys):
    args = ["backtest", "--strategy", "SMA_CROSS", "--params", '{"fast": 5, "slow": 20}',
            "--csv", str(csv_file), "--json"]
    main(args)
    daily = json.loads(capsys.readouterr().out)["metrics"]["sharpe_ratio"]
    main(args + ["--periods-per-year", str(8760 * 4)])
    assert json.loads(capsys.readouterr().out)["metrics"]["sharpe_ratio"] == pytest.approx(daily * 2)


BAD = [
    (["--strategy", "SMA_CORSS"], "did you mean SMA_CROSS"),
    (["--strategy", "SMA_CROSS", "--params", '{"fast": 1}'], "fast=1 is out of bounds"),
    (["--strategy", "SMA_CROSS", "--params", '{"fast": 5'], "--params is not valid JSON"),
    (["--strategy", "SMA_CROSS", "--params", '{"fats": 5}'], "did you mean fast"),
    (["--strategy", "SMA_CROSS", "--params", '{"fast": 30, "slow": 20}'], "needs fast < slow"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_one_line_and_exit_code_2(csv_file, capsys, args, message):
    assert main(["backtest", *args, "--csv", str(csv_file)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("content,message", [
    ("time,open,high,low\n1,1,1,1\n", "missing column(s) close, volume"),
    ("time,open,high,low,close,volume\n2,1,1,1,1,1\n1,1,1,1,1,1\n", "line 3: unsorted time"),
    ("time,open,high,low,close,volume\n1,1,1,1,1,1\n1,1,1,1,1,1\n", "line 3: duplicate time"),
    ("time,open,high,low,close,volume\n1,NaN,1,1,1,1\n", "line 2: open is not a number"),
    ("time,open,high,low,close,volume\n1,1,1,2,1,1\n", "line 2: high is below low"),
])
def test_bad_files_are_one_line_and_exit_code_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["backtest", "--strategy", "SMA_CROSS", "--csv", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_file_in_a_subprocess_has_no_traceback(tmp_path):
    done = subprocess.run([TRAD, "backtest", "--strategy", "SMA_CROSS", "--csv",
                           str(tmp_path / "nope.csv")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no such file" in done.stderr and "Traceback" not in done.stderr


def test_backtest_annualises_goog_daily_with_its_own_bars_a_year(tmp_path, capsys):
    from backtesting.test import GOOG

    path = tmp_path / "goog.csv"
    GOOG.to_csv(path)
    assert main(["backtest", "--strategy", "SMA_CROSS", "--params", '{"fast": 10, "slow": 40}',
                 "--csv", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2148 bars" in out and "(1d, 251.6 bars a year, measured)" in out
