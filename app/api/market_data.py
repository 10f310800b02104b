"""GET /api/v2/market-data: the stored series, as `trad data list` shows them."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from app.api.common import settings_of
from app.services import market_data as svc

bp = Blueprint("market_data", __name__)


@bp.get("/market-data")
def list_market_data():
    series = [s.to_dict() for s in svc.list_series(settings_of(current_app))]
    for key in ("exchange", "symbol", "timeframe"):
        wanted = request.args.get(key)
        if wanted:
            series = [s for s in series if s[key].lower() == wanted.lower()]
    return jsonify({"series": series, "count": len(series)})


@bp.get("/market-data/gaps")
def market_data_gaps():
    args = request.args
    missing = [k for k in ("exchange", "symbol", "timeframe") if not args.get(k)]
    if missing:
        from app.errors import InputError

        raise InputError(f"missing query parameter(s): {', '.join(missing)}", field=missing[0],
                         hint="e.g. ?exchange=binanceus&symbol=BTC/USDT&timeframe=5m")
    gaps = svc.find_gaps(settings_of(current_app), args["exchange"], args["symbol"],
                         args["timeframe"], args.get("start"), args.get("end"))
    return jsonify({"gaps": [g.to_dict() for g in gaps], "count": len(gaps)})
