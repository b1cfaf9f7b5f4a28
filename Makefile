# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test lint bench services clean

# Strict editable mode links every module into the venv's view of `domicile`, which is what mypy
# reads (it cannot follow an import hook); a folder that gains or loses a file re-links it.
PACKAGE_DIRS := $(shell find client router shards audit migrations -type d -not -name __pycache__)

$(BIN)/domicile: pyproject.toml constraints.txt $(PACKAGE_DIRS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]" --config-settings editable_mode=strict
	touch $@

# Run the API on the embedded default: three SQLite shards under ./domicile-data.
serve: $(BIN)/domicile
	$(BIN)/domicile serve

# Lint, type-check and run the whole suite against real PostgreSQL, Redis and S3.
test: $(BIN)/domicile services lint
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadgroup

lint: $(BIN)/domicile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

services:
	tests/services.sh

bench: $(BIN)/domicile services
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) domicile-data .mypy_cache .ruff_cache
