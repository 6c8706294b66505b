# `make demo` and `make test` each set everything up on a fresh machine first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench bench-env lint

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
	$(PY) -m benchmarks.digits
	$(PY) -m benchmarks.speed
	$(PY) -m benchmarks.speed --busy
	$(MAKE) bench-env
	$(BENCH)/bin/python -m benchmarks.against_multivae --compile
	$(PY) -m benchmarks.start
	$(PY) -m benchmarks.tabular
	$(PY) -m benchmarks.cli_impute
	$(PY) -m benchmarks.spirals --weak
	$(PY) -m benchmarks.results

# The comparison libraries live only here, never in .venv. MultiVae comes without its torchvision
# dependency (no CPU build installs beside torch 2.13.0); the benchmark loads the stand-in in
# benchmarks/stubs just before importing MultiVae (benchmarks/stubs/__init__.py).
BENCH := .venv-bench
$(BENCH)/.installed: pyproject.toml
	test -x $(BENCH)/bin/python || $(PYTHON) -m venv $(BENCH)
	$(BENCH)/bin/python -c "import torch" 2>/dev/null || $(BENCH)/bin/python -m pip install torch==2.13.0
	$(BENCH)/bin/python -m pip install --no-deps multivae==1.0.3 pythae==0.1.2
	$(BENCH)/bin/python -m pip install cloudpickle imageio "pydantic>=2" nltk torchmetrics
	$(BENCH)/bin/python -m pip install -e ".[bench]"
	touch $(BENCH)/.installed

bench-env: $(BENCH)/.installed

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
