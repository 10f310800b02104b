"""One Settings object, read from the environment (and an optional env file), nowhere else.

Every other module receives settings; none reads ``os.environ`` itself. Unset means the
embedded default: a SQLite file and in-process tasks, so ``trad`` works on a bare machine.

Where the embedded database lives: ``$TRAD_HOME/trad.sqlite3``, with ``TRAD_HOME``
defaulting to ``$XDG_DATA_HOME/trad`` (``~/.local/share/trad``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from app.errors import InputError

__all__ = ["Settings", "load_settings", "read_env_file", "parse_watch_entry"]


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


def _float(env: dict, key: str, default: float) -> float:
    try:
        return float(env.get(key, default))
    except ValueError:
        raise InputError(f"{key} must be a number, got {env[key]!r}") from None


def _thresholds(env: dict):
    from dataclasses import fields as dc_fields

    from app.validation.confidence import Thresholds

    values = {f.name: _float(env, f"TRAD_THRESHOLD_{f.name.upper()}", f.default)
              for f in dc_fields(Thresholds)}
    return Thresholds(**values)


VISIBILITY_MARGIN_S = 300.0


def _time_limits(env: dict) -> tuple[float, float, float]:
    soft = _float(env, "TRAD_TASK_SOFT_LIMIT_S", 600.0)
    hard = _float(env, "TRAD_TASK_HARD_LIMIT_S", soft + 60.0)
    # With acks_late and a prefetch multiplier of 1, a worker holds no more unacknowledged
    # messages than it has processes, so a message is unacknowledged about as long as its
    # task runs (at most the hard limit). Five minutes on top cover a slow start. The
    # visibility timeout is also how long the tasks of a worker machine that died wait
    # before Redis hands them to another: an hour (Celery's default) stalls a job an hour.
    visibility = _float(env, "TRAD_VISIBILITY_TIMEOUT_S", hard + VISIBILITY_MARGIN_S)
    if not 0 < soft < hard < visibility:
        raise InputError("task limits must satisfy 0 < TRAD_TASK_SOFT_LIMIT_S < "
                         "TRAD_TASK_HARD_LIMIT_S < TRAD_VISIBILITY_TIMEOUT_S")
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
    api_tokens: tuple[str, ...] = ()
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
    # Where the lifecycle rules cut (app.validation.confidence.Thresholds), from
    # TRAD_THRESHOLD_<FIELD> variables, e.g. TRAD_THRESHOLD_LIVE_MIN_DSR=0.97.
    thresholds: object = None
    max_trials: int = 1_000_000
    # Cap on a job's trials times bars (TRAD_MAX_COST): 2e11 is 200,000 trials over a
    # million bars, about an hour on one core.
    max_cost: int = 200_000_000_000
    # How many workers share the asks of each bayesian round (a job's sampler_parts when it
    # does not say). More parts, faster rounds on as many workers, slightly weaker search.
    sampler_parts: int = 2
    log_level: str = "INFO"
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
                value = f"{len(value)} token(s)"
            elif f.name == "extra":
                continue
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


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
    home = _default_home(env)
    database_url = env.get("DATABASE_URL") or f"sqlite:///{home / 'trad.sqlite3'}"
    broker = env.get("CELERY_BROKER_URL") or env.get("REDIS_URL") or None
    backend = env.get("CELERY_RESULT_BACKEND") or broker
    tokens = tuple(t.strip() for t in env.get("TRAD_API_TOKENS", "").split(",") if t.strip())
    watch = tuple(w.strip() for w in env.get("TRAD_DATA_WATCH", "").split(",") if w.strip())
    for entry in watch:
        parse_watch_entry(entry)
    try:
        max_trials = int(env.get("TRAD_MAX_TRIALS", "1000000"))
        max_cost = int(float(env.get("TRAD_MAX_COST", "2e11")))
    except ValueError:
        raise InputError("TRAD_MAX_TRIALS and TRAD_MAX_COST must be numbers") from None
    limits = _time_limits(env)
    parts = _float(env, "TRAD_SAMPLER_PARTS", 2)
    if parts != int(parts) or not 1 <= parts <= 64:
        raise InputError(f"TRAD_SAMPLER_PARTS must be an integer from 1 to 64, got {env['TRAD_SAMPLER_PARTS']!r}")
    return Settings(
        home=home,
        database_url=_normalise_db_url(database_url),
        broker_url=broker,
        result_backend=backend,
        api_tokens=tokens,
        data_watch=watch,
        max_trials=max_trials,
        max_cost=max_cost,
        sampler_parts=int(parts),
        data_watch_interval_s=_float(env, "TRAD_DATA_WATCH_INTERVAL_S", 60.0),
        watchdog_interval_s=_float(env, "TRAD_WATCHDOG_INTERVAL_S", 60.0),
        log_level=env.get("TRAD_LOG_LEVEL", "INFO").upper(),
        task_time_limits=limits,
        stall_after_s=_float(env, "TRAD_STALL_AFTER_S", limits[2] + 120.0),
        thresholds=_thresholds(env),
        redis_prefix=env.get("TRAD_REDIS_PREFIX", ""),
        extra={k: v for k, v in (("optuna_storage", env.get("TRAD_OPTUNA_STORAGE")),) if v is not None},
    )
