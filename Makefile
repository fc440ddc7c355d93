# The README's commands. Everything a fresh clone needs is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PKGS   := $(sort $(wildcard packages/callbacks-*))
SUITE  := packages/trainer-callbacks# the suite distribution (no code): every callback and the app extras
# torch first and pinned: a bare `torch` requirement would fetch a multi-GB CUDA build.
TORCH  := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test test-floors check lint typecheck bench clean dist

$(STAMP): requirements-dev.txt $(foreach p,$(PKGS),$(p)/pyproject.toml) $(SUITE)/pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -r requirements-dev.txt $(foreach p,$(PKGS),-e "$(p)[test]") -e $(SUITE)
	touch $(STAMP)

install: $(STAMP)

# A second environment at the declared floors (constraints-floors.txt: transformers 4.57, accelerate,
# pluggy, mlflow-skinny, tensorboard), and the suite run there. Left out: tests/integration (its clients,
# trl/peft/sentence-transformers, are pinned for transformers 5.x), torchrun and install tests (time);
# tests that need the simulator (transformers 5.x only) report as skipped with its reason; the tests
# in floors-deselect.txt are left out, each for the reason written there.
FLOORS_VENV  := .venv-floors
FLOORS_STAMP := $(FLOORS_VENV)/.installed
$(FLOORS_STAMP): constraints-floors.txt $(foreach p,$(PKGS),$(p)/pyproject.toml) Makefile
	test -x $(FLOORS_VENV)/bin/python || $(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install -q --upgrade pip
	$(FLOORS_VENV)/bin/python -m pip install -q $(TORCH)
	$(FLOORS_VENV)/bin/python -m pip install -q -c constraints-floors.txt -r constraints-floors.txt $(foreach p,$(PKGS),-e "$(p)[test]")
	touch $(FLOORS_STAMP)

test-floors: $(FLOORS_STAMP)
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(FLOORS_VENV)/bin/python -m pytest \
		-p no:cacheprovider --ignore=tests/integration -m "not distributed and not install" \
		$(addprefix --deselect ,$(shell grep -v '^\#' floors-deselect.txt)) $(PYTEST_ARGS)

demo: install
	$(BIN)/trainer-callbacks demo

test: install
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check packages tests bench examples tools
	$(BIN)/ruff format --check packages tests bench examples tools

# The sources in one run; each tests folder in a run of its own (they share module names such as
# conftest and test_trainer, and import their own helpers from their folder).
TEST_DIRS := tests $(foreach p,$(PKGS),$(p)/tests)
typecheck: install
	$(BIN)/mypy
	set -e; for d in $(TEST_DIRS); do MYPYPATH=$$d $(BIN)/mypy $$d; done

# What CI gates before the tests: lint, format and types (sources and tests).
check: lint typecheck

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(FLOORS_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Release check (docs/releasing.md): an sdist and a wheel of every distribution into dist/,
# twine check, versions and cross-package requirements, then each plugin's wheel alone with
# core's in a fresh venv over this environment: `trainer-callbacks list` shows exactly it.
dist: install
	$(BIN)/python tools/dist.py --out dist
