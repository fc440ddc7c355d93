# The README's commands. Everything a fresh clone needs is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PKGS   := $(sort $(wildcard packages/callbacks-*))
# torch first and pinned: a bare `torch` requirement would fetch a multi-GB CUDA build.
TORCH  := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test lint typecheck bench clean

$(STAMP): requirements-dev.txt $(foreach p,$(PKGS),$(p)/pyproject.toml) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -r requirements-dev.txt $(foreach p,$(PKGS),-e "$(p)[test]")
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/trainer-callbacks demo

test: install
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-ci} OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check packages tests bench examples
	$(BIN)/ruff format --check packages tests bench examples

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
