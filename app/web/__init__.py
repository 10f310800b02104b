"""The research pages: the dashboard, a job's page and a configuration's page.

The HTML carries no data: each page reads /api/v2 with the bearer token the user typed
(kept in the browser's localStorage), and follows /api/v2/events for what changes. The
chart libraries are vendored (static/vendor), so the pages work with no internet.
"""
from __future__ import annotations

import re

from flask import Blueprint, render_template

from app.services.jobs import NotFound

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")


@bp.get("/")
def dashboard():
    return render_template("dashboard.html")


_JOB_ID = re.compile(r"[0-9a-f]{32}")


@bp.get("/jobs/<job_id>")
def job_page(job_id: str):
    # The page's shape is checked here; whether the job exists, by its data calls (which
    # carry the token this page does not see).
    if not _JOB_ID.fullmatch(job_id):
        raise NotFound(f"no training job {job_id[:64]!r}: a job id is 32 hex digits",
                       field="job_id")
    return render_template("job.html", job_id=job_id)


@bp.get("/configurations/<name>")
def configuration_page(name: str):
    if len(name) > 256:
        raise NotFound("no configuration of a name that long", field="name")
    return render_template("configuration.html", name=name)
