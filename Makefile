# Two commands on a fresh machine: `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Browser tests (tests/e2e/browser.py) drive Debian's chromium through Playwright, which
# never downloads a browser. `make test` and `make install` install it when missing;
# `make run` does not need it.
CHROMIUM ?= $(or $(TRAD_CHROMIUM),/usr/bin/chromium)
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_GET_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends
APT_INSTALL := $(APT_GET_INSTALL) chromium
# The monitoring tests (tests/integration/test_monitoring_config.py runs promtool on
# deploy/prometheus, tests/e2e/test_prometheus.py a real Prometheus scraping the processes)
# use Debian's `prometheus` package, which ships both binaries; installed like Chromium.
PROMETHEUS ?= $(or $(TRAD_PROMETHEUS),/usr/bin/prometheus)
PROMTOOL ?= $(or $(TRAD_PROMTOOL),/usr/bin/promtool)
APT_INSTALL_PROMETHEUS := $(APT_GET_INSTALL) prometheus

.PHONY: run test fuzz bench up install chromium prometheus clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

# Only when missing; `apt-get update` only if the install fails. Without apt-get, warn and
# go on: the browser tests then skip (and fail under CI=true).
$(CHROMIUM):
	@if ! command -v apt-get >/dev/null; then \
		echo "warning: $(CHROMIUM) missing and no apt-get: install Chromium, or set TRAD_CHROMIUM" >&2; \
	else \
		$(APT_INSTALL) || { $(SUDO) apt-get update && $(APT_INSTALL); }; \
	fi

chromium: $(CHROMIUM)

# Both from one package: one recipe for the two (a grouped target), with the same rules as
# Chromium's. Without them the monitoring tests skip (and fail under CI=true).
$(PROMETHEUS) $(PROMTOOL) &:
	@if ! command -v apt-get >/dev/null; then \
		echo "warning: $(PROMETHEUS) or $(PROMTOOL) missing and no apt-get: install Prometheus, or set TRAD_PROMETHEUS and TRAD_PROMTOOL" >&2; \
	else \
		$(APT_INSTALL_PROMETHEUS) || { $(SUDO) apt-get update && $(APT_INSTALL_PROMETHEUS); }; \
	fi

prometheus: $(PROMETHEUS) $(PROMTOOL)

install: $(STAMP) $(CHROMIUM) $(PROMETHEUS) $(PROMTOOL)

run: $(STAMP)
	$(BIN)/trad demo

test: $(STAMP) $(CHROMIUM) $(PROMETHEUS) $(PROMTOOL)
	TRAD_CHROMIUM=$(CHROMIUM) TRAD_PROMETHEUS=$(PROMETHEUS) TRAD_PROMTOOL=$(PROMTOOL) \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

# The API against its own OpenAPI document, longer and with a fresh random seed each run
fuzz: $(STAMP)
	TRAD_FUZZ_EXAMPLES=$${TRAD_FUZZ_EXAMPLES:-500} TRAD_FUZZ_RANDOM=1 \
		$(BIN)/python -m pytest -p no:cacheprovider tests/integration/test_api_fuzz.py $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/data.py
	$(BIN)/python bench/job.py
	$(BIN)/python bench/study_export.py
	$(BIN)/python bench/sampler.py
	$(BIN)/python bench/ask_cost.py
	$(BIN)/python bench/time_to_quality.py
	$(BIN)/python bench/embedded.py
	$(BIN)/python bench/verdicts.py

# The Procfile's processes (web, worker, beat, flower) against DATABASE_URL and
# CELERY_BROKER_URL (or REDIS_URL), after migrating. FLOWER_BASIC_AUTH must be set.
up: $(STAMP)
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL (postgresql://...)"; exit 2; }
	@test -n "$$CELERY_BROKER_URL$$REDIS_URL" || { echo "set CELERY_BROKER_URL or REDIS_URL (redis://...)"; exit 2; }
	$(BIN)/trad db upgrade
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
