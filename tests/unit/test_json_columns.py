"""JSON columns are read with orjson, and what only json reads (written by json.dumps:
NaN, Infinity, integers past 64 bits) still reads the same."""
from __future__ import annotations

import json
import math

from sqlalchemy import JSON, Column, Integer, MetaData, Table, insert, select

from app.db.session import _json_loads, dispose_engines, get_engine


def test_orjson_reads_what_json_wrote_and_falls_back_where_it_cannot():
    assert _json_loads('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert _json_loads(json.dumps(0.1 + 0.2)) == 0.1 + 0.2          # the same float
    assert math.isnan(_json_loads(json.dumps({"v": float("nan")}))["v"])
    assert _json_loads(json.dumps([float("inf")])) == [math.inf]
    assert _json_loads(json.dumps(2**70)) == 2**70


def test_a_json_column_round_trips_through_the_engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'j.sqlite3'}"
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("doc", JSON))
    engine = get_engine(url)
    try:
        table.metadata.create_all(engine)
        docs = [{"x": 1.5, "big": 2**70}, {"nan": float("nan")}, {"k": [1, {"n": None}]}]
        with engine.begin() as conn:
            conn.execute(insert(table), [{"doc": d} for d in docs])
            got = [row.doc for row in conn.execute(select(table.c.doc).order_by(table.c.id))]
        assert got[0] == docs[0] and got[2] == docs[2] and math.isnan(got[1]["nan"])
    finally:
        dispose_engines()
