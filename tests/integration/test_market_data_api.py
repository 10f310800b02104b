"""GET /api/v2/market-data over a real database."""
from __future__ import annotations

from app import create_app
from app.config import load_settings
from app.services import market_data as svc


def make_client(db_url, tmp_path):
    settings = load_settings({"DATABASE_URL": db_url, "TRAD_HOME": str(tmp_path),
                              "TRAD_API_OPEN": "1"})
    return settings, create_app({"settings": settings, "TESTING": True}).test_client()


def test_lists_series_with_ranges_rows_and_gaps(db_url, tmp_path):
    settings, client = make_client(db_url, tmp_path)
    svc.synthesize(settings, "BTC/USDT", "1h", days=2, seed=3, start="2024-01-01")
    body = client.get("/api/v2/market-data").get_json()
    assert body["count"] == 1
    row = body["series"][0]
    assert row == {"exchange": "synthetic", "symbol": "BTC/USDT", "timeframe": "1h",
                   "first": "2024-01-01T00:00:00Z", "last": "2024-01-02T23:00:00Z",
                   "rows": 48, "gaps": 0, "missing_bars": 0, "calendar": "24/7",
                   "bars_per_year": 8760.0, "bars_per_year_source": "measured", "synthetic": True}
    assert client.get("/api/v2/market-data?symbol=ETH/USDT").get_json()["count"] == 0


def test_gaps_needs_the_series_named(db_url, tmp_path):
    _, client = make_client(db_url, tmp_path)
    response = client.get("/api/v2/market-data/gaps?exchange=binanceus")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "symbol"


def test_unknown_route_is_a_json_404(db_url, tmp_path):
    _, client = make_client(db_url, tmp_path)
    response = client.get("/api/v2/nope")
    assert response.status_code == 404 and "error" in response.get_json()
