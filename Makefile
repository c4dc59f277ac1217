# scantrace: `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

# The README's short `SCANTRACE_KAFKA=apache make test` selects the broker kind; it is
# renamed here because SCANTRACE_KAFKA__* are the Kafka connection settings.
ifdef SCANTRACE_KAFKA
export SCANTRACE_SERVICES__KAFKA := $(SCANTRACE_KAFKA)
unexport SCANTRACE_KAFKA
endif

.PHONY: help env test unit integration faults lint fmt demo up down status bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

env: $(VENV)/.installed ## create .venv and install scantrace with the local and dev extras

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local,dev]'
	touch $@

test: env ## start the services, run every test, stop the services
	$(BIN)/python -m pytest

unit: env ## unit tests only (no services)
	$(BIN)/python -m pytest -m "not integration and not faults"

integration: env ## integration tests only (real Kafka and ClickHouse), without `make faults`
	$(BIN)/python -m pytest -m "integration and not faults"

faults: env ## the whole fault matrix on a local 3-broker, 2-shard cluster (about an hour)
	$(BIN)/python -m pytest -m faults tests/integration/cluster

lint: env ## ruff (lint + format check) and mypy, strict on the stage packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: env ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

up: env ## start the local services (Kafka and ClickHouse)
	$(BIN)/scantrace services up

down: env ## stop the local services
	$(BIN)/scantrace services down

status: env ## where the local services listen
	$(BIN)/scantrace services status

demo: env ## run the main job on the local services and print what it did
	$(BIN)/scantrace services up
	$(BIN)/scantrace demo

bench: env ## run one benchmark: make bench B=core|gateway|worker|sink|trace (bench/RESULTS.md)
	$(BIN)/python -m bench $(B)

clean: ## remove the virtualenv and caches (not the services' state)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
