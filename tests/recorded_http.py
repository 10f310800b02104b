"""Answers ccxt's HTTP calls from responses recorded in Binance's wire format.

ccxt's real exchange class builds the requests, signs nothing, paginates, rate-limits
and parses; only the socket is replaced: a ``requests`` transport adapter that replays
``tests/fixtures/binanceus/`` the way the exchange answers (klines sliced by startTime
and limit, at most 1,000 rows).
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import BaseAdapter

FIXTURES = Path(__file__).parent / "fixtures" / "binanceus"


class RecordedBinance(BaseAdapter):
    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.info = (FIXTURES / "exchangeInfo.json").read_bytes()
        self.klines = {"BTCUSDT": json.loads((FIXTURES / "klines_BTCUSDT_5m.json").read_text())}
        self.calls: list[str] = []
        self.fail_after = fail_after

    def _answer(self, request, status: int, body: bytes) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = body
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        response.reason = "OK" if status == 200 else "Error"
        return response

    def send(self, request, **kwargs):
        self.calls.append(request.url)
        url = urlsplit(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            return self._answer(request, 503, b'{"code": -1001, "msg": "Service unavailable."}')
        if url.path == "/api/v3/exchangeInfo":
            return self._answer(request, 200, self.info)
        if url.path == "/api/v3/klines":
            rows = self.klines.get(query.get("symbol"))
            if rows is None:
                return self._answer(request, 400, b'{"code": -1121, "msg": "Invalid symbol."}')
            start = int(query.get("startTime", 0))
            end = int(query.get("endTime", 2**62))
            limit = min(int(query.get("limit", 500)), 1000)
            page = [r for r in rows if start <= r[0] <= end][:limit]
            return self._answer(request, 200, json.dumps(page).encode())
        return self._answer(request, 404, b'{"code": -1, "msg": "not recorded"}')

    def close(self):
        pass


def recorded_session(**kwargs) -> tuple[requests.Session, RecordedBinance]:
    session = requests.Session()
    adapter = RecordedBinance(**kwargs)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter
