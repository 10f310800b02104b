"""What the research pages draw, over HTTP, and the event stream that keeps them live.

Every series is cut down on the server (``points``), so a job of 100,000 trials over a
million candles answers in a few kilobytes.
"""
from __future__ import annotations

import json
import time

from flask import Blueprint, Response, current_app, request, stream_with_context

from app.api.common import settings_of
from app.services import research

bp = Blueprint("research", __name__)

POLL_S = 1.0


@bp.get("/training/<job:job_id>/chart")
def chart(job_id: str):
    return research.job_chart(settings_of(current_app), job_id, request.args.get("points"))


@bp.get("/training/<job:job_id>/trades")
def trades(job_id: str):
    a = request.args
    return research.job_trades(settings_of(current_app), job_id, a.get("page", 1),
                               a.get("per_page", 500))


@bp.get("/training/<job:job_id>/candles")
def candles(job_id: str):
    return research.job_candles(settings_of(current_app), job_id, request.args.get("points"))


@bp.get("/training/<job:job_id>/trials/plot")
def trials_plot(job_id: str):
    return research.job_trials_plot(settings_of(current_app), job_id, request.args.get("points"))


@bp.get("/training/<job:job_id>/importance")
def importance(job_id: str):
    return research.job_importance(settings_of(current_app), job_id)


@bp.get("/configurations/<name>/chart")
def configuration_chart(name: str):
    settings = settings_of(current_app)
    return research.job_chart(settings, research.configuration_job(settings, name),
                              request.args.get("points"))


@bp.get("/configurations/<name>/trades")
def configuration_trades(name: str):
    settings, a = settings_of(current_app), request.args
    return research.job_trades(settings, research.configuration_job(settings, name),
                               a.get("page", 1), a.get("per_page", 500))


@bp.get("/events")
def events():
    """Server-sent events: ``jobs`` (the jobs that changed, brief, as the jobs list shows
    them) and ``configurations`` (those that changed) as they change, a comment every 15 s
    to keep proxies from closing the stream, and the stream's end after
    ``TRAD_EVENTS_STREAM_S`` (the page reconnects at once).
    ``job`` narrows it to one job and adds its ``progress`` rows."""
    settings = settings_of(current_app)
    job_id = request.args.get("job")
    if job_id is not None:
        research.require_job(settings, job_id)   # a 404 now, not an empty stream
    feed = research.EventFeed(settings, job_id)
    lasts = settings.events_stream_s

    def stream():
        yield "retry: 1000\n\n"
        started = last_beat = time.monotonic()
        while True:
            for kind, body in feed.poll():
                yield f"event: {kind}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"
            left = lasts - (time.monotonic() - started)
            if left <= 0:
                break
            if time.monotonic() - last_beat >= 15:
                last_beat = time.monotonic()
                yield ": alive\n\n"
            time.sleep(min(POLL_S, left))
        yield "event: end\ndata: {}\n\n"

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
