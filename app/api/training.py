"""Training jobs over HTTP: start (202, never waits), read, list, trials, progress, cancel."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for

from app.api.common import json_body, settings_of
from app.services import jobs as job_service

bp = Blueprint("training", __name__)


@bp.post("/training/start")
def start():
    job = job_service.submit(settings_of(current_app), json_body(), current_app.extensions["trad.enqueue"])
    status_url = url_for("training.job", job_id=job["job_id"], _external=False)
    body = {"job_id": job["job_id"], "status": job["status"], "status_url": status_url,
            "trials_total": job["trials_total"]}
    return jsonify(body), 202, {"Location": status_url}


@bp.get("/training/jobs")
def jobs():
    args = request.args
    return jsonify(job_service.list_jobs(settings_of(current_app), args.get("status"),
                                      args.get("page", 1), args.get("per_page", 50)))


@bp.get("/training/<job:job_id>")
def job(job_id: str):
    return jsonify(job_service.get_job(settings_of(current_app), job_id))


@bp.get("/training/<job:job_id>/trials")
def trials(job_id: str):
    args = request.args
    return jsonify(job_service.list_trials(settings_of(current_app), job_id, args.get("page", 1),
                                        args.get("per_page", 100), args.get("order", "number")))


@bp.get("/training/<job:job_id>/progress")
def progress(job_id: str):
    after = request.args.get("after", "0")
    if not (after.isdigit() and len(after) <= 18):
        from app.errors import InputError

        raise InputError("after must be a progress id (a whole number below 10**18)", field="after")
    return jsonify(job_service.list_progress(settings_of(current_app), job_id, int(after)))


@bp.post("/training/<job:job_id>/cancel")
def cancel(job_id: str):
    return jsonify(job_service.cancel(settings_of(current_app), job_id))
