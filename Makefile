# `make demo` and `make test` each set everything up on a fresh machine first: `install`
# the package alone, `dev` also the development tools (pytest, ruff, hypothesis, aeon) and mkdocs.
# torch comes from pip's index (on Linux, the CUDA build); TORCH_INDEX chooses another:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu    # the CPU build
PYTHON ?= python3
TORCH_INDEX ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV := $(VENV)/.installed-dev
TORCH := torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: install dev demo test bench bench-env lint docs

# torch first, from TORCH_INDEX when given, so that the package's torch>=2.2 is already met.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e .
	touch $(STAMP)

$(DEV): $(STAMP)
	$(PY) -m pip install -e ".[dev,docs]"
	touch $(DEV)

install: $(STAMP)

dev: $(DEV)

demo: install
	$(PY) -m polymodal demo

test: dev
	$(PY) -m pytest -q

bench: dev
	$(PY) -m pip install -e ".[bench]"
	$(PY) -m benchmarks.digits
	$(PY) -m benchmarks.speed
	$(PY) -m benchmarks.speed --busy
	$(MAKE) bench-env
	$(BENCH)/bin/python -m benchmarks.against_multivae
	$(PY) -m benchmarks.start
	$(PY) -m benchmarks.tabular
	$(PY) -m benchmarks.cli_impute
	$(PY) -m benchmarks.spirals --weak
	for t in breast_cancer wine glass biopsy; do $(PY) -m benchmarks.imputer --data $$t --record $$t || exit 1; done
	$(PY) -m benchmarks.imputer --speed 3
	$(PY) -m benchmarks.imputer_scale
	$(PY) -m benchmarks.tsi
	$(BENCH)/bin/python -m benchmarks.tsi --dataset PhysioNet --epochs 50 --pypots SAITS BRITS CSDI --csdi-epochs 1 --csdi-patterns --record physionet
	$(BENCH)/bin/python -m benchmarks.tsi --dataset MotionSense --epochs 50 --pypots SAITS BRITS --record motionsense
	$(PY) -m benchmarks.polymnist
	$(PY) -m benchmarks.results

# The comparison libraries (MultiVae, PyPOTS, miceforest; imputegap for its data files) live only
# here, never in .venv. imputegap comes without its dependencies (tensorflow among them): only its
# data files are read. MultiVae comes without its torchvision dependency (no CPU build installs
# beside torch 2.13.0); the benchmark loads the stand-in in benchmarks/stubs just before importing
# MultiVae (benchmarks/stubs/__init__.py).
BENCH := .venv-bench
$(BENCH)/.installed: pyproject.toml
	test -x $(BENCH)/bin/python || $(PYTHON) -m venv $(BENCH)
	$(BENCH)/bin/python -c "import torch" 2>/dev/null || $(BENCH)/bin/python -m pip install $(TORCH)
	$(BENCH)/bin/python -m pip install --no-deps multivae==1.0.3 pythae==0.1.2
	$(BENCH)/bin/python -m pip install cloudpickle imageio "pydantic>=2" nltk torchmetrics
	$(BENCH)/bin/python -m pip install pypots==1.5 miceforest==6.0.5 aeon
	$(BENCH)/bin/python -m pip install --no-deps imputegap==1.1.2
	$(BENCH)/bin/python -m pip install -e ".[bench,mnist]"
	touch $(BENCH)/.installed

bench-env: $(BENCH)/.installed

lint: dev
	$(VENV)/bin/ruff check src tests benchmarks

# The documentation site (the docs extra, which `dev` installs): site/index.html
docs: dev
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
