# The one entry point for newcomers and CI. `make install` needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: docs install run test lint schema bench cluster-up cluster-down postgres-up postgres-down clean image

install: $(BIN)/gitops

$(BIN)/gitops: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

run: install
	GITOPS=$(BIN)/gitops scripts/demo

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check gitops tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: install
	$(BIN)/python -m gitops.cli.reference README.md

schema: install
	$(BIN)/python -m gitops.events.schema schema/events.schema.json
	$(BIN)/python -m gitops.service.config schema/config.schema.json
	$(BIN)/python -m gitops.query.report schema/report.schema.json
	$(BIN)/python -m gitops.service.notify schema/notification.schema.json

bench: install
	$(BIN)/python scripts/bench_append.py
	$(BIN)/python scripts/bench_verify.py
	$(BIN)/python scripts/bench_git_ingest.py
	scripts/local-cluster up && eval "$$(scripts/local-cluster env)" && $(BIN)/python scripts/bench_cluster_ingest.py

# The container image of deploy/: needs a container builder (docker or podman), which these
# machines do not run; CI tests the wheel in a clean venv with the in-cluster config instead.
IMAGE ?= gitops:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image:
	@builder=$$(command -v docker || command -v podman) || { echo "make image needs docker or podman" >&2; exit 1; }; \
	$$builder build -f deploy/Dockerfile -t $(IMAGE) .

cluster-up:
	scripts/local-cluster up

cluster-down:
	scripts/local-cluster down

postgres-up:
	scripts/local-postgres up

postgres-down:
	scripts/local-postgres down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
