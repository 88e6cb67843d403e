# mailsla — `make help` lists the targets.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: help install install-browser install-mta lock demo demo-postfix test test-unit test-integration bench kafka-up kafka-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# Dependencies come from requirements.lock only (exact versions, hash-checked), then the project
# itself with --no-deps; `pip check` fails the install if the lock no longer satisfies pyproject.toml.
$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip check
	$(BIN)/python -c 'from pipeline.ops.localkafka import ensure_jars; print("kafka jars:", ensure_jars())'
	touch $(STAMP)

install: $(STAMP) ## create .venv with the package and test deps, fetch the Kafka jars

# requirements.lock: the dependencies and the [test] extra, for `make install` and CI;
# deploy/requirements.lock: the dependencies only, at the same versions, for the image.
# pip-compile keeps the versions already locked unless told otherwise (UPGRADE=1: all of them;
# P=name: that package). Python 3.11 on Linux x86_64, as CI and the image. pip-tools runs from a
# throwaway venv.
PIP_TOOLS := pip-tools==7.6.2
COMPILE   := --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	$(if $(UPGRADE),--upgrade) $(if $(P),--upgrade-package $(P))
lock: ## re-resolve requirements.lock and deploy/requirements.lock (UPGRADE=1 or P=package to upgrade)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -m venv "$$tmp" && "$$tmp/bin/pip" install -q '$(PIP_TOOLS)' && \
	"$$tmp/bin/pip-compile" $(COMPILE) --extra test -o requirements.lock pyproject.toml && \
	cp requirements.lock deploy/requirements.lock && \
	"$$tmp/bin/pip-compile" $(COMPILE) -o deploy/requirements.lock pyproject.toml

install-browser: ## Debian's chromium for the live-page test (apt, as root; skipped if present)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { echo "chromium not installed: the browser tests will be skipped (in CI they fail)"; [ -z "$$CI" ]; }

install-mta: ## Postfix 3.7 (apt) and Exim 4.96 (unpacked into /opt/mailsla/exim4) for the MTA tests (as root)
	@bash scripts/install-mta.sh

demo: $(STAMP) ## run Kafka, a worker and the generator for ~2 min with a live summary
	$(BIN)/mailsla demo

demo-postfix: $(STAMP) install-mta ## a private Postfix on loopback feeding the pipeline, queue manager paused for a while
	$(BIN)/mailsla demo --mta postfix

test: $(STAMP) install-browser install-mta ## unit and integration tests (real Kafka broker, embedded ClickHouse, Chromium, Postfix, Exim)
	$(BIN)/pytest -q

test-unit: $(STAMP) ## unit tests only (fast, no Kafka)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP) install-browser install-mta ## integration tests only
	$(BIN)/pytest -q tests/integration

bench: $(STAMP) ## events/s, sink rows/s, state: medians of REPEAT runs (EVENTS=1000000 REPEAT=1)
	$(BIN)/mailsla bench --events $${EVENTS:-1000000} --repeat $${REPEAT:-1}

kafka-up: $(STAMP) ## start the local Kafka broker (background)
	$(BIN)/mailsla kafka up

kafka-down: $(STAMP) ## stop the local Kafka broker
	$(BIN)/mailsla kafka down

clean: ## stop local Kafka and remove ./data
	-$(BIN)/mailsla kafka down
	rm -rf data
