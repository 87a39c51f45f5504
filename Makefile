# The two commands: `make demo` (the main job on the embedded default dataset)
# and `make test` (lint + the whole test suite). Both set everything up first.
VENV := .venv
STAMP := $(VENV)/.outfitrec-installed

.PHONY: setup demo test lint clean main-draw2

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/outfitrec demo

# The main comparison on draw 1 and on a second generated draw (`make-fmnist --draw 2`: seed 1, 40 % unseen
# items), then claims.md (in draw 2's results folder): both tables side by side, each claim held or not.
# SCALE=full (hours on 2 cores) or quick; FMNIST is the dataset name, FMNIST_ARGS its generator overrides, e.g.
# make main-draw2 SCALE=quick FMNIST=fmnist-s80 FMNIST_ARGS="--users 80 --train-outfits 4000 --items-per-class 60"
SCALE ?= full
FMNIST ?= fmnist-default
FMNIST_ARGS ?=
main-draw2: $(STAMP)
	test -f datasets/$(FMNIST)/dataset.npz || $(VENV)/bin/outfitrec data make-fmnist datasets/$(FMNIST) $(FMNIST_ARGS)
	test -f datasets/$(FMNIST)-draw2/dataset.npz || \
		$(VENV)/bin/outfitrec data make-fmnist datasets/$(FMNIST)-draw2 --draw 2 $(FMNIST_ARGS)
	$(VENV)/bin/outfitrec experiment main --data datasets/$(FMNIST) --seeds 3 --scale $(SCALE)
	$(VENV)/bin/outfitrec experiment main --data datasets/$(FMNIST)-draw2 --seeds 3 --scale $(SCALE) \
		--compare runs/experiments/$(FMNIST)-$(SCALE)/main

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) runs datasets .pytest_cache
