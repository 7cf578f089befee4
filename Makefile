# Each target bootstraps .venv from the repo's requirement files; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run serve test lint bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

## Run the collector once, locally. Without Harness credentials it uses the embedded
## stand-ins (fake-gcs-server and the Harness simulator).
run: $(STAMP)
	$(BIN)/python -m devtools.run_local

## Serve the function locally against fake-gcs-server and the Harness simulator, and print
## the curl command that triggers a run. Ctrl-C stops all three. SERVE_PORT=8081 to move it.
SERVE_PORT ?= 8080
SERVE_EVENTS ?= 2500
serve: $(STAMP)
	$(BIN)/python -m devtools.serve_local --port $(SERVE_PORT) --events $(SERVE_EVENTS)

## The whole suite: lint, unit, integration, deploy.sh.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
