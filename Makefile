# facegen: the two commands of the README.
#   make demo   installs into .venv and runs the whole pipeline on the local demo board
#   make test   installs into .venv and runs the test suite (offline)
#   make test-fast   ruff check and the tests not marked slow (the lane to run while changing code)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m facegen.demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)
