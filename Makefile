# The two commands: `make demo` (the main job on the embedded default dataset)
# and `make test` (lint + the whole test suite). Both set everything up first.
VENV := .venv
STAMP := $(VENV)/.outfitrec-installed

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/outfitrec demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) runs datasets .pytest_cache
