"""gunicorn's settings for Trad's web process (the Procfile's `web` and trad-api.service).

Bind address and worker count stay on the command line (TRAD_BIND, WEB_CONCURRENCY).
"""
import ctypes
import ctypes.util
import signal

preload_app = True
# Threads, so a page's event stream (/api/v2/events, at most 5 minutes each) holds a
# thread, not a whole worker.
worker_class = "gthread"
threads = 16
accesslog = "-"
# Without %(u)s: a token sent as the user part of Basic auth would land in the log.
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(B)s %(M)sms "%(a)s"'

# Several worker processes, one scraped at a time: their metrics are summed from the files
# of prometheus_client's multiprocess mode (app.metrics), in a fresh directory per master.
from app.metrics import process_dead, use_multiprocess  # noqa: E402

use_multiprocess("web")


def child_exit(server, worker):
    process_dead(worker.pid)


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def post_fork(server, worker):
    """A worker dies with its master. After a SIGKILL of the master (OOM killer, kill -9)
    orphaned workers would otherwise keep the listening socket until their next heartbeat
    check, and a restarted master exits with "Connection in use"."""
    if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        server.log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())


def post_worker_init(worker):
    """Connections and lazy imports of a first request made before it comes (app.api.warm)."""
    from app.api import warm

    warm(worker.wsgi)
