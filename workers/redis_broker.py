"""kombu's Redis transport with one ordering fixed, for Celery's ``broker_transport``.

kombu 5.7's ``Channel.close`` drops its connection pools, then hands the worker's delivered
but unacknowledged messages back to the queue, which needs a pool again; rebuilding one
reads the connection's client, already gone when the broker connection was lost. The
worker then dies of an AttributeError ("Unrecoverable error") on every Redis restart that
finds it holding a message. Here the messages go back first, while the pools still exist;
if Redis is down they stay in its unacked set and come back with the visibility timeout.
"""
from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis

__all__ = ["Transport"]

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def ack(self, delivery_tag):
        # A task that ran through a lost connection finishes on the old, closed channel,
        # whose pools are gone (acking there crashed the worker the same way). Its message
        # is in Redis' unacked set and comes back: the trials it wrote are idempotent.
        if self.channel.closed:
            self._delivered.pop(delivery_tag, None)
            log.warning("message finished on a closed channel, left for redelivery tag=%s",
                        delivery_tag)
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if self.channel.closed:
            self._delivered.pop(delivery_tag, None)
            return
        super().reject(delivery_tag, requeue=requeue)


class Channel(kombu_redis.Channel):
    QoS = QoS

    def close(self):
        if not self.closed and self._qos is not None:
            try:
                self._qos.restore_unacked_once()
            except self.connection_errors as exc:
                # They are still in Redis' unacked set: forget them here, as a restore
                # would have (a second restore attempt asserts there is nothing left).
                self._qos._delivered.clear()
                log.warning("could not hand back unacknowledged messages on close (%s: %s); "
                            "they return after the visibility timeout", type(exc).__name__, exc)
        super().close()


class Transport(kombu_redis.Transport):
    Channel = Channel
