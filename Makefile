# Each target bootstraps .venv from the repo's requirement files; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run serve test lint bench clean deploy-check

$(STAMP): requirements.txt requirements-dev.txt requirements-ops.txt
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

## deploy.sh against the installed Cloud SDK, offline and without credentials: the archive gcloud's
## own code builds from the upload directory, the metric and policy files parsed into the API's
## messages, and every gcloud command of a deploy, a redeploy and a --destroy replayed through
## gcloud's parser. Part of `make test` too (skipped there when gcloud is not installed).
deploy-check: $(STAMP)
	DEPLOY_CHECK_REQUIRE_GCLOUD=1 $(BIN)/python -m pytest -q -s tests/deploy/test_deploy_gcloud.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
