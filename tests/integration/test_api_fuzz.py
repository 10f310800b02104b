"""The API under schemathesis, against its own OpenAPI document, every check on: no 5xx,
every status documented, valid requests accepted, invalid ones refused, auth enforced.

A bounded run (a few dozen examples an operation, derandomized so the suite stays
deterministic); ``make fuzz`` runs it longer with a fresh seed each time
(TRAD_FUZZ_RANDOM=1; hypothesis prints the seed of a failure to replay it). 422 counts
as accepting a valid request: it is the documented answer for a well-formed request
Trad cannot run (no candles for that market, a grid larger than asked).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.config import SchemathesisConfig

from app import create_app
from app.config import load_settings
from app.db.migrate import upgrade

TOKEN = os.urandom(16).hex()
EXAMPLES = int(os.environ.get("TRAD_FUZZ_EXAMPLES", "30"))
RANDOM = os.environ.get("TRAD_FUZZ_RANDOM") == "1"

_home = tempfile.mkdtemp(prefix="trad-fuzz-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
set_hypothesis_home_dir(f"{_home}/hypothesis")  # its caches too, not in the checkout
_url = f"sqlite:///{_home}/fuzz.sqlite3"
upgrade(_url)
APP = create_app({"settings": load_settings({"DATABASE_URL": _url, "TRAD_HOME": _home,
                                              "TRAD_API_TOKENS": f"fuzz:{TOKEN}",
                                              "TRAD_EVENTS_STREAM_S": "0.5"}),
                  "ENQUEUE": lambda job_id, priority: None})
CONFIG = SchemathesisConfig.from_dict({
    "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]}}})
schema = schemathesis.openapi.from_wsgi("/api/v2/openapi.json", APP, config=CONFIG)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_api_keeps_every_promise_of_its_document(case):
    case.call_and_validate()
