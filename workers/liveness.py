"""A dead worker's messages back in seconds, not after the visibility timeout.

With the Redis broker a message a worker has taken but not acknowledged sits in Redis'
``unacked`` set; kombu hands it out again only after the visibility timeout (960 s by
default, which must outlast the longest task). Here every worker's main process says, every
third of ``TRAD_WORKER_DEAD_AFTER_S`` (15 s by default), which messages it holds (a Redis
set that expires after that long). A message in ``unacked`` for longer than that which no
live worker holds belonged to a worker that died: any live worker puts it back on its queue at once
(kombu's own ``restore_by_tag``, a WATCHed transaction, so two workers restore it once).
Trials are written idempotently, so a message restored twice costs time, never a trial.
"""
from __future__ import annotations

import logging
import time

from celery import bootsteps, signals

from app.metrics import RECOVERIES

__all__ = ["HeldMessages"]

log = logging.getLogger(__name__)

_HELD = "trad:held:"


def _held_tags(consumer) -> set[str]:
    """Every delivery tag this worker has taken and not yet acknowledged: its channel's
    own record (kombu's QoS, read on the consuming thread the timer runs on) and the
    requests the worker knows of."""
    from celery.worker import state

    channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
    delivered = getattr(getattr(channel, "qos", None), "_delivered", None) or {}
    tags = {str(tag) for tag in list(delivered)}
    for requests in (state.reserved_requests, state.active_requests, state.scheduled_requests):
        for request in list(requests):
            tag = (request.delivery_info or {}).get("delivery_tag") or getattr(
                request.message, "delivery_tag", None)
            if tag:
                tags.add(str(tag))
    return tags


class HeldMessages(bootsteps.StartStopStep):
    """A consumer step: the heartbeat of the messages this worker holds, and the restore of
    those nobody alive holds."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.timer_ref = None
        self.client = None

    def start(self, c):
        settings = c.app.conf.trad_settings
        url = settings.broker_url or ""
        if not url.startswith(("redis://", "rediss://")):
            return
        import redis

        if type(c.pool).__module__.endswith(".solo"):
            # A solo worker runs its tasks on the loop that would say what it holds: a long
            # task would look like a dead worker. Its messages wait the visibility timeout.
            log.info("liveness off in a solo pool: a dead worker's messages wait the "
                     "visibility timeout")
            return
        self.dead_after = settings.worker_dead_after_s
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self.prefix = settings.redis_prefix
        self.key = f"{self.prefix}{_HELD}{c.hostname}"
        self.app = c.app
        self.consumer = c
        self.timer_ref = c.timer.call_repeatedly(self.dead_after / 3, self.beat, priority=10)
        self.beat()

    def stop(self, c):
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None
        if self.client is not None:
            # The key stays until the worker is down (worker_shutdown, below): a warm
            # shutdown still runs the tasks it holds.
            _stopped[self.key] = self.client
            self.client = None

    shutdown = stop

    def beat(self) -> None:
        try:
            self._say_held()
            self._restore_orphans()
        except Exception as exc:  # noqa: BLE001 - never take the consumer down; next beat
            log.warning("liveness beat failed error=%s: %s", type(exc).__name__, exc)

    def _say_held(self) -> None:
        pipe = self.client.pipeline()
        pipe.delete(self.key)
        pipe.sadd(self.key, "alive", *_held_tags(self.consumer))
        pipe.expire(self.key, max(1, int(self.dead_after)))
        pipe.execute()

    def _restore_orphans(self) -> None:
        if self.client.info("server").get("uptime_in_seconds", 0) < self.dead_after:
            return  # a restarted Redis: the live workers have not all said what they hold
        old = self.client.zrangebyscore(f"{self.prefix}unacked_index", "-inf",
                                        time.time() - self.dead_after)
        if not old:
            return
        held = set()
        for key in self.client.scan_iter(match=f"{self.prefix}{_HELD}*", count=500):
            held |= {m.decode() for m in self.client.smembers(key)}
        orphans = [t.decode() for t in old if t.decode() not in held]
        if not orphans:
            return
        with self.app.connection_for_write() as conn:
            qos = conn.default_channel.qos
            for tag in orphans:
                qos.restore_by_tag(tag, leftmost=True)
        RECOVERIES.labels("restored_dead_worker").inc(len(orphans))
        log.warning("restored messages of a dead worker count=%d", len(orphans))


_stopped: dict = {}


@signals.worker_shutdown.connect
def _say_gone(**_kwargs) -> None:
    """The worker is down, its tasks finished or handed back: it holds nothing now (a
    worker that dies instead lets its key expire)."""
    while _stopped:
        key, client = _stopped.popitem()
        try:
            client.delete(key)
        except Exception:  # noqa: BLE001 - the broker may be down; the key expires
            pass
        client.close()
