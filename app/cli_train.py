"""`trad optimize` and `trad configs`: training jobs from the terminal.

``trad optimize`` takes the same fields as ``POST /api/v2/training/start``. Without
``--submit`` it runs the job through this machine's settings: in-process on the embedded
default, or on the configured workers when a broker is set. With ``--submit URL`` it
posts to a running API and follows the job with a progress bar.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

from app.cli_data import Progress
from app.config import load_settings
from app.errors import InputError, TradError

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


def _http(method: str, url: str, token: str | None, body: dict | None = None) -> dict:
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


def _follow(poll, out_progress: Progress, interval: float = 0.25) -> dict:
    while True:
        job = poll()
        out_progress(int(job["trials_done"]), int(job["trials_total"]))
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(interval)


def cmd_optimize(args) -> int:
    body = _body(args)
    progress = Progress("training")
    try:
        if args.submit:
            base = args.submit.rstrip("/")
            token = args.token or os.environ.get("TRAD_API_TOKEN")
            started = _http("POST", base + "/api/v2/training/start", token, body)
            job = _follow(lambda: _http("GET", base + started["status_url"], token), progress)
        else:
            from app.services import jobs
            from workers.pipeline import enqueue_start

            settings = load_settings()
            started = jobs.submit(settings, body, enqueue_start)
            job = _follow(lambda: jobs.get_job(settings, started["job_id"]), progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(job))
    else:
        print_result(job)
    return 0 if job["status"] == "succeeded" else 1


def cmd_configs_list(args) -> int:
    from app.cli_data import _print_table
    from app.services import configurations

    page = configurations.list_configurations(load_settings(), args.strategy, args.pair, args.timeframe,
                                        args.stage)
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
    print(json.dumps(config, indent=2))
    return 0


DEMO_BODY = {"strategy": "LIQUIDITY_SWEEP", "symbol": "BTC/USDT", "exchange": "synthetic",
             "timeframe": "5m", "optimizer": "random", "lookback_days": 30, "n_iterations": 200,
             "run_validation": True, "seed": 1}


def cmd_demo(args) -> int:
    """`make run`: migrate, make synthetic candles if there are none, train, print."""
    from app.db import market_data as repo
    from app.db.migrate import upgrade
    from app.db.session import session_scope
    from app.services import jobs, market_data
    from workers.pipeline import enqueue_start

    settings = load_settings()
    print(f"database: {settings.redacted()['database_url']}"
          + ("  (embedded: tasks run in this process)" if settings.embedded else ""))
    upgrade(settings.database_url)
    body = {**DEMO_BODY, "n_iterations": args.trials}
    with session_scope(settings.database_url) as session:
        have = repo.count_rows(session, body["exchange"], body["symbol"], body["timeframe"])
    if have < 30 * 288:
        report = market_data.synthesize(settings, body["symbol"], body["timeframe"], days=60, seed=7)
        print(f"made {report.rows} synthetic {body['timeframe']} candles for {body['symbol']}")
    t0 = time.perf_counter()
    started = jobs.submit(settings, body, enqueue_start)
    progress = Progress("training")
    try:
        job = _follow(lambda: jobs.get_job(settings, started["job_id"]), progress)
    finally:
        progress.close()
    elapsed = time.perf_counter() - t0
    print_result(job)
    print(f"{job['trials_done']} trials in {elapsed:.2f} s "
          f"({job['trials_done'] / elapsed:,.0f} trials/s, job {job['job_id']})")
    return 0 if job["status"] == "succeeded" else 1


def register(subparsers) -> None:
    """Add `optimize` and `configs` to the `trad` command's subparsers."""
    p = subparsers.add_parser("optimize", help="run a training job (same fields as the HTTP body)")
    for flag, key, kind, help_text in _flags():
        help_text = help_text.replace("%", "%%")
        if kind is bool:
            p.add_argument(flag, dest=key, action="store_true", help=help_text)
        elif kind is dict:
            p.add_argument(flag, dest=key, metavar="JSON", help=help_text)
        else:
            p.add_argument(flag, dest=key, type=kind, help=help_text)
    p.add_argument("--submit", metavar="URL", help="send the job to a running API and follow it")
    p.add_argument("--token", help="bearer token for --submit (or TRAD_API_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(func=cmd_optimize)

    p = subparsers.add_parser("demo", help="train LIQUIDITY_SWEEP on synthetic candles (make run)")
    p.add_argument("--trials", type=int, default=DEMO_BODY["n_iterations"])
    p.set_defaults(func=cmd_demo)

    configs = subparsers.add_parser("configs", help="trained configurations").add_subparsers(
        dest="configs_command", required=True)
    p = configs.add_parser("list", help="stored configurations")
    p.add_argument("--strategy")
    p.add_argument("--pair")
    p.add_argument("--timeframe")
    p.add_argument("--stage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_configs_list)
    p = configs.add_parser("show", help="one configuration as JSON")
    p.add_argument("name")
    p.set_defaults(func=cmd_configs_show)
