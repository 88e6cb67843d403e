# mailsla — `make help` lists the targets.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: help install install-browser demo test test-unit test-integration bench kafka-up kafka-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -c 'from pipeline.localkafka import ensure_jars; print("kafka jars:", ensure_jars())'
	touch $(STAMP)

install: $(STAMP) ## create .venv with the package and test deps, fetch the Kafka jars

install-browser: ## Debian's chromium for the live-page test (apt, as root; skipped if present)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed: the live-page browser test will be skipped"

demo: $(STAMP) ## run Kafka, a worker and the generator for ~2 min with a live summary
	$(BIN)/mailsla demo

test: $(STAMP) install-browser ## unit and integration tests (real Kafka broker, embedded ClickHouse, headless Chromium)
	$(BIN)/pytest -q

test-unit: $(STAMP) ## unit tests only (fast, no Kafka)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP) install-browser ## integration tests only
	$(BIN)/pytest -q tests/integration

bench: $(STAMP) ## end-to-end events/s vs the raw aiokafka ceiling (EVENTS=1000000)
	$(BIN)/mailsla bench --events $${EVENTS:-1000000}

kafka-up: $(STAMP) ## start the local Kafka broker (background)
	$(BIN)/mailsla kafka up

kafka-down: $(STAMP) ## stop the local Kafka broker
	$(BIN)/mailsla kafka down

clean: ## stop local Kafka and remove ./data
	-$(BIN)/mailsla kafka down
	rm -rf data
