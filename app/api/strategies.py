"""The strategies Trad can train, with their parameter spaces."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.strategies.registry import all_strategies, get_strategy

bp = Blueprint("strategies", __name__)


@bp.get("/strategies")
def strategies():
    items = [s.describe() for s in all_strategies()]
    return jsonify({"strategies": items, "count": len(items)})


@bp.get("/strategies/<name>")
def strategy(name: str):
    from app.errors import InputError
    from app.services.jobs import NotFound

    try:
        found = get_strategy(name)
    except InputError as exc:
        raise NotFound(exc.message, field="name", hint=exc.hint) from None
    return jsonify(found.describe())
