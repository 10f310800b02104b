"""Which errors are an outage worth retrying, taken from real clients on closed ports."""
from __future__ import annotations

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app.errors import InputError, transient
from tests.processes import free_port


def _raised(call) -> BaseException:
    with pytest.raises(Exception) as raised:
        call()
    return raised.value


def test_a_database_or_broker_out_of_reach_is_transient():
    port = free_port()
    engine = create_engine(f"postgresql+psycopg2://x@127.0.0.1:{port}/x",
                           connect_args={"connect_timeout": 2})
    assert transient(_raised(engine.connect))
    engine.dispose()
    client = redis.Redis(port=free_port(), socket_connect_timeout=2)
    assert transient(_raised(client.ping))


def test_a_mistake_is_not_transient(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/x.sqlite3")
    with engine.connect() as conn:
        missing = _raised(lambda: conn.execute(text("select * from training_jobs")))
    engine.dispose()
    assert isinstance(missing, OperationalError) and not transient(missing)
    assert not transient(InputError("bad"))
    assert not transient(ZeroDivisionError())


def test_the_job_says_whether_it_failed_by_its_own_fault_or_an_outage():
    from workers.tasks import TRANSIENT_RETRIES, describe

    outage = describe(ConnectionRefusedError("refused"), TRANSIENT_RETRIES)
    assert outage.startswith(f"gave up after {TRANSIENT_RETRIES} retries")
    assert "ConnectionRefusedError: refused" in outage
    assert describe(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"
    assert describe(InputError("fast must be below slow")) == "fast must be below slow"


def test_a_chunks_own_error_inside_a_chord_error_is_what_the_job_says():
    from celery.exceptions import ChordError

    from workers.tasks import describe

    wrapped = ChordError("Dependency af1c37a9-7846 raised JobFailed('strategy EXPLODES failed "
                         "on trial 0 with params {\"threshold\": 82}: ValueError: threshold 82 "
                         "is too big')")
    assert describe(wrapped) == ('strategy EXPLODES failed on trial 0 with params '
                                 '{"threshold": 82}: ValueError: threshold 82 is too big')
    assert describe(ChordError("Dependency x raised KeyError('period')")) == "KeyError: period"
    assert describe(ChordError("something else")) == "ChordError: something else"


def test_a_chord_error_over_an_outage_outside_a_chunks_body_is_an_outage():
    from celery.exceptions import ChordError

    from workers.tasks import _chord_outage

    assert _chord_outage(ChordError("Dependency 59f2 raised network:ConnectionError"))
    assert _chord_outage(ChordError("Dependency 59f2 raised OperationalError('x')"))
    assert not _chord_outage(ChordError("Dependency 59f2 raised JobFailed('strategy X')"))
    assert not _chord_outage(ValueError("Dependency 59f2 raised network:ConnectionError"))
