# `make demo` and `make test` each set everything up on a fresh machine first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench bench-env lint docs

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# CPU build of torch first, so that torch>=2.2 is already satisfied (a plain install pulls CUDA).
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev,docs]"
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
	$(MAKE) bench-env
	$(BENCH)/bin/python benchmarks/against_multivae.py --compile
	$(PY) benchmarks/start.py
	$(PY) benchmarks/tabular.py
	$(PY) benchmarks/cli_impute.py
	$(PY) benchmarks/spirals.py --weak

# The comparison libraries live only here, never in .venv. MultiVae comes without its torchvision
# dependency (no CPU build installs beside torch 2.13.0); benchmarks/stubs stands in for it.
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

# The documentation site (the docs extra): site/index.html
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
