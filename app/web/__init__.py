"""The dashboard: one page that follows jobs and configurations through the JSON API."""
from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("web", __name__, template_folder="templates")


@bp.get("/")
def dashboard():
    return render_template("dashboard.html")
