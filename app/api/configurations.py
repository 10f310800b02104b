"""Trained configurations over HTTP."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from app.api.common import actor, json_body, settings_of
from app.services import configurations as config_service

bp = Blueprint("configurations", __name__)


@bp.get("/configurations")
def configurations():
    a = request.args
    return jsonify(config_service.list_configurations(
        settings_of(current_app), a.get("strategy"), a.get("pair"), a.get("timeframe"),
        a.get("stage"), a.get("page", 1), a.get("per_page", 50)))


@bp.get("/configurations/<name>")
def configuration(name: str):
    return jsonify(config_service.get_configuration(settings_of(current_app), name))


@bp.post("/configurations/<name>/stage")
def change_stage(name: str):
    """A person's decision: {"stage": "LIVE", "reason": "...", "force": false}."""
    return jsonify(config_service.change_stage(settings_of(current_app), name, json_body(),
                                               actor=actor()))
