# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned stack from constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Keep oneDNN off so CPU results are reproducible. (TensorFlow's C++ log lines are kept quiet by
# mrcnn_ohem._compat.quiet_tensorflow in every command line; exporting TF_CPP_MIN_LOG_LEVEL here
# would count as the user's own choice and show them.)
export TF_ENABLE_ONEDNN_OPTS ?= 0

# The oldest supported TensorFlow (2.16, tf-keras 2.16, NumPy 1.26) in a second virtualenv.
VENV_COMPAT ?= .venv-tf216
PY_COMPAT := $(VENV_COMPAT)/bin/python
STAMP_COMPAT := $(VENV_COMPAT)/.installed
# The model tests that test-compat runs beside the fast ones (the slow CLI, notebook and
# benchmark tests run on the main stack only).
COMPAT_MODEL_TESTS ?= tests/test_maskrcnn_model.py tests/test_maskrcnn_weights.py

.PHONY: venv lint test test-fast test-compat demo bench bench-gpu notebooks docs clean

venv: $(STAMP)

# The venv's own pip installs uv (pinned), which installs the stack: the same packages as pip,
# resolved against the same constraints, byte-compiled as pip does (or the first test processes
# would compile TensorFlow's modules), in about 30 s instead of 85 s.
UV_VERSION ?= 0.13.9

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -c constraints.txt -e ".[test]"
	touch $(STAMP)

$(STAMP_COMPAT): setup.py constraints-tf216.txt
	$(PYTHON) -m venv $(VENV_COMPAT)
	$(VENV_COMPAT)/bin/pip install --quiet "uv==$(UV_VERSION)"
	$(VENV_COMPAT)/bin/uv pip install --quiet --compile-bytecode --python $(PY_COMPAT) -c constraints-tf216.txt -e ".[test]"
	touch $(STAMP_COMPAT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The suite runs on TEST_WORKERS processes (pytest-xdist), a test file at a time per process
# (--dist loadfile keeps a module's shared fixtures built once). Much of a model test is
# single-threaded graph building, so two processes on two cores finish well before one, and a
# third keeps both cores busy while the others wait on a subprocess: 1.96 cores used instead
# of 1.85 (2026-12-02, existing venv, pytest 8 min 53 s with 3 workers).
# --no-loadscope-reorder keeps the collection order, which tests/conftest.py starts with the longest
# files (LONGEST_FIRST), so no long file is left to run alone at the end.
TEST_WORKERS ?= 3
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: lint
	$(PY) -m pytest -q $(PYTEST_PARALLEL)

test-fast: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) -m "not slow"

# TensorFlow 2.16: the fast tests, then the model tests.
test-compat: $(STAMP_COMPAT)
	$(PY_COMPAT) -c "import mrcnn_ohem; mrcnn_ohem.quiet_tensorflow(); import tensorflow as tf, tf_keras, numpy, sys; print('compat stack: Python', sys.version.split()[0], 'TensorFlow', tf.__version__, 'tf-keras', tf_keras.__version__, 'NumPy', numpy.__version__)"
	$(PY_COMPAT) -m pytest -q $(PYTEST_PARALLEL) -m "not slow"
	$(PY_COMPAT) -m pytest -q $(PYTEST_PARALLEL) $(COMPAT_MODEL_TESTS)

demo: $(STAMP)
	$(PY) -m samples.snippet_defects
	$(PY) -m samples.demo

# Execute the walkthroughs in full mode and store them with their outputs (minutes of CPU each).
notebooks: $(STAMP)
	$(PY) -m notebooks.store

bench: $(STAMP)
	$(PY) -m benchmarks.loss_speed --write
	$(PY) -m benchmarks.train_step --write

# One command that measures a CUDA GPU (benchmarks/gpu.py): step time of five variants in float32
# and mixed precision, GPU memory, data-path threads, detect() latency -> benchmarks/results/gpu.md.
# Exits 2 on a machine where TensorFlow sees no GPU; BENCH_GPU_ARGS=--quick runs it tiny on the CPU.
BENCH_GPU_ARGS ?=
bench-gpu: $(STAMP)
	$(PY) -m benchmarks.gpu $(BENCH_GPU_ARGS)

# The API reference, rendered from the docstrings into docs/api/ (gitignored; open
# docs/api/index.html). pdoc rather than Sphinx: one command and no conf.py or .rst tree to keep in
# step with the code; it reads our Google-style docstrings as written and imports the package as a
# user does. docs/check_docstrings.py first fails on any public module, function, class or method
# without a docstring, then on any whose Args: section leaves out a parameter or an annotated
# array's shape (printed as path:line: name: problem), then renders, and fails on any warning of
# pdoc's. TensorFlow's start-up lines are kept quiet by mrcnn_ohem.quiet_tensorflow, as in the
# command lines. Not part of make test.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -c constraints.txt -e ".[test,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf docs/api
	$(PY) docs/check_docstrings.py --build docs/api

clean:
	rm -rf $(VENV) $(VENV_COMPAT) build dist *.egg-info .pytest_cache docs/api
