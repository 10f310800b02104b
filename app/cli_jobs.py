"""`trad jobs ...`: training jobs read and cancelled from the terminal, in this machine's
database or, with ``--submit URL``, through a running API (the same job either way)."""
from __future__ import annotations

import json
import os
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request

from app.errors import InputError, TradError

__all__ = ["register", "api_call", "LocalJobs", "RemoteJobs", "job_source", "job_command",
           "print_job"]

TERMINAL = ("succeeded", "failed", "cancelled")


def api_call(method: str, url: str, token: str | None, body: dict | None = None) -> dict:
    """One JSON request to the API; its error body becomes one readable line."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            message = error.get("message", "")
            field = error.get("field")
        except (ValueError, KeyError, TypeError):
            message, field = exc.reason, None
        raise InputError(f"{url}: HTTP {exc.code}: {message}", field=field) from None
    except urllib.error.URLError as exc:
        raise TradError(f"cannot reach {url}: {exc.reason}") from None


class LocalJobs:
    """Jobs in this machine's database (the embedded default, or the configured one)."""

    def __init__(self, settings=None):
        from app.config import load_settings

        self.settings = settings or load_settings()

    def get(self, job_id: str) -> dict:
        from app.services import jobs

        return jobs.get_job(self.settings, job_id)

    def list(self, status=None, page=1, per_page=50) -> dict:
        from app.services import jobs

        return jobs.list_jobs(self.settings, status, page, per_page)

    def cancel(self, job_id: str) -> dict:
        from app.services import jobs

        return jobs.cancel(self.settings, job_id)


class RemoteJobs:
    """Jobs of a running API (``--submit URL``), read and sent over HTTP."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base = base_url.rstrip("/")
        self.token = token or os.environ.get("TRAD_API_TOKEN")

    def _url(self, job_id: str, tail: str = "") -> str:
        return f"{self.base}/api/v2/training/{urllib.parse.quote(str(job_id), safe='')}{tail}"

    def start(self, body: dict) -> dict:
        return api_call("POST", self.base + "/api/v2/training/start", self.token, body)

    def get(self, job_id: str) -> dict:
        return api_call("GET", self._url(job_id), self.token)

    def list(self, status=None, page=1, per_page=50) -> dict:
        query = {k: v for k, v in (("status", status), ("page", page), ("per_page", per_page))
                 if v is not None}
        return api_call("GET", f"{self.base}/api/v2/training/jobs?"
                        + urllib.parse.urlencode(query), self.token)

    def cancel(self, job_id: str) -> dict:
        return api_call("POST", self._url(job_id, "/cancel"), self.token, {})


def job_source(args) -> LocalJobs | RemoteJobs:
    return RemoteJobs(args.submit, args.token) if args.submit else LocalJobs()


def job_command(verb: str, job_id: str, submit: str | None = None,
                token_given: bool = False) -> str:
    """``trad jobs VERB JOB_ID ...`` for the job where it runs, to paste as printed.

    >>> job_command("cancel", "ab12", "http://127.0.0.1:8000")
    'trad jobs cancel ab12 --submit http://127.0.0.1:8000'
    """
    command = shlex.join(["trad", "jobs", verb, job_id] + (["--submit", submit] if submit else []))
    # A token given as a flag is not printed back; from TRAD_API_TOKEN it needs nothing.
    return command + (" --token TOKEN" if token_given else "")


def _number(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _when(stamp: str | None) -> str:
    return (stamp or "")[:19]


def print_job(job: dict, out=None) -> None:
    """A job's state as a person reads it; a succeeded job's result after it."""
    out = out or sys.stdout
    trials = f"{job['trials_done']} of {job['trials_total']} trials, {job['percentage']:g}%"
    market = f"{job['exchange']} {job['symbol']} {job['timeframe']}"
    lines = [f"job        {job['job_id']}",
             f"status     {job['status']}  ({trials})",
             f"strategy   {job['strategy']} on {market} ({job['optimizer']}, {job['objective']})",
             f"best       {_number(job.get('best_value')) or '-'}",
             f"created    {_when(job.get('created_at'))}"]
    if job.get("started_at"):
        lines.append(f"started    {_when(job['started_at'])}")
    if job.get("finished_at"):
        lines.append(f"finished   {_when(job['finished_at'])}")
    if job.get("error"):
        lines.append(f"error      {job['error']}")
    out.write("\n".join(lines) + "\n")
    if job["status"] == "succeeded" and job.get("result"):
        from app.cli_train import print_result

        out.write("\n")
        print_result(job, out)


def cmd_jobs_list(args) -> int:
    from app.cli_data import _print_table

    page = job_source(args).list(args.status, args.page, args.per_page)
    if args.json:
        print(json.dumps(page))
        return 0
    rows = [{"job": j["job_id"], "status": j["status"], "strategy": j["strategy"],
             "market": f"{j['exchange']} {j['symbol']} {j['timeframe']}",
             "trials": f"{j['trials_done']}/{j['trials_total']}",
             "best": _number(j.get("best_value")), "created": _when(j.get("created_at"))}
            for j in page["jobs"]]
    _print_table(rows, ["job", "status", "strategy", "market", "trials", "best", "created"])
    if page["total"] > page["page"] * page["per_page"]:
        print(f"({page['total']} jobs; --page {page['page'] + 1} for more)")
    return 0


def cmd_jobs_show(args) -> int:
    job = job_source(args).get(args.job_id)
    if args.json:
        print(json.dumps(job))
    else:
        print_job(job)
    return 0


def cmd_jobs_cancel(args) -> int:
    job = job_source(args).cancel(args.job_id)
    if args.json:
        print(json.dumps(job))
    else:
        print(f"job {job['job_id']} {job['status']} after {job['trials_done']} of "
              f"{job['trials_total']} trials")
    return 0


def _remote_args(p) -> None:
    p.add_argument("--submit", metavar="URL", help="the running API the job was sent to "
                                                   "(as with trad optimize --submit)")
    p.add_argument("--token", help="bearer token for --submit (or TRAD_API_TOKEN)")
    p.add_argument("--json", action="store_true", help="print what the HTTP API answers")


def register(subparsers) -> None:
    """Add `jobs` to the `trad` command's subparsers."""
    jobs = subparsers.add_parser("jobs", help="training jobs: list, show, cancel").add_subparsers(
        dest="jobs_command", required=True)
    p = jobs.add_parser("list", help="jobs, newest first")
    p.add_argument("--status", help="queued, running, succeeded, failed or cancelled")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--per-page", type=int, default=50)
    _remote_args(p)
    p.set_defaults(func=cmd_jobs_list)
    p = jobs.add_parser("show", help="one job: status, trials, best so far, result")
    p.add_argument("job_id", metavar="JOB_ID")
    _remote_args(p)
    p.set_defaults(func=cmd_jobs_show)
    p = jobs.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job_id", metavar="JOB_ID")
    _remote_args(p)
    p.set_defaults(func=cmd_jobs_cancel)
