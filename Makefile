# Two commands on a fresh machine: `make up` runs Dormouse, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test test-postgres test-sqlite lint install lock clean bench bench-quick bench-timeouts bench-turns bench-agents bench-live bench-live-quick bench-webhooks bench-tools bench-journal bench-compare faults faults-quick email-corpus

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Dormouse needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP)

## Run API, worker and beat with SQLite and an embedded broker under ./var (PORT to move it).
up: $(STAMP)
	$(BIN)/dormouse up

## The whole suite on both backends: PostgreSQL + Redis, then SQLite + the embedded broker.
test: test-postgres test-sqlite

test-postgres: $(STAMP)
	DORMOUSE_TEST_BACKEND=postgres $(BIN)/pytest

test-sqlite: $(STAMP)
	DORMOUSE_TEST_BACKEND=sqlite $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Re-resolve every dependency in a fresh venv and pin the result into constraints.txt.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet '.[dev,bench]'
	{ sed -n '1,3p' constraints.txt; .lock-venv/bin/pip freeze --exclude dormouse; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .lock-venv build

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info

## Benchmarks (PostgreSQL on 127.0.0.1; results are written into benchmarks/README.md).
bench-timeouts: $(STAMP)
	$(BIN)/python -m benchmarks.timeout_sweep

## The CPU a Pydantic AI turn adds over the offline agent (no database, no network).
bench-agents: $(STAMP)
	$(BIN)/python -m benchmarks.agent_cost

## The live API: streamed reply vs its commit, and 1,000 idle event streams on one API process.
bench-live: $(STAMP)
	$(BIN)/python -m benchmarks.live_streams

bench-live-quick: $(STAMP)
	$(BIN)/python -m benchmarks.live_streams --quick

## Event webhooks: what writing events adds to handling a message (no endpoint vs one
## subscribed to everything), and event deliveries a second one worker process posts.
bench-webhooks: $(STAMP)
	$(BIN)/python -m benchmarks.webhooks

## The ingest figure's load generator is wrk (C, so the figure is the server's, not a Python
## client's): installed from the distribution's packages when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
bench-tools:
	@command -v wrk >/dev/null || { \
		echo "installing wrk, the ingest benchmark's load generator (apt-get install wrk)"; \
		$(SUDO) apt-get install -y -qq wrk >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "could not install wrk: install it (apt-get/brew install wrk) and rerun"; exit 1; }; }

## The platform figures (real processes, paced load) and the slow-model figures.
bench: $(STAMP) bench-tools bench-timeouts bench-turns bench-agents
	$(BIN)/python -m benchmarks.platform
	$(BIN)/python -m benchmarks.slow_model

## A few minutes: small counts of each.
bench-quick: $(STAMP) bench-tools
	$(BIN)/python -m benchmarks.platform --quick
	$(BIN)/python -m benchmarks.timeout_sweep --quick
	$(BIN)/python -m benchmarks.slow_model --quick
	$(BIN)/python -m benchmarks.turn_cost --quick
	$(BIN)/python -m benchmarks.journal_cost --quick

## The journal's cost: one step's write (PostgreSQL, SQLite) and its share of a turn's CPU.
bench-journal: $(STAMP)
	$(BIN)/python -m benchmarks.journal_cost

## A change against its base, back to back on this machine (quick platform and slow model):
## run it before landing a change to ingest, turns, delivery or events. BASE=<commit>.
bench-compare: $(STAMP) bench-tools
	@[ -n "$(BASE)" ] || { echo "usage: make bench-compare BASE=<commit>"; exit 2; }
	$(BIN)/python -m benchmarks.compare --base $(BASE)

## How the mail parser reads 200 real emails from other projects' test suites (visible text
## against their expectations, auto-replies and bounces never answered). EMAIL_CORPUS moves it.
email-corpus: $(STAMP)
	$(BIN)/python -m benchmarks.email_corpus

## The fault suite: real processes while workers, the broker or the database fail.
faults: $(STAMP)
	$(BIN)/python -m benchmarks.faults

faults-quick: $(STAMP)
	$(BIN)/python -m benchmarks.faults --quick

bench-turns: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.turn_cost
