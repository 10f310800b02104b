"""Candle CSVs in the forms traders bring, and every fault named by its line."""
import gzip
import zipfile

import numpy as np
import pytest

from app.data.csv_io import read_candle_table, read_candles_csv
from app.errors import InputError

ROWS = [  # open time (ms), open, high, low, close, volume
    (1_700_000_000_000, 100.0, 101.0, 99.0, 100.5, 10.0),
    (1_700_000_300_000, 100.5, 102.0, 100.0, 101.5, 12.0),
    (1_700_000_600_000, 101.5, 101.8, 100.2, 100.9, 0.0),
]


def write(path, text):
    path.write_text(text)
    return path


def check(candles):
    np.testing.assert_array_equal(candles.ts, [r[0] for r in ROWS])
    np.testing.assert_array_equal(candles.close, [r[4] for r in ROWS])
    np.testing.assert_array_equal(candles.volume, [r[5] for r in ROWS])


def header_csv(time_name="timestamp", time=lambda ms: str(ms), case=str.lower):
    lines = [",".join([time_name] + [case(c) for c in ("open", "high", "low", "close", "volume")])]
    lines += [",".join([time(r[0])] + [repr(v) for v in r[1:]]) for r in ROWS]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("time_name", ["time", "timestamp", "date", "datetime", "open_time", "Timestamp"])
def test_named_time_columns_in_any_case(tmp_path, time_name):
    check(read_candles_csv(write(tmp_path / "c.csv", header_csv(time_name, case=str.upper))))


@pytest.mark.parametrize("time,label", [
    (lambda ms: str(ms // 1000), "epoch seconds"),
    (lambda ms: str(ms), "epoch milliseconds"),
    (lambda ms: str(ms * 1000), "epoch microseconds"),
    (lambda ms: np.datetime_as_string(np.datetime64(ms, "ms")) + "Z", "ISO with Z"),
    (lambda ms: np.datetime_as_string(np.datetime64(ms, "ms")), "naive ISO is UTC"),
    (lambda ms: str(np.datetime64(ms, "ms")).replace("T", " ") + "+00:00", "ISO with offset"),
])
def test_time_formats(tmp_path, time, label):
    check(read_candles_csv(write(tmp_path / "c.csv", header_csv(time=time))))


def test_pandas_index_column_without_a_name(tmp_path):
    import pandas as pd

    frame = pd.DataFrame([r[1:] for r in ROWS], columns=["open", "high", "low", "close", "volume"],
                         index=pd.to_datetime([r[0] for r in ROWS], unit="ms", utc=True))
    frame.to_csv(tmp_path / "c.csv")
    check(read_candles_csv(tmp_path / "c.csv"))


def binance_text():
    return "".join(f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[0] + 299_999},1.0,5,0.5,0.5,0\n"
                   for r in ROWS)


def test_binance_kline_dump_plain_gz_and_zip(tmp_path):
    check(read_candles_csv(write(tmp_path / "BTCUSDT-5m-2023-11.csv", binance_text())))
    with gzip.open(tmp_path / "k.csv.gz", "wt") as f:
        f.write(binance_text())
    check(read_candles_csv(tmp_path / "k.csv.gz"))
    with zipfile.ZipFile(tmp_path / "BTCUSDT-5m-2023-11.zip", "w") as z:
        z.writestr("BTCUSDT-5m-2023-11.csv", binance_text())
    check(read_candles_csv(tmp_path / "BTCUSDT-5m-2023-11.zip"))


def test_extra_columns_are_ignored(tmp_path):
    text = header_csv().splitlines()
    text = [line + (",note" if i == 0 else ",x") for i, line in enumerate(text)]
    check(read_candles_csv(write(tmp_path / "c.csv", "\n".join(text) + "\n")))


def broken(tmp_path, line_no, new):
    lines = header_csv().splitlines()
    lines[line_no - 1] = new
    return write(tmp_path / "c.csv", "\n".join(lines) + "\n")


@pytest.mark.parametrize("line_no,new,message", [
    (3, "1700000300000,100.5,102.0,100.0,abc,12.0", "line 3: close is not a number"),
    (3, "1700000300000,100.5,102.0,100.0,,12.0", "line 3: no value for close"),
    (3, "1700000300000,100.5,102.0", "line 3: no value for low"),
    (3, "1700000000000,100.5,102.0,100.0,101.5,12.0", "line 3: duplicate time"),
    (3, "1699999000000,100.5,102.0,100.0,101.5,12.0", "line 3: unsorted time"),
    (3, "1700000300000,100.5,99.0,100.0,101.5,12.0", "line 3: high is below low"),
    (3, "1700000300000,100.5,102.0,100.0,101.5,-1", "line 3: volume is negative"),
    (3, "1700000300000,nan,102.0,100.0,101.5,1", "line 3: open is not a number"),
    (3, "yesterday,100.5,102.0,100.0,101.5,1", "line 3: cannot read time"),
    (1, "timestamp,open,high,low,close", "missing column(s) volume"),
])
def test_faults_name_their_line(tmp_path, line_no, new, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_candles_csv(broken(tmp_path, line_no, new))


def test_missing_columns_say_what_was_found(tmp_path):
    with pytest.raises(InputError, match=r"missing column\(s\) time, volume; found a, open"):
        read_candles_csv(write(tmp_path / "c.csv", "a,open,high,low,close\n1,1,1,1,1\n"))


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="empty"):
        read_candles_csv(write(tmp_path / "c.csv", ""))
    with pytest.raises(InputError, match="no rows"):
        read_candles_csv(write(tmp_path / "h.csv", "time,open,high,low,close,volume\n"))
    with pytest.raises(InputError, match="no such file"):
        read_candles_csv(tmp_path / "nope.csv")


def test_a_row_with_too_many_fields_is_named(tmp_path):
    with pytest.raises(InputError, match="line 3"):
        read_candles_csv(broken(tmp_path, 3, "1700000300000,100.5,102.0,100.0,101.5,12.0,7,8"))


def test_table_keeps_source_lines(tmp_path):
    text = header_csv().replace("\n", "\n\n", 1)  # a blank line after the header
    table = read_candle_table(write(tmp_path / "c.csv", text))
    assert table.lines.tolist() == [3, 4, 5]
