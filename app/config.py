"""One Settings object, read from the environment (and an optional env file), nowhere else.

Every other module receives settings; none reads ``os.environ`` itself. Unset means the
embedded default: a SQLite file and in-process tasks, so ``trad`` works on a bare machine.

Where the embedded database lives: ``$TRAD_HOME/trad.sqlite3``, with ``TRAD_HOME``
defaulting to ``$XDG_DATA_HOME/trad`` (``~/.local/share/trad``).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple

from app.errors import InputError

__all__ = ["Settings", "ApiToken", "load_settings", "read_env_file", "parse_watch_entry",
           "SettingsError", "exit_on_bad_settings"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
MIN_TOKEN_CHARS = 16
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class SettingsError(InputError):
    """One or more settings are wrong: the message has one line for each."""

    code = "bad_settings"


def exit_on_bad_settings(make):
    """``make()``, or, when the settings are wrong, one line on stderr for each mistake and
    exit status 2: how a server process (gunicorn, a Celery worker) refuses to start."""
    try:
        return make()
    except SettingsError as exc:
        import sys

        for line in str(exc).splitlines():
            print(f"trad: {line}", file=sys.stderr)
        raise SystemExit(2) from None


class ApiToken(NamedTuple):
    """A bearer token and the name it acts under (the audit trail's actor)."""

    name: str
    secret: str

    def __repr__(self) -> str:  # never the secret
        return f"ApiToken({self.name!r})"


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """``KEY=value`` lines; blank lines and ``#`` comments skipped; quotes stripped."""
    values: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep:
            raise InputError(f"{path}:{number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _default_home(env: dict) -> Path:
    if env.get("TRAD_HOME"):
        return Path(env["TRAD_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "trad"


class _Reader:
    """Reads settings from ``env``, noting every mistake instead of stopping at the first,
    so one start-up names them all (a line each)."""

    def __init__(self, env: dict):
        self.env = env
        self.mistakes: list[str] = []

    def wrong(self, message: str) -> None:
        self.mistakes.append(message)

    def number(self, key: str, default: float, *, positive: bool = False,
               integer: bool = False) -> float:
        raw = self.env.get(key)
        if raw is None or str(raw).strip() == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            self.wrong(f"{key} must be a number, got {raw!r}")
            return default
        if not math.isfinite(value):
            self.wrong(f"{key} must be a finite number, got {raw!r}")
            return default
        if integer and value != int(value):
            self.wrong(f"{key} must be a whole number, got {raw!r}")
            return default
        if positive and value <= 0:
            self.wrong(f"{key} must be above 0, got {raw!r}")
            return default
        return value

    def tokens(self) -> tuple[ApiToken, ...]:
        raw = self.env.get("TRAD_API_TOKENS", "")
        tokens: list[ApiToken] = []
        for number, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
            if not entry:
                continue
            name, sep, secret = entry.partition(":")
            name, secret = name.strip(), secret.strip()
            if not sep or not secret:
                self.wrong(f"TRAD_API_TOKENS entry {number} has no name: write name:secret "
                           "(the name is who acts in the audit trail), e.g. alice:<secret>")
                continue
            if not _TOKEN_NAME.match(name):
                self.wrong(f"TRAD_API_TOKENS entry {number}: the name {name!r} should be 1-64 "
                           "letters, digits or _.@-")
                continue
            if len(secret) < MIN_TOKEN_CHARS:
                self.wrong(f"TRAD_API_TOKENS entry {number} ({name}): the secret has "
                           f"{len(secret)} characters, fewer than {MIN_TOKEN_CHARS}; make one "
                           "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
                continue
            if any(t.name == name for t in tokens):
                self.wrong(f"TRAD_API_TOKENS names {name!r} twice: each token needs its own name")
                continue
            if any(t.secret == secret for t in tokens):
                self.wrong(f"TRAD_API_TOKENS entry {number} ({name}) repeats another entry's "
                           "secret: each name needs its own")
                continue
            tokens.append(ApiToken(name, secret))
        return tuple(tokens)

    def flag(self, key: str) -> bool:
        raw = str(self.env.get(key, "")).strip().lower()
        if raw in ("", "0", "false", "no"):
            return False
        if raw in ("1", "true", "yes"):
            return True
        self.wrong(f"{key} must be 1 or 0, got {self.env[key]!r}")
        return False


def _thresholds(read: _Reader):
    from dataclasses import fields as dc_fields

    from app.validation.confidence import Thresholds

    values = {f.name: read.number(f"TRAD_THRESHOLD_{f.name.upper()}", f.default)
              for f in dc_fields(Thresholds)}
    return Thresholds(**values)


VISIBILITY_MARGIN_S = 300.0


def _port(read: _Reader, key: str) -> int:
    port = read.number(key, 0, integer=True)
    if not 0 <= port <= 65535:
        read.wrong(f"{key} must be a port from 1 to 65535, or 0 for none, got {port:g}")
        return 0
    return int(port)


def _time_limits(read: _Reader) -> tuple[float, float, float]:
    soft = read.number("TRAD_TASK_SOFT_LIMIT_S", 600.0, positive=True)
    hard = read.number("TRAD_TASK_HARD_LIMIT_S", soft + 60.0, positive=True)
    # With acks_late and a prefetch multiplier of 1, a worker holds no more unacknowledged
    # messages than it has processes, so a message is unacknowledged about as long as its
    # task runs (at most the hard limit). Five minutes on top cover a slow start. A dead
    # worker's messages come back sooner, through the workers' liveness step
    # (TRAD_WORKER_DEAD_AFTER_S); the visibility timeout is the bound behind it.
    visibility = read.number("TRAD_VISIBILITY_TIMEOUT_S", hard + VISIBILITY_MARGIN_S,
                             positive=True)
    if not 0 < soft < hard < visibility:
        read.wrong(f"task limits must satisfy 0 < TRAD_TASK_SOFT_LIMIT_S ({soft:g}) < "
                   f"TRAD_TASK_HARD_LIMIT_S ({hard:g}) < TRAD_VISIBILITY_TIMEOUT_S "
                   f"({visibility:g})")
    return soft, hard, visibility


def parse_watch_entry(entry: str) -> tuple[str, str, str]:
    """``exchange:SYMBOL:timeframe`` from ``TRAD_DATA_WATCH``.

    >>> parse_watch_entry("binanceus:BTC/USDT:5m")
    ('binanceus', 'BTC/USDT', '5m')
    """
    parts = entry.split(":")
    if len(parts) != 3 or not all(parts):
        raise InputError(f"TRAD_DATA_WATCH entry {entry!r} should be exchange:SYMBOL:timeframe",
                         hint="e.g. binanceus:BTC/USDT:5m,binanceus:ETH/USDT:1h")
    return parts[0].lower(), parts[1].upper(), parts[2]


def _normalise_db_url(url: str) -> str:
    # Heroku-style URLs and plain postgresql:// both mean psycopg2 here.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


@dataclass(frozen=True)
class Settings:
    """Everything configurable. Secrets (tokens, passwords) only ever come from the
    environment or an env file and are never logged (see ``redacted``)."""

    home: Path
    database_url: str
    broker_url: str | None = None
    result_backend: str | None = None
    api_tokens: tuple[ApiToken, ...] = ()
    # Serve /api/v2 without tokens: only when asked for (TRAD_API_OPEN=1), never by omission.
    api_open: bool = False
    data_watch: tuple[str, ...] = ()
    data_watch_interval_s: float = 60.0
    watchdog_interval_s: float = 60.0
    # (soft, hard, visibility) seconds. Hard above soft, the broker's visibility timeout
    # above both: a long task gets SoftTimeLimitExceeded, is killed at the hard limit,
    # and Redis never hands a task still legitimately running to a second worker.
    task_time_limits: tuple[float, float, float] = (600.0, 660.0, 960.0)
    redis_prefix: str = ""
    # A running job with no progress for this long lost a message (every redelivery would
    # have come by then): the watchdog sends its missing work again. Default: the
    # visibility timeout plus two minutes (the brokers' restore scans come within that).
    stall_after_s: float = 1080.0
    # A worker that has not said for this long which messages it holds is dead: any live
    # worker puts its unacknowledged messages back on their queues (workers/liveness.py).
    # It says so every third of this; far below the visibility timeout, which then only
    # covers a worker whose main loop hangs.
    worker_dead_after_s: float = 15.0
    # How long one event stream of the pages (/api/v2/events) lasts before the server ends
    # it and the page reconnects: a tab left open never holds a web thread for good.
    events_stream_s: float = 300.0
    # Where each worker's and beat's metrics are served (0: not served), and on what
    # address (the web process serves its own at /metrics).
    worker_metrics_port: int = 0
    beat_metrics_port: int = 0
    metrics_bind: str = "127.0.0.1"
    # Where the lifecycle rules cut (app.validation.confidence.Thresholds), from
    # TRAD_THRESHOLD_<FIELD> variables, e.g. TRAD_THRESHOLD_LIVE_MIN_DSR=0.97.
    thresholds: object = None
    max_trials: int = 1_000_000
    # Cap on a job's trials times bars (TRAD_MAX_COST): 2e11 is 200,000 trials over a
    # million bars, about an hour on one core.
    max_cost: int = 200_000_000_000
    # How many workers share the asks of each bayesian round (a job's sampler_parts when it
    # does not say). One: the batched TPE asks a round in about what its backtests cost, and
    # each part pays the fit and a history read again (app/optimize/rounds.py).
    sampler_parts: int = 1
    # The embedded default's processes for a round's chunks (TRAD_LOCAL_WORKERS, `trad
    # optimize --workers`): this one and local_workers - 1 helpers (workers/local_pool.py).
    local_workers: int = 1
    log_level: str = "INFO"
    # "text" (key=value lines) or "json" (one JSON object a line): TRAD_LOG_FORMAT.
    log_format: str = "text"
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: tasks run in-process (Celery eager)."""
        return not self.broker_url

    @property
    def optuna_storage_url(self) -> str | None:
        """Where finished studies are copied for optuna-dashboard: ``TRAD_OPTUNA_STORAGE``,
        else beside our tables (a sibling SQLite file, or the ``optuna`` schema of the same
        Postgres database: optuna's own ``trials`` table would clash with ours)."""
        explicit = self.extra.get("optuna_storage")
        if explicit is not None:
            return explicit or None
        if self.is_sqlite:
            from sqlalchemy.engine import make_url

            url = make_url(self.database_url)
            if not url.database or url.database == ":memory:":
                return None
            path = Path(url.database)
            return f"sqlite:///{path.with_name(path.stem + '-optuna.sqlite3')}"
        sep = "&" if "?" in self.database_url else "?"
        return f"{self.database_url}{sep}options=-csearch_path%3Doptuna"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def replace(self, **changes) -> Settings:
        return replace(self, **changes)

    def redacted(self) -> dict:
        """The settings with secrets masked, safe to print or log."""
        from sqlalchemy.engine import make_url

        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("database_url", "broker_url", "result_backend") and value:
                try:
                    value = make_url(value).render_as_string(hide_password=True)
                except Exception:  # noqa: BLE001 - a malformed URL is shown as masked
                    value = "***"
            elif f.name == "api_tokens":
                value = [t.name for t in value]
            elif f.name == "extra":
                continue
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as taskset or a container's
    cpuset limits it), at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


MAX_LOCAL_WORKERS = 256


def check_local_workers(value: float, where: str) -> int:
    """A local worker count as given (``where`` names the flag or variable)."""
    if value != int(value) or not 1 <= value <= MAX_LOCAL_WORKERS:
        raise InputError(f"{where} must be a whole number from 1 to {MAX_LOCAL_WORKERS} "
                         f"(processes on this machine; it has {usable_cores()} cores), got {value:g}",
                         field="workers")
    return int(value)


def load_settings(environ: dict | None = None) -> Settings:
    """Settings from ``environ`` (default ``os.environ``), after ``TRAD_ENV_FILE`` (or
    ``./.env`` when present) fills in what the environment leaves unset."""
    env = dict(os.environ if environ is None else environ)
    env_file = env.get("TRAD_ENV_FILE") or (".env" if Path(".env").is_file() else None)
    if env_file:
        if not Path(env_file).is_file():
            raise InputError(f"TRAD_ENV_FILE={env_file} does not exist")
        for key, value in read_env_file(env_file).items():
            env.setdefault(key, value)
    read = _Reader(env)
    home = _default_home(env)
    database_url = env.get("DATABASE_URL") or f"sqlite:///{home / 'trad.sqlite3'}"
    broker = env.get("CELERY_BROKER_URL") or env.get("REDIS_URL") or None
    backend = env.get("CELERY_RESULT_BACKEND") or broker
    tokens = read.tokens()
    api_open = read.flag("TRAD_API_OPEN")
    if api_open and tokens:
        read.wrong("TRAD_API_OPEN=1 and TRAD_API_TOKENS are both set: choose one (an open "
                   "API takes no token)")
    watch = tuple(w.strip() for w in env.get("TRAD_DATA_WATCH", "").split(",") if w.strip())
    for entry in watch:
        try:
            parse_watch_entry(entry)
        except InputError as exc:
            read.wrong(f"{exc.message} ({exc.hint})")
    max_trials = int(read.number("TRAD_MAX_TRIALS", 1_000_000, positive=True, integer=True))
    max_cost = int(read.number("TRAD_MAX_COST", 2e11, positive=True))
    limits = _time_limits(read)
    parts = read.number("TRAD_SAMPLER_PARTS", 1, integer=True)
    if not 1 <= parts <= 64:
        read.wrong(f"TRAD_SAMPLER_PARTS must be an integer from 1 to 64, got {parts:g}")
        parts = 1
    local_workers = read.number("TRAD_LOCAL_WORKERS", usable_cores())
    try:
        local_workers = check_local_workers(local_workers, "TRAD_LOCAL_WORKERS")
    except InputError as exc:
        read.wrong(exc.message)
        local_workers = usable_cores()
    stall = read.number("TRAD_STALL_AFTER_S", limits[2] + 120.0, positive=True)
    if stall <= limits[2]:
        read.wrong(f"TRAD_STALL_AFTER_S ({stall:g}) must be above the visibility timeout "
                   f"({limits[2]:g} s): before it, a chunk still legitimately running looks lost "
                   "and is sent twice")
    dead_after = read.number("TRAD_WORKER_DEAD_AFTER_S", 15.0, positive=True)
    if dead_after < 3:
        read.wrong(f"TRAD_WORKER_DEAD_AFTER_S ({dead_after:g}) must be at least 3 s: a worker "
                   "says what it holds every third of it, and a slower beat looks dead")
    log_level = env.get("TRAD_LOG_LEVEL", "INFO").strip().upper()
    if log_level not in LOG_LEVELS:
        read.wrong(f"TRAD_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got "
                   f"{env['TRAD_LOG_LEVEL']!r}")
        log_level = "INFO"
    log_format = env.get("TRAD_LOG_FORMAT", "text").strip().lower() or "text"
    if log_format not in LOG_FORMATS:
        read.wrong(f"TRAD_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got "
                   f"{env['TRAD_LOG_FORMAT']!r}")
        log_format = "text"
    settings = Settings(
        home=home,
        database_url=_normalise_db_url(database_url),
        broker_url=broker,
        result_backend=backend,
        api_tokens=tokens,
        api_open=api_open,
        data_watch=watch,
        max_trials=max_trials,
        max_cost=max_cost,
        sampler_parts=int(parts),
        local_workers=int(local_workers),
        data_watch_interval_s=read.number("TRAD_DATA_WATCH_INTERVAL_S", 60.0, positive=True),
        watchdog_interval_s=read.number("TRAD_WATCHDOG_INTERVAL_S", 60.0, positive=True),
        log_level=log_level,
        log_format=log_format,
        task_time_limits=limits,
        stall_after_s=stall,
        worker_dead_after_s=dead_after,
        events_stream_s=read.number("TRAD_EVENTS_STREAM_S", 300.0, positive=True),
        worker_metrics_port=_port(read, "TRAD_WORKER_METRICS_PORT"),
        beat_metrics_port=_port(read, "TRAD_BEAT_METRICS_PORT"),
        metrics_bind=env.get("TRAD_METRICS_BIND", "127.0.0.1").strip() or "127.0.0.1",
        thresholds=_thresholds(read),
        redis_prefix=env.get("TRAD_REDIS_PREFIX", ""),
        extra={k: v for k, v in (("optuna_storage", env.get("TRAD_OPTUNA_STORAGE")),) if v is not None},
    )
    if read.mistakes:
        raise SettingsError("\n".join(read.mistakes))
    return settings
