"""`trad optimize` and `trad configs`: training jobs from the terminal.

``trad optimize`` takes the same fields as ``POST /api/v2/training/start``. Without
``--submit`` it runs the job through this machine's settings: in-process on the embedded
default, or on the configured workers when a broker is set. With ``--submit URL`` it
posts to a running API. Either way it follows the job with a live line on a terminal's
stderr (trials, trials a second, time left, best so far); Ctrl-C stops following and says
how to cancel a job that goes on running on workers.
"""
from __future__ import annotations

import getpass
import json
import os
import sys
import threading
import time

from app.cli_jobs import TERMINAL, RemoteJobs, job_command
from app.cli_progress import JobProgress
from app.config import check_local_workers, load_settings
from app.errors import InputError, did_you_mean

__all__ = ["register", "print_result"]

def _base(annotation):
    """``int`` of ``Annotated[int, ...] | None``: what a flag's value is read as."""
    import typing

    if typing.get_origin(annotation) is typing.Annotated:
        return _base(typing.get_args(annotation)[0])
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    return _base(members[0]) if members else annotation


def _flags():
    """``(flag, field, kind, help)`` for every field of the request model: the CLI's flags
    are the HTTP body's fields (``n_iterations`` is ``--n-iterations``); times are read as
    the text a person types (an ISO date)."""
    from app.schemas import TrainingRequest

    return [(f"--{name.replace('_', '-')}", name,
             str if name in ("start", "end") else _base(info.annotation), info.description or "")
            for name, info in TrainingRequest.model_fields.items()]


def _body(args) -> dict:
    body = {}
    for flag, key, kind, _help in _flags():
        value = getattr(args, key)
        if value is None or (kind is bool and value is False):
            continue
        if kind is dict:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InputError(f"{flag} is not valid JSON ({exc.msg} at column {exc.colno})",
                                 field=key) from None
        body[key] = value
    return body


def print_result(job: dict, out=None) -> None:
    """The job's outcome as a person reads it."""
    out = out or sys.stdout
    result = job.get("result") or {}
    if job["status"] != "succeeded":
        out.write(f"job {job['job_id']} {job['status']}: {job.get('error') or ''}\n")
        return
    ins = result["in_sample"]
    oos = result.get("out_of_sample")
    wf = result.get("walk_forward")
    data = result.get("data") or {}
    trust = result.get("trust") or {}
    request = job.get("request") or {}
    folds = len(wf["folds"]) if wf else 0
    trials = f"{job['trials_done']}" + (f" ({job['trials_done'] // folds} a fold x {folds} folds)"
                                         if folds else "")
    lines = [
        f"best configuration  {result['configuration']}",
        f"strategy            {job['strategy']} on {job['exchange']} {job['symbol']} {job['timeframe']}",
    ]
    if data:
        split = (f"; {result.get('train_bars', '?')} in sample, the latest "
                 f"{data['bars'] - result.get('train_bars', data['bars'])} held out"
                 if oos and not wf else "")
        lines.append(f"data                {data['bars']} bars, {data['first']} to {data['last']}{split}")
    lines += [
        f"trials              {trials} ({job['optimizer']}, seed {job['seed']})",
        f"params              {json.dumps(result['best_params'])}" + ("  (the last fold's winner)"
                                                                     if wf else ""),
        f"{result['objective']:<20}{result['best_value'] or 0.0:.4f}"
        + ("  (the last fold's, in its training window)" if wf else "  (in sample)"),
        f"in sample           sharpe {ins['sharpe_ratio']:.3f}  net profit {ins['net_profit']:.2f}  "
        f"trades {ins['num_trades']}  max drawdown {ins['max_drawdown']:.2%}"
        + ("  (folds' average; trades: the fewest)" if wf else ""),
    ]
    if oos:
        lines.append(f"out of sample       sharpe {oos['sharpe_ratio']:.3f}  net profit "
                     f"{oos['net_profit']:.2f}  trades {oos['num_trades']}  max drawdown "
                     f"{oos['max_drawdown']:.2%}" + ("  (the test windows, stitched)" if wf else ""))
    if wf:
        lines.append(f"walk-forward        {folds} folds, efficiency {wf['wfe']:.2f} (annualised "
                     "mean return out of sample over in sample)")
    if trust.get("deflated_sharpe"):
        pbo = trust.get("pbo")
        few = pbo and trust.get("pbo_trials", 0) < 16
        lines.append(f"selection bias      deflated Sharpe {trust['deflated_sharpe']['dsr']:.3f} "
                     f"(best of {trust['n_trials']} distinct trials"
                     + (f" in {trust['runs']} runs" if trust.get("runs", trust["n_trials"])
                        != trust["n_trials"] else "")
                     + f", {trust.get('effective_trials', trust['n_trials']):.1f} effectively "
                       "independent)"
                     + (f"  PBO {pbo['pbo']:.2f} (over {trust['pbo_trials']} trials that made "
                        "min_trades, spanning the search" + ("; few: a rough figure" if few else "")
                        + ")" if pbo else ""))
    if trust.get("psr_oos") is not None:
        lines.append(f"out-of-sample       PSR {trust['psr_oos']:.3f} (held-out record, Sharpe > 0); "
                     f"evidence in and out of sample {trust['evidence']:.3f}")
    lookahead = trust.get("lookahead")
    lines.append("lookahead           " + (lookahead["message"] if lookahead else
                                          "none found (targets unchanged when later bars are "
                                          "cut, doubled or halved)"))
    if data:
        lines.append(f"annualised with     {data['bars_per_year']:g} bars a year "
                     f"({data['bars_per_year_source']}, calendar {data['calendar']})"
                     + ("; SYNTHETIC data" if data.get("synthetic") else ""))
    lines.append(f"costs               fee {request.get('fee', 0.001):g} of notional a fill, "
                 f"slippage {request.get('slippage_bps', 0):g} bps; profits in quote currency "
                 "from 10,000")
    lines.append(f"confidence          {result['confidence']:.3f}")
    reasons = "; ".join(result.get("reasons") or [])
    stage = result["lifecycle_stage"]
    why = {"REJECTED": "rejected: ", "PAPER": "not a live candidate: "}.get(stage, "")
    lines.append(f"lifecycle stage     {stage}" + (f"  ({why}{reasons})" if reasons else ""))
    out.write("\n".join(lines) + "\n")


class _InProcessJob:
    """The embedded default's job: its tasks run eagerly, the whole job inside the enqueue,
    so it runs on a thread of this process while the main thread draws its progress and
    takes Ctrl-C (a signal reaches only the main thread)."""

    def __init__(self):
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def enqueue(self, job_id: str, priority: int) -> None:
        # A daemon: after Ctrl-C the job is marked cancelled and the process exits without
        # waiting for the chunk in hand.
        self.thread = threading.Thread(target=self._run, args=(job_id, priority),
                                       name=f"job-{job_id[:8]}", daemon=True)
        self.thread.start()

    def _run(self, job_id: str, priority: int) -> None:
        from workers.pipeline import enqueue_start

        try:
            enqueue_start(job_id, priority)
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            self.error = exc

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wait(self, timeout: float) -> None:
        self.thread.join(timeout)  # a lock wait: Ctrl-C interrupts it

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def _follow(poll, progress: JobProgress, in_process: _InProcessJob | None = None,
            interval: float = 0.25) -> dict:
    """Read the job until it ends (in-process: until its thread does, the study export
    included), drawing each reading."""
    while True:
        job = poll()
        progress(job)
        if in_process is not None:
            if not in_process.running():
                in_process.raise_error()
                job = poll()
                progress(job)
                return job
            in_process.wait(interval)
        elif job["status"] in TERMINAL:
            return job
        else:
            time.sleep(interval)


def _interrupted(job_id: str, *, settings=None, submit: str | None = None,
                 token_given: bool = False) -> int:
    """Ctrl-C while following a job: say what became of it, and how to act on it."""
    err = sys.stderr
    if settings is not None and settings.embedded:
        # Nothing else runs an in-process job: it stopped with this process, and is marked
        # cancelled so it does not read as running for ever.
        from app.services import jobs

        try:
            jobs.cancel(settings, job_id)
            state = "marked cancelled"
        except jobs.Conflict:
            state = f"already {jobs.get_job(settings, job_id)['status']}"
        print(f"trad: interrupted: job {job_id} ran in this process and stopped with it "
              f"({state}; see {job_command('show', job_id)})", file=err)
        return 130
    print(f"trad: interrupted: job {job_id} goes on without this command (see: "
          f"{job_command('show', job_id, submit, token_given)})", file=err)
    print(f"trad: cancel it with: {job_command('cancel', job_id, submit, token_given)}", file=err)
    return 130


class _JobInterrupted(Exception):
    """Ctrl-C while following a job, once the job has an id."""

    def __init__(self, job_id: str):
        super().__init__(job_id)
        self.job_id = job_id


def _run_job(settings, body: dict, progress: JobProgress) -> dict:
    """Submit on this machine (in-process on the embedded default, else to the configured
    workers) and follow the job to its end; Ctrl-C raises ``_JobInterrupted``."""
    from app.services import jobs

    if settings.embedded:
        from workers import local_pool
        from workers.celery_app import celery_app, configure

        configure(celery_app, settings)  # this command's settings (--workers) for its tasks
        in_process = _InProcessJob()
        started = jobs.submit(settings, body, in_process.enqueue)
    else:
        from workers.pipeline import enqueue_start

        local_pool = None
        in_process = None
        started = jobs.submit(settings, body, enqueue_start)
    try:
        return _follow(lambda: jobs.get_job(settings, started["job_id"]), progress, in_process)
    except KeyboardInterrupt:
        raise _JobInterrupted(started["job_id"]) from None
    finally:
        if local_pool is not None:
            local_pool.shutdown()  # idle (or, after Ctrl-C, mid-chunk) helpers go now


def _local_settings(args):
    """This machine's settings, with ``--workers`` (the embedded default's processes)."""
    settings = load_settings()
    workers = getattr(args, "workers", None)
    if workers is None:
        return settings
    if not settings.embedded:
        raise InputError("--workers sets the embedded default's local processes; with a broker "
                         "configured (CELERY_BROKER_URL) the job runs on its workers: start more "
                         "of them instead", field="workers")
    return settings.replace(local_workers=check_local_workers(workers, "--workers"))


def cmd_optimize(args) -> int:
    body = _body(args)
    if args.submit and args.workers is not None:
        raise InputError("--workers is for a job run on this machine; with --submit the API's "
                         "workers run it", field="workers")
    progress = JobProgress()
    settings = None
    try:
        if args.submit:
            remote = RemoteJobs(args.submit, args.token)
            job_id = remote.start(body)["job_id"]
            try:
                job = _follow(lambda: remote.get(job_id), progress)
            except KeyboardInterrupt:
                raise _JobInterrupted(job_id) from None
        else:
            settings = _local_settings(args)
            job = _run_job(settings, body, progress)
    except _JobInterrupted as stop:
        progress.close()
        return _interrupted(stop.job_id, settings=settings, submit=args.submit,
                            token_given=bool(args.token))
    finally:
        progress.close()
    if args.json:
        print(json.dumps(job))
    else:
        print_result(job)
    return 0 if job["status"] == "succeeded" else 1


def _stage(value: str | None) -> str | None:
    """A lifecycle stage as typed (any case), or one line naming the stages there are."""
    from app.validation.lifecycle import STAGES

    if value is None or value.upper() in STAGES:
        return value and value.upper()
    close = did_you_mean(value.upper(), STAGES)
    hint = ("" if close.startswith("known") else close + " ") + "stages: " + ", ".join(STAGES)
    raise InputError(f"unknown stage {value!r}", field="stage", hint=hint)


def _actor() -> str:
    """Who changes a stage from the terminal, in the audit trail: this machine's user."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no name for this uid (a bare container)
        user = f"uid{os.getuid()}"
    return f"cli:{user}"


def cmd_configs_list(args) -> int:
    from app.cli_data import _print_table
    from app.services import configurations

    page = configurations.list_configurations(load_settings(), args.strategy, args.pair,
                                              args.timeframe, _stage(args.stage))
    if args.json:
        print(json.dumps(page))
        return 0
    def number(x, digits=2):
        return "" if x is None else f"{x:.{digits}f}"

    rows = []
    for c in page["configurations"]:
        ins, oos, trust = c["in_sample"], c["out_of_sample"] or {}, c["trust"]
        rows.append({"name": c["name"], "market": f"{c['exchange']} {c['pair']} {c['timeframe']}"
                     + (" (synthetic)" if c["synthetic"] else ""),
                     "IS sharpe": number(ins["sharpe_ratio"]), "IS trades": ins["num_trades"],
                     "OOS sharpe": number(oos.get("sharpe_ratio")),
                     "OOS trades": "" if oos.get("num_trades") is None else oos["num_trades"],
                     "DSR": number(trust["dsr"]), "PSR OOS": number(trust["psr_oos"]),
                     "confidence": number(c["confidence"], 3), "stage": c["lifecycle_stage"]})
    _print_table(rows, ["name", "market", "IS sharpe", "IS trades", "OOS sharpe", "OOS trades",
                        "DSR", "PSR OOS", "confidence", "stage"])
    return 0


def cmd_configs_show(args) -> int:
    from app.services import configurations

    config = configurations.get_configuration(load_settings(), args.name)
    print(json.dumps(config) if args.json else json.dumps(config, indent=2))
    return 0


def cmd_configs_stage(args) -> int:
    from app.services import configurations

    stage = _stage(args.stage)
    if not (args.reason or "").strip():
        raise InputError("--reason is required: why this stage, in a few words (kept in the "
                         "audit trail)", field="reason")
    body = {"stage": stage, "reason": args.reason, "force": args.force}
    try:
        config = configurations.change_stage(load_settings(), args.name, body, actor=_actor())
    except InputError as exc:
        if exc.field != "force":
            raise
        # The service speaks of the HTTP body's field; here it is a flag.
        raise InputError(exc.message.replace("force: true", "--force"), field="force") from None
    if args.json:
        print(json.dumps(config))
        return 0
    change = config["stage_history"][-1]
    print(f"{config['name']}: {change['from']} -> {change['to']}"
          + (" (forced)" if change["forced"] else "")
          + f" by {change['actor']}: {change['reason']}")
    return 0


DEMO_BODY = {"strategy": "LIQUIDITY_SWEEP", "symbol": "BTC/USDT", "exchange": "synthetic",
             "timeframe": "5m", "optimizer": "random", "lookback_days": 30, "n_iterations": 200,
             "run_validation": True, "seed": 1}


def cmd_demo(args) -> int:
    """`make run`: migrate, make synthetic candles if there are none, train, print."""
    from app.db import market_data as repo
    from app.db.migrate import upgrade
    from app.db.session import session_scope
    from app.services import market_data

    say = (lambda _text: None) if args.json else print
    settings = _local_settings(args)
    say(f"database: {settings.redacted()['database_url']}"
        + (f"  (embedded: tasks run on {_processes(settings.local_workers)} of this machine)"
           if settings.embedded else ""))
    upgrade(settings.database_url)
    body = {**DEMO_BODY, "n_iterations": args.trials}
    with session_scope(settings.database_url) as session:
        have = repo.count_rows(session, body["exchange"], body["symbol"], body["timeframe"])
    if have < 30 * 288:
        report = market_data.synthesize(settings, body["symbol"], body["timeframe"], days=60, seed=7)
        say(f"made {report.rows} synthetic {body['timeframe']} candles for {body['symbol']}")
    t0 = time.perf_counter()
    progress = JobProgress()
    try:
        job = _run_job(settings, body, progress)
    except _JobInterrupted as stop:
        progress.close()
        return _interrupted(stop.job_id, settings=settings)
    finally:
        progress.close()
    elapsed = time.perf_counter() - t0
    if args.json:
        print(json.dumps(job))
        return 0 if job["status"] == "succeeded" else 1
    print_result(job)
    print(f"{job['trials_done']} trials in {elapsed:.2f} s "
          f"({job['trials_done'] / elapsed:,.0f} trials/s, job {job['job_id']})")
    return 0 if job["status"] == "succeeded" else 1


WORKERS_HELP = ("processes that run the trials on this machine when no broker is configured "
                "(default: TRAD_LOCAL_WORKERS, else every core)")


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"


def register(subparsers) -> None:
    """Add `optimize`, `demo` and `configs` to the `trad` command's subparsers."""
    p = subparsers.add_parser("optimize", help="run a training job (same fields as the HTTP body)")
    for flag, key, kind, help_text in _flags():
        help_text = help_text.replace("%", "%%")
        if kind is bool:
            p.add_argument(flag, dest=key, action="store_true", help=help_text)
        elif kind is dict:
            p.add_argument(flag, dest=key, metavar="JSON", help=help_text)
        else:
            p.add_argument(flag, dest=key, type=kind, help=help_text)
    p.add_argument("--workers", type=int, metavar="N", help=WORKERS_HELP)
    p.add_argument("--submit", metavar="URL", help="send the job to a running API and follow it")
    p.add_argument("--token", help="bearer token for --submit (or TRAD_API_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the job as the HTTP API does")
    p.set_defaults(func=cmd_optimize)

    p = subparsers.add_parser("demo", help="train LIQUIDITY_SWEEP on synthetic candles (make run)")
    p.add_argument("--trials", type=int, default=DEMO_BODY["n_iterations"])
    p.add_argument("--workers", type=int, metavar="N", help=WORKERS_HELP)
    p.add_argument("--json", action="store_true", help="print the job as the HTTP API does")
    p.set_defaults(func=cmd_demo)

    configs = subparsers.add_parser("configs", help="trained configurations").add_subparsers(
        dest="configs_command", required=True)
    p = configs.add_parser("list", help="stored configurations")
    p.add_argument("--strategy")
    p.add_argument("--pair")
    p.add_argument("--timeframe")
    p.add_argument("--stage", help="REJECTED, PAPER, LIVE_CANDIDATE, LIVE or RETIRED")
    p.add_argument("--json", action="store_true", help="the page the HTTP API answers")
    p.set_defaults(func=cmd_configs_list)
    p = configs.add_parser("show", help="one configuration as JSON")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="on one line (the default is indented)")
    p.set_defaults(func=cmd_configs_show)
    p = configs.add_parser("stage", help="move a configuration to a lifecycle stage, saying why")
    p.add_argument("name", metavar="NAME")
    p.add_argument("stage", metavar="STAGE", help="REJECTED, PAPER, LIVE_CANDIDATE, LIVE or RETIRED")
    p.add_argument("--reason", help="why (kept in the audit trail with your user name)")
    p.add_argument("--force", action="store_true",
                   help="needed to move a REJECTED configuration anywhere but RETIRED")
    p.add_argument("--json", action="store_true", help="the configuration as the HTTP API answers")
    p.set_defaults(func=cmd_configs_stage)
