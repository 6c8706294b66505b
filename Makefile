# `make demo` and `make test` each set everything up on a fresh machine first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU build of torch first, so that torch>=2.2 is already satisfied (a plain install pulls CUDA).
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m polymodal demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m pip install -e ".[bench]"
	$(PY) benchmarks/digits.py
	$(PY) benchmarks/speed.py
	$(PY) benchmarks/speed.py --busy
	$(PY) benchmarks/tabular.py
	$(PY) benchmarks/cli_impute.py
	$(PY) benchmarks/spirals.py --weak

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
